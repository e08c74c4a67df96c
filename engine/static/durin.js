/**
 * durin's browser client: one WebSocket to one object that comes back by
 * itself when the server goes away.
 *
 * A `DurinSocket` resolves where the object lives (a path like
 * `/chat/lobby/websocket` resolves against the page, `http:` becomes `ws:`
 * and `https:` becomes `wss:`), opens the socket, and reports what happens
 * through four events: `open`, `message`, `close` and `reconnecting`. When
 * the connection ends without the page asking for it (the server restarted,
 * the network dropped), it waits and connects again. The waits grow
 * exponentially with full jitter, so a room full of pages that lost the same
 * server does not knock on the new one all in the same millisecond. A
 * connection that stays open for `STABLE_AFTER_MS` resets the waits.
 *
 * Sends while disconnected are buffered, not lost: up to `SEND_QUEUE_MAX`
 * messages wait in order and go out first when the next connection opens.
 * A send past that limit, or after `close()`, throws, so the caller learns
 * of it at once instead of having the message silently dropped. The queue is
 * a best effort: a message handed to a socket that dies before it reaches
 * the server is not sent again.
 *
 * ```js
 * import { connect } from "/_client/durin.js";
 * const socket = connect("/chat/lobby/websocket?name=ada")
 *   .on("open", () => console.log("connected"))
 *   .on("message", (data) => console.log(JSON.parse(data)))
 *   .on("reconnecting", ({ attempt, delayMs }) => console.log(attempt, delayMs));
 * socket.send("hello");
 * socket.close(); // deliberate: no reconnect
 * ```
 *
 * @module durin
 */

/** The first reconnect waits at most this long. */
export const RECONNECT_DELAY_INITIAL_MS = 250;
/** Each further attempt doubles the longest wait... */
export const RECONNECT_DELAY_FACTOR = 2;
/** ...up to this cap. */
export const RECONNECT_DELAY_MAX_MS = 10_000;
/** A connection open this long counts as healthy: the next drop starts over. */
export const STABLE_AFTER_MS = 5_000;
/** A handshake that has not finished by then is abandoned and retried. */
export const CONNECT_TIMEOUT_MS = 10_000;
/** Messages kept while disconnected; `send` throws past this. */
export const SEND_QUEUE_MAX = 64;

const EVENT_NAMES = ["open", "message", "close", "reconnecting"];

/**
 * Turns a URL or path into a WebSocket URL. Relative paths resolve against
 * `base` (the page's location in a browser).
 *
 * @param {string | URL} target
 * @param {string} [base]
 * @returns {string}
 */
export function resolveWebSocketUrl(target, base = globalThis.location?.href) {
  const url = new URL(target, base);
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new Error(`durin: cannot open a WebSocket to ${url.href}`);
  }
  return url.href;
}

/**
 * The longest wait before reconnect attempt `attempt` (1 for the first).
 *
 * @param {number} attempt
 * @returns {number}
 */
export function reconnectDelayCeilingMs(attempt) {
  const exponent = Math.max(0, attempt - 1);
  const ceiling = RECONNECT_DELAY_INITIAL_MS * RECONNECT_DELAY_FACTOR ** exponent;
  return Math.min(RECONNECT_DELAY_MAX_MS, ceiling);
}

/**
 * A WebSocket to one object that reconnects until `close()` is called.
 * Listeners, by event:
 * - `open({ reconnected })`: a connection is up; queued sends have gone out.
 * - `message(data, event)`: a message arrived (`data` is a string for text).
 * - `close({ code, reason, willReconnect })`: a connection ended.
 * - `reconnecting({ attempt, delayMs })`: the next try starts in `delayMs`.
 */
export class DurinSocket {
  /**
   * @param {string | URL} target URL or path of the object's WebSocket.
   */
  constructor(target) {
    this.url = resolveWebSocketUrl(target);
    this.listeners = new Map(EVENT_NAMES.map((name) => [name, new Set()]));
    this.queue = [];
    this.socket = null;
    this.attempt = 0;
    this.everOpened = false;
    this.closedByCaller = false;
    this.timers = { reconnect: null, stable: null, connect: null };
    this.open();
  }

  /**
   * Adds a listener for one of the events above; returns `this` to chain.
   *
   * @param {"open" | "message" | "close" | "reconnecting"} name
   * @param {Function} listener
   */
  on(name, listener) {
    const set = this.listeners.get(name);
    if (!set) throw new Error(`durin: no event named ${name}`);
    set.add(listener);
    return this;
  }

  /** Whether a connection is open right now. */
  get connected() {
    return this.socket?.readyState === WebSocket.OPEN;
  }

  /**
   * Sends a message now, or queues it until the next connection opens.
   * Returns true when it went to an open socket, false when it was queued.
   * Throws after `close()`, or when `SEND_QUEUE_MAX` messages already wait.
   *
   * @param {string | ArrayBuffer | Blob | ArrayBufferView} data
   * @returns {boolean}
   */
  send(data) {
    if (this.closedByCaller) throw new Error("durin: send after close()");
    if (this.connected) {
      this.socket.send(data);
      return true;
    }
    if (this.queue.length >= SEND_QUEUE_MAX) {
      throw new Error(`durin: ${SEND_QUEUE_MAX} messages already wait for a connection`);
    }
    this.queue.push(data);
    return false;
  }

  /** Closes for good: no reconnect, and queued messages are dropped. */
  close(code = 1000, reason = "") {
    this.closedByCaller = true;
    this.queue = [];
    this.clearTimers();
    this.socket?.close(code, reason);
  }

  /** Opens one connection attempt and wires its events. */
  open() {
    const socket = new WebSocket(this.url);
    this.socket = socket;
    // A handshake can stall (a server that accepts and never answers);
    // closing the socket turns that into an ordinary close and a retry.
    this.timers.connect = setTimeout(() => socket.close(), CONNECT_TIMEOUT_MS);
    socket.addEventListener("open", () => this.onOpen());
    socket.addEventListener("message", (event) => this.emit("message", event.data, event));
    socket.addEventListener("close", (event) => this.onClose(socket, event));
  }

  onOpen() {
    clearTimeout(this.timers.connect);
    const reconnected = this.everOpened;
    this.everOpened = true;
    // Only a connection that lasts resets the backoff: a server that
    // accepts and drops at once must not be hammered.
    this.timers.stable = setTimeout(() => (this.attempt = 0), STABLE_AFTER_MS);
    const waiting = this.queue;
    this.queue = [];
    for (const data of waiting) this.socket.send(data);
    this.emit("open", { reconnected });
  }

  onClose(socket, event) {
    if (socket !== this.socket) return;
    clearTimeout(this.timers.connect);
    clearTimeout(this.timers.stable);
    const willReconnect = !this.closedByCaller;
    this.emit("close", { code: event.code, reason: event.reason, willReconnect });
    if (!willReconnect) return;
    this.attempt += 1;
    const delayMs = Math.round(Math.random() * reconnectDelayCeilingMs(this.attempt));
    this.emit("reconnecting", { attempt: this.attempt, delayMs });
    this.timers.reconnect = setTimeout(() => this.open(), delayMs);
  }

  clearTimers() {
    for (const timer of Object.values(this.timers)) clearTimeout(timer);
  }

  emit(name, ...args) {
    for (const listener of this.listeners.get(name)) {
      try {
        listener(...args);
      } catch (error) {
        // One faulty listener must not stop the others or the reconnects.
        console.error(`durin: a ${name} listener threw`, error);
      }
    }
  }
}

/**
 * Opens a `DurinSocket` to `target`, a URL or a path on this page's server.
 * Socket events arrive in later tasks, so listeners added right after this
 * call still see the first `open`.
 *
 * @param {string | URL} target
 * @returns {DurinSocket}
 */
export function connect(target) {
  return new DurinSocket(target);
}
