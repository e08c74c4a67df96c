// The demo editor: CodeMirror 6 bound to the Y.Text "codemirror" of a Yjs
// doc, synced over y-websocket with durin's doc class, with presence
// cursors from awareness. build.sh bundles this into ../editor.js.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { yCollab } from 'y-codemirror.next'
import { basicSetup, EditorView } from 'codemirror'
import { EditorState } from '@codemirror/state'

const COLORS = ['#30bced', '#6eeb83', '#ffbc42', '#ee6352', '#9ac2c9', '#8acb88', '#1be7ff', '#c45ab3']

const params = new URLSearchParams(location.search)
const room = params.get('doc') || 'demo'
const name = params.get('name') || `user-${Math.floor(Math.random() * 1000)}`
const color = COLORS[Math.floor(Math.random() * COLORS.length)]

const ydoc = new Y.Doc()
const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:'
const provider = new WebsocketProvider(`${scheme}//${location.host}/doc`, room, ydoc)
const ytext = ydoc.getText('codemirror')
provider.awareness.setLocalStateField('user', { name, color, colorLight: color + '33' })

const status = document.getElementById('status')
provider.on('status', (e) => {
  status.textContent = e.status
  status.dataset.state = e.status
})
const users = document.getElementById('users')
const showUsers = () => {
  const names = [...provider.awareness.getStates().values()].map((s) => s.user && s.user.name).filter(Boolean)
  users.textContent = names.join(', ')
  users.dataset.count = String(names.length)
}
provider.awareness.on('change', showUsers)
provider.on('sync', (synced) => { document.body.dataset.synced = String(synced) })

document.getElementById('room').textContent = room
window.editorView = new EditorView({
  state: EditorState.create({
    doc: ytext.toString(),
    extensions: [basicSetup, yCollab(ytext, provider.awareness)]
  }),
  parent: document.getElementById('editor')
})
window.ytext = ytext
