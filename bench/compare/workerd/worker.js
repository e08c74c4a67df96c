// The seed's Durable Object examples for workerd, the reference
// implementation of the model, with routes that mirror durin's so that the
// same loadgen command drives both (bench/compare.sh).
//
// ChatRoom and RateLimiter are the seed's classes with the TypeScript types
// taken out and nothing else changed: the chat room keeps its sessions in
// memory (server.accept(), no hibernation) and the rate limiter reads and
// writes its window counter in storage on every check. Counter is the
// smallest durable object that matches durin's `counter` class.
//
// Routes:
//   GET  /healthz                        -> "ok" (bench/compare.sh waits on it)
//   GET  /ratelimit/{key}                -> RateLimiter named {key}
//   POST /counter/{name}/increment       -> {"value": N}, N after the increment
//   GET  /counter/{name}                 -> {"value": N}
//   GET  /chat/{room}/websocket?name=N   -> ChatRoom named {room}
//   GET  /chat/{room}/info               -> ChatRoom named {room}
//   GET  /websocket?room=R&name=N        -> the seed's own worker: anything
//   GET  /info?room=R                       else goes to the room in ?room

// Durable Object class, as in the seed.
export class ChatRoom {
  constructor(state) {
    this.sessions = new Map();
    this.state = state;
  }

  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === '/websocket') {
      if (request.headers.get('Upgrade') !== 'websocket') {
        return new Response('Expected WebSocket', { status: 400 });
      }
      const pair = new WebSocketPair();
      const [client, server] = Object.values(pair);
      const name = url.searchParams.get('name') || 'Anonymous';
      this.sessions.set(server, { name });
      server.accept();
      server.addEventListener('message', (event) => {
        const message = JSON.stringify({
          sender: name,
          text: event.data,
          timestamp: Date.now(),
        });
        // Broadcast to all connected clients
        for (const [ws] of this.sessions) {
          if (ws !== server && ws.readyState === WebSocket.READY_STATE_OPEN) {
            ws.send(message);
          }
        }
      });
      server.addEventListener('close', () => {
        this.sessions.delete(server);
        this.broadcast({ type: 'leave', name });
      });
      // Notify others
      this.broadcast({ type: 'join', name });
      return new Response(null, { status: 101, webSocket: client });
    }
    // REST endpoint for room info
    if (url.pathname === '/info') {
      return Response.json({
        connectedUsers: Array.from(this.sessions.values()).map((s) => s.name),
        count: this.sessions.size,
      });
    }
    return new Response('Not found', { status: 404 });
  }

  broadcast(data) {
    const message = JSON.stringify(data);
    for (const [ws] of this.sessions) {
      if (ws.readyState === WebSocket.READY_STATE_OPEN) {
        ws.send(message);
      }
    }
  }
}

// Rate Limiter Durable Object, as in the seed: a fixed window of 100 per
// minute, the counter read from and written to storage on every check.
export class RateLimiter {
  constructor(state) {
    this.state = state;
  }

  async fetch(request) {
    const now = Date.now();
    const windowMs = 60_000; // 1 minute window
    const maxRequests = 100;
    // Get current window data
    const windowKey = `window:${Math.floor(now / windowMs)}`;
    const count = (await this.state.storage.get(windowKey)) || 0;
    if (count >= maxRequests) {
      return Response.json(
        { error: 'Rate limit exceeded', retryAfter: Math.ceil((windowMs - (now % windowMs)) / 1000) },
        { status: 429, headers: { 'Retry-After': String(Math.ceil((windowMs - (now % windowMs)) / 1000)) } }
      );
    }
    await this.state.storage.put(windowKey, count + 1);
    // Clean up old windows
    const oldKey = `window:${Math.floor(now / windowMs) - 2}`;
    await this.state.storage.delete(oldKey);
    return Response.json({
      remaining: maxRequests - count - 1,
      limit: maxRequests,
      reset: Math.ceil((windowMs - (now % windowMs)) / 1000),
    });
  }
}

// A durable counter, durin's `counter` class: the value is written to
// storage before the response leaves (workerd's output gate holds the
// response until the put is durable).
export class Counter {
  constructor(state) {
    this.state = state;
  }

  async fetch(request) {
    const url = new URL(request.url);
    let value = (await this.state.storage.get('value')) || 0;
    if (url.pathname === '/increment' && request.method === 'POST') {
      value += 1;
      await this.state.storage.put('value', value);
    } else if (url.pathname !== '/' || request.method !== 'GET') {
      return new Response('Not found', { status: 404 });
    }
    return Response.json({ value });
  }
}

// Sends the request to the object `name` of `namespace`, with the path that
// follows the object's name in the route (`/increment`, `/websocket`, ...).
function forward(request, namespace, name, rest) {
  const url = new URL(request.url);
  url.pathname = rest || '/';
  const stub = namespace.get(namespace.idFromName(name));
  return stub.fetch(new Request(url.toString(), request));
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const parts = url.pathname.split('/');
    // parts[0] is the empty string before the path's leading slash.
    const [, route, name] = parts;
    const rest = parts.length > 3 ? '/' + parts.slice(3).join('/') : '';
    if (url.pathname === '/healthz') {
      return new Response('ok');
    }
    if (route === 'ratelimit' && name && !rest) {
      return forward(request, env.RATE_LIMITER, decodeURIComponent(name), '/');
    }
    if (route === 'counter' && name) {
      return forward(request, env.COUNTER, decodeURIComponent(name), rest);
    }
    if (route === 'chat' && name) {
      return forward(request, env.CHAT_ROOM, decodeURIComponent(name), rest);
    }
    // Anything else goes as in the seed's worker: to the chat room named
    // by the query (`/websocket?room=R&name=N`, `/info?room=R`).
    const roomId = url.searchParams.get('room') || 'default';
    const id = env.CHAT_ROOM.idFromName(roomId);
    const room = env.CHAT_ROOM.get(id);
    return room.fetch(request);
  },
};
