// End to end on loopback, Colyseus side: a Colyseus 0.18 server
// (colyseus-server.mjs) in rooms of 16 replaying a recorded room of this
// arena, against Colyseus SDK clients (colyseus-clients.mjs), measured the
// way benches/loadtest.sh measures this server's rooms layout: the same
// counts, ramp, settling time and window, server and clients pinned to
// different cores, figures from the processes' own accounting.
// BENCHMARKS.md section 9.
//
//   cargo run --release -p benches --bin trajectories    # target/compare/room-16.json
//   cd benches/compare/e2e && npm install && node loadtest-colyseus.mjs [CLIENTS...]   # default 200 1000
//
// `npm install`, not `npm ci`: Colyseus's msgpackr has an optional native
// extension with one package per platform, and the registry this lock file
// was made against serves only the Linux ones, so the lock lacks the
// others and `npm ci` refuses it. `npm install` fills them in or skips them.
//
// Environment: WORLD (the recorded room, default
// ../../../target/compare/room-16.json), PORT (first port, 18590; each run takes
// the next), RAMP (joins per second, 200), WINDOW (seconds measured, 6),
// SETTLE (seconds between the last join and the window, 3, plus up to 2
// for the once-a-second reports), FULL (1: the
// clients decode every patch, as a game does; by default they are light,
// like this server's light bots, and only count them).
//
// Only 127.0.0.1 is used, every run is bounded in time, and both processes
// are killed when a run ends, however it ends.

import { spawn, spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';

const dir = import.meta.dirname;
const world = process.env.WORLD ?? join(dir, '..', '..', '..', 'target', 'compare', 'room-16.json');
const ramp = Number(process.env.RAMP ?? 200);
const window = Number(process.env.WINDOW ?? 6);
const settle = Number(process.env.SETTLE ?? 3);
const full = process.env.FULL === '1';
let port = Number(process.env.PORT ?? 18590);
const counts = process.argv.slice(2).map(Number);
if (counts.length === 0) counts.push(200, 1000);

const pin = availableParallelism() >= 2 && spawnSync('taskset', ['-V']).status === 0;
const sleep = (s) => new Promise((resolve) => setTimeout(resolve, s * 1000));
const children = new Set();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(1));

/** Starts `node script args` on `core` (when pinning); tracks its last JSON line. */
function start(core, script, args) {
  const argv = [process.execPath, join(dir, script), ...args];
  const child = pin ? spawn('taskset', ['-c', String(core), ...argv]) : spawn(argv[0], argv.slice(1));
  children.add(child);
  const proc = { child, last: null, log: '' };
  let buffered = '';
  child.stdout.on('data', (chunk) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop();
    for (const line of lines) proc.last = JSON.parse(line);
  });
  child.stderr.on('data', (chunk) => {
    proc.log += chunk;
  });
  child.on('exit', () => children.delete(child));
  return proc;
}

/** Waits until `test(proc.last)` holds, or fails after `seconds`. */
async function until(proc, test, seconds, what) {
  const deadline = Date.now() + seconds * 1000;
  while (!(proc.last && test(proc.last))) {
    if (Date.now() > deadline) throw new Error(`${what}: timed out\n${proc.log}`);
    if (proc.child.exitCode !== null) throw new Error(`${what}: exited\n${proc.log}`);
    await sleep(0.1);
  }
}

async function run(n) {
  port += 1;
  const server = start(0, 'colyseus-server.mjs', [world, String(port)]);
  try {
    await until(server, () => true, 10, 'server start');
    await sleep(1);
    const idle = server.last.rss;
    const clients = start(1, 'colyseus-clients.mjs', [`ws://127.0.0.1:${port}`, String(n), String(ramp), full ? 'full' : 'light']);
    await until(clients, (c) => c.joined + c.errors >= n, n / ramp + 30, 'joins');
    // The clients report joins once a second, so the last join was up to a
    // second before this: the window starts SETTLE to SETTLE + 2 s after it.
    await sleep(settle + 1);
    const [s0, c0] = [server.last, clients.last];
    // Each process reports once a second: the window ends at the first
    // report of each that is at least `window` seconds after the first.
    await until(server, (l) => l.at >= s0.at + window * 1000, window + 10, 'server report');
    await until(clients, (l) => l.at >= c0.at + window * 1000, window + 10, 'clients report');
    const [s1, c1] = [server.last, clients.last];
    const patches = s1.patches - s0.patches;
    const cpu = s1.cpu_us - s0.cpu_us;
    const [ts, tc] = [(s1.at - s0.at) / 1000, (c1.at - c0.at) / 1000];
    return {
      n,
      joined: c1.joined,
      errors: c1.errors,
      rooms: s1.rooms,
      cpuPerPatch: cpu / patches,
      cores: cpu / 1e6 / ts,
      patchesPerSec: patches / ts,
      idleMiB: idle / 2 ** 20,
      loadedMiB: s1.rss / 2 ** 20,
      perClientKiB: (s1.rss - idle) / 1024 / c1.joined,
      receivedPerClient: (c1.patches - c0.patches) / tc / c1.joined,
      inputsPerSec: (s1.inputs - s0.inputs) / ts,
      clientsCpu: (100 * (c1.cpu_us - c0.cpu_us)) / 1e6 / tc,
    };
  } finally {
    for (const child of children) child.kill('SIGKILL');
  }
}

console.log(
  `Colyseus (@colyseus/core 0.18, ws transport), rooms of 16 replaying ${world}; ` +
    `${pin ? 'server pinned to core 0, clients to core 1' : 'not pinned'}; ` +
    `${full ? 'full' : 'light'} clients; ramp ${ramp}/s, window ${window} s from ${settle}–${settle + 2} s after the last join.\n`,
);
console.log(
  '| clients | joined | rooms | server CPU µs/client/patch | server CPU (cores) | patches/s | RSS idle | RSS loaded | RSS/client | patches/client/s received | inputs/s received | client process CPU % |',
);
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const n of counts) {
  const r = await run(n);
  const f1 = (x) => x.toFixed(1);
  console.log(
    `| ${r.n} | ${r.joined}${r.errors ? ` (${r.errors} failed)` : ''} | ${r.rooms} | ${f1(r.cpuPerPatch)} | ${r.cores.toFixed(2)} | ${Math.round(r.patchesPerSec)} | ${f1(r.idleMiB)} MiB | ${f1(r.loadedMiB)} MiB | ${f1(r.perClientKiB)} KiB | ${f1(r.receivedPerClient)} | ${Math.round(r.inputsPerSec)} | ${Math.round(r.clientsCpu)} |`,
  );
  // Figures of a run where clients failed to join or received nothing are
  // not a measurement: say so in the exit status.
  if (r.errors > 0 || !(r.receivedPerClient > 0) || !(r.inputsPerSec > 0)) {
    console.error(`${n} clients: ${r.errors} joins failed, ${r.receivedPerClient} patches/client/s received`);
    process.exitCode = 1;
  }
}
