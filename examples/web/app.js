// The demo page: join a room, publish camera and microphone, see everyone in a grid laid out
// by madang, chat. With `madang serve --dev` tokens come from the server's dev endpoint;
// otherwise paste one (`madang token …`). `?role=viewer` joins to watch, with a hand to raise;
// `?role=host` also sees the raised hands and lets them in or sends them back.
import init, { Room, version } from './pkg/madang_wasm.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = { room: null, camera: true, mic: true, log: [] };
// For tests and curious people: what the page did.
window.madangDemo = state;

function status(text) {
  $('status').textContent = text;
  state.status = text;
}

function chatLine(from, text) {
  const li = document.createElement('li');
  const who = document.createElement('b');
  who.textContent = from + ': ';
  li.append(who, document.createTextNode(text));
  $('chat-log').append(li);
  li.scrollIntoView();
  state.log.push({ from, text });
}

async function token(room, name) {
  if ($('token').value) return $('token').value;
  const identity = `${name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'guest'}-${Math.random().toString(36).slice(2, 6)}`;
  const role = params.get('role') || 'speaker';
  const q = new URLSearchParams({ room, name, identity, role });
  const r = await fetch(`/dev/token?${q}`);
  if (!r.ok) {
    $('token').classList.remove('hidden');
    throw new Error('this server has no dev token endpoint: paste a token');
  }
  return (await r.json()).token;
}

async function publish(room) {
  // ?simulcast=1: the camera also at half size, for viewers with small tiles or links.
  await room.publishCamera({ width: 640, height: 360, simulcast: params.get('simulcast') === '1' });
  await room.publishMicrophone();
  state.published = true;
}

// The talk-back controls: a viewer's hand, a host's queue of hands.
function talkBack(room) {
  const viewer = room.role === 'viewer';
  $('hand').classList.toggle('hidden', !viewer);
  for (const id of ['camera', 'mic']) $(id).classList.toggle('hidden', viewer);
  $('hands').classList.toggle('hidden', room.role !== 'host');
  // Hosts start and stop recording (on a server that records: `madang serve --record DIR`).
  $('record').classList.toggle('hidden', room.role !== 'host');
}

// The room's recording: everyone sees the mark; a host's button follows it.
function showRecording(e) {
  state.recording = e.on;
  $('rec').classList.toggle('hidden', !e.on);
  $('rec').textContent = e.by ? `● REC (${e.by})` : '● REC';
  $('record').setAttribute('aria-pressed', String(e.on));
  $('record').textContent = e.on ? 'Stop recording' : 'Record';
  chatLine('·', `recording ${e.on ? 'started' : 'stopped'}${e.by ? ` by ${e.by}` : ''}`);
}

function showHands(room, queue) {
  state.hands = queue;
  const list = $('hands-list');
  list.replaceChildren();
  for (const identity of queue) {
    const li = document.createElement('li');
    const name = room.participants.find((p) => p.identity === identity)?.name ?? identity;
    const letIn = document.createElement('button');
    letIn.textContent = 'Let in';
    letIn.dataset.letIn = identity;
    letIn.addEventListener('click', () => room.promote(identity));
    const back = document.createElement('button');
    back.textContent = 'Send back';
    back.addEventListener('click', () => room.lowerHand(identity));
    li.append(document.createTextNode(`✋ ${name} `), letIn, back);
    list.append(li);
  }
}

function joined(room) {
  for (const id of ['camera', 'mic', 'leave']) $(id).classList.remove('hidden');
  talkBack(room);
  $('join-form').classList.add('hidden');
  $('chat').disabled = false;
  status(`in ${room.name} as ${room.identity} — ${room.participants.length} here`);
}

async function join(event) {
  event.preventDefault();
  const roomName = $('room').value.trim() || 'demo';
  const name = $('name').value.trim();
  status('connecting…');
  try {
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/signal`;
    const room = await Room.connect(url, await token(roomName, name), { name });
    state.room = room;
    window.madangRoom = room;
    room.attachGrid($('grid'), { mode: params.get('mode') || 'gallery' });
    const count = () => status(`in ${room.name} as ${room.identity} — ${room.participants.length} here`);
    room.on('participantJoined', (e) => { chatLine('·', `${e.name} joined`); count(); });
    room.on('participantLeft', (e) => { chatLine('·', `${e.identity} left (${e.reason})`); count(); });
    room.on('data', (e) => chatLine(e.from, e.payload));
    room.on('activeSpeaker', (e) => { state.speaker = e.speakers[0]?.identity; });
    room.on('hands', (e) => showHands(room, e.queue));
    room.on('recording', showRecording);
    room.on('handLowered', () => {
      $('hand').setAttribute('aria-pressed', 'false');
      $('hand').textContent = 'Raise hand';
    });
    room.on('roleChanged', async (e) => {
      chatLine('·', `${e.identity} is now ${e.role}`);
      if (!e.me) return;
      talkBack(room);
      // Let in: on air with camera and microphone. Sent back: the module has stopped them.
      if (e.role !== 'viewer') await publish(room);
      else state.published = false;
    });
    room.on('error', (e) => {
      console.warn(`madang: ${e.error.code}: ${e.error.message}`);
      status(`error: ${e.error.code}: ${e.error.message}`);
    });
    room.on('reconnecting', () => {
      chatLine('·', 'connection to the server lost — reconnecting…');
      status('reconnecting…');
      state.reconnects = (state.reconnects || 0) + 1;
    });
    room.on('reconnected', () => { chatLine('·', 'reconnected'); count(); });
    room.on('disconnected', (e) => {
      console.warn(`madang: disconnected (${e.reason})`);
      status(`disconnected (${e.reason})`);
      for (const id of ['camera', 'mic', 'leave']) $(id).classList.add('hidden');
      $('join-form').classList.remove('hidden');
      $('chat').disabled = true;
    });
    joined(room);
    if (room.role !== 'viewer') await publish(room);
  } catch (e) {
    console.warn(`madang: ${e.code ?? ''} ${e.message ?? e}`);
    status(`could not join: ${e.code ?? ''} ${e.message ?? e}`);
    state.error = e.code ?? String(e);
  }
}

function toggle(kind, id) {
  const room = state.room;
  if (!room) return;
  const on = $(id).getAttribute('aria-pressed') !== 'true';
  room.setMuted(kind, !on);
  $(id).setAttribute('aria-pressed', String(on));
  $(id).textContent = `${id === 'camera' ? 'Camera' : 'Mic'} ${on ? 'on' : 'off'}`;
}

await init();
document.title = `madang ${version()} — a room in the browser`;
$('join-form').addEventListener('submit', join);
$('camera').addEventListener('click', () => toggle('video', 'camera'));
$('mic').addEventListener('click', () => toggle('audio', 'mic'));
$('leave').addEventListener('click', () => state.room?.leave());
$('record').addEventListener('click', () => state.room?.record(!state.recording));
$('hand').addEventListener('click', () => {
  const raised = $('hand').getAttribute('aria-pressed') !== 'true';
  state.room?.raiseHand(raised);
  $('hand').setAttribute('aria-pressed', String(raised));
  $('hand').textContent = raised ? 'Lower hand' : 'Raise hand';
});
$('chat-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('chat').value.trim();
  if (!text || !state.room) return;
  state.room.sendData(text, { topic: 'chat' });
  chatLine('me', text);
  $('chat').value = '';
});
if (params.get('room')) $('room').value = params.get('room');
if (params.get('name')) $('name').value = params.get('name');
if (params.get('token')) $('token').value = params.get('token');
if (params.get('autojoin')) $('join-form').requestSubmit();
