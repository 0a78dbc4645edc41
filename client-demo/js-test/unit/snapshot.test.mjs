// Protocol 4's two delta changes, on hand-built messages: the turn age k in
// a velocity change, and score changes that travel without names. The golden
// vectors pin the common cases to Rust; these pin the edges (every turn age,
// wrapping, k absent at age 1, the order of the scoreboard's errors), the
// behaviour of shared::snapshot::{apply_change, merge_players}.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { decodeServer, encodeServer } from '../../web/js/codec.js';
import { Kind } from '../../web/js/protocol.js';
import { DeltaError, Fields, MAX_NET_ID, SnapshotReceiver, applyDelta, checksum } from '../../web/js/snapshot.js';
import { bytesToHex, emptySnapshot } from './serde-shape.mjs';

/** @param {Partial<import('../../web/js/snapshot.js').NetEntity>} e */
const npc = (e) => ({ id: 3, kind: Kind.Npc, x: 0, y: 0, vx: 0, vy: 0, angle: 0, hp: 100, ...e });

/** Two's complement i32 of a BigInt, as Rust's wrapping arithmetic gives. */
const i32 = (/** @type {bigint} */ v) => Number(BigInt.asIntN(32, v));

/**
 * What a message is after the wire: encoded, decoded again.
 * @param {any} snapshot
 */
function wire(snapshot) {
  const msg = decodeServer(encodeServer({ type: 'Snapshot', snapshot }));
  assert.equal(msg.type, 'Snapshot');
  return /** @type {any} */ (msg).snapshot;
}

// ---------------------------------------------------------------------------
// The turn age

test('a turn at any age rebuilds the exact position from the velocity change and its turn age', () => {
  const b = npc({ x: 5000, y: -700, vx: 19, vy: -23, angle: 7 });
  const base = { tick: 100, entities: [b], players: [] };
  for (let age = 2; age <= 30; age++) {
    for (const [nvx, nvy] of [
      [-19, 0], // turned
      [0, 0], // stopped
      [96, 96], // sped up
    ]) {
      for (let k = 1; k <= age; k++) {
        // Flew `age - k` ticks with the old velocity, `k` with the new.
        const x = b.x + b.vx * (age - k) + nvx * k;
        const y = b.y + b.vy * (age - k) + nvy * k;
        const msg = wire(
          emptySnapshot({
            tick: 100 + age,
            baseAge: age,
            changed: [(b.id << 4) | Fields.VEL],
            values: [nvx - b.vx, nvy - b.vy, k],
          }),
        );
        const what = `age ${age}, k ${k}, v (${nvx}, ${nvy})`;
        const [e] = applyDelta(base, msg).entities;
        assert.deepEqual(e, { ...b, x, y, vx: nvx, vy: nvy }, what);
      }
    }
  }
});

test('the turn age comes after the velocity change and before the angle and hp', () => {
  const b = npc({ x: 1000, y: 1000, vx: 10, vy: 0, angle: 250, hp: 100 });
  const base = { tick: 50, entities: [b], players: [] };
  const msg = emptySnapshot({
    tick: 54,
    baseAge: 4,
    changed: [(b.id << 4) | Fields.POS | Fields.VEL | Fields.ANGLE | Fields.HP],
    // POS (rx, ry), VEL (dvx, dvy, k), ANGLE, HP
    values: [3, -2, -10, 5, 3, 10, -25],
  });
  const [e] = applyDelta(base, wire(msg)).entities;
  // 4 ticks at (10, 0), +(3, -2), then the last 3 ticks at (0, 5) instead.
  assert.deepEqual(e, { ...b, x: 1000 + 40 + 3 - 30, y: 1000 - 2 + 15, vx: 0, vy: 5, angle: 4, hp: 75 });
  // Without POS (mask 14, VEL|ANGLE|HP: the golden vectors lack it since
  // protocol 4): the turn age is the group's third value all the same.
  const noPos = emptySnapshot({
    tick: 54,
    baseAge: 4,
    changed: [(b.id << 4) | Fields.VEL | Fields.ANGLE | Fields.HP],
    values: [-20, 0, 1, 10, -25],
  });
  const [f] = applyDelta(base, wire(noPos)).entities;
  // 3 ticks at (10, 0), then 1 at (-10, 0): the turn cost no residual.
  assert.deepEqual(f, { ...b, x: 1000 + 30 - 10, vx: -10, angle: 4, hp: 75 });
  assert.throws(
    () => applyDelta(base, { ...noPos, values: [-20, 0, 10, -25] }),
    (err) => err instanceof DeltaError && err.kind === 'ValueCount',
    'the turn age left out',
  );
});

test('any turn age is valid and the position wraps like Rust', () => {
  const b = npc({ x: 2147483000, y: -2147483000, vx: 1 << 20, vy: -(1 << 20) });
  const base = { tick: 7, entities: [b], players: [] };
  const age = 9;
  for (const k of [0, -1, 1, age + 1, 2147483647, -2147483648, 123456789]) {
    for (const [dvx, dvy] of [
      [-2147483648, 2147483647],
      [300, -1],
      [1, 0],
    ]) {
      const msg = emptySnapshot({ tick: 7 + age, baseAge: age, changed: [(b.id << 4) | Fields.VEL], values: [dvx, dvy, k] });
      const [e] = applyDelta(base, wire(msg)).entities;
      const x = i32(BigInt(b.x) + BigInt(b.vx) * BigInt(age) + BigInt(dvx) * BigInt(k));
      const y = i32(BigInt(b.y) + BigInt(b.vy) * BigInt(age) + BigInt(dvy) * BigInt(k));
      const what = `k ${k}, dv (${dvx}, ${dvy})`;
      assert.equal(e.x, x, what);
      assert.equal(e.y, y, what);
      assert.equal(e.vx, i32(BigInt(b.vx) + BigInt(dvx)), what);
      assert.equal(e.vy, i32(BigInt(b.vy) + BigInt(dvy)), what);
    }
  }
});

test('at age 1 the turn age is not sent: it is 1', () => {
  const b = npc({ x: 100, y: 100, vx: 19, vy: -19 });
  const base = { tick: 10, entities: [b], players: [] };
  const vel = (/** @type {number[]} */ values, baseAge = 1) =>
    emptySnapshot({ tick: 10 + baseAge, baseAge, changed: [(b.id << 4) | Fields.VEL], values });
  // The new velocity flew the one tick: no residual for a client that
  // applies its input before it moves.
  const [e] = applyDelta(base, wire(vel([-38, 19]))).entities;
  assert.deepEqual(e, { ...b, x: 100 - 19, y: 100, vx: -19, vy: 0 });
  // A third value is not this head's: one value too many.
  assert.throws(() => applyDelta(base, vel([-38, 19, 1])), (err) => err instanceof DeltaError && err.kind === 'ValueCount');
  // From age 2 on, two values are one too few.
  assert.throws(() => applyDelta(base, vel([-38, 19], 2)), (err) => err instanceof DeltaError && err.kind === 'ValueCount');
  // The age is compared as the unsigned base_age: a baseline 2^32 - 1 ticks
  // old (age -1 as an i32) has a turn age.
  const wrapped = { ...base, tick: 11 };
  const old = vel([-38, 19, 2], 0xffffffff);
  assert.equal(old.tick, 10 + 0xffffffff);
  old.tick = 10; // tick 10 against the state of tick 11, 2^32 - 1 ticks earlier
  const [w] = applyDelta(wrapped, wire(old)).entities;
  assert.deepEqual(w, { ...b, x: 100 - 19 - 76, y: 100 + 19 + 38, vx: -19, vy: 0 });
  assert.throws(
    () => applyDelta(wrapped, { ...old, values: [-38, 19] }),
    (err) => err instanceof DeltaError && err.kind === 'ValueCount',
  );
});

// ---------------------------------------------------------------------------
// Score changes

const ana = { id: 1, name: 'ana', score: 0, deaths: 5 };
const bo = { id: 4, name: 'Zoë 🦊', score: 0xffffffff, deaths: 0 };
const cy = { id: 9, name: 'cy', score: 3, deaths: 3 };
const board = { tick: 20, entities: [], players: [ana, bo, cy] };

test('score changes apply to the baseline entries, names kept, wrapping as u32', () => {
  const msg = emptySnapshot({
    tick: 21,
    playersScored: [
      { gap: 1, score: -1, deaths: 2 }, // id 1: 0 - 1 wraps to u32::MAX
      { gap: 2, score: 1, deaths: -1 }, // id 4: u32::MAX + 1 wraps to 0, 0 - 1 to u32::MAX
    ],
  });
  const copy = structuredClone(board);
  const state = applyDelta(board, wire(msg));
  assert.deepEqual(state.players, [
    { id: 1, name: 'ana', score: 0xffffffff, deaths: 7 },
    { id: 4, name: 'Zoë 🦊', score: 0, deaths: 0xffffffff },
    cy,
  ]);
  assert.equal(state.players[2], cy, 'an unchanged entry is the baseline\'s');
  assert.deepEqual(board, copy, 'the baseline is not mutated');
  // The extremes of an i32 change.
  const extreme = emptySnapshot({
    tick: 21,
    playersScored: [{ gap: 9, score: -2147483648, deaths: 2147483647 }],
  });
  assert.deepEqual(applyDelta(board, wire(extreme)).players[2], {
    id: 9,
    name: 'cy',
    score: (3 + 2 ** 32 - 2 ** 31) % 2 ** 32,
    deaths: 3 + 2147483647,
  });
  // Through the receiver: the rebuilt scoreboard hashes to the server's checksum.
  const receiver = new SnapshotReceiver();
  receiver.seed(board);
  const expected = checksum({ tick: 21, entities: [], players: state.players });
  assert.ok(receiver.receive({ ...msg, checksum: expected }));
  assert.equal(receiver.desyncs, 0);
});

test('players_scored is the last field: a gap-coded u32 and two zigzag i32s per entry', () => {
  const msg = emptySnapshot({ tick: 1, baseAge: 1, playersScored: [{ gap: 3, score: 1, deaths: -1 }] });
  const bytes = encodeServer({ type: 'Snapshot', snapshot: msg });
  // ... players_upserted (empty), then length 1, gap 3, score 1 -> 2, deaths -1 -> 1.
  assert.equal(bytesToHex(bytes.subarray(-5)), '0001030201');
  assert.deepEqual(decodeServer(bytes), { type: 'Snapshot', snapshot: msg });
  // Without the field the message is one byte short: refused.
  assert.throws(() => decodeServer(bytes.subarray(0, bytes.length - 4)));
});

test('score changes merge with removals and upserts of other entries', () => {
  const msg = emptySnapshot({
    tick: 21,
    playersRemoved: [1],
    playersUpserted: [
      { id: 2, name: 'new', score: 0, deaths: 0 },
      { id: 9, name: 'renamed', score: 4, deaths: 3 },
      { id: 12, name: 'late', score: 0, deaths: 0 },
    ],
    playersScored: [{ gap: 4, score: 2, deaths: 0 }],
  });
  assert.deepEqual(applyDelta(board, wire(msg)).players, [
    { id: 2, name: 'new', score: 0, deaths: 0 },
    { id: 4, name: 'Zoë 🦊', score: 1, deaths: 0 },
    { id: 9, name: 'renamed', score: 4, deaths: 3 },
    { id: 12, name: 'late', score: 0, deaths: 0 },
  ]);
});

/** Applying `fields` as a delta against `board` fails with error `kind`.
 * @param {any} fields @param {string} kind @param {string} why */
const refused = (fields, kind, why) =>
  assert.throws(
    () => applyDelta(board, emptySnapshot({ tick: 21, ...fields })),
    (e) => e instanceof DeltaError && e.kind === kind,
    why,
  );
/** A score change of +1 at id gap `gap`. */
const score = (/** @type {number} */ gap) => ({ gap, score: 1, deaths: 0 });

test('a score change must name a baseline entry that is neither removed nor upserted', () => {
  refused({ playersScored: [score(2)] }, 'Players', 'id 2 is not in the baseline');
  refused({ playersScored: [score(0)] }, 'Players', 'id 0, before the first entry');
  refused({ playersScored: [score(10)] }, 'Players', 'id 10, after the last entry');
  refused({ playersScored: [score(9), score(0)] }, 'Players', 'id 10 after a good one');
  refused({ playersScored: [score(1)], playersRemoved: [1] }, 'Players', 'removed');
  refused({ playersScored: [score(9)], playersRemoved: [9] }, 'Players', 'the last entry removed');
  refused(
    { playersScored: [score(4)], playersUpserted: [{ id: 4, name: 'bo', score: 1, deaths: 0 }] },
    'Players',
    'upserted',
  );
  refused(
    { playersScored: [score(3)], playersUpserted: [{ id: 3, name: 'q', score: 0, deaths: 0 }] },
    'Players',
    'a new entry comes whole, its score with it',
  );
  assert.throws(
    () => applyDelta({ ...board, players: [] }, emptySnapshot({ tick: 21, playersScored: [score(0)] })),
    (e) => e instanceof DeltaError && e.kind === 'Players',
    'an empty baseline scoreboard: the fast path looks at the score changes too',
  );
});

test('score change ids are read as the baseline is walked, as Rust reads them', () => {
  refused({ playersScored: [score(MAX_NET_ID + 1)] }, 'IdOverflow', 'the first id above MAX_NET_ID');
  refused({ playersScored: [score(1), score(0xffffffff)] }, 'IdOverflow', 'a gap past u32');
  refused({ playersScored: [score(1), score(MAX_NET_ID - 1)] }, 'IdOverflow', 'a gap past MAX_NET_ID');
  // The first id is read before the walk: its overflow beats a bad removal.
  refused({ playersScored: [score(MAX_NET_ID + 1)], playersRemoved: [5] }, 'IdOverflow', 'before the walk');
  // But after the order checks of the removed and upserted ids.
  refused({ playersScored: [score(MAX_NET_ID + 1)], playersRemoved: [4, 1] }, 'Players', 'order first');
  // The next id is read only when the entry before it matched: a bad entry
  // stops the walk before an overflow behind it is seen.
  refused({ playersScored: [score(2), score(0xffffffff)] }, 'Players', 'not in the baseline, then overflow');
  refused({ playersScored: [score(12), score(0xffffffff)] }, 'Players', 'after the last, then overflow');
  // A removal out of place is found at the entry where the walk meets it,
  // after that entry's score change was taken (and the next id read).
  refused({ playersScored: [score(1), score(0xffffffff)], playersRemoved: [0] }, 'IdOverflow', 'overflow at entry 1');
  refused({ playersScored: [score(4), score(0xffffffff)], playersRemoved: [0] }, 'Players', 'removal before entry 1');
});
