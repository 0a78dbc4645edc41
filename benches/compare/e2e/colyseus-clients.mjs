// Colyseus clients for the end-to-end comparison (loadtest-colyseus.mjs):
// each joins a room of the arena with the official SDK and sends an input
// 30 times a second, as this server's bots do.
//
//   node colyseus-clients.mjs ws://127.0.0.1:PORT CLIENTS JOINS_PER_SECOND [full]
//
// Light by default, like this server's light bots (`bots --light`), so that
// one core drives as many clients as it can: after the join (whose full state
// the SDK decodes), patches are counted but not decoded. With `full`, the
// SDK decodes every patch into its state, as a game client does.
//
// Prints one JSON line a second: clients joined, patches received, errors,
// the process's CPU time (user + system, µs) and the time (ms).

import { Client } from '@colyseus/sdk';

const [url, n, ramp] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const full = process.argv[5] === 'full';
const counts = { joined: 0, patches: 0, errors: 0 };
const client = new Client(url);

async function join() {
  try {
    const room = await client.joinOrCreate('arena');
    counts.joined++;
    if (!full) {
      // The SDK hands every patch to its serializer, then to onStateChange.
      room.serializer.patch = () => {};
    }
    room.onStateChange(() => {
      counts.patches++;
    });
    let seq = 0;
    setInterval(() => room.send('input', { seq: ++seq, buttons: 0, aim: 0 }), 1000 / 30);
  } catch (e) {
    if (counts.errors++ < 3) console.error(`join failed: ${e}`);
  }
}

setInterval(() => {
  const cpu = process.cpuUsage();
  process.stdout.write(`${JSON.stringify({ ...counts, cpu_us: cpu.user + cpu.system, at: Date.now() })}\n`);
}, 1000);
for (let i = 0; i < n; i++) {
  join();
  await new Promise((resolve) => setTimeout(resolve, 1000 / ramp));
}
