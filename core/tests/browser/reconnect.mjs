// A dropped signal connection on the demo page in headless Chromium: the page joins through
// the test's TCP relay and plays the other participant; when it does, this prints
// `{"ready": true}` and the test cuts the relay's connections (no WebSocket close, as a
// proxy or NAT reset would). The page must say it is reconnecting, take the session back
// (`reconnected`), keep playing the other participant all along (framesDecoded rising) and
// send a chat message over the new connection; then restart ICE (`restartIce()`, as after a
// change of network) and keep playing. Prints one JSON line with what it found.
//
//   node reconnect.mjs <base-url> <room> <other-identity> <seconds>
import { launch, stepper } from './chromium.mjs';

const [base, room, other, seconds] = process.argv.slice(2);
const deadline = Date.now() + Number(seconds) * 1000;
const result = { ok: false, steps: {} };
const until = stepper(result, deadline, 100);

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  page.on('console', (m) => process.stderr.write(`page: ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`page: page error ${e}\n`));
  await page.goto(`${base}/?room=${room}&name=Field&autojoin=1`);
  const decoded = () => page.evaluate(async (id) => {
    const room = window.madangRoom;
    if (!room) return 0;
    const stats = await room.stats();
    const r = stats.received.find((x) => x.kind === 'video' && x.track === `${id}/camera`);
    return r?.framesDecoded ?? 0;
  }, other);
  await until('plays the other participant', async () => (await decoded()) > 30);
  console.log(JSON.stringify({ ready: true }));
  const before = await decoded();
  const cutAt = Date.now();
  await until('says it is reconnecting', () => page.evaluate(() => (window.madangDemo.reconnects || 0) >= 1));
  await until('reconnected', () => page.evaluate(
    () => window.madangDemo.log.some((l) => l.text === 'reconnected')));
  result.reconnectedAfterMs = Date.now() - cutAt;
  // Pictures kept coming through the drop: in 2 s at the other's 15 fps, 30 are sent; 20
  // is playing on (a stall of even a second would fail it).
  await new Promise((r) => setTimeout(r, 2000));
  const after = await decoded();
  result.decoded = { before, after };
  result.steps['frames rising through the drop'] = after - before >= 20;
  await page.evaluate(() => window.madangRoom.sendData('after the drop', { topic: 'chat' }));
  // Then the page's network "changes": ICE restarts on both connections, the call goes on.
  const restarted = await page.evaluate(() => window.madangRoom.restartIce().then(() => true, (e) => String(e)));
  result.steps['ICE restarted'] = restarted === true;
  const beforeRestart = await decoded();
  await new Promise((r) => setTimeout(r, 2000));
  const afterRestart = await decoded();
  result.decoded.afterRestart = afterRestart;
  result.steps['frames rising after the ICE restart'] = afterRestart - beforeRestart >= 20;
  // Let it leave before the browser closes.
  await new Promise((r) => setTimeout(r, 1000));
  result.steps['not disconnected'] = await page.evaluate(
    () => !/disconnected/.test(window.madangDemo.status || ''));
  result.ok = Object.values(result.steps).every(Boolean);
} catch (e) {
  result.error = String(e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
