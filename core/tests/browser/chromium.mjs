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
