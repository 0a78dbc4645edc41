// The byte format of the arena protocol: a port of `shared/src/codec.rs`
// (bincode 2, `config::standard()`: little endian, variable-length integers).
//
// Each WebSocket binary message holds exactly one value. The rules:
// * unsigned integers (u16, u32, u64, and lengths) are varints: a value below
//   251 is one byte; otherwise a marker byte 251/252/253 is followed by the
//   value as u16/u32/u64 little endian. A marker too wide for the type is an
//   error (bincode refuses 253 for a u32), a narrower one is accepted.
// * signed integers are zigzag-mapped to unsigned first (0, -1, 1, -2 ...).
// * u8 is one raw byte, never a varint; a bool is one byte, 0 or 1.
// * Option: one raw tag byte, 0 (None) or 1 (Some), then the value.
// * fixed-size arrays ([u8; 16], the session token): the items, no length.
// * enums: the variant index as a u32 varint, then the variant's fields.
// * String and Vec: the length as a u64 varint, then the items (UTF-8 bytes).
//
// Decoding never trusts a length: a claimed length larger than the bytes that
// are left fails before anything is allocated, and every read is bounds
// checked, so malformed input throws a CodecError and never loops or hangs.
// The golden vectors in js-test/golden.json (written by the Rust crate) pin
// this file to the Rust implementation byte for byte.

import { KIND_COUNT } from './protocol.js';

/** Largest client message the server accepts, in bytes (shared::codec). */
export const MAX_CLIENT_MESSAGE = 1024;
/** Largest server message a client accepts, in bytes (16 MiB). */
export const MAX_SERVER_MESSAGE = 16 << 20;

const U16_BYTE = 251;
const U32_BYTE = 252;
const U64_BYTE = 253;

/** Bytes that are not one valid message. */
export class CodecError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'CodecError';
  }
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

/** Reads bincode values from a byte array, bounds checked. */
export class Reader {
  /** @param {Uint8Array} bytes */
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.at = 0;
  }

  /** Bytes not read yet. */
  remaining() {
    return this.bytes.length - this.at;
  }

  /** @param {number} n */
  need(n) {
    if (this.remaining() < n) {
      throw new CodecError(`unexpected end of message at byte ${this.at} (needed ${n} more)`);
    }
  }

  /** @returns {number} */
  u8() {
    this.need(1);
    return this.bytes[this.at++];
  }

  /** A bool: one byte, 0 or 1 (bincode refuses anything else). @returns {boolean} */
  bool() {
    const at = this.at;
    const b = this.u8();
    if (b > 1) throw new CodecError(`invalid bool ${b} at byte ${at}`);
    return b === 1;
  }

  /**
   * An Option: a tag byte (0 None, 1 Some), then the value.
   * @template T
   * @param {() => T} item
   * @returns {T|null}
   */
  option(item) {
    const at = this.at;
    const tag = this.u8();
    if (tag > 1) throw new CodecError(`invalid Option tag ${tag} at byte ${at}`);
    return tag === 1 ? item() : null;
  }

  /** `n` raw bytes (a fixed-size array), copied. @param {number} n */
  fixedBytes(n) {
    this.need(n);
    const out = this.bytes.slice(this.at, this.at + n);
    this.at += n;
    return out;
  }

  /**
   * A varint of an unsigned type that is `maxBytes` wide (2, 4 or 8).
   * Returns a number for widths up to 4 bytes, a bigint for 8.
   * @param {2|4|8} width
   * @returns {number|bigint}
   */
  varint(width) {
    const first = this.u8();
    if (first < U16_BYTE) return width === 8 ? BigInt(first) : first;
    let v;
    if (first === U16_BYTE) {
      this.need(2);
      v = this.view.getUint16(this.at, true);
      this.at += 2;
    } else if (first === U32_BYTE && width >= 4) {
      this.need(4);
      v = this.view.getUint32(this.at, true);
      this.at += 4;
    } else if (first === U64_BYTE && width === 8) {
      this.need(8);
      const big = this.view.getBigUint64(this.at, true);
      this.at += 8;
      return big;
    } else {
      throw new CodecError(`invalid varint marker ${first} for a ${width * 8}-bit integer at byte ${this.at - 1}`);
    }
    return width === 8 ? BigInt(v) : v;
  }

  /** @returns {number} */
  u16() {
    return /** @type {number} */ (this.varint(2));
  }

  /** @returns {number} */
  u32() {
    return /** @type {number} */ (this.varint(4));
  }

  /** @returns {bigint} */
  u64() {
    return /** @type {bigint} */ (this.varint(8));
  }

  /** Zigzag-decoded i32. @returns {number} */
  i32() {
    const n = this.u32();
    // n even: n / 2; n odd: !(n / 2). `>>> 1` keeps it unsigned, `^ -1` is `!`.
    return n & 1 ? ~(n >>> 1) : n >>> 1;
  }

  /**
   * A length prefix (u64 varint) of items that take at least `minItemBytes`
   * each: refused when the rest of the message cannot hold them.
   * @param {number} minItemBytes
   * @returns {number}
   */
  len(minItemBytes) {
    const at = this.at;
    const n = this.u64();
    if (n > BigInt(this.remaining()) / BigInt(minItemBytes)) {
      throw new CodecError(`length ${n} at byte ${at} exceeds the ${this.remaining()} bytes left`);
    }
    return Number(n);
  }

  /** @returns {string} */
  string() {
    const n = this.len(1);
    const slice = this.bytes.subarray(this.at, this.at + n);
    this.at += n;
    try {
      return utf8Decoder.decode(slice);
    } catch {
      throw new CodecError(`invalid UTF-8 in a string ending at byte ${this.at}`);
    }
  }

  /**
   * @template T
   * @param {() => T} item
   * @returns {T[]}
   */
  vec(item) {
    const n = this.len(1);
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = item();
    return out;
  }

  /**
   * The variant index of an enum with `count` variants.
   * @param {number} count @param {string} what enum name, for the error
   */
  variant(count, what) {
    const at = this.at;
    const v = this.u32();
    if (v >= count) throw new CodecError(`unknown ${what} variant ${v} at byte ${at}`);
    return v;
  }

  /** Throws unless every byte was used: one message is exactly one value. */
  finish() {
    if (this.remaining() !== 0) {
      throw new CodecError(`${this.remaining()} trailing bytes after the message`);
    }
  }
}

/** Writes bincode values into a growable buffer. */
export class Writer {
  constructor(capacity = 64) {
    this.bytes = new Uint8Array(capacity);
    this.view = new DataView(this.bytes.buffer);
    this.at = 0;
  }

  /** @param {number} n */
  reserve(n) {
    if (this.at + n <= this.bytes.length) return;
    let cap = this.bytes.length * 2;
    while (cap < this.at + n) cap *= 2;
    const grown = new Uint8Array(cap);
    grown.set(this.bytes.subarray(0, this.at));
    this.bytes = grown;
    this.view = new DataView(grown.buffer);
  }

  /** @param {number} v */
  u8(v) {
    checkInt(v, 0, 0xff, 'u8');
    this.reserve(1);
    this.bytes[this.at++] = v;
  }

  /** @param {boolean} v */
  bool(v) {
    if (typeof v !== 'boolean') throw new TypeError(`bool expected, got ${typeof v}`);
    this.u8(v ? 1 : 0);
  }

  /**
   * @template T
   * @param {T|null|undefined} v null or undefined is None
   * @param {(v: T) => void} write
   */
  option(v, write) {
    if (v === null || v === undefined) {
      this.u8(0);
    } else {
      this.u8(1);
      write(v);
    }
  }

  /** Raw bytes of a fixed-size array. @param {Uint8Array} b @param {number} n the array's size */
  fixedBytes(b, n) {
    if (!(b instanceof Uint8Array) || b.length !== n) throw new RangeError(`expected ${n} bytes`);
    this.reserve(n);
    this.bytes.set(b, this.at);
    this.at += n;
  }

  /** @param {number|bigint} v @param {2|4|8} width */
  varint(v, width) {
    if (width === 8) {
      const b = BigInt(v);
      if (b < 0n || b > 0xffffffffffffffffn) throw new RangeError(`u64 out of range: ${v}`);
      if (b > 0xffffffffn) {
        this.reserve(9);
        this.bytes[this.at++] = U64_BYTE;
        this.view.setBigUint64(this.at, b, true);
        this.at += 8;
        return;
      }
      v = Number(b);
    } else if (typeof v === 'bigint') {
      v = Number(v);
    }
    checkInt(v, 0, width === 2 ? 0xffff : 0xffffffff, `u${width * 8}`);
    if (v < U16_BYTE) {
      this.u8(v);
    } else if (v <= 0xffff) {
      this.reserve(3);
      this.bytes[this.at++] = U16_BYTE;
      this.view.setUint16(this.at, v, true);
      this.at += 2;
    } else {
      this.reserve(5);
      this.bytes[this.at++] = U32_BYTE;
      this.view.setUint32(this.at, v, true);
      this.at += 4;
    }
  }

  /** @param {number} v */
  u16(v) {
    this.varint(v, 2);
  }

  /** @param {number} v */
  u32(v) {
    this.varint(v, 4);
  }

  /** @param {number|bigint} v */
  u64(v) {
    this.varint(v, 8);
  }

  /** @param {number} v */
  i32(v) {
    checkInt(v, -0x80000000, 0x7fffffff, 'i32');
    this.u32(((v << 1) ^ (v >> 31)) >>> 0);
  }

  /** @param {string} s */
  string(s) {
    const bytes = utf8Encoder.encode(s);
    this.u64(bytes.length);
    this.reserve(bytes.length);
    this.bytes.set(bytes, this.at);
    this.at += bytes.length;
  }

  /**
   * @template T
   * @param {T[]} items
   * @param {(item: T) => void} write
   */
  vec(items, write) {
    this.u64(items.length);
    for (const item of items) write(item);
  }

  /** The bytes written so far (a copy). */
  finish() {
    return this.bytes.slice(0, this.at);
  }
}

/** @param {number} v @param {number} min @param {number} max @param {string} type */
function checkInt(v, min, max, type) {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`${type} out of range: ${v}`);
  }
}

function toBytes(/** @type {ArrayBuffer|Uint8Array} */ data) {
  return data instanceof Uint8Array ? data : new Uint8Array(data);
}

// ---------------------------------------------------------------------------
// Client messages (shared::protocol::ClientMsg), variant order = wire order.

/** Length of a session token, in bytes (shared::protocol::SESSION_TOKEN_BYTES). */
export const SESSION_TOKEN_BYTES = 16;
/** Longest room name, in bytes (shared::protocol::MAX_ROOM_NAME_BYTES). */
export const MAX_ROOM_NAME_BYTES = 32;
/** Longest auth token, in bytes (shared::protocol::MAX_AUTH_TOKEN_BYTES). */
export const MAX_AUTH_TOKEN_BYTES = 512;

/**
 * Whether the server accepts this room name (shared::protocol::is_valid_room_name):
 * 1 to 32 ASCII letters, digits, `-` and `_`.
 * @param {string} name
 */
export function isValidRoomName(name) {
  return /^[A-Za-z0-9_-]{1,32}$/.test(name);
}

/**
 * `room` is the RoomRequest: null asks for matchmaking (`Matchmake`), a
 * string for the room of that name (`Named`). `auth` is the AuthToken's
 * string, `resume` a SessionToken's 16 bytes; null is None for both.
 * An Input's `ack` is the newest snapshot tick the client holds (protocol 3:
 * the input carries the ack, so a playing client sends one message per
 * tick); before any snapshot, Welcome.tick, which no snapshot carries.
 * @typedef {{type: 'Hello', protocol: number, name: string, room: string|null,
 *     auth: string|null, resume: Uint8Array|null}
 *   | {type: 'Input', seq: number, tick: number, ack: number, buttons: number, aim: number}
 *   | {type: 'Ack', tick: number}
 *   | {type: 'Ping', nonce: bigint}
 *   | {type: 'Leave'}} ClientMsg
 */

const CLIENT_VARIANTS = ['Hello', 'Input', 'Ack', 'Ping', 'Leave'];
/** RoomRequest variants. */
const ROOM_MATCHMAKE = 0;
const ROOM_NAMED = 1;

/**
 * Encodes one client message.
 * @param {ClientMsg} msg
 * @returns {Uint8Array}
 */
export function encodeClient(msg) {
  const w = new Writer(16);
  const index = CLIENT_VARIANTS.indexOf(msg.type);
  if (index < 0) throw new TypeError(`unknown client message ${msg.type}`);
  w.u32(index);
  switch (msg.type) {
    case 'Hello':
      w.u32(msg.protocol);
      w.string(msg.name);
      if (msg.room === null || msg.room === undefined) {
        w.u32(ROOM_MATCHMAKE);
      } else {
        w.u32(ROOM_NAMED);
        w.string(msg.room);
      }
      w.option(msg.auth, (a) => w.string(a));
      w.option(msg.resume, (t) => w.fixedBytes(t, SESSION_TOKEN_BYTES));
      break;
    case 'Input':
      w.u32(msg.seq);
      w.u32(msg.tick);
      w.u32(msg.ack);
      w.u8(msg.buttons);
      w.u16(msg.aim);
      break;
    case 'Ack':
      w.u32(msg.tick);
      break;
    case 'Ping':
      w.u64(msg.nonce);
      break;
    case 'Leave':
      break;
  }
  return w.finish();
}

/**
 * Decodes one client message (the server's side; used by the tests).
 * @param {ArrayBuffer|Uint8Array} data
 * @returns {ClientMsg}
 */
export function decodeClient(data) {
  const bytes = toBytes(data);
  if (bytes.length > MAX_CLIENT_MESSAGE) {
    throw new CodecError(`message exceeds ${MAX_CLIENT_MESSAGE} bytes`);
  }
  const r = new Reader(bytes);
  /** @type {ClientMsg} */
  let msg;
  switch (r.variant(CLIENT_VARIANTS.length, 'ClientMsg')) {
    case 0: {
      const protocol = r.u32();
      const name = r.string();
      const room = r.variant(2, 'RoomRequest') === ROOM_NAMED ? r.string() : null;
      const auth = r.option(() => r.string());
      const resume = r.option(() => r.fixedBytes(SESSION_TOKEN_BYTES));
      msg = { type: 'Hello', protocol, name, room, auth, resume };
      break;
    }
    case 1:
      msg = { type: 'Input', seq: r.u32(), tick: r.u32(), ack: r.u32(), buttons: r.u8(), aim: r.u16() };
      break;
    case 2:
      msg = { type: 'Ack', tick: r.u32() };
      break;
    case 3:
      msg = { type: 'Ping', nonce: r.u64() };
      break;
    default:
      msg = { type: 'Leave' };
      break;
  }
  r.finish();
  return msg;
}

// ---------------------------------------------------------------------------
// Server messages (shared::protocol::ServerMsg).

/**
 * @typedef {{gap: number, kind: number, x: number, y: number, vx: number,
 *   vy: number, angle: number, hp: number}} EntityCreate
 * @typedef {{id: number, name: string, score: number, deaths: number}} PlayerInfo
 * @typedef {{gap: number, score: number, deaths: number}} ScoreDelta a baseline
 *   scoreboard entry whose name stayed: its id gap-coded like the entity
 *   lists, its score and deaths as i32 changes (wrapping), so a kill does not
 *   resend two names (protocol 4)
 * @typedef {{tick: number, baseAge: number, inputAck: number, checksum: number,
 *   removed: number[], created: EntityCreate[], changed: number[], values: number[],
 *   playersRemoved: number[], playersUpserted: PlayerInfo[],
 *   playersScored: ScoreDelta[]}} SnapshotMsg
 * @typedef {{type: 'VersionMismatch', server: number, client: number}
 *   | {type: 'ServerFull'|'MalformedMessage'|'MessageTooLarge'|'UnexpectedMessage'
 *      |'HelloTimeout'|'IdleTimeout'|'TooSlow'|'RateLimited'|'ServerShutdown'
 *      |'RoomFull'|'InvalidRoomName'|'SessionExpired'|'SessionWrongRoom'
 *      |'SessionReplaced'|'AuthRequired'|'AuthInvalid'|'AuthExpired'|'Left'}} DisconnectReason
 * @typedef {{type: 'Welcome', protocol: number, playerId: number, tickHz: number,
 *     snapshotHz: number, tick: number, room: string, session: Uint8Array,
 *     resumed: boolean, inputSeq: number}
 *   | {type: 'Snapshot', snapshot: SnapshotMsg}
 *   | {type: 'Pong', nonce: bigint, tick: number}
 *   | {type: 'Disconnect', reason: DisconnectReason}} ServerMsg
 */

const SERVER_VARIANTS = ['Welcome', 'Snapshot', 'Pong', 'Disconnect'];

/** DisconnectReason variants in wire order. */
export const DISCONNECT_VARIANTS = [
  'VersionMismatch',
  'ServerFull',
  'MalformedMessage',
  'MessageTooLarge',
  'UnexpectedMessage',
  'HelloTimeout',
  'IdleTimeout',
  'TooSlow',
  'RateLimited',
  'ServerShutdown',
  'RoomFull',
  'InvalidRoomName',
  'SessionExpired',
  'SessionWrongRoom',
  'SessionReplaced',
  'AuthRequired',
  'AuthInvalid',
  'AuthExpired',
  'Left',
];

/** @param {Reader} r @returns {PlayerInfo} */
function readPlayerInfo(r) {
  return { id: r.u32(), name: r.string(), score: r.u32(), deaths: r.u32() };
}

/** @param {Reader} r @returns {ScoreDelta} */
function readScoreDelta(r) {
  return { gap: r.u32(), score: r.i32(), deaths: r.i32() };
}

/** @param {Reader} r @returns {EntityCreate} */
function readEntityCreate(r) {
  return {
    gap: r.u32(),
    kind: r.variant(KIND_COUNT, 'EntityKind'),
    x: r.i32(),
    y: r.i32(),
    vx: r.i32(),
    vy: r.i32(),
    angle: r.u8(),
    hp: r.u8(),
  };
}

/** @param {Reader} r @returns {SnapshotMsg} */
function readSnapshot(r) {
  return {
    tick: r.u32(),
    baseAge: r.u32(),
    inputAck: r.u32(),
    checksum: r.u32(),
    removed: r.vec(() => r.u32()),
    created: r.vec(() => readEntityCreate(r)),
    changed: r.vec(() => r.u32()),
    values: r.vec(() => r.i32()),
    playersRemoved: r.vec(() => r.u32()),
    playersUpserted: r.vec(() => readPlayerInfo(r)),
    playersScored: r.vec(() => readScoreDelta(r)),
  };
}

/**
 * Decodes one server message. Throws CodecError on anything malformed.
 * @param {ArrayBuffer|Uint8Array} data
 * @returns {ServerMsg}
 */
export function decodeServer(data) {
  const bytes = toBytes(data);
  if (bytes.length > MAX_SERVER_MESSAGE) {
    throw new CodecError(`message exceeds ${MAX_SERVER_MESSAGE} bytes`);
  }
  const r = new Reader(bytes);
  /** @type {ServerMsg} */
  let msg;
  switch (r.variant(SERVER_VARIANTS.length, 'ServerMsg')) {
    case 0:
      msg = {
        type: 'Welcome',
        protocol: r.u32(),
        playerId: r.u32(),
        tickHz: r.u16(),
        snapshotHz: r.u16(),
        tick: r.u32(),
        room: r.string(),
        session: r.fixedBytes(SESSION_TOKEN_BYTES),
        resumed: r.bool(),
        inputSeq: r.u32(),
      };
      break;
    case 1:
      msg = { type: 'Snapshot', snapshot: readSnapshot(r) };
      break;
    case 2:
      msg = { type: 'Pong', nonce: r.u64(), tick: r.u32() };
      break;
    default: {
      const v = r.variant(DISCONNECT_VARIANTS.length, 'DisconnectReason');
      /** @type {DisconnectReason} */
      const reason =
        v === 0
          ? { type: 'VersionMismatch', server: r.u32(), client: r.u32() }
          : /** @type {DisconnectReason} */ ({ type: DISCONNECT_VARIANTS[v] });
      msg = { type: 'Disconnect', reason };
      break;
    }
  }
  r.finish();
  return msg;
}

/**
 * Encodes one server message (the server's side; used by the tests to prove
 * the decoder and encoder agree with Rust in both directions).
 * @param {ServerMsg} msg
 * @returns {Uint8Array}
 */
export function encodeServer(msg) {
  const w = new Writer(64);
  const index = SERVER_VARIANTS.indexOf(msg.type);
  if (index < 0) throw new TypeError(`unknown server message ${msg.type}`);
  w.u32(index);
  switch (msg.type) {
    case 'Welcome':
      w.u32(msg.protocol);
      w.u32(msg.playerId);
      w.u16(msg.tickHz);
      w.u16(msg.snapshotHz);
      w.u32(msg.tick);
      w.string(msg.room);
      w.fixedBytes(msg.session, SESSION_TOKEN_BYTES);
      w.bool(msg.resumed);
      w.u32(msg.inputSeq);
      break;
    case 'Snapshot': {
      const s = msg.snapshot;
      w.u32(s.tick);
      w.u32(s.baseAge);
      w.u32(s.inputAck);
      w.u32(s.checksum);
      w.vec(s.removed, (v) => w.u32(v));
      w.vec(s.created, (c) => {
        w.u32(c.gap);
        w.u32(c.kind);
        w.i32(c.x);
        w.i32(c.y);
        w.i32(c.vx);
        w.i32(c.vy);
        w.u8(c.angle);
        w.u8(c.hp);
      });
      w.vec(s.changed, (v) => w.u32(v));
      w.vec(s.values, (v) => w.i32(v));
      w.vec(s.playersRemoved, (v) => w.u32(v));
      w.vec(s.playersUpserted, (p) => {
        w.u32(p.id);
        w.string(p.name);
        w.u32(p.score);
        w.u32(p.deaths);
      });
      w.vec(s.playersScored, (d) => {
        w.u32(d.gap);
        w.i32(d.score);
        w.i32(d.deaths);
      });
      break;
    }
    case 'Pong':
      w.u64(msg.nonce);
      w.u32(msg.tick);
      break;
    case 'Disconnect': {
      const v = DISCONNECT_VARIANTS.indexOf(msg.reason.type);
      if (v < 0) throw new TypeError(`unknown disconnect reason ${msg.reason.type}`);
      w.u32(v);
      if (msg.reason.type === 'VersionMismatch') {
        w.u32(msg.reason.server);
        w.u32(msg.reason.client);
      }
      break;
    }
  }
  return w.finish();
}
