// Talk-back on the demo page in headless Chromium: a host page (`?role=host`) and a viewer
// page (`?role=viewer`) join one room; the viewer presses "Raise hand", the host's page lists
// the hand and the host presses "Let in"; the viewer's page publishes its fake camera, which
// must play on the host's page (videoWidth > 0, framesDecoded rising); then the host sends it
// back (`demote`) and its tile must leave the host's grid. Before that the host presses
// "Record" and both pages must show the recording mark. Prints one JSON line.
//
//   node talkback.mjs <base-url> <room> <seconds>
import { launch, stepper } from './chromium.mjs';

const [base, room, seconds] = process.argv.slice(2);
const deadline = Date.now() + Number(seconds) * 1000;
const result = { ok: false, steps: {} };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const until = stepper(result, deadline, 200);

const browser = await launch();
try {
  const open = async (name, role) => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    page.on('console', (m) => process.stderr.write(`${name}: ${m.text()}\n`));
    page.on('pageerror', (e) => process.stderr.write(`${name}: page error ${e}\n`));
    await page.goto(`${base}/?room=${room}&name=${name}&role=${role}&mode=broadcast&autojoin=1`);
    return page;
  };
  const host = await open('Cityhall', 'host');
  await until('host joined', () => host.evaluate(() => !!window.madangRoom));
  const viewer = await open('Center', 'viewer');
  await until('viewer joined', () => viewer.evaluate(() => !!window.madangRoom));
  const center = await viewer.evaluate(() => window.madangRoom.identity);
  result.viewer = center;
  // A viewer publishes nothing and has a hand to raise.
  result.steps['viewer publishes nothing'] = await viewer.evaluate(() =>
    window.madangRoom.role === 'viewer' && !window.madangDemo.published
      && !document.getElementById('hand').classList.contains('hidden'));
  await viewer.click('#hand');
  await until('host sees the hand', () => host.evaluate(
    (id) => !!document.querySelector(`[data-let-in="${id}"]`), center));
  await host.click(`[data-let-in="${center}"]`);
  await until('viewer on air', () => viewer.evaluate(
    () => window.madangRoom.role === 'speaker' && window.madangDemo.published === true));
  // The center's camera plays on the host's page.
  const shown = () => host.evaluate(async (id) => {
    const tile = document.querySelector(`#grid [data-participant="${id}"] video`);
    const stats = await window.madangRoom.stats();
    const r = stats.received.find((x) => x.kind === 'video' && x.track === `${id}/camera`);
    return { width: tile?.videoWidth ?? 0, decoded: r?.framesDecoded ?? 0 };
  }, center);
  let first = null;
  await until('host plays the center', async () => {
    const s = await shown();
    if (s.width > 0 && s.decoded > 0) { first = s; return true; }
    return false;
  });
  if (first) {
    await sleep(1500);
    const later = await shown();
    result.played = { first, later };
    result.steps['frames rising'] = later.decoded > first.decoded;
  }
  // The host records the room: both pages show it, by whom.
  await host.click('#record');
  const marked = (page) => page.evaluate(() => {
    const rec = document.getElementById('rec');
    return !rec.classList.contains('hidden') && rec.textContent.includes('(');
  });
  await until('both pages show the recording', async () => (await marked(host)) && (await marked(viewer)));
  result.recordedBy = await viewer.evaluate(() => document.getElementById('rec').textContent);
  await sleep(2500); // pictures for the files
  // Sent back: its tile leaves the host's broadcast grid, its camera stops.
  await host.evaluate((id) => window.madangRoom.demote(id), center);
  await until('tile gone', () => host.evaluate(
    (id) => !document.querySelector(`#grid [data-participant="${id}"] video`)
      && window.madangRoom.participants.some((p) => p.identity === id && p.role === 'viewer'),
    center));
  await until('viewer off air', () => viewer.evaluate(
    () => window.madangRoom.role === 'viewer' && window.madangDemo.published === false));
  result.ok = Object.values(result.steps).every(Boolean);
} catch (e) {
  result.error = String(e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
