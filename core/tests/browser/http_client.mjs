// Drives a plain-JS WHIP or WHEP client page (whip.html, whep.html) in headless Chromium:
// opens it, waits until it is live (201 and connected peer connections), prints
// `{"live": status}`, keeps it running until a line arrives on stdin (or <seconds> pass),
// then has it delete its sessions and prints the page's status as one JSON line. A page
// shows its progress in `window.clientStatus` and deletes with `window.clientStop()`.
//
//   node http_client.mjs <page-url> <seconds>
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
    status = await page.evaluate(() => window.clientStatus);
    if (status.state !== 'starting' && status.state !== 'live') break;
    if (status.state === 'live' && status.connection === 'connected') break;
    await sleep(100);
  }
  console.log(JSON.stringify({ live: status }));
  if (status.connection === 'connected') {
    await Promise.race([line, sleep(Math.max(deadline - Date.now(), 0))]);
    await page.evaluate(() => window.clientStop());
    status = await page.evaluate(() => window.clientStatus);
    ok = status.deleted === 200;
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify({ ok, status }));
process.exit(ok ? 0 : 1);
