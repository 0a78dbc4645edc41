// A Colyseus 0.18 server for the end-to-end comparison (loadtest-colyseus.mjs,
// BENCHMARKS.md section 9): rooms of 16 clients, each replaying a recorded
// world (the trajectories bin's room-16.json, looped) at 30 Hz, with patches
// at 30 Hz, as this server's default rooms run. Inputs are received and
// dropped. Listens on 127.0.0.1 only.
//
//   node colyseus-server.mjs WORLD.json PORT
//
// Prints one JSON line a second with its own accounting: patches sent
// (one per client per patch), inputs received, rooms, and the process's CPU
// time (user + system, µs), resident memory (bytes) and the time (ms).

import { readFileSync } from 'node:fs';
import { Room, Server } from '@colyseus/core';
import { WebSocketTransport } from '@colyseus/ws-transport';
import { schema, t } from '@colyseus/schema';
import { apply, changes, checkRanges, declare } from '../arena-schema.mjs';

const HZ = 30;
const [file, port] = [process.argv[2], Number(process.argv[3])];
const { states } = JSON.parse(readFileSync(file, 'utf8'));
checkRanges(states);
// Tick i takes the state from states[i - 1] to states[i]; the loop closes
// with the change from the last state back to the first.
const ops = states.map((s, i) => changes(states[(i + states.length - 1) % states.length], s));
const first = changes(null, states[0]);

const SCHEMA = declare({ schema, t });
const counts = { patches: 0, inputs: 0, rooms: 0 };

class ArenaRoom extends Room {
  maxClients = 16;

  onCreate() {
    counts.rooms++;
    this.setState(new SCHEMA.Arena());
    this.refs = { entities: new Map(), players: new Map() };
    apply(this.state, this.refs, first, SCHEMA);
    this.tick = 0;
    this.setPatchRate(1000 / HZ);
    this.setSimulationInterval(() => {
      this.tick = (this.tick + 1) % states.length;
      apply(this.state, this.refs, ops[this.tick], SCHEMA);
    }, 1000 / HZ);
    this.onMessage('input', () => {
      counts.inputs++;
    });
  }

  onBeforePatch() {
    counts.patches += this.clients.length;
  }

  onDispose() {
    counts.rooms--;
  }
}

const server = new Server({ transport: new WebSocketTransport(), greet: false });
server.define('arena', ArenaRoom);
await server.listen(port, '127.0.0.1');
setInterval(() => {
  const cpu = process.cpuUsage();
  const line = { ...counts, cpu_us: cpu.user + cpu.system, rss: process.memoryUsage.rss(), at: Date.now() };
  process.stdout.write(`${JSON.stringify(line)}\n`);
}, 1000);
