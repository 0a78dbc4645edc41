// The bit-packed entity section of a snapshot (protocol 5): the JS port of
// shared/src/codec/entities.rs, tested on its own. The golden vectors pin a
// few real snapshots byte for byte; these tests cover the codes at their
// boundaries, every refusal, and thousands of random snapshots.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  BitReader,
  BitWriter,
  CodecError,
  MAX_SERVER_MESSAGE,
  decodeServer,
  encodeServer,
  packEntities,
  unpackEntities,
} from '../../web/js/codec.js';
import { Kind } from '../../web/js/protocol.js';
import { MAX_HP } from '../../web/js/rules.js';
import { Fields } from '../../web/js/snapshot.js';
import { bytesToHex, emptySnapshot } from './serde-shape.mjs';

/** The code orders the section uses (entities.rs `order`). */
const ORDERS = [0, 2, 4, 5, 6, 12];

/** @param {(w: BitWriter) => void} write */
function bitsOf(write) {
  const w = new BitWriter();
  write(w);
  return w.finish();
}

/** Bits of the exp-Golomb code of `u` at order `k`: 2n - k - 1. */
function codeLength(/** @type {number} */ u, /** @type {number} */ k) {
  const n = (u + 2 ** k).toString(2).length;
  return 2 * n - k - 1;
}

/** Asserts that `f` throws a CodecError whose message matches `re`. */
function refused(/** @type {() => unknown} */ f, /** @type {RegExp} */ re, /** @type {string} */ what) {
  assert.throws(f, (e) => e instanceof CodecError && re.test(e.message), what);
}

test('exp-Golomb codes are the textbook ones, most significant bit first', () => {
  // Order 0: 1, 010, 011, 00100; order 2: 100, 111, 01000.
  assert.deepEqual(bitsOf((w) => w.golomb(0, 0)), Uint8Array.of(0b1000_0000));
  assert.deepEqual(bitsOf((w) => w.golomb(1, 0)), Uint8Array.of(0b0100_0000));
  assert.deepEqual(bitsOf((w) => w.golomb(2, 0)), Uint8Array.of(0b0110_0000));
  assert.deepEqual(bitsOf((w) => w.golomb(3, 0)), Uint8Array.of(0b0010_0000));
  assert.deepEqual(bitsOf((w) => w.golomb(0, 2)), Uint8Array.of(0b1000_0000));
  assert.deepEqual(bitsOf((w) => w.golomb(3, 2)), Uint8Array.of(0b1110_0000));
  assert.deepEqual(bitsOf((w) => w.golomb(4, 2)), Uint8Array.of(0b0100_0000));
  // Codes follow each other with no gap: 1 | 010 | 011 | 00100.
  assert.deepEqual(
    bitsOf((w) => [0, 1, 2, 3].forEach((u) => w.golomb(u, 0))),
    Uint8Array.of(0b1010_0110, 0b0100_0000),
  );
  // u32::MAX at order 0: 32 zeros, then x = 2^32 in 33 bits.
  assert.deepEqual(bitsOf((w) => w.golomb(0xffffffff, 0)), Uint8Array.of(0, 0, 0, 0, 0x80, 0, 0, 0, 0));
  // Fields wider than 8 bits straddle bytes, top bit first.
  assert.deepEqual(bitsOf((w) => (w.put(1, 1), w.put(0x1ff, 9))), Uint8Array.of(0xff, 0xc0));
});

test('every order used round-trips its boundaries with the code length 2n - k - 1', () => {
  for (const k of ORDERS) {
    const values = [0, 1, 2 ** k - 1, 2 ** k, 2 ** k + 1, 2 ** 16 - 1, 2 ** 16, 2 ** 16 + 1, 2 ** 32 - 2, 2 ** 32 - 1];
    for (let shift = 0; shift < 32; shift++) values.push(2 ** shift - 1, 2 ** shift, 2 ** shift + 1);
    for (let i = 0; i < 8; i++) values.push(2 ** (k + 1) + i);
    const bytes = bitsOf((w) => values.forEach((u) => w.golomb(u, k)));
    const r = new BitReader(bytes);
    let total = 0;
    for (const u of values) {
      const before = r.at;
      assert.equal(r.golomb(k), u, `order ${k}: ${u}`);
      assert.equal(r.at - before, codeLength(u, k), `order ${k}: length of ${u}`);
      total = r.at;
    }
    assert.equal(bytes.length, Math.ceil(total / 8), `order ${k}: padded to a byte`);
    r.finish();
    // Each value alone, too: nothing but the code and zero padding.
    for (const u of values) {
      const one = bitsOf((w) => w.golomb(u, k));
      assert.equal(one.length, Math.ceil(codeLength(u, k) / 8));
      const r1 = new BitReader(one);
      assert.equal(r1.golomb(k), u);
      r1.finish();
    }
  }
});

test('signed values round-trip through zigzag at every order used', () => {
  const values = [0, -1, 1, -2, 2, 127, -128, 2 ** 20, -(2 ** 20), 0x7fffffff, -0x80000000, 0x7ffffffe, -0x7fffffff];
  for (const k of ORDERS) {
    for (const v of values) {
      const r = new BitReader(bitsOf((w) => w.signed(v, k)));
      assert.equal(r.signed(k), v, `order ${k}: ${v}`);
      r.finish();
    }
  }
  // 0, -1, 1, -2 are 0, 1, 2, 3: at order 0, 1, 010, 011, 00100.
  assert.deepEqual(
    bitsOf((w) => [0, -1, 1, -2].forEach((v) => w.signed(v, 0))),
    Uint8Array.of(0b1010_0110, 0b0100_0000),
  );
});

test('bad codes are refused as Rust refuses them', () => {
  // 33 zeros: longer than any number's code at order 0.
  refused(() => new BitReader(Uint8Array.of(0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0xff)).golomb(0), /overlong/, 'overlong');
  // At order 12 anything past 20 zeros is overlong.
  refused(() => new BitReader(Uint8Array.of(0, 0, 0x07, 0xff, 0xff, 0xff, 0xff, 0xff)).golomb(12), /overlong/, '21 zeros, k 12');
  // 32 zeros and 33 bits of x = 2^33 - 1: above u32::MAX at order 0.
  refused(
    () => new BitReader(Uint8Array.of(0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x80)).golomb(0),
    /above u32::MAX/,
    'x = 2^33 - 1',
  );
  // The first number above u32::MAX at order 4: 2^32, x = 2^32 + 16.
  const r = new BitWriter();
  r.put(0, 28);
  r.put(1, 1);
  r.put(0, 27);
  r.put(16, 5);
  refused(() => new BitReader(r.finish()).golomb(4), /above u32::MAX/, '2^32 at order 4');
  // Truncated: the zeros run off the end, or the number does.
  refused(() => new BitReader(Uint8Array.of(0)).golomb(0), /truncated/, 'all zeros');
  refused(() => new BitReader(new Uint8Array(0)).golomb(4), /truncated/, 'empty');
  refused(() => new BitReader(Uint8Array.of(0b0000_0001)).golomb(0), /truncated/, 'number cut');
  refused(() => new BitReader(Uint8Array.of(0b1000_0000)).bits(9), /truncated/, 'field cut');
  // The encoder refuses what no code holds.
  assert.throws(() => new BitWriter().golomb(2 ** 32, 0), RangeError);
  assert.throws(() => new BitWriter().golomb(-1, 0), RangeError);
  assert.throws(() => new BitWriter().signed(2 ** 31, 0), RangeError);
  assert.throws(() => new BitWriter().put(2, 1), RangeError);
});

/** What a new entity of `kind` spawns with. @param {number} kind */
const spawnHp = (kind) => (kind === Kind.Projectile ? 1 : MAX_HP);

const shot = () => ({ gap: 3, kind: Kind.Projectile, x: 9000, y: 6000, vx: 68, vy: -68, angle: 224, hp: 1 });

test('what common records cost, in bits', () => {
  // An empty section: three zero counts of 5 bits (10000), 2 bytes.
  assert.equal(bytesToHex(packEntities(emptySnapshot())), '8420');
  // A new shot in the far corner, moving diagonally: gap 3 (3 bits), kind
  // (2), x and y (15 each), vx and vy (9 each), angle (8), hp (1): 62 bits.
  assert.equal(packEntities(emptySnapshot({ created: [shot()] })).length, Math.ceil((15 + 62) / 8));
  // 100 players who re-aimed by 5/256 of a turn, ids consecutive: a 5-bit
  // head and a 5-bit angle each; counts of 5, 9 and 9 bits.
  const reaims = emptySnapshot({ baseAge: 10, changed: new Array(100).fill(Fields.ANGLE), values: new Array(100).fill(5) });
  assert.equal(packEntities(reaims).length, Math.ceil((5 + 9 + 100 * 5 + 9 + 100 * 5) / 8));
});

test('a created entity\'s hit points cost one bit when they are its kind\'s spawn value', () => {
  for (const [kind, hp] of [
    [Kind.Projectile, 0],
    [Kind.Projectile, 100],
    [Kind.Projectile, 1],
    [Kind.Player, 1],
    [Kind.Npc, 255],
    [Kind.Player, MAX_HP],
    [Kind.Npc, MAX_HP],
  ]) {
    const s = emptySnapshot({ created: [{ ...shot(), kind, hp }] });
    const bytes = packEntities(s);
    const bits = hp === spawnHp(kind) ? 77 : 85;
    assert.equal(bytes.length, Math.floor(bits / 8) + 1, `kind ${kind} with ${hp}`);
    assert.deepEqual(unpackEntities(bytes, 0).created, s.created);
  }
});

test('spawn hit points spelled out in 9 bits are accepted, as Rust accepts them, and re-encode in one', () => {
  // The one number in a section with two codes: a zero flag bit and the
  // default hit points. entities.rs unpack takes it; pack never writes it.
  const long = bitsOf((w) => {
    w.golomb(1, 4);
    w.golomb(0, 2);
    w.put(Kind.Player, 2);
    w.golomb(5, 12);
    w.golomb(6, 12);
    w.signed(0, 6);
    w.signed(0, 6);
    w.put(9, 8);
    w.put(0, 1);
    w.put(MAX_HP, 8);
    w.golomb(0, 4);
    w.golomb(0, 4);
  });
  const u = unpackEntities(long, 1);
  assert.deepEqual(u.created, [{ gap: 0, kind: Kind.Player, x: 5, y: 6, vx: 0, vy: 0, angle: 9, hp: MAX_HP }]);
  const short = packEntities({ baseAge: 1, ...u });
  assert.equal(short.length, long.length - 1);
  assert.deepEqual(unpackEntities(short, 1), u);
});

test('values take their heads\' codes, and the turn age is unsigned from base age 2 on', () => {
  const heads = [Fields.POS | Fields.VEL | Fields.ANGLE | Fields.HP, (1 << 4) | Fields.VEL];
  for (const baseAge of [0, 1, 2, 10, 0xffffffff]) {
    const turn = baseAge >= 2;
    const values = [3, -3, 20, -20, ...(turn ? [7] : []), -4, -25, 32, 0, ...(turn ? [-0x80000000] : []), 9, -9];
    const u = unpackEntities(packEntities(emptySnapshot({ baseAge, changed: heads, values })), baseAge);
    assert.deepEqual([u.changed, u.values], [heads, values], `base age ${baseAge}`);
  }
  // The turn age k is (k - 1) as u32 at order 2: k = 1 is `100`, k = 0
  // wraps to u32::MAX. It comes after the created count (5 bits), the head
  // count (5), the head (mask 4, gap 1), the value count (5) and the two
  // zero velocities (`10000` each).
  const turnBits = (/** @type {number} */ k) => {
    const bytes = packEntities(emptySnapshot({ baseAge: 2, changed: [Fields.VEL], values: [0, 0, k] }));
    const r = new BitReader(bytes);
    r.at = 5 + 5 + (4 + 1) + 5 + 5 + 5;
    return r.golomb(2);
  };
  assert.equal(turnBits(1), 0);
  assert.equal(turnBits(5), 4);
  assert.equal(turnBits(0), 0xffffffff);
  assert.equal(turnBits(-0x80000000), 0x7fffffff);
  // Read against another age, the same bits mean other values.
  const s = emptySnapshot({ baseAge: 10, changed: [Fields.VEL], values: [1, 1, 1] });
  assert.notDeepEqual(unpackEntities(packEntities(s), 1).values, s.values);
  // Fewer values than the heads ask for: kept as they are, for applyDelta
  // to refuse; more are surplus values at order 2.
  const short = emptySnapshot({ baseAge: 3, changed: [Fields.POS | Fields.ANGLE], values: [1] });
  assert.deepEqual(unpackEntities(packEntities(short), 3).values, [1]);
  const surplus = emptySnapshot({ changed: [], values: [0, -1, 1] });
  assert.equal(bytesToHex(packEntities(surplus)), bytesToHex(bitsOf((w) => {
    w.golomb(0, 4);
    w.golomb(0, 4);
    w.golomb(3, 4);
    [0, -1, 1].forEach((v) => w.signed(v, 2));
  })));
});

test('bad sections are refused with the reason Rust gives', () => {
  const good = packEntities(emptySnapshot({ created: [shot()], changed: [(2 << 4) | Fields.ANGLE], values: [-1] }));
  unpackEntities(good, 1);
  for (let end = 0; end < good.length; end++) {
    assert.throws(() => unpackEntities(good.subarray(0, end), 1), CodecError, `prefix of ${end}`);
  }
  refused(() => unpackEntities(Uint8Array.of(...good, 0), 1), /^entity section: trailing bytes$/, 'trailing byte');
  // The section ends 3 bits into its last byte; a one in the padding.
  const padded = good.slice();
  padded[padded.length - 1] |= 1;
  refused(() => unpackEntities(padded, 1), /^entity section: nonzero padding$/, 'padding');
  // Kind 3: the count (5 bits) and the gap (3 bits) come first.
  const kind = good.slice();
  kind[1] |= 0b1100_0000;
  refused(() => unpackEntities(kind, 1), /^entity section: kind 3$/, 'kind 3');
  // The widest head fits; a gap one wider does not fit beside its mask.
  assert.deepEqual(unpackEntities(packEntities(emptySnapshot({ changed: [0xffffffff] })), 1).changed, [0xffffffff]);
  const wide = bitsOf((w) => {
    w.golomb(0, 4);
    w.golomb(1, 4);
    w.put(1, 4);
    w.golomb(2 ** 28, 0);
    w.golomb(0, 4);
  });
  refused(() => unpackEntities(wide, 1), /^entity section: head gap above 2\^28$/, 'head gap');
});

test('counts are checked against the bits left, then against the budget', () => {
  // A claimed million heads in a few bytes: refused before allocating.
  const million = bitsOf((w) => {
    w.golomb(0, 4);
    w.golomb(1_000_000, 4);
  });
  refused(() => unpackEntities(million, 1), /^entity section truncated$/, 'a million heads');
  // Within the bits, but over the budget: 10 values cost 40 bytes.
  const ten = packEntities(emptySnapshot({ values: new Array(10).fill(0) }));
  assert.equal(unpackEntities(ten, 1, 40).values.length, 10);
  refused(() => unpackEntities(ten, 1, 39), /^message exceeds/, 'budget of 39');
  // The real budget is 16 MiB of its own: 2^22 values fit, one more does
  // not. Zero bits: the count is all that is read before the refusal.
  const claim = (/** @type {number} */ n) => {
    const head = bitsOf((w) => {
      w.golomb(0, 4);
      w.golomb(0, 4);
      w.golomb(n, 4);
    });
    const section = new Uint8Array(head.length + Math.ceil((3 * n) / 8));
    section.set(head);
    return section;
  };
  const over = claim(MAX_SERVER_MESSAGE / 4 + 1);
  refused(() => unpackEntities(over, 1), /^message exceeds 16777216 bytes/, '2^22 + 1 values');
  // At the budget the count passes, and the zeros after it are overlong.
  refused(() => unpackEntities(claim(MAX_SERVER_MESSAGE / 4), 1), /overlong/, '2^22 values');
  // Through the whole message too.
  const msg = encodeServer({ type: 'Snapshot', snapshot: emptySnapshot() });
  const at = msg.length - 3 - 3; // the empty section's length byte: 02 84 20, then three empty lists
  assert.equal(bytesToHex(msg.subarray(at)), '028420000000');
  const big = new Uint8Array(at + 5 + over.length + 3);
  big.set(msg.subarray(0, at));
  big[at] = 0xfc;
  new DataView(big.buffer).setUint32(at + 1, over.length, true);
  big.set(over, at + 5);
  refused(() => decodeServer(big), /^message exceeds 16777216 bytes/, 'whole message');
});

/** A fixed-seed xorshift32, so a failure is reproducible. */
function prng(/** @type {number} */ seed) {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>>= 0);
  };
  const pick = (/** @type {any[]} */ a) => a[next() % a.length];
  return { next, pick };
}

test('random snapshots round-trip and re-encode to the same bytes, extremes included', () => {
  const { next, pick } = prng(0x5eed_0005);
  const U32_EDGES = [0, 1, 2, 3, 4, 250, 251, 4095, 4096, 65535, 65536, 2 ** 28 - 1, 2 ** 28, 2 ** 31, 2 ** 32 - 2, 2 ** 32 - 1];
  const I32_EDGES = [0, -1, 1, -2, 2, 63, -64, 64, 127, -128, 0x7fffffff, -0x80000000, 0x7ffffffe, -0x7fffffff];
  const u32 = () => (next() % 3 === 0 ? pick(U32_EDGES) : next() % 4 === 0 ? next() : next() % 300);
  const i32 = () => (next() % 3 === 0 ? pick(I32_EDGES) : next() % 4 === 0 ? next() | 0 : (next() % 601) - 300);
  const list = (/** @type {number} */ max, /** @type {() => any} */ f) => Array.from({ length: next() % (max + 1) }, f);
  const head = () =>
    pick([
      () => next() & 15,
      () => ((next() % 64) << 4) | (next() & 15),
      () => (2 ** 28 - 1) * 16 + (next() & 15),
      () => u32(),
    ])();
  const headsAsk = (/** @type {number[]} */ heads, /** @type {number} */ baseAge) =>
    heads.reduce((n, h) => n + (h & 1 ? 2 : 0) + (h & 2 ? (baseAge >= 2 ? 3 : 2) : 0) + (h & 4 ? 1 : 0) + (h & 8 ? 1 : 0), 0);
  let short = 0;
  let surplus = 0;
  let longForms = 0;
  let exact = 0;
  for (let i = 0; i < 4000; i++) {
    const baseAge = pick([0, 1, 2, 3, 10, 2 ** 32 - 1, u32()]);
    const changed = list(8, head);
    const asked = headsAsk(changed, baseAge);
    // Mostly what the heads ask for; sometimes fewer or more.
    const nValues = pick([asked, asked, Math.max(0, asked - 1 - (next() % 3)), asked + 1 + (next() % 3), next() % 12]);
    const values = Array.from({ length: nValues }, i32);
    if (nValues < asked) short++;
    else if (nValues > asked) surplus++;
    else exact++;
    const s = emptySnapshot({
      tick: u32(),
      baseAge,
      inputAck: u32(),
      checksum: u32(),
      removed: list(3, u32),
      created: list(4, () => {
        const kind = next() % 3;
        return {
          gap: u32(),
          kind,
          x: i32(),
          y: i32(),
          vx: i32(),
          vy: i32(),
          angle: next() & 255,
          hp: pick([kind === Kind.Projectile ? 1 : MAX_HP, 0, 1, MAX_HP, 255, next() & 255]),
        };
      }),
      changed,
      values,
      playersRemoved: list(2, u32),
      playersUpserted: list(2, () => ({ id: u32(), name: pick(['', 'ana', 'Ünïcødé']), score: u32(), deaths: u32() })),
      playersScored: list(2, () => ({ gap: u32(), score: i32(), deaths: i32() })),
    });
    const msg = { type: /** @type {const} */ ('Snapshot'), snapshot: s };
    const bytes = encodeServer(msg);
    const back = decodeServer(bytes);
    assert.deepEqual(back, msg, `snapshot ${i}`);
    assert.equal(bytesToHex(encodeServer(back)), bytesToHex(bytes), `snapshot ${i} re-encoded`);
    // The section alone: exactly what packEntities writes, after its length.
    const section = packEntities(s);
    assert.deepEqual(unpackEntities(section, baseAge), { created: s.created, changed: s.changed, values: s.values });
    // Every strict prefix of the section is refused.
    if (i % 40 === 0) {
      for (let end = 0; end < section.length; end++) {
        assert.throws(() => unpackEntities(section.subarray(0, end), baseAge), CodecError, `snapshot ${i} cut at ${end}`);
      }
    }
    // A flipped bit decodes to something else or is refused, never anything
    // but a CodecError. What decodes re-encodes to the same bytes, unless
    // the flip spelled a spawn hit point value out in 9 bits (see below).
    const flipped = section.slice();
    if (flipped.length > 0) flipped[next() % flipped.length] ^= 1 << (next() & 7);
    let u = null;
    try {
      u = unpackEntities(flipped, baseAge);
    } catch (e) {
      assert.ok(e instanceof CodecError, String(e));
    }
    if (u !== null) {
      const again = packEntities({ baseAge, ...u });
      assert.deepEqual(unpackEntities(again, baseAge), u, `snapshot ${i} flipped`);
      if (bytesToHex(again) !== bytesToHex(flipped)) {
        assert.ok(u.created.some((c) => c.hp === spawnHp(c.kind)), `snapshot ${i} flipped: re-encoded differently`);
        longForms++;
      }
    }
  }
  assert.ok(short > 200 && surplus > 200 && exact > 1000, `short ${short}, surplus ${surplus}, exact ${exact}`);
  assert.ok(longForms < 40, `${longForms} flips re-encoded differently`);
});

test('the encoder refuses entity fields their codes cannot hold', () => {
  const bad = [
    { created: [{ ...shot(), kind: 3 }] },
    { created: [{ ...shot(), gap: 2 ** 32 }] },
    { created: [{ ...shot(), x: 2 ** 31 }] },
    { created: [{ ...shot(), vy: -(2 ** 31) - 1 }] },
    { created: [{ ...shot(), angle: 256 }] },
    { created: [{ ...shot(), hp: -1 }] },
    { changed: [2 ** 32] },
    { changed: [1], values: [0.5, 0] },
    { baseAge: 2, changed: [Fields.VEL], values: [0, 0, 2 ** 31] },
    { values: [2 ** 31] },
  ];
  for (const o of bad) {
    assert.throws(() => encodeServer({ type: 'Snapshot', snapshot: emptySnapshot(o) }), RangeError, JSON.stringify(o));
  }
});
