// Real yjs + y-websocket clients against a y-websocket server (durin's doc
// class, or the reference Node server), driven by
// tests/integration/yjs_clients.rs.
//
//   node clients.mjs --ws ws://127.0.0.1:PORT/doc [--http http://127.0.0.1:PORT/doc]
//                    --phases converge,awareness,lone[,restart]
//
// Phases:
//   converge   8 clients edit one Y.Text concurrently; all texts and state
//              vectors end equal (and equal to the HTTP snapshot with --http).
//   awareness  every client sees all 8; a client whose connection dies
//              without a goodbye disappears from the others within 2 s.
//   lone       a lone idle client is not reconnected over 45 s (it runs
//              alongside the other phases).
//   restart    prints RESTART, waits for RESTARTED on stdin while clients
//              keep editing; every edit a client saw from another before the
//              kill is in the server's document after it, and all converge.
//
// Exit code 0 is the verdict; stderr explains a failure.

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import readline from 'node:readline'

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => {
    if (arg.startsWith('--')) pairs.push([arg.slice(2), all[i + 1]])
    return pairs
  }, [])
)
const WS_URL = args.ws
const HTTP_URL = args.http
const PHASES = new Set((args.phases || 'converge,awareness,lone').split(','))
const CLIENTS = 8
const EDIT_MS = Number(args['edit-ms'] || 4000)
const LONE_IDLE_MS = 45_000
const RUN = Math.random().toString(36).slice(2, 8)

const log = (...a) => console.error(`[clients ${((Date.now() - START) / 1000).toFixed(1)}s]`, ...a)
const START = Date.now()
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function fail (why) {
  log('FAIL:', why)
  process.exit(1)
}

async function until (what, timeoutMs, check) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await sleep(50)
  }
  fail(`timed out after ${timeoutMs} ms waiting until ${what}`)
}

function connect (room, name) {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(WS_URL, room, doc, {
    WebSocketPolyfill: WebSocket,
    disableBc: true
  })
  provider.awareness.setLocalStateField('user', { name })
  const client = { doc, provider, name, text: doc.getText('text'), disconnects: 0 }
  provider.on('status', (e) => {
    if (e.status === 'disconnected') client.disconnects++
  })
  return client
}

const svOf = (doc) => Buffer.from(Y.encodeStateVector(doc)).toString('base64')

async function waitSynced (clients) {
  await until('every client synced', 15_000, () => clients.every((c) => c.provider.synced))
}

/** Inserts unique tokens (and deletes some text) until `stop()`. */
async function editLoop (client, index, stop, tokens) {
  let n = 0
  while (!stop()) {
    const text = client.text
    const token = `[${index}:${n++}]`
    const at = Math.floor(Math.random() * (text.length + 1))
    if (tokens) {
      // Tokens are inserted at token boundaries so no edit splits another.
      const s = text.toString()
      const boundaries = [0, ...[...s.matchAll(/\]/g)].map((m) => m.index + 1)]
      text.insert(boundaries[Math.floor(Math.random() * boundaries.length)], token)
      tokens.push(token)
    } else if (Math.random() < 0.2 && text.length > 4) {
      text.delete(Math.floor(Math.random() * (text.length - 2)), 2)
    } else {
      text.insert(at, token)
    }
    await sleep(10 + Math.random() * 40)
  }
}

async function converged (clients, what) {
  await until(`${what}: all texts and state vectors are equal`, 20_000, () => {
    const t = clients[0].text.toString()
    const sv = svOf(clients[0].doc)
    return clients.every((c) => c.text.toString() === t && svOf(c.doc) === sv)
  })
}

async function httpDoc (room) {
  const res = await fetch(`${HTTP_URL}/${room}`)
  if (res.status !== 200) fail(`GET ${HTTP_URL}/${room} answered ${res.status}`)
  const doc = new Y.Doc()
  Y.applyUpdate(doc, new Uint8Array(await res.arrayBuffer()))
  return doc
}

async function converge () {
  const room = `converge-${RUN}/with/slashes`
  const clients = Array.from({ length: CLIENTS }, (_, i) => connect(room, `c${i}`))
  await waitSynced(clients)
  let stopped = false
  const loops = clients.map((c, i) => editLoop(c, i, () => stopped))
  await sleep(EDIT_MS)
  stopped = true
  await Promise.all(loops)
  await converged(clients, 'converge')
  const text = clients[0].text.toString()
  log(`converge: ${CLIENTS} clients agree on ${text.length} characters`)
  if (HTTP_URL) {
    await until('the HTTP snapshot equals the clients', 10_000, async () => {
      const doc = await httpDoc(room)
      return doc.getText('text').toString() === text && svOf(doc) === svOf(clients[0].doc)
    })
    log('converge: the HTTP snapshot equals every client')
  }
  clients.forEach((c) => c.provider.destroy())
}

async function awareness () {
  const room = `awareness-${RUN}`
  const clients = Array.from({ length: CLIENTS }, (_, i) => connect(room, `a${i}`))
  await waitSynced(clients)
  await until(`every client sees all ${CLIENTS}`, 10_000, () =>
    clients.every((c) => c.provider.awareness.getStates().size === CLIENTS)
  )
  log(`awareness: every client sees all ${CLIENTS}`)
  // The connection dies without a goodbye: the server must remove it.
  const gone = clients.pop()
  const goneId = gone.doc.clientID
  gone.provider.shouldConnect = false
  gone.provider.ws.terminate()
  const closedAt = Date.now()
  await until('the closed client disappears from the others', 2_000, () =>
    clients.every((c) => !c.provider.awareness.getStates().has(goneId))
  )
  log(`awareness: the closed client disappeared in ${Date.now() - closedAt} ms`)
  clients.forEach((c) => c.provider.destroy())
}

async function restart () {
  const room = `restart-${RUN}`
  const clients = Array.from({ length: CLIENTS }, (_, i) => connect(room, `r${i}`))
  await waitSynced(clients)
  const tokens = clients.map(() => [])
  let stopped = false
  const loops = clients.map((c, i) => editLoop(c, i, () => stopped, tokens[i]))
  await sleep(EDIT_MS / 2)
  // What each client has seen of the others' edits was acknowledged to
  // them by the server: it must survive the kill.
  const acknowledged = new Set()
  clients.forEach((c, i) => {
    for (const m of c.text.toString().matchAll(/\[(\d+):\d+\]/g)) {
      if (Number(m[1]) !== i) acknowledged.add(m[0])
    }
  })
  const rl = readline.createInterface({ input: process.stdin })
  const restarted = new Promise((resolve) => rl.on('line', (l) => l === 'RESTARTED' && resolve()))
  console.log('RESTART')
  // Clients keep editing through the kill; they stop reconnecting only so
  // that the server's own document can be read before they resend theirs.
  await sleep(30)
  clients.forEach((c) => { c.provider.shouldConnect = false })
  await restarted
  rl.close()
  clients.forEach((c) => c.provider.disconnect())
  if (HTTP_URL) {
    const doc = await httpDoc(room)
    const serverText = doc.getText('text').toString()
    const lost = [...acknowledged].filter((t) => !serverText.includes(t))
    if (lost.length > 0) fail(`restart: ${lost.length} acknowledged edits lost: ${lost.slice(0, 5)}`)
    log(`restart: all ${acknowledged.size} acknowledged edits survived the kill`)
  }
  clients.forEach((c) => c.provider.connect())
  await sleep(EDIT_MS / 2)
  stopped = true
  await Promise.all(loops)
  await converged(clients, 'restart')
  const text = clients[0].text.toString()
  const missing = tokens.flat().filter((t) => !text.includes(t))
  if (missing.length > 0) fail(`restart: ${missing.length} edits missing after convergence`)
  log(`restart: ${CLIENTS} clients converged on all ${tokens.flat().length} edits`)
  clients.forEach((c) => c.provider.destroy())
}

async function main () {
  let lone = null
  if (PHASES.has('lone')) {
    lone = connect(`lone-${RUN}`, 'lone')
    await waitSynced([lone])
    lone.since = Date.now()
  }
  if (PHASES.has('converge')) await converge()
  if (PHASES.has('awareness')) await awareness()
  if (PHASES.has('restart')) await restart()
  if (lone) {
    const left = LONE_IDLE_MS - (Date.now() - lone.since)
    if (left > 0) await sleep(left)
    if (lone.disconnects !== 0 || !lone.provider.wsconnected) {
      fail(`lone: the idle client was disconnected ${lone.disconnects} times in 45 s`)
    }
    log('lone: an idle client stayed connected for 45 s')
    lone.provider.destroy()
  }
  log('PASS')
  process.exit(0)
}

main().catch((e) => fail(e.stack || String(e)))
