// Protocol v3 on the browser's side: snapshots are acknowledged inside each
// input, so a playing client sends one message per tick; a standalone Ack
// goes only on a tick without an input, or when the simulation loop is not
// running (a background tab). And the snapshot receiver keeps every state a
// server may still encode against when acks lag by a tick. Simulated time,
// no browser, no server.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { Acker, STALL_MS } from '../../web/js/acks.js';
import { decodeClient, encodeClient } from '../../web/js/codec.js';
import { Kind } from '../../web/js/protocol.js';
import { Fields, SnapshotReceiver, checksum } from '../../web/js/snapshot.js';
import { bytesToHex } from './serde-shape.mjs';

const golden = JSON.parse(readFileSync(new URL('../golden.json', import.meta.url), 'utf8'));
const TICK_MS = 1000 / 30;

/**
 * An Acker on a socket that records what it sends, encoded and decoded again
 * as the server would read it.
 * @param {{open?: () => boolean}} [o]
 */
function recorder(o = {}) {
  /** @type {any[]} */
  const sent = [];
  const acker = new Acker((msg) => {
    if (o.open && !o.open()) return false;
    sent.push(decodeClient(encodeClient(msg)));
    return true;
  });
  const of = (/** @type {string} */ type) => sent.filter((m) => m.type === type);
  return { acker, sent, of };
}

test('an input carries the ack between tick and buttons, byte for byte as Rust writes it', () => {
  for (const v of golden.client_messages.filter((m) => typeof m.value === 'object' && m.value.Input)) {
    const { seq, tick, ack, buttons, aim } = v.value.Input;
    const { acker, sent } = recorder();
    acker.reset(0, false, 0);
    acker.held(ack, 0);
    acker.input({ seq, tick, buttons, aim }, 0);
    assert.equal(sent.length, 1);
    assert.equal(bytesToHex(encodeClient(sent[0])), v.hex, v.name);
  }
});

test('before any snapshot the inputs acknowledge Welcome.tick, and nothing goes alone', () => {
  const { acker, sent, of } = recorder();
  acker.reset(4_000_000_000, false, 0);
  for (let t = 1; t <= 3; t++) acker.input({ seq: t, tick: 4_000_000_000, buttons: 0, aim: 0 }, t * TICK_MS);
  acker.tickWithoutInput(4 * TICK_MS);
  acker.flush();
  assert.deepEqual(sent.map((m) => m.ack), [4_000_000_000, 4_000_000_000, 4_000_000_000]);
  assert.equal(of('Ack').length, 0, 'no Ack of a tick that names no state');
  assert.equal(acker.acked, null, 'nothing acknowledged that a reloaded page could keep');
});

test('a playing client sends one message per tick: inputs carry the newest held tick, no Ack alone', () => {
  for (const snapshotHz of [30, 15, 10]) {
    const { acker, sent, of } = recorder();
    acker.reset(100, false, 0);
    // Snapshots arrive at an arbitrary phase between ticks, with jitter.
    let held = null;
    let nextSnapshot = 7;
    let serverTick = 100;
    for (let t = 1; t <= 300; t++) {
      const now = t * TICK_MS;
      while (nextSnapshot < now) {
        serverTick += 30 / snapshotHz;
        held = serverTick;
        acker.held(serverTick, nextSnapshot);
        nextSnapshot += 1000 / snapshotHz + ((t * 7919) % 13) - 6;
      }
      const before = sent.length;
      acker.input({ seq: t, tick: serverTick + 1, buttons: 8, aim: 0 }, now);
      assert.equal(sent.length, before + 1, 'exactly one message this tick');
      assert.equal(sent.at(-1).ack, held ?? 100, `tick ${t}: the newest held snapshot`);
    }
    assert.equal(of('Ack').length, 0, `${snapshotHz} Hz: no standalone Ack while inputs flow`);
    assert.equal(of('Input').length, 300);
    assert.equal(acker.alone, 0);
    assert.equal(acker.acked, held);
  }
});

test('a tick without an input acknowledges alone, once per newer snapshot', () => {
  const { acker, sent, of } = recorder();
  acker.reset(100, false, 0);
  acker.held(101, 10);
  acker.input({ seq: 1, tick: 102, buttons: 0, aim: 0 }, TICK_MS);
  // The pacer skips this tick: the ack already went with the input.
  acker.tickWithoutInput(2 * TICK_MS);
  assert.equal(of('Ack').length, 0);
  acker.held(102, 2.5 * TICK_MS);
  // Skipped (or stalled: the server takes no input) ticks in a row.
  acker.tickWithoutInput(3 * TICK_MS);
  acker.tickWithoutInput(4 * TICK_MS);
  assert.deepEqual(of('Ack'), [{ type: 'Ack', tick: 102 }], 'one Ack for the newer snapshot, none for nothing new');
  acker.held(103, 4.5 * TICK_MS);
  acker.tickWithoutInput(5 * TICK_MS);
  acker.input({ seq: 2, tick: 104, buttons: 0, aim: 0 }, 6 * TICK_MS);
  assert.deepEqual(
    sent.map((m) => [m.type, m.type === 'Ack' ? m.tick : m.ack]),
    [
      ['Input', 101],
      ['Ack', 102],
      ['Ack', 103],
      ['Input', 103],
    ],
  );
  assert.equal(acker.alone, 2);
  assert.equal(acker.aloneStalled, 0);
});

test('a loop that stopped running (a background tab) still acknowledges every snapshot', () => {
  const { acker, of } = recorder();
  acker.reset(100, false, 0);
  acker.input({ seq: 1, tick: 100, buttons: 0, aim: 0 }, 0);
  // Timers throttled to once a second; snapshots keep arriving at 30 Hz.
  let tick = 100;
  for (let now = 10; now < 3000; now += TICK_MS) {
    acker.held(++tick, now);
    if (Math.floor(now / 1000) !== Math.floor((now - TICK_MS) / 1000)) {
      // The throttled timer fires: up to five catch-up ticks at once.
      for (let i = 0; i < 5; i++) acker.input({ seq: 2 + i, tick, buttons: 0, aim: 0 }, now);
    }
  }
  const acks = of('Ack').map((m) => m.tick);
  assert.ok(acks.length > 60, `${acks.length} standalone Acks in 3 s`);
  assert.equal(acker.aloneStalled, acks.length, 'every one of them because the loop had stalled');
  // The server's baseline never lags more than the stall threshold and a snapshot interval.
  assert.ok(tick - acks.at(-1) <= 1);
  for (let i = 1; i < acks.length; i++) assert.ok(acks[i] > acks[i - 1], 'increasing');
  // A snapshot soon after a tick waits for the next input, as in the foreground.
  const { acker: a2, of: of2 } = recorder();
  a2.reset(100, false, 0);
  a2.input({ seq: 1, tick: 100, buttons: 0, aim: 0 }, 1000);
  a2.held(101, 1000 + STALL_MS - 1);
  assert.equal(of2('Ack').length, 0);
  a2.held(102, 1000 + STALL_MS + 1);
  assert.deepEqual(of2('Ack'), [{ type: 'Ack', tick: 102 }]);
});

test('inputs resent after a resume carry the current ack, the rest unchanged', () => {
  const { acker, sent } = recorder();
  acker.reset(100, false, 0);
  acker.held(105, 0);
  const first = [
    { seq: 7, tick: 106, buttons: 8, aim: 1000 },
    { seq: 8, tick: 107, buttons: 24, aim: 2000 },
  ];
  for (const p of first) acker.input(p, 0);
  assert.deepEqual(sent.map((m) => m.ack), [105, 105]);
  acker.held(108, 0); // arrived just before the link died
  acker.reconnected(500, 100);
  assert.equal(acker.resend(first), 2);
  assert.deepEqual(sent.slice(2), [
    { type: 'Input', seq: 7, tick: 106, ack: 108, buttons: 8, aim: 1000 },
    { type: 'Input', seq: 8, tick: 107, ack: 108, buttons: 24, aim: 2000 },
  ]);
  // Nothing resent: the first new input carries it; a skipped tick, an Ack.
  const r = recorder();
  r.acker.reset(100, false, 0);
  r.acker.held(105, 0);
  r.acker.input({ seq: 1, tick: 106, buttons: 0, aim: 0 }, 0);
  r.acker.reconnected(500, 100);
  assert.equal(r.acker.resend([]), 0);
  r.acker.tickWithoutInput(100 + TICK_MS);
  assert.deepEqual(r.of('Ack'), [{ type: 'Ack', tick: 105 }], 'the old connection may have lost it');
  // Dropped before the first snapshot: the new Welcome's tick.
  const n = recorder();
  n.acker.reset(100, false, 0);
  n.acker.reconnected(500, 100);
  n.acker.resend([{ seq: 1, tick: 100, buttons: 0, aim: 0 }]);
  assert.equal(n.sent[0].ack, 500);
});

test('a page going away acknowledges its newest state; a closed socket acknowledges nothing', () => {
  let open = true;
  const { acker, of } = recorder({ open: () => open });
  acker.reset(100, false, 0);
  acker.held(101, 0);
  acker.input({ seq: 1, tick: 102, buttons: 0, aim: 0 }, 0);
  acker.held(102, 10);
  assert.equal(acker.acked, 101);
  acker.flush();
  assert.deepEqual(of('Ack'), [{ type: 'Ack', tick: 102 }]);
  assert.equal(acker.acked, 102, 'the state to keep for the next page');
  acker.flush();
  assert.equal(of('Ack').length, 1, 'nothing new: nothing sent');
  acker.held(103, 20);
  open = false;
  acker.flush();
  acker.input({ seq: 2, tick: 104, buttons: 0, aim: 0 }, TICK_MS);
  assert.equal(acker.acked, 102, 'what never went out was not acknowledged');
  // A reloaded page starts from the state the old one kept: it is held.
  const r = recorder();
  r.acker.reset(102, true, 0);
  assert.equal(r.acker.acked, 102);
  r.acker.tickWithoutInput(TICK_MS);
  assert.deepEqual(r.of('Ack'), [{ type: 'Ack', tick: 102 }]);
});

// ---------------------------------------------------------------------------
// The receiver against a model of the server, with acks riding in inputs

/** The world at `tick`: NPCs that turn now and then, so deltas carry values. */
function world(tick) {
  const entities = [];
  for (let id = 1; id <= 5; id++) {
    const turn = Math.floor((tick + id * 7) / 11);
    const vx = ((turn * 13 + id) % 7) - 3;
    const vy = ((turn * 5 + id) % 5) - 2;
    entities.push({ id, kind: Kind.Npc, x: 1000 * id + vx * tick, y: 500 * id + vy * tick, vx, vy, angle: turn & 0xff, hp: 100 });
  }
  return { tick, entities, players: [{ id: 1, name: 'npc', score: Math.floor(tick / 40), deaths: 0 }] };
}

/**
 * The server's encoder (shared::snapshot::diff) for a world whose entities
 * never come or go: dead-reckoning residuals and field changes only.
 * @param {any} base @param {any} cur
 */
function diff(base, cur) {
  if (!base) {
    return {
      tick: cur.tick,
      baseAge: 0,
      removed: [],
      created: cur.entities.map((e, i) => ({ ...e, gap: i === 0 ? e.id : e.id - cur.entities[i - 1].id - 1 })),
      changed: [],
      values: [],
      playersRemoved: [],
      playersUpserted: cur.players,
      playersScored: [],
    };
  }
  const age = cur.tick - base.tick;
  const changed = [];
  // The values column by column (protocol 6): POS, VEL, ANGLE.
  const pos = [], vel = [], angles = [];
  let prev = null;
  cur.entities.forEach((c, i) => {
    const b = base.entities[i];
    let mask = 0;
    // Protocol 4: a velocity change carries its turn age k (from age 2 on),
    // and the residual is against base.pos + base.vel*(age-k) + new.vel*k.
    const dvx = c.vx - b.vx;
    const dvy = c.vy - b.vy;
    const k = turnAge(c.x - (b.x + b.vx * age), c.y - (b.y + b.vy * age), dvx, dvy, age);
    const rx = c.x - (b.x + b.vx * age + dvx * k);
    const ry = c.y - (b.y + b.vy * age + dvy * k);
    if (rx || ry) (mask |= Fields.POS), pos.push(rx, ry);
    if (dvx || dvy) (mask |= Fields.VEL), vel.push(dvx, dvy, ...(age > 1 ? [k] : []));
    if (c.angle !== b.angle) (mask |= Fields.ANGLE), angles.push(((c.angle - b.angle + 128) & 0xff) - 128);
    if (!mask) return;
    changed.push(((prev === null ? c.id : c.id - prev - 1) << 4) | mask);
    prev = c.id;
  });
  const values = [...pos, ...vel, ...angles];
  // The one player keeps its name: a score change travels without it.
  const gained = cur.players[0].score - base.players[0].score;
  const scored = gained ? [{ gap: cur.players[0].id, score: gained, deaths: 0 }] : [];
  return {
    tick: cur.tick,
    baseAge: age,
    removed: [],
    created: [],
    changed,
    values,
    playersRemoved: [],
    playersUpserted: [],
    playersScored: scored,
  };
}

/**
 * The encoder's turn age (shared::snapshot::turn_age): the k in 1..=age
 * that best explains the residual r of plain dead reckoning by a velocity
 * change dv (r ≈ dv * k, least squares, rounded); 1 without a change.
 * @param {number} rx @param {number} ry @param {number} dvx @param {number} dvy @param {number} age
 */
function turnAge(rx, ry, dvx, dvy, age) {
  const k = (rx * dvx + ry * dvy) / (dvx * dvx + dvy * dvy);
  const rounded = Number.isNaN(k) ? 0 : Math.trunc(k + 0.5);
  return Math.min(Math.max(rounded, 1), Math.max(age, 1));
}

test('states the server may still encode against are kept when acks ride in inputs', () => {
  for (const latencyTicks of [0, 1, 3]) {
    for (const skipEvery of [0, 5]) {
      const receiver = new SnapshotReceiver();
      const toServer = []; // [arrives at tick, ack]
      const toClient = []; // [arrives at tick, msg]
      /** @type {any[]} */
      const sentByClient = [];
      const client = new Acker((m) => (sentByClient.push(m), true));
      client.reset(0, false, 0);
      // The server: the newest ack it read (monotonic), the ticks it sent,
      // the baseline it last used (kept when an ack names no sent tick).
      let serverAck = null;
      let lastBaseline = null;
      const sentTicks = new Map();
      let deltas = 0;
      for (let t = 1; t <= 400; t++) {
        const now = t * TICK_MS;
        // Server tick t: read the acks that arrived, publish, encode.
        while (toServer.length && toServer[0][0] <= t) {
          const ack = toServer.shift()[1];
          if (serverAck === null || ack > serverAck) serverAck = ack;
        }
        const cur = world(t);
        if (serverAck !== null && sentTicks.has(serverAck)) lastBaseline = serverAck;
        const base = lastBaseline === null ? null : sentTicks.get(lastBaseline);
        const msg = { ...diff(base, cur), inputAck: 0, checksum: checksum(cur) };
        if (msg.baseAge) deltas++;
        sentTicks.set(t, cur);
        toClient.push([t + latencyTicks, msg]);
        // Client tick: snapshots that arrived, then one input (or a skip).
        while (toClient.length && toClient[0][0] <= t) {
          const state = receiver.receive(toClient.shift()[1]);
          if (state) client.held(state.tick, now - 1);
        }
        const before = sentByClient.length;
        if (skipEvery && t % skipEvery === 0) client.tickWithoutInput(now);
        else client.input({ seq: t, tick: t, buttons: 0, aim: 0 }, now);
        for (const m of sentByClient.slice(before)) toServer.push([t + 1 + latencyTicks, m.type === 'Ack' ? m.tick : m.ack]);
        assert.ok(sentByClient.length - before <= 1, 'at most one message per tick');
      }
      const what = `latency ${latencyTicks}, skip every ${skipEvery}`;
      assert.equal(receiver.missingBaselines, 0, what);
      assert.equal(receiver.desyncs, 0, what);
      assert.equal(receiver.badDeltas, 0, what);
      assert.ok(deltas >= 390, `${what}: ${deltas} of 400 were deltas`);
      assert.equal(receiver.latest?.tick, 400 - latencyTicks, what);
    }
  }
});
