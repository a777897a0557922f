// The field reporter (field.html): rear camera and microphone into a room over WHIP, a new
// session by itself whenever the connection drops. Progress for people on screen, and for
// tests in window.clientStatus (window.clientStop() ends the session).
'use strict';

const params = new URLSearchParams(location.search);
const room = params.get('room') || 'demo';
// What a phone on a field link can carry: 640×360, at most 500 kbit/s of H.264.
const VIDEO = { width: 640, height: 360, frameRate: 30, facingMode: 'environment' };
const MAX_BITRATE = 500_000;
// A connection that stays disconnected this long is given up for a new session.
const DISCONNECTED_GRACE_MS = 1000;

const status = { state: 'off', connection: 'new', reconnects: 0, errors: [] };
window.clientStatus = status;
const $ = (id) => document.getElementById(id);
let stream = null;
let pc = null;
let resource = null;
let wakeLock = null;
let live = false;
let retry = null;

const SHOWN = { off: 'off', starting: 'starting…', live: 'LIVE', reconnecting: 'reconnecting…' };

function show(state) {
  if (status.state !== state) {
    status.log = (status.log || []).slice(-40);
    status.log.push(`${Math.round(performance.now())} ${state}`);
  }
  status.state = state;
  $('state').textContent = SHOWN[state];
  $('go').textContent = live ? 'Stop' : 'Go live';
  $('go').classList.toggle('live', live);
}

async function token() {
  if (params.get('token')) return params.get('token');
  const name = params.get('name') || 'Field';
  const identity = name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'field';
  const q = new URLSearchParams({ room, identity, name, role: 'speaker' });
  const response = await fetch(`/dev/token?${q}`);
  if (!response.ok) throw new Error(`no token: add &token=… to the address (${response.status})`);
  return (await response.json()).token;
}

// One WHIP session on a new peer connection; resolves once the answer is applied.
async function connect() {
  const bearer = await token();
  const next = new RTCPeerConnection();
  pc = next;
  const video = next.addTransceiver(stream.getVideoTracks()[0], {
    direction: 'sendonly',
    sendEncodings: [{ maxBitrate: MAX_BITRATE }],
  });
  const h264 = RTCRtpSender.getCapabilities('video').codecs.filter((c) =>
    c.mimeType === 'video/H264' && /packetization-mode=1/.test(c.sdpFmtpLine || '')
      && /profile-level-id=42e01f/.test(c.sdpFmtpLine || ''));
  // H.264 with its retransmission format (RTX), which the server negotiates with browsers.
  const rtx = RTCRtpSender.getCapabilities('video').codecs.filter((c) => c.mimeType === 'video/rtx');
  if (h264.length) video.setCodecPreferences(h264.concat(rtx));
  next.addTransceiver(stream.getAudioTracks()[0], { direction: 'sendonly' });
  next.addEventListener('connectionstatechange', () => watch(next));
  await next.setLocalDescription(await next.createOffer());
  await new Promise((resolve) => {
    if (next.iceGatheringState === 'complete') return resolve();
    next.addEventListener('icegatheringstatechange', () => next.iceGatheringState === 'complete' && resolve());
    setTimeout(resolve, 1500);
  });
  const response = await fetch(`/whip/${encodeURIComponent(room)}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${bearer}` },
    body: next.localDescription.sdp,
  });
  status.post = response.status;
  if (response.status !== 201) throw new Error(`${response.status} ${(await response.text()).trim()}`);
  resource = response.headers.get('Location');
  status.location = resource;
  await next.setRemoteDescription({ type: 'answer', sdp: await response.text() });
}

// Follows the connection: a drop (the network changed, the server restarted) starts a new
// session after a short grace, as long as the reporter is live.
function watch(which) {
  if (which !== pc) return;
  status.connection = pc.connectionState;
  (status.log = status.log || []).push(`${Math.round(performance.now())} pc ${pc.connectionState}`);
  if (pc.connectionState === 'connected') show('live');
  if (pc.connectionState === 'failed' || pc.connectionState === 'closed') again();
  if (pc.connectionState === 'disconnected') {
    show('reconnecting');
    setTimeout(() => { if (which === pc && pc.connectionState === 'disconnected') again(); }, DISCONNECTED_GRACE_MS);
  }
}

// A new session at once, tried again (0.5 s, doubling to 4 s) until one is up or the
// reporter stops.
async function again(delay = 0) {
  if (!live || retry) return;
  show('reconnecting');
  status.reconnects += 1;
  const old = pc;
  pc = null;
  if (old) old.close();
  const gone = resource;
  resource = null;
  if (gone) fetch(gone, { method: 'DELETE' }).catch(() => {});
  retry = setTimeout(async () => {
    retry = null;
    if (!live) return;
    try {
      await connect();
    } catch (e) {
      status.errors.push(String(e));
      if (pc) { pc.close(); pc = null; }
      again(Math.min(Math.max(delay * 2, 500), 4000));
    }
  }, delay);
}

async function start() {
  live = true;
  show('starting');
  try {
    stream = stream || await navigator.mediaDevices.getUserMedia({ video: VIDEO, audio: true });
    $('preview').srcObject = stream;
    wakeLock = await navigator.wakeLock?.request('screen').catch(() => null);
    status.wakeLock = Boolean(wakeLock);
    await connect();
  } catch (e) {
    status.errors.push(String(e));
    again();
  }
}

async function stop() {
  live = false;
  if (retry) { clearTimeout(retry); retry = null; }
  const gone = resource;
  resource = null;
  if (pc) { pc.close(); pc = null; }
  if (wakeLock) { wakeLock.release().catch(() => {}); wakeLock = null; }
  status.connection = 'closed';
  show('off');
  if (!gone) return 0;
  const response = await fetch(gone, { method: 'DELETE' });
  status.deleted = response.status;
  return response.status;
}
window.clientStop = stop;

// The link's quality, once a second: what goes out, the round trip, what the server lost.
// And a watchdog: the server answers a live connection all the time (feedback on the video
// several times a second, consent checks), so a connection that received nothing for
// SILENT_MS is dead — the browser itself says "disconnected" only 5 to 7 s later (measured
// here: 7 s after a server restart).
const SILENT_MS = 1500;
let heard = { bytes: -1, at: 0 };
setInterval(async () => {
  if (!pc || pc.connectionState !== 'connected') { heard = { bytes: -1, at: performance.now() }; return; }
  const which = pc;
  let received = 0;
  (await which.getStats()).forEach((s) => { if (s.type === 'transport') received += s.bytesReceived || 0; });
  const now = performance.now();
  if (received !== heard.bytes) heard = { bytes: received, at: now };
  else if (now - heard.at >= SILENT_MS && which === pc && live) {
    (status.log = status.log || []).push(`${Math.round(now)} silent`);
    again();
  }
}, 250);
setInterval(async () => {
  if (!pc) return;
  let sent = 0; let rtt = null; let lost = null;
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') { status.framesSent = s.framesSent || 0; sent += s.bytesSent || 0; }
    if (s.type === 'remote-inbound-rtp' && s.kind === 'video') { rtt = s.roundTripTime; lost = s.fractionLost; }
  });
  const kbps = status.lastBytes === undefined ? 0 : (8 * (sent - status.lastBytes)) / 1000;
  status.lastBytes = sent;
  status.kbps = Math.max(kbps, 0);
  const quality = rtt === null ? 'waiting for the server…'
    : `${Math.round(status.kbps)} kbit/s · ${Math.round(rtt * 1000)} ms · ${Math.round((lost || 0) * 100)} % lost`;
  $('quality').textContent = quality;
}, 1000);

// A new network (Wi-Fi to LTE): the old path is gone; start a new session at once.
navigator.connection?.addEventListener('change', () => { if (live && pc) again(); });
window.addEventListener('online', () => { if (live && pc) again(); });
document.addEventListener('visibilitychange', async () => {
  if (live && document.visibilityState === 'visible' && !wakeLock) {
    wakeLock = await navigator.wakeLock?.request('screen').catch(() => null);
  }
});

$('go').addEventListener('click', () => (live ? stop() : start()));
show('off');
if (params.get('go') === '1') start();
