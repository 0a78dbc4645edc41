// Converts between the browser's message objects and the JSON that serde
// writes for the Rust types (externally tagged enums, snake_case fields), so
// the golden vectors can be compared with deepEqual.

import { packEntities } from '../../web/js/codec.js';
import { KIND_NAMES } from '../../web/js/protocol.js';

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * u64 values as golden.rs writes them: a number up to 2^53 - 1, a decimal
 * string above (JSON numbers are not exact beyond that).
 * @param {bigint} v
 */
function u64(v) {
  return v > MAX_SAFE ? v.toString() : Number(v);
}

/** @param {string} hex */
export function hexToBytes(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** @param {Uint8Array} bytes */
export function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** @param {any} s a SnapshotMsg */
function snapshotToSerde(s) {
  return {
    tick: s.tick,
    base_age: s.baseAge,
    input_ack: s.inputAck,
    checksum: s.checksum,
    removed: s.removed,
    // Protocol 5: serde writes the three entity lists as the bit-packed
    // entity section's bytes (shared/src/codec.rs `impl Serialize for SnapshotMsg`).
    entities: Array.from(packEntities(s)),
    players_removed: s.playersRemoved,
    players_upserted: s.playersUpserted.map((p) => ({ ...p })),
    players_scored: s.playersScored.map((d) => ({ ...d })),
  };
}

/**
 * The serde JSON form of a decoded ClientMsg or ServerMsg.
 * @param {any} msg
 */
export function toSerde(msg) {
  switch (msg.type) {
    case 'Hello':
      return {
        Hello: {
          protocol: msg.protocol,
          name: msg.name,
          room: msg.room === null ? 'Matchmake' : { Named: msg.room },
          auth: msg.auth,
          resume: msg.resume === null ? null : Array.from(msg.resume),
        },
      };
    case 'Leave':
    case 'OpenDatagrams':
      return msg.type;
    case 'Input':
      return { Input: { seq: msg.seq, tick: msg.tick, ack: msg.ack, buttons: msg.buttons, aim: msg.aim } };
    case 'Ack':
      return { Ack: msg.tick };
    case 'Ping':
      return { Ping: u64(msg.nonce) };
    case 'Welcome':
      return {
        Welcome: {
          protocol: msg.protocol,
          player_id: msg.playerId,
          tick_hz: msg.tickHz,
          snapshot_hz: msg.snapshotHz,
          tick: msg.tick,
          room: msg.room,
          session: Array.from(msg.session),
          resumed: msg.resumed,
          input_seq: msg.inputSeq,
          resume_grace_ms: msg.resumeGraceMs,
        },
      };
    case 'Snapshot':
      return { Snapshot: snapshotToSerde(msg.snapshot) };
    case 'Pong':
      return { Pong: { nonce: u64(msg.nonce), tick: msg.tick } };
    case 'Disconnect': {
      const { type, ...fields } = msg.reason;
      return { Disconnect: Object.keys(fields).length ? { [type]: fields } : type };
    }
    case 'DatagramChannel':
      return { DatagramChannel: { port: msg.port, id: Array.from(msg.id), key: Array.from(msg.key) } };
    default:
      throw new Error(`unknown message ${msg.type}`);
  }
}

/**
 * The browser's message object from the serde JSON form of a ClientMsg or
 * ServerMsg (the inverse of toSerde, for the messages without snapshots).
 * @param {any} v
 */
export function fromSerde(v) {
  if (typeof v === 'string') return { type: v };
  const [type, f] = Object.entries(v)[0];
  const bytes = (/** @type {number[]} */ a) => Uint8Array.from(a);
  const big = (/** @type {number|string} */ n) => BigInt(n);
  switch (type) {
    case 'Hello':
      return {
        type,
        protocol: f.protocol,
        name: f.name,
        room: f.room === 'Matchmake' ? null : f.room.Named,
        auth: f.auth,
        resume: f.resume === null ? null : bytes(f.resume),
      };
    case 'Input':
      return { type, seq: f.seq, tick: f.tick, ack: f.ack, buttons: f.buttons, aim: f.aim };
    case 'Ack':
      return { type, tick: f };
    case 'Ping':
      return { type, nonce: big(f) };
    case 'Welcome':
      return {
        type,
        protocol: f.protocol,
        playerId: f.player_id,
        tickHz: f.tick_hz,
        snapshotHz: f.snapshot_hz,
        tick: f.tick,
        room: f.room,
        session: bytes(f.session),
        resumed: f.resumed,
        inputSeq: f.input_seq,
        resumeGraceMs: f.resume_grace_ms,
      };
    case 'Pong':
      return { type, nonce: big(f.nonce), tick: f.tick };
    case 'Disconnect':
      return { type, reason: typeof f === 'string' ? { type: f } : { type: Object.keys(f)[0], ...Object.values(f)[0] } };
    case 'DatagramChannel':
      return { type, port: f.port, id: bytes(f.id), key: bytes(f.key) };
    default:
      throw new Error(`fromSerde: unsupported ${type}`);
  }
}

/**
 * A WorldState from its golden JSON form.
 * @param {any} s
 */
export function fromSerdeState(s) {
  return {
    tick: s.tick,
    entities: s.entities.map((e) => ({
      id: e.id,
      kind: KIND_NAMES.indexOf(e.kind),
      x: e.x,
      y: e.y,
      vx: e.vx,
      vy: e.vy,
      angle: e.angle,
      hp: e.hp,
    })),
    players: s.players.map((p) => ({ id: p.id, name: p.name, score: p.score, deaths: p.deaths })),
  };
}

/**
 * A snapshot message with every list empty, at tick 0 against a baseline
 * one tick old: the tests fill in what they need.
 * @param {any} fields
 */
export function emptySnapshot(fields = {}) {
  return {
    tick: 0,
    baseAge: 1,
    inputAck: 0,
    checksum: 0,
    removed: [],
    created: [],
    changed: [],
    values: [],
    playersRemoved: [],
    playersUpserted: [],
    playersScored: [],
    ...fields,
  };
}
