// Prediction, reconciliation, interpolation, the snapshot receiver and the
// stats windows, driven with simulated time (no browser, no server).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { decodeServer } from '../../web/js/codec.js';
import { Interpolator, lerpAngle } from '../../web/js/interpolation.js';
import { Predictor } from '../../web/js/prediction.js';
import { Kind } from '../../web/js/protocol.js';
import { Buttons, aimFromVector, movePlayer, projectileVelocity, replicatedAngle, tickRules } from '../../web/js/rules.js';
import { SnapshotReceiver, checksum } from '../../web/js/snapshot.js';
import { RateWindow } from '../../web/js/stats.js';
import { fromSerdeState, hexToBytes } from './serde-shape.mjs';

const golden = JSON.parse(readFileSync(new URL('../golden.json', import.meta.url), 'utf8'));
const rules30 = tickRules(30);

/**
 * A model of the server for one player: inputs arrive after `latency` ticks,
 * at most one is applied per tick, in seq order, and snapshots carry the
 * position and the last applied seq back after another `latency` ticks.
 */
function simulate({ latencyTicks, ticks, buttonsAt, kill = () => false }) {
  const p = new Predictor(rules30);
  const server = { x: 4000, y: 3000, hp: 100, ack: 0 };
  const toServer = []; // [arriveTick, seq, buttons]
  const toClient = []; // [arriveTick, {x, y, hp}, ack]
  const queue = [];
  p.reconcile({ x: server.x, y: server.y, hp: server.hp }, 0);
  const predictedAfterStep = [];
  for (let t = 0; t < ticks; t++) {
    // Client tick: sample, predict, send.
    const b = buttonsAt(t);
    const seq = p.step(b);
    predictedAfterStep.push([p.x, p.y]);
    toServer.push([t + latencyTicks, seq, b]);
    // Server tick: take arrived inputs, apply one.
    while (toServer.length && toServer[0][0] <= t) queue.push(toServer.shift());
    const input = queue.shift();
    if (input) {
      if (server.hp > 0) [server.x, server.y] = movePlayer(server.x, server.y, input[2], rules30);
      server.ack = input[1];
    }
    if (kill(t)) {
      server.x += 40; // knocked back by something the client cannot predict
    }
    toClient.push([t + latencyTicks, { x: server.x, y: server.y, hp: server.hp }, server.ack]);
    // Client receives snapshots.
    while (toClient.length && toClient[0][0] <= t) {
      const [, own, ack] = toClient.shift();
      p.reconcile(own, ack);
    }
  }
  return { p, server, predictedAfterStep };
}

test('prediction moves at once and is never corrected at 100 ms round trip', () => {
  // 100 ms round trip at 30 Hz: 1.5 ticks each way; use 2 (worse).
  const held = (t) => (t < 20 ? Buttons.RIGHT : t < 40 ? Buttons.DOWN | Buttons.LEFT : t < 60 ? 0 : Buttons.UP);
  const { p, server, predictedAfterStep } = simulate({ latencyTicks: 2, ticks: 90, buttonsAt: held });
  // The very first input already moved the own player a full step.
  assert.deepEqual(predictedAfterStep[0], [4000 + rules30.playerStep, 3000]);
  assert.equal(p.corrections, 0);
  // Once the server has caught up with every input, both agree exactly.
  let [x, y] = [server.x, server.y];
  for (const q of p.pending) if (q.seq > server.ack) [x, y] = movePlayer(x, y, q.buttons, rules30);
  assert.deepEqual([p.x, p.y], [x, y]);
  assert.ok(p.pending.length <= 6, `${p.pending.length} inputs in flight`);
});

test('a push the client could not predict is corrected smoothly', () => {
  const { p } = simulate({
    latencyTicks: 2,
    ticks: 30,
    buttonsAt: () => Buttons.DOWN,
    kill: (t) => t === 10,
  });
  assert.equal(p.corrections, 1);
  assert.equal(p.lastCorrection, 40);
  // The drawn position still shows the error, then blends it out.
  const drawn = p.renderPosition(1);
  assert.ok(drawn && Math.abs(drawn.x - p.x) > 0 && Math.abs(drawn.x - p.x) <= 40);
  p.decay(1000);
  const settled = p.renderPosition(1);
  assert.deepEqual(settled, { x: p.x, y: p.y });
});

test('the dead do not move, and a respawn is a snap, not a correction', () => {
  const p = new Predictor(rules30);
  p.reconcile({ x: 1000, y: 1000, hp: 0 }, 0);
  p.step(Buttons.RIGHT);
  assert.deepEqual([p.x, p.y], [1000, 1000]);
  p.reconcile({ x: 1000, y: 1000, hp: 0 }, 1);
  // Respawned far away; the next input is pending.
  p.step(Buttons.RIGHT);
  p.reconcile({ x: 8000, y: 5000, hp: 100 }, 1);
  assert.deepEqual([p.x, p.y], [8000 + rules30.playerStep, 5000]);
  assert.equal(p.corrections, 0);
  assert.deepEqual(p.renderPosition(1), { x: 8000 + rules30.playerStep, y: 5000 });
});

test('acknowledged inputs are dropped and the rest replayed in order', () => {
  const p = new Predictor(rules30);
  p.reconcile({ x: 5000, y: 5000, hp: 100 }, 0);
  const seqs = [Buttons.UP, Buttons.UP, Buttons.LEFT, Buttons.LEFT | Buttons.DOWN].map((b) => p.step(b));
  assert.deepEqual(seqs, [1, 2, 3, 4]);
  p.reconcile({ x: 5000, y: 5000 - 2 * rules30.playerStep, hp: 100 }, 2);
  assert.deepEqual(p.pending.map((q) => q.seq), [3, 4]);
  assert.deepEqual(
    [p.x, p.y],
    [5000 - rules30.playerStep - rules30.playerStepDiag, 5000 - 2 * rules30.playerStep + rules30.playerStepDiag],
  );
  assert.equal(p.corrections, 0);
});

test('the own player is drawn between its last two predicted steps', () => {
  const p = new Predictor(rules30);
  p.reconcile({ x: 100, y: 100, hp: 100 }, 0);
  p.step(Buttons.RIGHT);
  assert.deepEqual(p.renderPosition(0), { x: 100, y: 100 });
  assert.deepEqual(p.renderPosition(0.5), { x: 100 + rules30.playerStep / 2, y: 100 });
  assert.deepEqual(p.renderPosition(1), { x: 100 + rules30.playerStep, y: 100 });
});

/** A state with one NPC at x = 10 * tick, moving right. */
function movingState(tick, x = 10 * tick) {
  return { tick, entities: [{ id: 7, kind: Kind.Npc, x, y: 0, vx: 10, vy: 0, angle: 0, hp: 100 }], players: [] };
}

test('interpolation draws others ~100 ms behind, smoothly, despite jitter', () => {
  const tickMs = 1000 / 30;
  const interp = new Interpolator(30, 30, 100);
  let jitterSeed = 1;
  const jitter = () => {
    jitterSeed = (jitterSeed * 1103515245 + 12345) % 2147483648;
    return (jitterSeed / 2147483648) * 20; // 0..20 ms late
  };
  let next = 0;
  let lastX = -Infinity;
  const xs = [];
  for (let now = 0; now < 3000; now += 1000 / 60) {
    while (next * tickMs + 40 + jitter() <= now) interp.push(movingState(next), now), next++;
    const { entities } = interp.sample(now);
    if (entities.length === 0) continue;
    const x = entities[0].x;
    assert.ok(x >= lastX, `never backwards: ${x} after ${lastX}`);
    lastX = x;
    if (now > 1000) xs.push([now, x]);
  }
  // Steady speed: 10 quanta per tick = 0.3 per ms; frame steps stay close to it.
  for (let i = 1; i < xs.length; i++) {
    const speed = (xs[i][1] - xs[i - 1][1]) / (xs[i][0] - xs[i - 1][0]);
    assert.ok(speed > 0.15 && speed < 0.45, `speed ${speed} at ${xs[i][0]}`);
  }
  // Lag behind the newest state: about the delay (100 ms = 3 ticks = 30 quanta).
  const [now, x] = xs[xs.length - 1];
  const newestX = 10 * (next - 1);
  assert.ok(newestX - x > 15 && newestX - x < 60, `lag ${newestX - x} quanta at ${now}`);
  assert.equal(interp.underruns, 0);
});

test('interpolation snaps across teleports and extrapolates only briefly', () => {
  const interp = new Interpolator(30, 30, 100);
  interp.push(movingState(0, 0), 0);
  interp.push(movingState(1, 5000), 33);
  // Between the two: no sweep across the map.
  const mid = interp.sample(33 + 100 - 16).entities[0].x;
  assert.ok(mid === 0 || mid === 5000, `teleport drawn at ${mid}`);
  // Long after the newest state: extrapolated a few ticks, then frozen.
  const late = interp.sample(5000).entities[0].x;
  assert.ok(late > 5000 && late <= 5000 + 6 * 10, `extrapolated to ${late}`);
  assert.ok(interp.underruns > 0);
});

/**
 * Feeds `arrivals` ([arrival ms, tick], in order) of `movingState`s to
 * `interp`, and samples a frame every 1/60 s until `untilMs`: `frame(now, x)`
 * gets the moving entity's x (undefined before the first state).
 * @param {Interpolator} interp @param {number[][]} arrivals @param {number} untilMs
 * @param {(now: number, x: number|undefined) => void} frame
 */
function playFrames(interp, arrivals, untilMs, frame) {
  let next = 0;
  for (let now = 0; now < untilMs; now += 1000 / 60) {
    while (next < arrivals.length && arrivals[next][0] <= now) {
      const [at, tick] = arrivals[next++];
      interp.push(movingState(tick), at);
    }
    frame(now, interp.sample(now).entities[0]?.x);
  }
}

test('after a stall, others move again as soon as the data is back, with the usual delay', () => {
  // 30 Hz, 20 ms one way; the snapshot of tick 45 arrives 400 ms late and
  // the ones behind it queue up behind it (TCP), then come in one burst.
  const tickMs = 1000 / 30;
  const interp = new Interpolator(30, 30, 100);
  const arrivals = [];
  let prev = 0;
  for (let tick = 1; tick < 150; tick++) {
    prev = Math.max(prev, tick * tickMs + 20 + (tick === 45 ? 400 : 0));
    arrivals.push([prev, tick]);
  }
  const back = arrivals.find(([, tick]) => tick === 45)[0];
  let lastX = null;
  const frozenAfterBack = [];
  playFrames(interp, arrivals, 4000, (now, x) => {
    if (now > back + 50 && x === lastX) frozenAfterBack.push(Math.round(now));
    lastX = x;
  });
  assert.deepEqual(frozenAfterBack, [], 'frames without movement once the data was back');
  assert.ok(interp.delayTicks * tickMs < 110, `delay ${interp.delayTicks * tickMs} ms after the stall`);
});

test('after the server\'s clock falls behind, others move again soon, with the usual delay', () => {
  // A room stalls for 700 ms, catches up 5 ticks at once and goes on from
  // there: its ticks now come 17 ticks later than before, for good. The
  // clock must follow at once, not count that as lateness (a delay of a
  // second) nor wait a second of samples to see it.
  const tickMs = 1000 / 30;
  const interp = new Interpolator(30, 30, 100);
  const stallEnd = 1500 + 700;
  const arrivals = [];
  for (let tick = 1, caught = 0, resumedAt = 0; arrivals.length < 200; tick++) {
    let at = tick * tickMs;
    if (at >= 1500 && caught < 5) {
      at = stallEnd;
      caught++;
      resumedAt = tick;
    } else if (at >= 1500) {
      at = stallEnd + (tick - resumedAt) * tickMs;
    }
    arrivals.push([at + 20, tick]);
  }
  const back = stallEnd + 20;
  let lastX = null;
  let frozenMs = 0;
  let maxDelayMs = 0;
  playFrames(interp, arrivals, 6000, (now, x) => {
    if (now > back) {
      if (x === lastX) frozenMs += 1000 / 60;
      maxDelayMs = Math.max(maxDelayMs, interp.delayTicks * tickMs);
    }
    lastX = x;
  });
  // The clock goes back 17 ticks (567 ms) and the picture cannot: it waits
  // for it, and for no more than a few arrivals to see the shift.
  assert.ok(frozenMs < 600, `frozen ${frozenMs} ms after the data was back`);
  assert.ok(maxDelayMs < 110, `the delay rose to ${maxDelayMs} ms`);
});

test('others never stop under heavy jitter', () => {
  const tickMs = 1000 / 30;
  const interp = new Interpolator(30, 30, 100);
  let seed = 7;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  // Up to 150 ms late, in order (TCP).
  const arrivals = [];
  for (let tick = 1, prev = 0; tick * tickMs < 12000; tick++) {
    prev = Math.max(prev, tick * tickMs + 20 + random() * 150);
    arrivals.push([prev, tick]);
  }
  let lastX = null;
  const frozen = [];
  let underrunsBefore = 0;
  playFrames(interp, arrivals, 11000, (now, x) => {
    if (now < 3000) underrunsBefore = interp.underruns;
    else if (x === lastX) frozen.push(Math.round(now));
    lastX = x;
  });
  assert.deepEqual(frozen, [], 'frames without movement after the first 3 s');
  assert.equal(interp.underruns - underrunsBefore, 0, 'underruns after the first 3 s');
});

test('a stall is counted once, however many frames it lasts', () => {
  // 30 Hz, 20 ms one way; nothing between 2 s and 3 s (a stalled link),
  // then the ticks of that second and on arrive again.
  const tickMs = 1000 / 30;
  const interp = new Interpolator(30, 30, 100);
  const arrivals = [];
  for (let tick = 1; tick * tickMs < 5000; tick++) {
    const at = tick * tickMs + 20;
    if (at < 2000 || at >= 3000) arrivals.push([at, tick]);
  }
  playFrames(interp, arrivals, 5000, () => {});
  // About 55 frames of 60 Hz ran past the newest snapshot: one stall.
  assert.equal(interp.underruns, 1);
});

test('interpolation glides at low snapshot rates and snaps on respawns', () => {
  // 3 snapshots a second at 30 Hz: a shot moves 960 quanta between two.
  const interp = new Interpolator(30, 3, 100);
  const shot = (/** @type {number} */ tick, /** @type {number} */ x, hp = 1) => ({
    tick,
    entities: [{ id: 9, kind: Kind.Projectile, x, y: 0, vx: 96, vy: 0, angle: 0, hp }],
    players: [],
  });
  interp.push(shot(0, 0), 0);
  interp.push(shot(10, 960), 333);
  const rt = (/** @type {number} */ tick) => (tick - interp.offset) * interp.tickMs + interp.delayTicks * interp.tickMs;
  const mid = interp.sample(rt(5)).entities[0].x;
  assert.ok(mid > 300 && mid < 700, `a shot between two snapshots drawn at ${mid}`);
  // Dead, then alive a short way off: a snap, not a slide.
  const again = new Interpolator(30, 30, 100);
  const npc = (/** @type {number} */ tick, /** @type {number} */ x, /** @type {number} */ hp) => ({
    tick,
    entities: [{ id: 3, kind: Kind.Npc, x, y: 0, vx: 0, vy: 0, angle: 0, hp }],
    players: [],
  });
  again.push(npc(0, 0, 0), 0);
  again.push(npc(1, 300, 100), 33);
  const at = again.sample(33 + 100 - 16).entities[0].x;
  assert.ok(at === 0 || at === 300, `respawn drawn at ${at}`);
});

test('interpolated angles take the short way round', () => {
  assert.equal(lerpAngle(250, 6, 0.5), 0);
  assert.equal(lerpAngle(6, 250, 0.5), 0);
  assert.equal(lerpAngle(10, 20, 0.5), 15);
});

test('the receiver applies deltas against its ring and counts desyncs', () => {
  const full = golden.snapshots.find((v) => v.name === 'full snapshot');
  const delta = golden.snapshots.find((v) => v.name === 'delta: every change kind and field mask');
  const msgFull = decodeServer(hexToBytes(full.hex)).snapshot;
  const msgDelta = decodeServer(hexToBytes(delta.hex)).snapshot;
  const r = new SnapshotReceiver();

  // A delta before its baseline: unusable, nothing to ack.
  assert.equal(r.receive(msgDelta), null);
  assert.equal(r.missingBaselines, 1);

  const s0 = r.receive(msgFull);
  assert.ok(s0);
  assert.deepEqual(s0.entities, fromSerdeState(full.state).entities);
  const s1 = r.receive(msgDelta);
  assert.ok(s1);
  assert.equal(checksum(s1), delta.checksum);
  assert.equal(r.latest, s1);

  // A stale snapshot is ignored; a checksum mismatch is a counted desync.
  assert.equal(r.receive(msgFull), null);
  const r2 = new SnapshotReceiver();
  assert.equal(r2.receive({ ...msgFull, checksum: (msgFull.checksum + 1) >>> 0 }), null);
  assert.equal(r2.desyncs, 1);
  assert.equal(r2.latest, null);
});

test('rate windows count the last second', () => {
  const w = new RateWindow(1000);
  for (let t = 0; t < 2000; t += 1000 / 30) w.add(t, 100);
  assert.ok(Math.abs(w.rate(2000) - 3000) <= 100, `${w.rate(2000)}`);
  assert.equal(w.rate(5000), 0);
});

test('aim angles map to the replicated angle and the projectile direction', () => {
  assert.equal(aimFromVector(1, 0), 0);
  assert.equal(aimFromVector(0, 1), 16384); // clockwise on screen: +y is down
  assert.equal(aimFromVector(-1, 0), 32768);
  assert.equal(aimFromVector(0, -1), 49152);
  assert.equal(replicatedAngle(16384), 64);
  assert.deepEqual(projectileVelocity(0, rules30), [96, 0]);
  assert.deepEqual(projectileVelocity(16384, rules30), [0, 96]);
  assert.deepEqual(projectileVelocity(32768, rules30), [-96, 0]);
});

test('a hidden server projectile is forgotten after it ends, even if its id comes back', async () => {
  const { Game } = await import('../../web/js/game.js');
  const projectile = (/** @type {number} */ id) => ({ id, kind: Kind.Projectile, x: 0, y: 0, vx: 0, vy: 0, angle: 0, hp: 1 });
  // The state matchShots reads: one own shot already paired with server
  // projectile 5, drawn by the client instead of the server's copy.
  const game = {
    shots: [],
    hidden: new Map([[5, Infinity]]),
    knownProjectiles: new Set([5]),
    stats: { pingMs: 50 },
    effects: { impact() {} },
    // A 100 ms interpolation delay (the default), or 1 s (1 snapshot a second).
    interp: { delayTicks: 3, tickMs: 100 / 3 },
  };
  const match = (/** @type {number[]} */ ids, /** @type {number} */ now) =>
    Game.prototype.matchShots.call(game, { tick: 0, entities: ids.map(projectile), players: [] }, now);
  match([5], 1000);
  assert.equal(game.hidden.get(5), Infinity, 'hidden while the server has it');
  match([], 1100);
  assert.equal(game.hidden.get(5), 1700, 'kept through the interpolation delay once gone');
  match([], 1500);
  assert.ok(game.hidden.has(5));
  // A long reconnect: the next snapshot comes 5 s later, and the server has
  // given id 5 to somebody else's projectile, which must be drawn.
  match([5], 6500);
  assert.ok(!game.hidden.has(5), 'the reused id is not hidden');
  // With a longer delay the copy stays hidden for as much longer.
  game.interp = { delayTicks: 30, tickMs: 100 / 3 };
  game.hidden.set(6, Infinity);
  match([], 7000);
  assert.equal(game.hidden.get(6), 8500, 'kept through a one-second delay');
});

test('a click on a tick the pacer holds back fires on the next tick that sends', async () => {
  const { Game } = await import('../../web/js/game.js');
  let hold = true;
  /** @type {{buttons: number}[]} */
  const sent = [];
  const game = {
    input: {
      mouse: null,
      heldKeys: () => 0,
      clicks: 1, // one short click, already released
      sampleButtons() {
        const b = this.clicks > 0 ? Buttons.FIRE : 0;
        this.clicks = 0;
        return b;
      },
    },
    ownRendered: null,
    updateAim: Game.prototype.updateAim,
    receiver: { latest: null },
    welcome: { tick: 100 },
    stepsSinceSnapshot: 0,
    pacer: { skip: () => hold },
    predictor: { nextSeq: 1, alive: true, x: 4000, y: 3000, step() { return this.nextSeq++; }, idle() {} },
    inputAck: 0,
    acks: { input: (/** @type {{buttons: number}} */ i) => sent.push(i), tickWithoutInput() {} },
    shots: [],
    effects: { impact() {}, muzzle() {} },
    cooldown: 0,
    rules: rules30,
    aim: 0,
  };
  Game.prototype.step.call(game, 0);
  assert.equal(sent.length, 0, 'a held-back tick sends nothing');
  hold = false;
  Game.prototype.step.call(game, 33);
  assert.equal(sent.length, 1);
  assert.equal(sent[0].buttons & Buttons.FIRE, Buttons.FIRE, 'the click is sent with the next input');
  assert.equal(game.shots.length, 1, 'and its shot is predicted');
});

test('an unusable snapshot still tells the client which inputs the server applied', async () => {
  const { Game } = await import('../../web/js/game.js');
  const game = {
    stats: { snapshotIn() {} },
    receiver: { receive: () => null }, // e.g. its baseline is not held
    inputAck: 10,
    predictor: { nextSeq: 50 },
    pacer: { unacked: -1, onSnapshot(/** @type {number} */ n) { this.unacked = n; } },
  };
  Game.prototype.onSnapshot.call(game, { inputAck: 40 }, 100);
  assert.equal(game.inputAck, 40);
  assert.equal(game.pacer.unacked, 9, 'the pacer counts inputs not yet applied from the header');
});

test('a reloaded page whose kept state is not the server\'s baseline asks for a full snapshot at once', async () => {
  const { Game } = await import('../../web/js/game.js');
  const { Acker } = await import('../../web/js/acks.js');
  /** @type {any[]} */
  const sent = [];
  const acks = new Acker((msg) => sent.push(msg) > 0);
  acks.reset(480, true, 0); // the kept state, tick 480, as seeded by onWelcome
  let reset = false;
  const game = {
    keptOnly: true,
    welcome: { tick: 500 },
    stats: { snapshotIn() {} },
    receiver: { receive: () => null, reset: () => (reset = true), desyncs: 0, badDeltas: 0 },
    inputAck: 0,
    predictor: { nextSeq: 1 },
    pacer: { onSnapshot() {} },
    acks,
  };
  // A delta against tick 470, which the page does not hold.
  Game.prototype.onSnapshot.call(game, { tick: 510, baseAge: 40, inputAck: 0 }, 100);
  assert.ok(reset, 'the kept state is dropped');
  assert.equal(game.keptOnly, false);
  assert.deepEqual(sent, [{ type: 'Ack', tick: 500 }], 'Welcome.tick at once: holding nothing');
  acks.tickWithoutInput(110);
  assert.equal(sent.length, 1, 'and not again');
  assert.equal(acks.acked, null, 'nothing held to keep at the next reload');
  // Once it holds nothing, an unusable snapshot changes nothing more.
  reset = false;
  Game.prototype.onSnapshot.call(game, { tick: 511, baseAge: 41, inputAck: 0 }, 120);
  assert.equal(reset, false);
});

test('a snapshot that does not check out against a held state asks for a full one at once', async () => {
  const { Game } = await import('../../web/js/game.js');
  const { Acker } = await import('../../web/js/acks.js');
  for (const failure of ['desyncs', 'badDeltas']) {
    /** @type {any[]} */
    const sent = [];
    const acks = new Acker((msg) => sent.push(msg) > 0);
    acks.reset(480, true, 0);
    acks.held(490, 0);
    let reset = false;
    const receiver = {
      desyncs: 0,
      badDeltas: 0,
      /** The delta against 490, held, rebuilds a state whose checksum is wrong. */
      receive() {
        this[failure]++;
        return null;
      },
      reset: () => (reset = true),
    };
    const game = {
      keptOnly: false,
      welcome: { tick: 400 },
      stats: { snapshotIn() {} },
      receiver,
      inputAck: 0,
      predictor: { nextSeq: 1 },
      pacer: { onSnapshot() {} },
      acks,
    };
    sent.length = 0;
    Game.prototype.onSnapshot.call(game, { tick: 495, baseAge: 5, inputAck: 0 }, 100);
    // The deltas to come would be against 490 until it leaves the
    // server's history (about 2 s of nothing drawn): holding nothing
    // instead gets a full snapshot.
    assert.ok(reset, `${failure}: the held states are dropped`);
    assert.deepEqual(sent, [{ type: 'Ack', tick: 400 }], `${failure}: Welcome.tick acknowledged at once`);
  }
});

test('full snapshots that keep failing their checksum stop the page instead of looping', async () => {
  const { Game } = await import('../../web/js/game.js');
  const { Acker } = await import('../../web/js/acks.js');
  /** @type {string[]} */
  const abandoned = [];
  let good = false;
  /** @type {any[]} the scoreboard, unchanged */
  const players = [];
  const receiver = {
    desyncs: 0,
    badDeltas: 0,
    /** @param {any} msg */
    receive(msg) {
      if (good) return { tick: msg.tick, entities: [], players };
      this.desyncs++;
      return null;
    },
    reset() {},
  };
  const game = {
    keptOnly: false,
    fullFailures: 0,
    welcome: { tick: 400, playerId: 1 },
    stats: { snapshotIn() {} },
    receiver,
    inputAck: 0,
    predictor: { nextSeq: 1 },
    pacer: { onSnapshot() {} },
    acks: new Acker(() => true),
    conn: { abandon: (/** @type {string} */ m) => abandoned.push(m) },
    interp: { push() {} },
    applyOwn() {},
    matchShots() {},
    players,
  };
  const full = (/** @type {number} */ tick) => ({ tick, baseAge: 0, inputAck: 0 });
  // A failed delta, then two failed full snapshots: asking again is right.
  Game.prototype.onSnapshot.call(game, { tick: 401, baseAge: 1, inputAck: 0 }, 100);
  Game.prototype.onSnapshot.call(game, full(430), 100);
  Game.prototype.onSnapshot.call(game, full(460), 100);
  assert.deepEqual(abandoned, []);
  // One that checks out starts the count again.
  good = true;
  Game.prototype.onSnapshot.call(game, full(490), 100);
  good = false;
  Game.prototype.onSnapshot.call(game, full(520), 100);
  Game.prototype.onSnapshot.call(game, full(550), 100);
  assert.deepEqual(abandoned, []);
  Game.prototype.onSnapshot.call(game, full(580), 100);
  assert.equal(abandoned.length, 1, 'the third full failure in a row gives up');
  assert.match(abandoned[0], /does not check out on this page/);
});

test('a resume counts the inputs the server applied while the page was away', async () => {
  const { Game } = await import('../../web/js/game.js');
  /** @param {number} inputAck @param {number} inputAckTick */
  const resumeWith = (inputAck, inputAckTick) => {
    /** @type {{seq: number}[]} */
    let resent = [];
    const game = {
      resumes: 0,
      resent: 0,
      resendDropped: 0,
      inputAck,
      inputAckTick,
      // Inputs 11 to 30 unacknowledged; the server received up to 14.
      predictor: { pending: Array.from({ length: 20 }, (_, i) => ({ seq: 11 + i, tick: 0, buttons: 0, aim: 0 })), resume() {} },
      acks: { reconnected() {}, resend: (/** @type {{seq: number}[]} */ r) => (resent = r) },
      stats: {},
    };
    Game.prototype.resume.call(game, { inputSeq: 14, tick: 110 });
    return resent.map((p) => p.seq);
  };
  // The last snapshot (tick 100) said 10 applied; ten ticks later the
  // server has applied 11 to 14 as well: its buffer is empty, all 8 fit.
  assert.deepEqual(resumeWith(10, 100), [15, 16, 17, 18, 19, 20, 21, 22]);
  // Said so just now: 11 to 14 wait in the buffer, room for 4.
  assert.deepEqual(resumeWith(10, 110), [15, 16, 17, 18]);
});

test('without a pointer, a keyboard player aims where they move and keeps it', async () => {
  const { Game } = await import('../../web/js/game.js');
  let held = 0;
  const game = { input: { mouse: null, heldKeys: () => held }, ownRendered: null, aim: 0 };
  const aimFor = (/** @type {number} */ buttons) => {
    held = buttons;
    Game.prototype.updateAim.call(game);
    return game.aim;
  };
  assert.equal(aimFor(Buttons.RIGHT), aimFromVector(1, 0));
  assert.equal(aimFor(Buttons.UP | Buttons.LEFT), aimFromVector(-1, -1));
  assert.equal(aimFor(0), aimFromVector(-1, -1), 'standing still keeps the aim');
  assert.notEqual(aimFromVector(-1, -1), aimFromVector(1, 0));
  // Once the pointer has moved, it aims (from the player's drawn position).
  Object.assign(game, {
    input: { mouse: { x: 0, y: 0 }, heldKeys: () => Buttons.RIGHT },
    renderer: { toWorld: () => [1000, 5000] },
    ownRendered: { x: 1000, y: 1000 },
  });
  Game.prototype.updateAim.call(game);
  assert.equal(game.aim, aimFromVector(0, 4000));
});

test('effects come from what changed between frames, not across a gap', async () => {
  const { Game } = await import('../../web/js/game.js');
  /** @type {string[]} */
  const made = [];
  const game = {
    lastRendered: new Map(),
    lastRenderedAt: null,
    effects: { muzzle: () => made.push('muzzle'), impact: () => made.push('impact'), hit() {}, death() {}, spawn() {} },
  };
  const shot = (/** @type {number} */ id) => ({ id, kind: Kind.Projectile, x: 0, y: 0, vx: 1, vy: 0, hp: 1, angle: 0 });
  const frame = (/** @type {any[]} */ entities, /** @type {number} */ now, pictured = true) =>
    Game.prototype.spawnEffects.call(game, entities, now, pictured);
  // A frame with no snapshot yet, then the first picture: no news.
  frame([], 0, false);
  frame([shot(1), shot(2)], 16);
  assert.deepEqual(made, [], 'shots already in flight do not flash');
  frame([shot(1), shot(2), shot(3)], 33);
  assert.deepEqual(made, ['muzzle'], 'a shot fired between two frames does');
  // A tab in the background for a second: what changed meanwhile is not news.
  frame([shot(4), shot(5)], 1033);
  assert.deepEqual(made, ['muzzle']);
  frame([shot(5)], 1050);
  assert.deepEqual(made, ['muzzle', 'impact'], 'a shot gone between two frames hits');
  // Alone in an empty arena, the first shot to appear still flashes.
  frame([], 1066);
  frame([shot(6)], 1083);
  assert.deepEqual(made, ['muzzle', 'impact', 'impact', 'muzzle']);
});
