// The same worlds, tick by tick, through Colyseus's state encoder
// (@colyseus/schema, the version Colyseus 0.18 uses), against this server's
// protocol: bytes per patch, bytes per moving entity, the full state, the
// server's encoding time per tick and the JavaScript client's decoding time
// per tick. BENCHMARKS.md section 9.
//
//   cargo run --release -p benches --bin trajectories   # writes target/compare/*.json
//   cd benches/compare && npm ci && node colyseus.mjs [DIR]
//
// The state is what a Colyseus game replicating this arena would declare
// (arena-schema.mjs: the leanest types that hold the same values). Each
// tick, the fields that changed are assigned (unchanged ones are not
// touched), entities and players that appeared are added and those gone
// deleted, and the patch is encoded as Colyseus's room does
// (`SchemaSerializer.applyPatches`: one protocol byte, then
// `encoder.encode()`, then `discardChanges()`), once for all clients. A
// decoder applies every patch, and the decoded state is checked against the
// world after every tick: a mismatch stops the run.
//
// This server's own messages (written by the trajectories bin) are replayed
// through the browser's decoder (client-demo/web/js): each decoded, applied
// to the last state and checksummed, and the state checked against the
// world after every tick as well.
//
// Timing: each scenario is replayed PASSES times from a fresh state; the
// first pass warms the JIT and is not timed. Per tick, the median over the
// timed passes; the table gives the median over the ticks. The Rust side
// times its own diff + encode the same way (`ours.encode_ns`, written by
// the trajectories bin: 10 passes over the ticks, the first untimed, the
// median per tick).

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Decoder, Encoder, schema, t } from '@colyseus/schema';
import { FIELDS, apply, changes, checkRanges, declare } from './arena-schema.mjs';
import { decodeServer } from '../../client-demo/web/js/codec.js';
import { applyDelta, checksum } from '../../client-demo/web/js/snapshot.js';

const PASSES = 10;
// Room for the largest full state (5,000 entities) without the encoder's
// overflow warning: what the warning tells a Colyseus deployment to do.
Encoder.BUFFER_SIZE = 512 * 1024;
/** Colyseus's `Protocol.ROOM_STATE_PATCH`, the first byte of every patch. */
const ROOM_STATE_PATCH = 15;

/**
 * The same objects without Colyseus: plain fields, plain maps. Applying the
 * changes to them times the harness and the game's own assignments, which
 * any server pays; the difference is Colyseus's change tracking.
 */
class PlainEntity {
  kind = 0;
  x = 0;
  y = 0;
  vx = 0;
  vy = 0;
  angle = 0;
  hp = 0;
}
class PlainPlayer {
  name = '';
  score = 0;
  deaths = 0;
}
class PlainArena {
  entities = new Map();
  players = new Map();
}
const PLAIN = { Entity: PlainEntity, Player: PlainPlayer };
const SCHEMA = declare({ schema, t });
const { Arena } = SCHEMA;

/** Throws unless the decoded `state` holds exactly the world state `s`. */
function verify(state, s) {
  const E = s.entities;
  if (state.entities.size !== E.length / 8) {
    throw new Error(`tick ${s.tick}: ${state.entities.size} entities decoded, ${E.length / 8} in the world`);
  }
  for (let i = 0; i < E.length; i += 8) {
    const e = state.entities.get(String(E[i]));
    if (e === undefined) throw new Error(`tick ${s.tick}: entity ${E[i]} missing`);
    FIELDS.forEach((f, k) => {
      if (e[f] !== E[i + 1 + k]) throw new Error(`tick ${s.tick}: entity ${E[i]} ${f} ${e[f]} != ${E[i + 1 + k]}`);
    });
  }
  if (state.players.size !== s.players.length) throw new Error(`tick ${s.tick}: scoreboard size`);
  for (const [id, name, score, deaths] of s.players) {
    const p = state.players.get(String(id));
    if (p === undefined || p.name !== name || p.score !== score || p.deaths !== deaths) {
      throw new Error(`tick ${s.tick}: player ${id} differs`);
    }
  }
}

function median(values) {
  const v = [...values].sort((a, b) => a - b);
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

const sum = (values) => values.reduce((a, b) => a + b, 0);

/**
 * One replay of a scenario from a fresh state. Returns per-tick patch sizes
 * and the ns spent assigning the changes (Colyseus tracks changes in its
 * setters) and encoding them.
 */
function replay(states, ops, check) {
  const state = new Arena();
  const refs = { entities: new Map(), players: new Map() };
  const encoder = new Encoder(state);
  const client = new Decoder(new Arena());
  apply(state, refs, ops[0], SCHEMA);
  const full = encoder.encodeAll();
  const fullBytes = full.length + 1;
  client.decode(full);
  encoder.discardChanges();
  if (check) verify(client.state, states[0]);
  const bytes = [];
  const assignNs = [];
  const encodeNs = [];
  const decodeNs = [];
  for (let i = 1; i < states.length; i++) {
    const t0 = process.hrtime.bigint();
    apply(state, refs, ops[i], SCHEMA);
    const t1 = process.hrtime.bigint();
    const it = { offset: 1 };
    encoder.sharedBuffer[0] = ROOM_STATE_PATCH;
    const patch = encoder.encode(it);
    encoder.discardChanges();
    const t2 = process.hrtime.bigint();
    client.decode(patch, { offset: 1 });
    const t3 = process.hrtime.bigint();
    bytes.push(patch.length);
    assignNs.push(Number(t1 - t0));
    encodeNs.push(Number(t2 - t1));
    decodeNs.push(Number(t3 - t2));
    if (check) verify(client.state, states[i]);
  }
  return { fullBytes, bytes, assignNs, encodeNs, decodeNs };
}

/** Throws unless our decoded `state` holds exactly the world state `s`. */
function verifyOurs(state, s) {
  const flat = state.entities.flatMap((e) => [e.id, e.kind, e.x, e.y, e.vx, e.vy, e.angle, e.hp]);
  if (flat.length !== s.entities.length || flat.some((v, i) => v !== s.entities[i])) {
    throw new Error(`tick ${s.tick}: our decoded entities differ from the world`);
  }
  const players = state.players.map((p) => [p.id, p.name, p.score, p.deaths]);
  if (JSON.stringify(players) !== JSON.stringify(s.players)) {
    throw new Error(`tick ${s.tick}: our decoded scoreboard differs from the world`);
  }
}

/**
 * The browser's side of this server's protocol, replayed: each message
 * decoded (`decodeServer`) and applied to the last state (`applyDelta`),
 * then the checksum the page verifies on every snapshot. Per-tick ns.
 */
function replayOurs(full, deltas, states, check) {
  let state = applyDelta(null, decodeServer(full).snapshot);
  if (check) verifyOurs(state, states[0]);
  const oursDecodeNs = [];
  const oursChecksumNs = [];
  for (let i = 0; i < deltas.length; i++) {
    const t0 = process.hrtime.bigint();
    const msg = decodeServer(deltas[i]).snapshot;
    state = applyDelta(state, msg);
    const t1 = process.hrtime.bigint();
    const sum = checksum(state);
    const t2 = process.hrtime.bigint();
    oursDecodeNs.push(Number(t1 - t0));
    oursChecksumNs.push(Number(t2 - t1));
    if (sum !== msg.checksum) throw new Error(`tick ${msg.tick}: checksum mismatch`);
    if (check) verifyOurs(state, states[i + 1]);
  }
  return { oursDecodeNs, oursChecksumNs };
}

/** Per-tick ns of applying the same changes to plain objects. */
function replayPlain(ops) {
  const state = new PlainArena();
  const refs = { entities: new Map(), players: new Map() };
  apply(state, refs, ops[0], PLAIN);
  const ns = [];
  for (let i = 1; i < ops.length; i++) {
    const t0 = process.hrtime.bigint();
    apply(state, refs, ops[i], PLAIN);
    ns.push(Number(process.hrtime.bigint() - t0));
  }
  return { plainNs: ns };
}

function run(file) {
  const world = JSON.parse(readFileSync(file, 'utf8'));
  const { states, ours } = world;
  checkRanges(states);
  const ops = states.map((s, i) => changes(i === 0 ? null : states[i - 1], s));
  const passes = [];
  const plain = [];
  const mine = [];
  const full = Buffer.from(ours.full_hex, 'hex');
  const deltas = ours.delta_hex.map((h) => Buffer.from(h, 'hex'));
  for (let p = 0; p < PASSES; p++) {
    passes.push(replay(states, ops, p === 0));
    plain.push(replayPlain(ops));
    mine.push(replayOurs(full, deltas, states, p === 0));
  }
  const timed = passes.slice(1);
  const ticks = states.length - 1;
  const perTick = (key, runs = timed) =>
    median(Array.from({ length: ticks }, (_, i) => median(runs.map((r) => r[key][i]))));
  const moving = sum(ours.moving);
  const them = passes[0];
  for (const r of timed) {
    if (sum(r.bytes) !== sum(them.bytes)) throw new Error('patch sizes differ between passes');
  }
  return {
    name: world.name,
    census: world.census,
    tickHz: world.tick_hz,
    ticks,
    movingPerTick: moving / ticks,
    colyseus: {
      full: them.fullBytes,
      perTick: sum(them.bytes) / ticks,
      perMoving: sum(them.bytes) / moving,
      assignUs: perTick('assignNs') / 1000,
      plainUs: perTick('plainNs', plain.slice(1)) / 1000,
      decodeUs: perTick('decodeNs') / 1000,
      encodeUs: perTick('encodeNs') / 1000,
    },
    ours: {
      full: ours.full_bytes,
      perTick: sum(ours.delta_bytes) / ticks,
      perMoving: sum(ours.delta_bytes) / moving,
      encodeUs: median(ours.encode_ns) / 1000,
      decodeUs: perTick('oursDecodeNs', mine.slice(1)) / 1000,
      checksumUs: perTick('oursChecksumNs', mine.slice(1)) / 1000,
    },
  };
}

const dir = process.argv[2] ?? join(import.meta.dirname, '..', '..', 'target', 'compare');
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .sort();
if (files.length === 0) {
  console.error(`no worlds in ${dir}: run \`cargo run --release -p benches --bin trajectories\` first`);
  process.exit(1);
}
const f1 = (x) => x.toFixed(1);
const f2 = (x) => x.toFixed(2);
console.log(`Node ${process.version}, @colyseus/schema ${JSON.parse(readFileSync(join(import.meta.dirname, 'node_modules', '@colyseus', 'schema', 'package.json'), 'utf8')).version}; every decoded patch checked against the world.\n`);
console.log(
  '| world | moving entities per tick | bytes per tick: Colyseus / ours | **bytes per moving entity: Colyseus / ours** | full state, bytes: Colyseus / ours | kbit/s per client: Colyseus / ours | server µs per tick: Colyseus assign (plain objects) + encode / ours diff + encode | client (JS) µs per tick: Colyseus decode / ours decode and apply (+ checksum) |',
);
console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
for (const file of files) {
  const r = run(join(dir, file));
  const kbit = (bytes) => (bytes * 8 * r.tickHz) / 1000;
  console.log(
    `| ${r.name} (${r.ticks} ticks; ${r.census}) | ${f1(r.movingPerTick)} | ${f1(r.colyseus.perTick)} / ${f1(r.ours.perTick)} | **${f2(r.colyseus.perMoving)} / ${f2(r.ours.perMoving)}** | ${r.colyseus.full} / ${r.ours.full} | ${f1(kbit(r.colyseus.perTick))} / ${f1(kbit(r.ours.perTick))} | ${f1(r.colyseus.assignUs)} (${f1(r.colyseus.plainUs)}) + ${f1(r.colyseus.encodeUs)} / ${f1(r.ours.encodeUs)} | ${f1(r.colyseus.decodeUs)} / ${f1(r.ours.decodeUs)} (+ ${f1(r.ours.checksumUs)}) |`,
  );
}
