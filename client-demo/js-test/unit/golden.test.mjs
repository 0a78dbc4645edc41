// Checks the browser's codec, delta apply, checksum and movement rules
// against the golden vectors the Rust `shared` crate writes
// (shared/tests/golden.rs). Any difference between the two implementations
// fails here.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import {
  CodecError,
  DATAGRAM_ID_BYTES,
  DATAGRAM_KEY_BYTES,
  DISCONNECT_VARIANTS,
  MAX_CLIENT_MESSAGE,
  MAX_SERVER_MESSAGE,
  decodeClient,
  decodeServer,
  encodeClient,
  encodeServer,
} from '../../web/js/codec.js';
import { KIND_NAMES, PROTOCOL_VERSION, reasonCloseCode, reasonLabel, reasonSessionKept, reasonText } from '../../web/js/protocol.js';
import * as rules from '../../web/js/rules.js';
import { DeltaError, Fields, MAX_NET_ID, applyDelta, checksum } from '../../web/js/snapshot.js';
import { fromSerde, fromSerdeState, hexToBytes, bytesToHex, toSerde } from './serde-shape.mjs';

const golden = JSON.parse(readFileSync(new URL('../golden.json', import.meta.url), 'utf8'));

test('constants match the Rust crate', () => {
  const c = golden.constants;
  assert.equal(PROTOCOL_VERSION, c.PROTOCOL_VERSION);
  assert.equal(MAX_CLIENT_MESSAGE, c.MAX_CLIENT_MESSAGE);
  assert.equal(MAX_SERVER_MESSAGE, c.MAX_SERVER_MESSAGE);
  assert.equal(MAX_NET_ID, c.MAX_NET_ID);
  for (const name of [
    'QUANTA_PER_UNIT',
    'ARENA_WIDTH',
    'ARENA_HEIGHT',
    'PLAYER_RADIUS',
    'PROJECTILE_RADIUS',
    'PLAYER_SPEED',
    'NPC_SPEED',
    'PROJECTILE_SPEED',
    'PROJECTILE_LIFETIME_MS',
    'FIRE_COOLDOWN_MS',
    'RESPAWN_MS',
    'MAX_HP',
    'PROJECTILE_DAMAGE',
    'MAX_NAME_CHARS',
  ]) {
    assert.equal(rules[name], c[name], name);
  }
  for (const b of ['UP', 'DOWN', 'LEFT', 'RIGHT', 'FIRE']) {
    assert.equal(rules.Buttons[b], c[`BUTTON_${b}`], b);
  }
  for (const f of ['POS', 'VEL', 'ANGLE', 'HP']) {
    assert.equal(Fields[f], c[`FIELD_${f}`], f);
  }
});

/** The variant name of a serde-shaped enum value: a unit variant is a bare string. */
const variantOf = (/** @type {any} */ value) => (typeof value === 'string' ? value : Object.keys(value)[0]);

test('client messages decode to the Rust value and re-encode to the same bytes', () => {
  assert.ok(golden.client_messages.length >= 5);
  for (const v of golden.client_messages) {
    const bytes = hexToBytes(v.hex);
    const msg = decodeClient(bytes);
    assert.deepEqual(toSerde(msg), v.value, v.name);
    assert.equal(bytesToHex(encodeClient(msg)), v.hex, v.name);
    // The encoder alone, from the value as the game builds it, gives the bytes too.
    assert.equal(bytesToHex(encodeClient(fromSerde(v.value))), v.hex, `${v.name} (encoded from the Rust value)`);
  }
  const seen = new Set(golden.client_messages.map((v) => variantOf(v.value)));
  assert.deepEqual([...seen].sort(), ['Ack', 'Hello', 'Input', 'Leave', 'OpenDatagrams', 'Ping']);
  // Every field of the hello is exercised: both room requests, both tokens.
  const hellos = golden.client_messages.filter((v) => variantOf(v.value) === 'Hello').map((v) => v.value.Hello);
  assert.ok(hellos.some((h) => h.room === 'Matchmake'));
  assert.ok(hellos.some((h) => typeof h.room === 'object' && h.room.Named));
  assert.ok(hellos.some((h) => h.auth !== null));
  assert.ok(hellos.some((h) => h.resume !== null));
});

test('an input carries its ack as a u32 varint between tick and buttons (protocol 3)', () => {
  const inputs = golden.client_messages.filter((v) => variantOf(v.value) === 'Input');
  assert.ok(inputs.length >= 5);
  /** Bytes of a u32 varint (PROTOCOL.md 2.2). @param {number} n */
  const varintLen = (n) => (n < 251 ? 1 : n <= 0xffff ? 3 : 5);
  const acks = new Set();
  for (const v of inputs) {
    const { seq, tick, ack, buttons, aim } = v.value.Input;
    assert.equal(typeof ack, 'number', `${v.name}: the Rust value has an ack`);
    const bytes = hexToBytes(v.hex);
    const msg = decodeClient(bytes);
    assert.equal(msg.type, 'Input');
    assert.equal(/** @type {any} */ (msg).ack, ack, v.name);
    // variant, seq, tick, ack, buttons (raw byte), aim: nothing else.
    const at = 1 + varintLen(seq) + varintLen(tick);
    const ackBytes = bytesToHex(encodeClient({ type: 'Ack', tick: ack }).subarray(1));
    assert.equal(bytesToHex(bytes.subarray(at, at + varintLen(ack))), ackBytes, `${v.name}: ack at byte ${at}`);
    assert.equal(bytes[at + varintLen(ack)], buttons, `${v.name}: buttons right after the ack`);
    assert.equal(bytes.length, at + varintLen(ack) + 1 + varintLen(aim), v.name);
    acks.add(varintLen(ack));
  }
  assert.deepEqual([...acks].sort(), [1, 3, 5], 'acks of every varint width');
});

test('non-canonical varints decode like bincode and re-encode canonically', () => {
  for (const v of golden.noncanonical_client_messages) {
    const msg = decodeClient(hexToBytes(v.hex));
    assert.deepEqual(toSerde(msg), v.value, v.name);
    assert.notEqual(bytesToHex(encodeClient(msg)), v.hex, v.name);
  }
});

test('server messages decode to the Rust value and re-encode to the same bytes', () => {
  const all = [...golden.server_messages, ...golden.snapshots];
  for (const v of all) {
    const msg = decodeServer(hexToBytes(v.hex));
    assert.deepEqual(toSerde(msg), v.value, v.name);
    assert.equal(bytesToHex(encodeServer(msg)), v.hex, v.name);
    if (msg.type !== 'Snapshot') {
      assert.equal(bytesToHex(encodeServer(fromSerde(v.value))), v.hex, `${v.name} (encoded from the Rust value)`);
    }
  }
  const seen = new Set(all.map((v) => variantOf(v.value)));
  assert.deepEqual([...seen].sort(), ['DatagramChannel', 'Disconnect', 'Pong', 'Snapshot', 'Welcome']);
  const welcomes = golden.server_messages.filter((v) => variantOf(v.value) === 'Welcome').map((v) => v.value.Welcome);
  assert.deepEqual(new Set(welcomes.map((w) => w.resumed)), new Set([true, false]), 'both values of resumed');
  // A datagram channel on a port (a u16 varint of 3 bytes) and a refused one (port 0).
  const channels = golden.server_messages.filter((v) => variantOf(v.value) === 'DatagramChannel').map((v) => v.value.DatagramChannel);
  assert.ok(channels.some((c) => c.port === 0), 'a refused channel');
  assert.ok(channels.some((c) => c.port >= 251), 'a port wider than one varint byte');
});

test('the datagram messages are laid out as protocol 9 says', () => {
  // OpenDatagrams: the variant index alone.
  assert.equal(bytesToHex(encodeClient({ type: 'OpenDatagrams' })), '05');
  assert.deepEqual(decodeClient(Uint8Array.from([5])), { type: 'OpenDatagrams' });
  assert.deepEqual(decodeClient(Uint8Array.from([4])), { type: 'Leave' });
  assert.throws(() => decodeClient(Uint8Array.from([5, 0])), CodecError, 'no payload');
  assert.throws(() => decodeClient(Uint8Array.from([6])), CodecError, 'variant 6');
  // DatagramChannel: variant 4, the port as a u16 varint, the id's 8 raw
  // bytes, the key's 16.
  const id = Uint8Array.from({ length: DATAGRAM_ID_BYTES }, (_, i) => 0x10 + i);
  const key = Uint8Array.from({ length: DATAGRAM_KEY_BYTES }, (_, i) => 255 - i);
  for (const [port, portHex] of [
    [0, '00'],
    [250, 'fa'],
    [251, 'fbfb00'],
    [65535, 'fbffff'],
  ]) {
    const bytes = encodeServer({ type: 'DatagramChannel', port, id, key });
    assert.equal(bytesToHex(bytes), `04${portHex}${bytesToHex(id)}${bytesToHex(key)}`, `port ${port}`);
    assert.deepEqual(decodeServer(bytes), { type: 'DatagramChannel', port, id, key });
  }
  assert.throws(() => encodeServer({ type: 'DatagramChannel', port: 65536, id, key }), RangeError);
  assert.throws(() => encodeServer({ type: 'DatagramChannel', port: 1, id, key: key.subarray(1) }), RangeError);
  assert.throws(() => encodeServer({ type: 'DatagramChannel', port: 1, id: id.subarray(1), key }), RangeError);
  // A u32 varint marker is too wide for the u16 port; a short key is cut.
  assert.throws(() => decodeServer(Uint8Array.from([4, 0xfc, 1, 0, 0, 0, ...id, ...key])), CodecError);
  assert.throws(() => decodeServer(Uint8Array.from([4, 1, ...id, ...key.subarray(1)])), CodecError);
  assert.throws(() => decodeServer(Uint8Array.from([5])), CodecError, 'variant 5');
});

test('every disconnect reason has the server text, label and close code', () => {
  const variants = new Set();
  for (const r of golden.disconnect_reasons) {
    const bytes = encodeServer({ type: 'Disconnect', reason: fromSerdeReason(r.value) });
    const msg = decodeServer(bytes);
    assert.equal(msg.type, 'Disconnect');
    assert.deepEqual(toSerde(msg), { Disconnect: r.value });
    assert.equal(reasonText(msg.reason), r.text);
    assert.equal(reasonLabel(msg.reason), r.label);
    assert.equal(reasonCloseCode(msg.reason), r.close_code);
    assert.equal(reasonSessionKept(msg.reason), r.session_kept, r.label);
    variants.add(msg.reason.type);
  }
  assert.deepEqual([...variants], DISCONNECT_VARIANTS, 'every variant, in wire order');
  assert.equal(variants.size, 20);
});

/** @param {any} v serde form of a DisconnectReason */
function fromSerdeReason(v) {
  if (typeof v === 'string') return { type: v };
  const [type, fields] = Object.entries(v)[0];
  return { type, ...fields };
}

test('snapshots apply to the Rust state with the Rust checksum', (t) => {
  const masks = new Set();
  for (const v of golden.snapshots) {
    const msg = decodeServer(hexToBytes(v.hex));
    assert.equal(msg.type, 'Snapshot');
    const baseline = v.baseline ? fromSerdeState(v.baseline) : null;
    const state = applyDelta(baseline, msg.snapshot);
    assert.deepEqual(toSerdeState(state), v.state, v.name);
    assert.equal(checksum(state), v.checksum, v.name);
    assert.equal(msg.snapshot.checksum, v.checksum, v.name);
    for (const h of msg.snapshot.changed) masks.add(h & 15);
  }
  // The vectors exercise every combination of changed field groups.
  for (let m = 1; m < 16; m++) assert.ok(masks.has(m), `mask ${m} covered`);
});

test('a velocity change carries its turn age from base age 2 on (protocol 4)', () => {
  let withTurnAge = 0;
  let withoutTurnAge = 0;
  for (const v of golden.snapshots) {
    const s = /** @type {any} */ (decodeServer(hexToBytes(v.hex))).snapshot;
    // POS two values, VEL two (three with k), ANGLE one, HP one.
    const k = s.baseAge >>> 0 > 1 ? 1 : 0;
    let n = 0;
    for (const h of s.changed) {
      const m = h & 15;
      n += (m & Fields.POS ? 2 : 0) + (m & Fields.VEL ? 2 + k : 0) + (m & Fields.ANGLE ? 1 : 0) + (m & Fields.HP ? 1 : 0);
      if (m & Fields.VEL) k ? withTurnAge++ : withoutTurnAge++;
    }
    assert.equal(n, s.values.length, v.name);
  }
  assert.ok(withTurnAge > 0 && withoutTurnAge > 0, 'vectors of both kinds');
});

test('score changes keep the baseline\'s names (protocol 4)', () => {
  let scored = 0;
  for (const v of golden.snapshots.filter((s) => s.baseline)) {
    const s = /** @type {any} */ (decodeServer(hexToBytes(v.hex))).snapshot;
    const upserted = new Set(s.playersUpserted.map((/** @type {any} */ p) => p.id));
    for (const p of applyDelta(fromSerdeState(v.baseline), s).players) {
      const b = v.baseline.players.find((/** @type {any} */ q) => q.id === p.id);
      if (b && !upserted.has(p.id)) assert.equal(p.name, b.name, v.name);
    }
    scored += s.playersScored.length;
  }
  assert.ok(scored >= 3, 'the vectors carry score changes');
});

/** @param {import('../../web/js/snapshot.js').WorldState} s */
function toSerdeState(s) {
  return {
    tick: s.tick,
    entities: s.entities.map((e) => ({ ...e, kind: KIND_NAMES[e.kind] })),
    players: s.players.map((p) => ({ ...p })),
  };
}

test('applying a delta never mutates its baseline', () => {
  const v = golden.snapshots.find((s) => s.baseline && s.baseline.entities.length > 0);
  const baseline = fromSerdeState(v.baseline);
  const copy = structuredClone(baseline);
  applyDelta(baseline, decodeServer(hexToBytes(v.hex)).snapshot);
  assert.deepEqual(baseline, copy);
});

test('bad deltas are refused with the error Rust gives', () => {
  assert.ok(golden.bad_deltas.length > 10);
  for (const v of golden.bad_deltas) {
    const msg = decodeServer(hexToBytes(v.hex));
    const baseline = fromSerdeState(v.baseline);
    assert.throws(
      () => applyDelta(baseline, msg.snapshot),
      (e) => e instanceof DeltaError && e.kind === v.error,
      `${v.name}: expected ${v.error}`,
    );
  }
});

test('malformed bytes are refused by the decoder', () => {
  for (const v of golden.malformed) {
    const decode = v.side === 'client' ? decodeClient : decodeServer;
    assert.throws(() => decode(hexToBytes(v.hex)), CodecError, `${v.side}: ${v.name}`);
  }
});

test('every proper prefix of every message is refused', () => {
  const all = [
    ...golden.client_messages.map((v) => [decodeClient, v]),
    ...golden.server_messages.map((v) => [decodeServer, v]),
    ...golden.snapshots.map((v) => [decodeServer, v]),
  ];
  for (const [decode, v] of all) {
    const bytes = hexToBytes(v.hex);
    for (let n = 0; n < bytes.length; n++) {
      assert.throws(() => decode(bytes.subarray(0, n)), CodecError, `${v.name} cut at ${n}`);
    }
  }
});

test('random bytes either decode or throw CodecError, never anything else', () => {
  // A fixed-seed xorshift so a failure is reproducible.
  let s = 0x2545f491;
  const rnd = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
  const seeds = golden.snapshots.map((v) => hexToBytes(v.hex));
  for (let i = 0; i < 20000; i++) {
    let bytes;
    if (i % 2 === 0) {
      bytes = new Uint8Array(rnd() % 40);
      for (let j = 0; j < bytes.length; j++) bytes[j] = rnd() & 0xff;
    } else {
      // Mutate a real snapshot: a few flipped bytes.
      bytes = seeds[rnd() % seeds.length].slice();
      for (let k = 0; k < 3 && bytes.length > 0; k++) bytes[rnd() % bytes.length] = rnd() & 0xff;
    }
    for (const decode of [decodeClient, decodeServer]) {
      try {
        const msg = decode(bytes);
        if (msg.type === 'Snapshot') {
          try {
            applyDelta(null, msg.snapshot);
          } catch (e) {
            assert.ok(e instanceof DeltaError, String(e));
          }
        }
      } catch (e) {
        assert.ok(e instanceof CodecError, `${bytesToHex(bytes)}: ${e}`);
      }
    }
  }
});

test('the encoder refuses values its type cannot hold', () => {
  assert.throws(() => encodeClient({ type: 'Ack', tick: -1 }), RangeError);
  assert.throws(() => encodeClient({ type: 'Ack', tick: 2 ** 32 }), RangeError);
  assert.throws(() => encodeClient({ type: 'Input', seq: 1, tick: 1, ack: 0, buttons: 256, aim: 0 }), RangeError);
  assert.throws(() => encodeClient({ type: 'Input', seq: 1, tick: 1, ack: 0, buttons: 0, aim: 65536 }), RangeError);
  assert.throws(() => encodeClient({ type: 'Input', seq: 1, tick: 1, ack: 2 ** 32, buttons: 0, aim: 0 }), RangeError);
  // An input without its ack is a bug in the caller, not a zero on the wire.
  assert.throws(() => encodeClient(/** @type {any} */ ({ type: 'Input', seq: 1, tick: 1, buttons: 0, aim: 0 })), RangeError);
  assert.throws(() => encodeClient({ type: 'Ping', nonce: 2n ** 64n }), RangeError);
  assert.throws(() => encodeClient({ type: 'Ack', tick: 1.5 }), RangeError);
});

test('TickRules match at every tick rate', () => {
  for (const v of golden.tick_rules) {
    const r = rules.tickRules(v.tick_hz_in);
    assert.deepEqual(
      {
        tick_hz: r.tickHz,
        player_step: r.playerStep,
        player_step_diag: r.playerStepDiag,
        npc_step: r.npcStep,
        projectile_step: r.projectileStep,
        projectile_ticks: r.projectileTicks,
        fire_cooldown_ticks: r.fireCooldownTicks,
        respawn_ticks: r.respawnTicks,
      },
      v.rules,
      `tick_hz ${v.tick_hz_in}`,
    );
  }
});

test('movePlayer matches for every button combination near every edge', () => {
  assert.ok(golden.movement.length > 1000);
  const cache = new Map();
  for (const [hz, x, y, buttons, ex, ey] of golden.movement) {
    if (!cache.has(hz)) cache.set(hz, rules.tickRules(hz));
    assert.deepEqual(rules.movePlayer(x, y, buttons, cache.get(hz)), [ex, ey], `hz ${hz} (${x},${y}) buttons ${buttons}`);
  }
});

test('replaying input runs lands on every position Rust computed', () => {
  for (const v of golden.replays) {
    const r = rules.tickRules(v.tick_hz);
    let [x, y] = v.start;
    v.buttons.forEach((b, i) => {
      [x, y] = rules.movePlayer(x, y, b, r);
      assert.deepEqual([x, y], v.positions[i], `hz ${v.tick_hz} step ${i}`);
    });
  }
});
