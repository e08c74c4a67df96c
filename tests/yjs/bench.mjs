// Measurements of a y-websocket server for PERF.md (not a test).
//
//   node bench.mjs deliveries --ws ws://HOST:PORT/doc [--rooms 10] [--clients 10]
//                             [--rate 10] [--seconds 15]
//     rooms of `clients` real y-websocket clients, each typing `rate`
//     one-character edits per second; prints deliveries/s (updates applied
//     by a client that did not make them) and delivery latency.
//   node bench.mjs memory --ws ws://HOST:PORT/doc --pid PID [--rooms 1000] [--wait-ms 3000]
//     opens `rooms` rooms with one socket each (an awareness state set),
//     waits, and prints the server's RSS growth per room.
//   node bench.mjs cold --http http://HOST:PORT/doc --room NAME [--updates 100000]
//     logs `updates` one-character updates to a room over HTTP (fill), or
//     times GET of the whole document (open).

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as encoding from 'lib0/encoding'
import WebSocket from 'ws'
import { readFileSync } from 'node:fs'

const [mode, ...rest] = process.argv.slice(2)
const args = {}
for (let i = 0; i < rest.length; i += 2) args[rest[i].slice(2)] = rest[i + 1]
const num = (k, d) => Number(args[k] ?? d)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const RUN = Math.random().toString(36).slice(2, 8)

const idOf = (update) => {
  const structs = Y.decodeUpdate(update).structs
  return structs.length > 0 ? `${structs[0].id.client}:${structs[0].id.clock}` : null
}

async function deliveries () {
  const rooms = num('rooms', 10)
  const perRoom = num('clients', 10)
  const rate = num('rate', 10)
  const seconds = num('seconds', 15)
  const sent = new Map()
  const latencies = []
  let delivered = 0
  let measuring = false
  const clients = []
  for (let r = 0; r < rooms; r++) {
    for (let c = 0; c < perRoom; c++) {
      const doc = new Y.Doc()
      const provider = new WebsocketProvider(args.ws, `bench-${RUN}-${r}`, doc, {
        WebSocketPolyfill: WebSocket,
        disableBc: true
      })
      doc.on('update', (update, origin) => {
        const id = idOf(update)
        if (origin !== provider) {
          if (id) sent.set(id, performance.now())
          return
        }
        if (!measuring) return
        delivered++
        const at = id && sent.get(id)
        if (at) latencies.push(performance.now() - at)
      })
      clients.push({ doc, provider, text: doc.getText('t') })
    }
  }
  while (!clients.every((c) => c.provider.synced)) await sleep(50)
  let running = true
  const loops = clients.map(async (c) => {
    await sleep(Math.random() * 1000 / rate)
    while (running) {
      c.text.insert(Math.floor(Math.random() * (c.text.length + 1)), 'x')
      await sleep(1000 / rate)
    }
  })
  await sleep(1000)
  measuring = true
  const start = performance.now()
  await sleep(seconds * 1000)
  measuring = false
  const elapsed = (performance.now() - start) / 1000
  running = false
  await Promise.all(loops)
  latencies.sort((a, b) => a - b)
  const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]?.toFixed(1)
  console.log(JSON.stringify({
    rooms,
    clients_per_room: perRoom,
    offered_updates_per_s: rooms * perRoom * rate,
    deliveries_per_s: Math.round(delivered / elapsed),
    expected_deliveries_per_s: rooms * perRoom * rate * (perRoom - 1),
    latency_ms_p50: pct(0.5),
    latency_ms_p99: pct(0.99)
  }))
  clients.forEach((c) => c.provider.destroy())
}

const rssBytes = (pid) => {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)[1]) * 1024
}

async function memory () {
  const rooms = num('rooms', 1000)
  const pid = num('pid')
  const before = rssBytes(pid)
  const sockets = []
  for (let r = 0; r < rooms; r++) {
    const ws = new WebSocket(`${args.ws}/mem-${RUN}-${r}`)
    ws.binaryType = 'arraybuffer'
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
    // An awareness state as y-codemirror sets it, announced once.
    const doc = new Y.Doc()
    const awareness = new awarenessProtocol.Awareness(doc)
    awareness.setLocalState({ user: { name: `user-${r}`, color: '#30bced' }, cursor: null })
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, 1)
    encoding.writeVarUint8Array(encoder, awarenessProtocol.encodeAwarenessUpdate(awareness, [doc.clientID]))
    ws.send(encoding.toUint8Array(encoder))
    awareness.destroy()
    sockets.push(ws)
  }
  const opened = rssBytes(pid)
  await sleep(num('wait-ms', 3000))
  const after = rssBytes(pid)
  console.log(JSON.stringify({
    rooms,
    rss_growth_bytes_per_room_while_open: Math.round((opened - before) / rooms),
    rss_growth_bytes_per_room_after_wait: Math.round((after - before) / rooms)
  }))
  sockets.forEach((ws) => ws.terminate())
}

async function coldFill () {
  const updates = num('updates', 100000)
  const doc = new Y.Doc()
  const text = doc.getText('t')
  const pending = []
  doc.on('update', (u) => pending.push(u))
  const concurrency = 32
  let sentCount = 0
  const start = performance.now()
  const worker = async () => {
    while (sentCount < updates) {
      text.insert(text.length, String.fromCharCode(97 + (sentCount % 26)))
      const update = pending.shift()
      sentCount++
      const res = await fetch(`${args.http}/${args.room}`, { method: 'POST', body: update })
      if (res.status !== 204) throw new Error(`POST answered ${res.status}`)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  console.log(JSON.stringify({ updates, fill_s: ((performance.now() - start) / 1000).toFixed(1) }))
}

async function coldOpen () {
  const start = performance.now()
  const res = await fetch(`${args.http}/${args.room}`)
  const body = new Uint8Array(await res.arrayBuffer())
  const ms = performance.now() - start
  const doc = new Y.Doc()
  Y.applyUpdate(doc, body)
  console.log(JSON.stringify({ open_ms: Math.round(ms), doc_bytes: body.length, text_length: doc.getText('t').length }))
}

/** Fills `rooms` docs, each with `edits` 10-character edits at random places. */
async function fillMany () {
  const rooms = num('rooms', 200)
  const edits = num('edits', 100)
  for (let r = 0; r < rooms; r++) {
    const doc = new Y.Doc()
    const text = doc.getText('t')
    for (let e = 0; e < edits; e++) {
      const before = Y.encodeStateVector(doc)
      text.insert(Math.floor(Math.random() * (text.length + 1)), 'abcdefghij')
      const res = await fetch(`${args.http}/loaded-${r}`, { method: 'POST', body: Y.encodeStateAsUpdate(doc, before) })
      if (res.status !== 204) throw new Error(`POST answered ${res.status}`)
    }
  }
  console.log(JSON.stringify({ rooms, edits }))
}

/** Loads every doc `fillMany` wrote (a GET loads it) and prints RSS growth. */
async function openMany () {
  const rooms = num('rooms', 200)
  const from = num('from', 0)
  const pid = num('pid')
  const before = rssBytes(pid)
  for (let r = from; r < from + rooms; r++) {
    const res = await fetch(`${args.http}/loaded-${r}`)
    await res.arrayBuffer()
  }
  await sleep(500)
  console.log(JSON.stringify({ rooms, rss_growth_bytes_per_loaded_doc: Math.round((rssBytes(pid) - before) / rooms) }))
}

const modes = { deliveries, memory, fill: coldFill, open: coldOpen, 'fill-many': fillMany, 'open-many': openMany }
if (!modes[mode]) {
  console.error('usage: node bench.mjs deliveries|memory|fill|open --ws URL | --http URL ...')
  process.exit(2)
}
await modes[mode]()
process.exit(0)
