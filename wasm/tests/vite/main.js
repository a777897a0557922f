// A tiny Vite app that imports the madang-wasm package like any npm dependency.
import init, { version, Room, MadangError } from 'madang-wasm';

await init();
document.getElementById('out').textContent = `madang ${version()}`;
window.viteResult = {
  version: version(),
  connect: typeof Room.connect,
  error: typeof MadangError,
};
