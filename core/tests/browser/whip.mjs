// Drives the plain-JS WHIP publisher page (whip.html) in headless Chromium: opens it, waits
// until it is live (201 and a connected peer connection), prints `{"live": status}`, keeps
// publishing until a line arrives on stdin (or <seconds> pass), then deletes the session and
// prints the page's status as one JSON line.
//
//   node whip.mjs <page-url> <seconds>
import { launch } from './chromium.mjs';

const [url, seconds] = process.argv.slice(2);
const deadline = Date.now() + Number(seconds) * 1000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const line = new Promise((resolve) => process.stdin.once('data', resolve));
const browser = await launch();
let status = null;
let ok = false;
try {
  const page = await browser.newPage();
  page.on('console', (m) => process.stderr.write(`page: ${m.text()}\n`));
  await page.goto(url);
  while (Date.now() < deadline) {
    status = await page.evaluate(() => window.whipStatus);
    if (status.state !== 'starting' && status.state !== 'live') break;
    if (status.state === 'live' && status.connection === 'connected') break;
    await sleep(100);
  }
  console.log(JSON.stringify({ live: status }));
  if (status.connection === 'connected') {
    await Promise.race([line, sleep(Math.max(deadline - Date.now(), 0))]);
    await page.evaluate(() => window.whipStop());
    status = await page.evaluate(() => window.whipStatus);
    ok = status.deleted === 200;
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify({ ok, status }));
process.exit(ok ? 0 : 1);
