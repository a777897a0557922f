// Launches Debian's Chromium for the browser tests: headless, fake camera and microphone,
// loopback ICE candidates allowed, nothing fetched from the network by the browser itself.
import { chromium } from 'playwright-core';

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns',
      '--autoplay-policy=no-user-gesture-required',
      // A test's own self-signed certificate (the server under test serves https).
      ...(process.env.IGNORE_CERTIFICATE_ERRORS ? ['--ignore-certificate-errors'] : []),
    ],
  });
}

// The step checker of a driver's `result`: `until(what, check)` polls `check` every
// `everyMs` until it holds or `deadline` (ms since the epoch) passes, records the step as
// passed or failed in `result.steps` and returns whether it passed.
export function stepper(result, deadline, everyMs) {
  return async function until(what, check) {
    while (Date.now() < deadline) {
      if (await check()) { result.steps[what] = true; return true; }
      await new Promise((r) => setTimeout(r, everyMs));
    }
    result.steps[what] = false;
    return false;
  };
}
