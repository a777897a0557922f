// Drives headless Chromium through the interop page: joins a madang room, publishes the fake
// camera (H.264) and microphone, and waits until the browser has decoded frames from the
// expected remote track. Prints one JSON line with the page's status. Exit code 0 on success.
// With PROGRESS=1 it also prints `{"progress": status}` at every poll, so the other side of the
// call can line its own counts up with the browser's.
//
//   node interop.mjs <page-url> <remote-track-to-expect> <min-frames> <seconds>
//
// A track of `*` is any remote video track (whichever decoded the most).
import { launch } from './chromium.mjs';

const [url, expectTrack, minFrames, seconds] = process.argv.slice(2);
const browser = await launch();
let status = null;
let ok = false;
try {
  const page = await browser.newPage();
  page.on('console', (m) => process.stderr.write(`page: ${m.text()}\n`));
  await page.goto(url);
  const deadline = Date.now() + Number(seconds) * 1000;
  while (Date.now() < deadline) {
    status = await page.evaluate(() => window.madangStatus);
    if (process.env.PROGRESS) console.log(JSON.stringify({ progress: status }));
    const decoded = !status ? 0 : expectTrack === '*'
      ? Math.max(0, ...Object.values(status.framesDecoded))
      : status.framesDecoded[expectTrack] || 0;
    if (decoded >= Number(minFrames)) { ok = true; break; }
    await new Promise((r) => setTimeout(r, 250));
  }
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT });
  // Keep publishing for a moment so the other side can count our frames too.
  const lingerEnd = Date.now() + Number(process.env.LINGER_MS || 0);
  while (Date.now() < lingerEnd) {
    await new Promise((r) => setTimeout(r, 250));
    if (process.env.PROGRESS) {
      console.log(JSON.stringify({ progress: await page.evaluate(() => window.madangStatus) }));
    }
  }
  status = await page.evaluate(() => window.madangStatus);
} finally {
  await browser.close();
}
console.log(JSON.stringify({ ok, status }));
process.exit(ok ? 0 : 1);
