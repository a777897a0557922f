// Drives headless Chromium through the demo page (examples/web, the madang-wasm package):
// opens one page per name, each joins the same room with the fake camera and microphone,
// then checks what the issue asks of a call and prints one JSON line with what it found.
//
//   node demo.mjs <base-url> <room> <seconds> <name>... [--expect identity...]
//
// With --expect, the call is held (after every page plays) until a line arrives on stdin: the
// other participant's driver writes one when it has measured what it needs, so the length of
// the call follows what was received, not a fixed pause (bounded by <seconds>).
// Steps: every page plays every other participant's video (videoWidth > 0, framesDecoded
// rising in getStats); the Hangul title has real glyphs; the first page's chat message
// reaches the others; the last page stops its camera (the first page shows a placeholder)
// and starts it again; then it closes and disappears from the first page's grid. SCREENSHOT=<path> saves the first page
// while everyone is there. Exit code 0 when every step passed.
import { launch, stepper } from './chromium.mjs';

const args = process.argv.slice(2);
const [base, room, seconds] = args;
const split = args.indexOf('--expect');
const names = args.slice(3, split < 0 ? undefined : split);
const extra = split < 0 ? [] : args.slice(split + 1); // other participants (e.g. a Rust client)
const deadline = Date.now() + Number(seconds) * 1000;
const result = { ok: false, steps: {}, pages: {} };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// One line on stdin within `ms`: true when it came.
const line = (ms) => new Promise((resolve) => {
  const timer = setTimeout(() => { process.stdin.pause(); resolve(false); }, Math.max(ms, 0));
  process.stdin.once('data', () => { clearTimeout(timer); process.stdin.pause(); resolve(true); });
});

const browser = await launch();

// What a page sees: its identity, the grid's tiles with their video sizes, decoded frames.
async function look(page) {
  return page.evaluate(async () => {
    const room = window.madangRoom;
    if (!room) return { joined: false, status: window.madangDemo?.status };
    const tiles = {};
    for (const el of document.querySelectorAll('#grid [data-participant]')) {
      const v = el.querySelector('video');
      tiles[el.dataset.participant] = { videoWidth: v.videoWidth, videoHeight: v.videoHeight };
    }
    const stats = await room.stats();
    const decoded = {};
    for (const r of stats.received) if (r.kind === 'video' && r.track) decoded[r.track] = r.framesDecoded || 0;
    return { joined: true, identity: room.identity, tiles, decoded, chat: window.madangDemo.log,
             status: window.madangDemo.status, participants: room.participants.map((p) => p.identity) };
  });
}

const until = stepper(result, deadline, 250);

try {
  const pages = [];
  for (const name of names) {
    const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    page.on('console', (m) => process.stderr.write(`${name}: ${m.text()}\n`));
    page.on('pageerror', (e) => process.stderr.write(`${name}: page error ${e}\n${e.stack}\n`));
    await page.goto(`${base}/?room=${encodeURIComponent(room)}&name=${encodeURIComponent(name)}&autojoin=1`);
    pages.push(page);
  }
  const ids = [];
  await until('joined', async () => {
    const seen = await Promise.all(pages.map(look));
    ids.splice(0, ids.length, ...seen.map((s) => s.identity));
    return seen.every((s) => s.joined);
  });
  const everyone = [...ids, ...extra];
  // Every page plays everyone else's video, and decoding keeps going.
  let first = null;
  await until('videos play', async () => {
    const seen = await Promise.all(pages.map(look));
    const ok = seen.every((s) => everyone.filter((id) => id !== s.identity)
      .every((id) => (s.tiles[id]?.videoWidth || 0) > 0 && (s.decoded[`${id}/camera`] || 0) > 0));
    if (ok && !first) first = seen;
    return ok;
  });
  if (first) {
    await sleep(1500);
    const later = await Promise.all(pages.map(look));
    result.steps['frames rising'] = later.every((s, i) => everyone.filter((id) => id !== s.identity)
      .every((id) => s.decoded[`${id}/camera`] > first[i].decoded[`${id}/camera`]));
  }
  // The page's Hangul title is drawn with real glyphs: without a Korean font both syllables
  // come out as the same empty box (the setup installs fonts-nanum).
  result.steps['hangul title'] = await pages[0].evaluate(() => {
    const h1 = document.querySelector('h1');
    if (!h1 || !h1.textContent.includes('마당')) return false;
    const draw = (ch) => {
      const canvas = document.createElement('canvas');
      canvas.width = canvas.height = 96;
      const g = canvas.getContext('2d');
      g.font = getComputedStyle(h1).font;
      g.textBaseline = 'top';
      g.fillText(ch, 8, 8);
      return g.getImageData(0, 0, 96, 96).data.filter((_, i) => i % 4 === 3);
    };
    const [ma, dang] = [draw('마'), draw('당')];
    return ma.some((v) => v > 0) && ma.some((v, i) => v !== dang[i]);
  });
  if (process.env.SCREENSHOT) await pages[0].screenshot({ path: process.env.SCREENSHOT });
  if (extra.length) result.steps['held for the other participant'] = await line(deadline - Date.now());
  // Chat from the first page reaches the others.
  const text = `hello from ${names[0]}`;
  await pages[0].evaluate((t) => { document.getElementById('chat').value = t; document.getElementById('chat-form').requestSubmit(); }, text);
  await until('chat', async () => {
    const seen = await Promise.all(pages.slice(1).map(look));
    return seen.every((s) => s.chat.some((l) => l.text === text));
  });
  // The last page stops its camera (the others show a placeholder), then starts it again.
  if (pages.length > 1) {
    const who = ids[ids.length - 1];
    const last = pages[pages.length - 1];
    await last.evaluate(() => window.madangRoom.unpublish('camera'));
    await until('camera unpublished', async () => {
      const t = (await look(pages[0])).tiles[who];
      return t && t.videoWidth === 0;
    });
    await last.evaluate(() => window.madangRoom.publishCamera({ width: 640, height: 360 }));
    await until('camera published again', async () => ((await look(pages[0])).tiles[who]?.videoWidth || 0) > 0);
  }
  // The last page closes: it leaves the first page's grid.
  if (pages.length > 1) {
    const gone = ids[ids.length - 1];
    await pages[pages.length - 1].close();
    pages.pop();
    await until('closed page removed', async () => !((await look(pages[0])).tiles[gone]));
  }
  for (const [i, page] of pages.entries()) result.pages[names[i]] = await look(page);
  result.identities = ids;
  result.ok = Object.values(result.steps).every(Boolean);
} catch (e) {
  result.error = String(e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
