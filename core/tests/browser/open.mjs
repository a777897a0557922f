// Opens a page in headless Chromium and prints `window[<global>]` as JSON once it is set.
//
//   node open.mjs <url> <global> <seconds>
import { launch } from './chromium.mjs';

const [url, name, seconds] = process.argv.slice(2);
const browser = await launch();
let value = null;
try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => process.stderr.write(`page error ${e}\n`));
  await page.goto(url);
  const deadline = Date.now() + Number(seconds) * 1000;
  while (Date.now() < deadline && value == null) {
    value = await page.evaluate((n) => window[n] ?? null, name);
    if (value == null) await new Promise((r) => setTimeout(r, 100));
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(value));
process.exit(value == null ? 1 : 0);
