// Drives headless Chromium through the demo page (examples/web, the madang-wasm package):
// pages of different sizes join one room, and each must show a publisher's video at the
// width its tile needs (the grid tells the server its tile sizes; the server forwards the
// simulcast layer that fits). Prints one JSON line with what each page saw.
//
//   node tiles.mjs <base-url> <room> <seconds> <publisher> <name>:<width>x<height>:<videoWidth>...
//
// <publisher> is the identity of the participant to watch, or the name of a page given
// as <name>:<width>x<height>:publish, which publishes its camera as simulcast
// (`publishCamera({ simulcast: true })`) and is watched by the others.
//
// Each page is <width>×<height> CSS pixels; it passes when, 8 s after its tile of
// <publisher> first played (time for the server to raise layers where the downlink has
// room), it plays at <videoWidth> and still does, with frames decoded rising, 3 s later.
// Exit code 0 when every page passed.
import { launch } from './chromium.mjs';

const [base, room, seconds, watched, ...specs] = process.argv.slice(2);
let publisher = watched;
let publishing = null; // the publishing page's outbound video streams, when there is one
const deadline = Date.now() + Number(seconds) * 1000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const result = { ok: false, pages: {} };

const browser = await launch();

// The page's tile of the publisher: its video's size and the frames decoded of it.
async function look(page) {
  return page.evaluate(async (who) => {
    const room = window.madangRoom;
    if (!room) return { joined: false };
    const el = document.querySelector(`#grid [data-participant="${who}"]`);
    const v = el?.querySelector('video');
    const rect = el?.getBoundingClientRect();
    const stats = await room.stats();
    const r = stats.received.find((s) => s.kind === 'video' && s.track === `${who}/camera`);
    return { joined: true, videoWidth: v?.videoWidth || 0, videoHeight: v?.videoHeight || 0,
             tile: rect ? [Math.round(rect.width), Math.round(rect.height)] : null,
             framesDecoded: r?.framesDecoded || 0, frameWidth: r?.frameWidth || 0,
             packets: r?.packetsReceived || 0, lost: r?.packetsLost || 0,
             bytes: r?.bytesReceived || 0, keyframes: r?.keyFramesDecoded || 0,
             dropped: r?.framesDropped || 0, nacks: r?.nackCount || 0, plis: r?.pliCount || 0,
             ssrc: r?.ssrc || 0 };
  }, publisher);
}

try {
  const pages = [];
  for (const spec of specs) {
    const [name, size, want] = spec.split(':');
    const [width, height] = size.split('x').map(Number);
    const page = await browser.newPage({ viewport: { width, height } });
    page.on('console', (m) => process.stderr.write(`${name}: ${m.text()}\n`));
    page.on('pageerror', (e) => process.stderr.write(`${name}: page error ${e}\n`));
    const simulcast = want === 'publish' ? '&simulcast=1' : '';
    await page.goto(`${base}/?room=${encodeURIComponent(room)}&name=${encodeURIComponent(name)}&autojoin=1${simulcast}`);
    if (want === 'publish') {
      // Its identity, once it joined.
      while (Date.now() < deadline && !(await page.evaluate(() => window.madangRoom?.identity))) await sleep(250);
      publisher = await page.evaluate(() => window.madangRoom?.identity);
      result.publisher = publisher;
      const sent = async () => (await page.evaluate(async () => (await window.madangRoom.stats()).sent))
        .filter((s) => s.kind === 'video');
      while (Date.now() < deadline && (await sent()).length < 2) await sleep(250);
      publishing = sent;
      continue;
    }
    pages.push({ name, page, want: Number(want) });
  }
  // Each page second by second (its tile's width, the decoder's, frames decoded, packets
  // and bytes received of the watched video), printed with the result.
  result.timeline = {};
  let sampling = true;
  const sampler = (async () => {
    const start = Date.now();
    while (sampling && Date.now() < deadline) {
      for (const p of pages) {
        const l = await look(p.page).catch(() => ({}));
        (result.timeline[p.name] ||= []).push(
          [Math.round((Date.now() - start) / 100) / 10, l.videoWidth, l.frameWidth, l.framesDecoded,
           l.packets, l.lost, l.bytes, l.keyframes, l.dropped, l.nacks, l.plis, l.ssrc]);
      }
      await sleep(1000);
    }
  })();
  const playing = async (p) => {
    while (Date.now() < deadline && (await look(p.page)).videoWidth === 0) await sleep(250);
  };
  await Promise.all(pages.map(playing));
  await sleep(8000);
  for (const p of pages) {
    const entry = { want: p.want, passed: false };
    result.pages[p.name] = entry;
    while (Date.now() < deadline) {
      const seen = await look(p.page);
      entry.seen = seen;
      if (seen.videoWidth === p.want) {
        // It must stay at that width, and keep playing.
        await sleep(3000);
        const later = await look(p.page);
        entry.later = later;
        if (later.videoWidth === p.want && later.framesDecoded > seen.framesDecoded) {
          entry.passed = true;
          break;
        }
      }
      await sleep(250);
    }
  }
  sampling = false;
  await sampler;
  result.ok = Object.values(result.pages).every((e) => e.passed);
  // A publishing page must have sent two layers of different widths.
  if (publishing) {
    result.layersSent = await publishing();
    const widths = new Set(result.layersSent.filter((l) => l.framesEncoded > 0).map((l) => l.frameWidth));
    result.ok &&= widths.size >= 2;
  }
} catch (e) {
  result.error = String(e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
