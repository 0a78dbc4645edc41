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
// * a snapshot's created entities, change heads and values (protocol 6) are
//   one bit-packed byte string, a Vec<u8> in bincode's eyes: see "The entity
//   section" below.
//
// Decoding never trusts a length: a claimed length larger than the bytes that
// are left fails before anything is allocated, and every read is bounds
// checked, so malformed input throws a CodecError and never loops or hangs.
// The golden vectors in js-test/golden.json (written by the Rust crate) pin
// this file to the Rust implementation byte for byte.

import { KIND_COUNT, Kind } from './protocol.js';
import { MAX_HP } from './rules.js';
import { fieldCounts } from './snapshot.js';

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

/**
 * Reads bincode values from a byte array, bounds checked, under the Rust
 * decoder's *decode budget* (PROTOCOL.md section 1): every value read is
 * charged its in-memory width (u8, bool and Option tags 1, u16 2, u32, i32
 * and variant indexes 4, u64 and length prefixes 8, one per string or
 * byte-string byte), and a message whose charges exceed `limit` is too
 * large, whatever its length on the wire. So both decoders refuse the same
 * messages (a few MB of tiny varints would otherwise pass here and not
 * there).
 */
export class Reader {
  /** @param {Uint8Array} bytes @param {number} [limit] the decode budget */
  constructor(bytes, limit = Infinity) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.at = 0;
    this.limit = limit;
    this.budget = limit;
  }

  /** Charges `n` bytes against the decode budget. @param {number} n */
  charge(n) {
    this.budget -= n;
    if (this.budget < 0) throw new CodecError(`message exceeds ${this.limit} bytes`);
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

  /** One byte, not charged: the first byte of a varint. @returns {number} */
  byte() {
    this.need(1);
    return this.bytes[this.at++];
  }

  /** @returns {number} */
  u8() {
    this.charge(1);
    return this.byte();
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
    this.charge(n);
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
    this.charge(width);
    const first = this.byte();
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
    return unzigzag(this.u32());
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
    this.charge(n);
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
    this.u32(zigzag(v));
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
 *   | {type: 'Leave'}
 *   | {type: 'OpenDatagrams'}} ClientMsg
 * `OpenDatagrams` (protocol 8) asks for a datagram channel; only a native
 * client that can send UDP does. The page never sends it: a browser has no
 * UDP socket.
 */

const CLIENT_VARIANTS = ['Hello', 'Input', 'Ack', 'Ping', 'Leave', 'OpenDatagrams'];
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
    case 'OpenDatagrams':
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
  const r = new Reader(bytes, MAX_CLIENT_MESSAGE);
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
    case 4:
      msg = { type: 'Leave' };
      break;
    case 5:
      msg = { type: 'OpenDatagrams' };
      break;
    default:
      // r.variant() refused every other index already.
      throw new CodecError('unreachable ClientMsg variant');
  }
  r.finish();
  return msg;
}

// ---------------------------------------------------------------------------
// The entity section of a snapshot (protocol 6): a port of
// `shared/src/codec/entities.rs`, which is the reference.
//
// A snapshot's created entities, change heads and values travel as one byte
// string of bits, most significant first: stream bit i is bit 7 - i % 8 of
// byte i / 8, a w-bit field occupies the next w bits from its top bit down,
// and the last byte is padded with zero bits. Every number is an
// exponential-Golomb code of an order k fixed per field: u is written as
// x = u + 2^k (n bits) after n - k - 1 zero bits. Signed numbers are zigzag
// mapped first. x can have 33 bits, so it is handled as a Number, never with
// 32-bit bit operators.

/** Code orders (k) per field (entities.rs `order`). */
const ORDER_COUNT = 4;
const ORDER_CREATE_GAP = 2;
const ORDER_CREATE_POS = 12;
const ORDER_CREATE_VEL = 6;
const ORDER_HEAD_GAP = 0;
const ORDER_POS = 2;
const ORDER_VEL = 4;
const ORDER_TURN = 2;
const ORDER_ANGLE = 2;
const ORDER_HP = 5;
/** Values beyond what the heads ask for (the server never sends any). */
const ORDER_SURPLUS = 2;

/** The fewest bits a created entity, a change head and a value can take. */
const MIN_CREATE_BITS = ORDER_CREATE_GAP + 1 + 2 + 2 * (ORDER_CREATE_POS + 1) + 2 * (ORDER_CREATE_VEL + 1) + 8 + 1;
const MIN_HEAD_BITS = 4 + ORDER_HEAD_GAP + 1;
const MIN_VALUE_BITS = 1 + Math.min(ORDER_POS, ORDER_VEL, ORDER_TURN, ORDER_ANGLE, ORDER_HP, ORDER_SURPLUS);
/** What each decoded item is charged against the section's budget, in bytes. */
const CREATE_CHARGE = 26;
const HEAD_CHARGE = 4;
const VALUE_CHARGE = 4;
/** The section's own decode budget (the Rust decoder's MAX_SERVER_MESSAGE). */
const SECTION_BUDGET = MAX_SERVER_MESSAGE;

/** Largest head gap: the gap is the head shifted right by its 4 field bits. */
const MAX_HEAD_GAP = 0xffffffff >>> 4;

const TRUNCATED = 'entity section truncated';

/**
 * The hit points a created entity of `kind` has unless the section says
 * otherwise (entities.rs `default_hp`). @param {number} kind
 */
function defaultHp(kind) {
  return kind === Kind.Projectile ? 1 : MAX_HP;
}

/** @param {number} v an i32 @returns {number} its zigzag u32 */
function zigzag(v) {
  return ((v << 1) ^ (v >> 31)) >>> 0;
}

/**
 * n even: n / 2; n odd: !(n / 2). `>>> 1` keeps it unsigned, `~` is `!`.
 * @param {number} u a u32 @returns {number} the i32 it zigzag-codes
 */
function unzigzag(u) {
  return u & 1 ? ~(u >>> 1) : u >>> 1;
}

/** Appends bits, most significant first (the encoder: the tests' server side). */
export class BitWriter {
  constructor() {
    /** @type {number[]} */
    this.out = [];
    /** Bits of the byte being filled, in the low `fill` bits. */
    this.cur = 0;
    this.fill = 0;
  }

  /**
   * Writes `v` in `width` bits, most significant first. Number arithmetic,
   * so `width` may be up to 33 (an exp-Golomb `x`).
   * @param {number} v @param {number} width
   */
  put(v, width) {
    if (!Number.isInteger(v) || v < 0 || v >= 2 ** width) throw new RangeError(`${v} does not fit ${width} bits`);
    while (width > 0) {
      const take = Math.min(8 - this.fill, width);
      width -= take;
      const p = 2 ** width;
      const top = Math.floor(v / p);
      v -= top * p;
      this.cur = (this.cur << take) | top;
      this.fill += take;
      if (this.fill === 8) {
        this.out.push(this.cur);
        this.cur = 0;
        this.fill = 0;
      }
    }
  }

  /** Exp-Golomb code of order `k` of a u32. @param {number} u @param {number} k */
  golomb(u, k) {
    checkInt(u, 0, 0xffffffff, 'u32');
    const x = u + 2 ** k;
    const n = x > 0xffffffff ? 33 : 32 - Math.clz32(x);
    this.put(0, n - k - 1);
    this.put(x, n);
  }

  /** Zigzag, then exp-Golomb of order `k`. @param {number} v @param {number} k */
  signed(v, k) {
    checkInt(v, -0x80000000, 0x7fffffff, 'i32');
    this.golomb(zigzag(v), k);
  }

  /** The bytes, the last one padded with zero bits. */
  finish() {
    if (this.fill > 0) {
      this.out.push((this.cur << (8 - this.fill)) & 0xff);
      this.cur = 0;
      this.fill = 0;
    }
    return Uint8Array.from(this.out);
  }
}

/** Reads bits, most significant first, bounds checked. */
export class BitReader {
  /** @param {Uint8Array} bytes */
  constructor(bytes) {
    this.bytes = bytes;
    // A copy with zero bytes after the end, so a 32-bit window can always
    // be read (bits past the end read as zeros, as Rust's `peek` does).
    this.padded = new Uint8Array(bytes.length + 5);
    this.padded.set(bytes);
    /** Position in bits. */
    this.at = 0;
    this.end = bytes.length * 8;
  }

  /** Bits not read yet. */
  left() {
    return this.end - this.at;
  }

  /** The next 32 bits, the oldest highest; zeros past the end. */
  peek32() {
    const b = this.padded;
    const i = this.at >>> 3;
    const off = this.at & 7;
    const w = (b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3];
    return (off === 0 ? w : (w << off) | (b[i + 4] >>> (8 - off))) >>> 0;
  }

  /** Reads `width` bits (up to 33: Number arithmetic). @param {number} width */
  bits(width) {
    if (this.end - this.at < width) throw new CodecError(TRUNCATED);
    if (width <= 32) {
      const v = width === 0 ? 0 : this.peek32() >>> (32 - width);
      this.at += width;
      return v;
    }
    const high = this.bits(width - 32);
    return high * 2 ** 32 + this.bits(32);
  }

  /**
   * Reads an exp-Golomb code of order `k`: a code for a number above
   * u32::MAX, or with more than 32 - k leading zeros (overlong), is
   * malformed. @param {number} k
   */
  golomb(k) {
    // Fast path: the whole code lies in the next 32 bits.
    const w = this.peek32();
    const zeros = Math.clz32(w);
    const width = 2 * zeros + k + 1;
    if (width <= 32 && width <= this.end - this.at) {
      this.at += width;
      return (w >>> (32 - width)) - (1 << k);
    }
    return this.golombWide(k);
  }

  /** golomb() for a code longer than 32 bits, or a bad one. @param {number} k */
  golombWide(k) {
    const bytes = this.bytes;
    const limit = 32 - k;
    let at = this.at;
    let zeros = 0;
    for (;;) {
      if (at >= this.end) throw new CodecError(TRUNCATED);
      const off = at & 7;
      const b = (bytes[at >>> 3] << off) & 0xff;
      if (b !== 0) {
        zeros += Math.clz32(b) - 24;
        break;
      }
      zeros += 8 - off;
      at += 8 - off;
      if (zeros > limit) break;
    }
    if (zeros > limit) {
      // As Rust tells the two apart: it counts the zeros in a 64-bit
      // window that reads zeros past the end.
      throw new CodecError(this.left() <= 64 && this.restIsZero() ? TRUNCATED : 'entity section: overlong number');
    }
    if (this.left() < 2 * zeros + k + 1) throw new CodecError(TRUNCATED);
    this.at += zeros;
    const u = this.bits(zeros + k + 1) - 2 ** k;
    if (u > 0xffffffff) throw new CodecError('entity section: number above u32::MAX');
    return u;
  }

  /** Whether every bit not read yet is zero. */
  restIsZero() {
    for (let at = this.at; at < this.end; at++) {
      if ((this.bytes[at >>> 3] >>> (7 - (at & 7))) & 1) return false;
    }
    return true;
  }

  /** A zigzag exp-Golomb code of order `k`. @param {number} k */
  signed(k) {
    return unzigzag(this.golomb(k));
  }

  /** Throws unless only the zero padding of the last byte is left. */
  finish() {
    const left = this.left();
    if (left >= 8) throw new CodecError('entity section: trailing bytes');
    if (left > 0 && (this.bytes[this.bytes.length - 1] & ((1 << left) - 1)) !== 0) {
      throw new CodecError('entity section: nonzero padding');
    }
  }
}

/** The code of the turn age among those forEachCode hands out: unsigned,
 * (k - 1) wrapped to a u32, of order ORDER_TURN; every other code is a
 * zigzag order. */
const TURN_AGE = -1;

/**
 * Calls `f` with the code of each value in order until it returns false
 * (entities.rs `for_each_code`). The values are in columns: two POS values
 * for each head with POS, then two VEL values for each head with VEL (each
 * pair followed by its turn age when `turn`, from base age 2 on), then one
 * ANGLE value for each head with ANGLE, then one HP value for each head
 * with HP; then ORDER_SURPLUS for values the heads do not ask for. `f` knows
 * how many values there are, and stops the walk after the last.
 * @param {number[]} heads @param {boolean} turn
 * @param {(code: number) => boolean} f
 */
function forEachCode(heads, turn, f) {
  const { pos, vel, angle, hp } = fieldCounts(heads);
  for (let i = 0; i < pos; i++) if (!(f(ORDER_POS) && f(ORDER_POS))) return;
  for (let i = 0; i < vel; i++) if (!(f(ORDER_VEL) && f(ORDER_VEL) && (!turn || f(TURN_AGE)))) return;
  for (let i = 0; i < angle; i++) if (!f(ORDER_ANGLE)) return;
  for (let i = 0; i < hp; i++) if (!f(ORDER_HP)) return;
  while (f(ORDER_SURPLUS));
}

/**
 * Reads a list's count and charges it against the section's budget,
 * refusing counts the section's bits cannot hold before anything is
 * allocated (entities.rs `count`).
 * @param {BitReader} r @param {number} minBits @param {number} charge
 * @param {{left: number}} budget
 */
function sectionCount(r, minBits, charge, budget) {
  const n = r.golomb(ORDER_COUNT);
  if (n * minBits > r.left()) throw new CodecError(TRUNCATED);
  const cost = n * charge;
  if (cost > budget.left) {
    throw new CodecError(`message exceeds ${MAX_SERVER_MESSAGE} bytes (the entity section's decode budget)`);
  }
  budget.left -= cost;
  return n;
}

/**
 * Decodes an entity section (without its length prefix) into the snapshot's
 * `created`, `changed` and `values` lists. Throws CodecError.
 * @param {Uint8Array} bytes
 * @param {number} baseAge the snapshot's base_age (a u32): from 2 on, a
 *   VEL change carries the turn age
 * @param {number} [budget] bytes the decoded lists may take (their
 *   in-memory width, as Rust counts it); more is refused as too large
 * @returns {{created: EntityCreate[], changed: number[], values: number[]}}
 */
export function unpackEntities(bytes, baseAge, budget = SECTION_BUDGET) {
  const r = new BitReader(bytes);
  const charged = { left: budget };

  let n = sectionCount(r, MIN_CREATE_BITS, CREATE_CHARGE, charged);
  /** @type {EntityCreate[]} */
  const created = new Array(n);
  for (let i = 0; i < n; i++) {
    const gap = r.golomb(ORDER_CREATE_GAP);
    const kind = r.bits(2);
    if (kind >= KIND_COUNT) throw new CodecError(`entity section: kind ${kind}`);
    const x = r.golomb(ORDER_CREATE_POS) | 0;
    const y = r.golomb(ORDER_CREATE_POS) | 0;
    const vx = r.signed(ORDER_CREATE_VEL);
    const vy = r.signed(ORDER_CREATE_VEL);
    const angle = r.bits(8);
    const hp = r.bits(1) === 1 ? defaultHp(kind) : r.bits(8);
    created[i] = { gap, kind, x, y, vx, vy, angle, hp };
  }

  n = sectionCount(r, MIN_HEAD_BITS, HEAD_CHARGE, charged);
  const changed = new Array(n);
  for (let i = 0; i < n; i++) {
    const mask = r.bits(4);
    const gap = r.golomb(ORDER_HEAD_GAP);
    if (gap > MAX_HEAD_GAP) throw new CodecError('entity section: head gap above 2^28');
    changed[i] = gap * 16 + mask;
  }

  // Each value's code comes from the heads (forEachCode). Values the heads
  // do not ask for are surplus; a list that ends early just ends (applying
  // the snapshot refuses both).
  n = sectionCount(r, MIN_VALUE_BITS, VALUE_CHARGE, charged);
  const values = new Array(n);
  let i = 0;
  forEachCode(changed, baseAge >>> 0 >= 2, (code) => {
    if (i === n) return false;
    values[i++] = code === TURN_AGE ? (r.golomb(ORDER_TURN) + 1) | 0 : r.signed(code);
    return true;
  });

  r.finish();
  return { created, changed, values };
}

/**
 * Encodes a snapshot's `created`, `changed` and `values` as its entity
 * section (without the length prefix): the bytes entities.rs `pack` writes.
 * Throws RangeError for a value its field cannot hold.
 * @param {{baseAge: number, created: EntityCreate[], changed: number[], values: number[]}} s
 * @returns {Uint8Array}
 */
export function packEntities(s) {
  const w = new BitWriter();
  w.golomb(s.created.length, ORDER_COUNT);
  for (const c of s.created) {
    checkInt(c.kind, 0, KIND_COUNT - 1, 'EntityKind');
    checkInt(c.x, -0x80000000, 0x7fffffff, 'i32');
    checkInt(c.y, -0x80000000, 0x7fffffff, 'i32');
    checkInt(c.angle, 0, 0xff, 'u8');
    checkInt(c.hp, 0, 0xff, 'u8');
    w.golomb(c.gap, ORDER_CREATE_GAP);
    w.put(c.kind, 2);
    w.golomb(c.x >>> 0, ORDER_CREATE_POS);
    w.golomb(c.y >>> 0, ORDER_CREATE_POS);
    w.signed(c.vx, ORDER_CREATE_VEL);
    w.signed(c.vy, ORDER_CREATE_VEL);
    w.put(c.angle, 8);
    // One bit when the hit points are the kind's default, else a zero bit
    // and the hit points.
    if (c.hp === defaultHp(c.kind)) w.put(1, 1);
    else w.put(c.hp, 9);
  }
  w.golomb(s.changed.length, ORDER_COUNT);
  for (const head of s.changed) {
    checkInt(head, 0, 0xffffffff, 'u32');
    w.put(head & 15, 4);
    w.golomb(Math.floor(head / 16), ORDER_HEAD_GAP);
  }
  const values = s.values;
  w.golomb(values.length, ORDER_COUNT);
  let i = 0;
  forEachCode(s.changed, s.baseAge >>> 0 >= 2, (code) => {
    if (i === values.length) return false;
    const v = values[i++];
    if (code === TURN_AGE) {
      checkInt(v, -0x80000000, 0x7fffffff, 'i32');
      w.golomb((v - 1) >>> 0, ORDER_TURN);
    } else {
      w.signed(v, code);
    }
    return true;
  });
  return w.finish();
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
 * A snapshot's `created`, `changed` and `values` are the lists the Rust
 * SnapshotMsg holds; on the wire they are its bit-packed entity section
 * (protocol 6, see above), decoded into these lists before anything else
 * looks at them.
 * @typedef {{tick: number, baseAge: number, inputAck: number, checksum: number,
 *   removed: number[], created: EntityCreate[], changed: number[], values: number[],
 *   playersRemoved: number[], playersUpserted: PlayerInfo[],
 *   playersScored: ScoreDelta[]}} SnapshotMsg
 * @typedef {{type: 'VersionMismatch', server: number, client: number}
 *   | {type: 'ServerFull'|'MalformedMessage'|'MessageTooLarge'|'UnexpectedMessage'
 *      |'HelloTimeout'|'IdleTimeout'|'TooSlow'|'RateLimited'|'ServerShutdown'
 *      |'RoomFull'|'InvalidRoomName'|'SessionExpired'|'SessionWrongRoom'
 *      |'SessionReplaced'|'AuthRequired'|'AuthInvalid'|'AuthExpired'|'Left'
 *      |'RoomClosed'}} DisconnectReason
 * @typedef {{type: 'Welcome', protocol: number, playerId: number, tickHz: number,
 *     snapshotHz: number, tick: number, room: string, session: Uint8Array,
 *     resumed: boolean, inputSeq: number, resumeGraceMs: number}
 *   | {type: 'Snapshot', snapshot: SnapshotMsg}
 *   | {type: 'Pong', nonce: bigint, tick: number}
 *   | {type: 'Disconnect', reason: DisconnectReason}
 *   | {type: 'DatagramChannel', port: number, id: Uint8Array, key: Uint8Array}} ServerMsg
 * `DatagramChannel` (protocol 8; the id since protocol 9) answers a
 * client's OpenDatagrams: the server's UDP port (0: no datagrams offered),
 * the 8-byte id that starts each of the client's datagrams and the 16-byte
 * key that signs them. The page never asks for one and ignores it.
 */

const SERVER_VARIANTS = ['Welcome', 'Snapshot', 'Pong', 'Disconnect', 'DatagramChannel'];

/** Length of a datagram id, in bytes (shared::protocol::DATAGRAM_ID_BYTES). */
export const DATAGRAM_ID_BYTES = 8;

/** Length of a datagram key, in bytes (shared::protocol::DATAGRAM_KEY_BYTES). */
export const DATAGRAM_KEY_BYTES = 16;

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
  'RoomClosed',
];

/** @param {Reader} r @returns {PlayerInfo} */
function readPlayerInfo(r) {
  return { id: r.u32(), name: r.string(), score: r.u32(), deaths: r.u32() };
}

/** @param {Reader} r @returns {ScoreDelta} */
function readScoreDelta(r) {
  return { gap: r.u32(), score: r.i32(), deaths: r.i32() };
}

/** @param {Reader} r @returns {SnapshotMsg} */
function readSnapshot(r) {
  const tick = r.u32();
  const baseAge = r.u32();
  const inputAck = r.u32();
  const checksum = r.u32();
  const removed = r.vec(() => r.u32());
  // Protocol 5: created, changed and values travel as one bit-packed byte
  // string (a bincode Vec<u8>: u64 varint length, then the bytes). It is
  // unpacked after the fields that follow it are read, as the Rust decoder
  // does, so a message with several faults is refused for the same one.
  const n = r.len(1);
  r.charge(n);
  const section = r.bytes.subarray(r.at, r.at + n);
  r.at += n;
  const playersRemoved = r.vec(() => r.u32());
  const playersUpserted = r.vec(() => readPlayerInfo(r));
  const playersScored = r.vec(() => readScoreDelta(r));
  const { created, changed, values } = unpackEntities(section, baseAge);
  return {
    tick,
    baseAge,
    inputAck,
    checksum,
    removed,
    created,
    changed,
    values,
    playersRemoved,
    playersUpserted,
    playersScored,
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
  const r = new Reader(bytes, MAX_SERVER_MESSAGE);
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
        resumeGraceMs: r.u32(),
      };
      break;
    case 1:
      msg = { type: 'Snapshot', snapshot: readSnapshot(r) };
      break;
    case 2:
      msg = { type: 'Pong', nonce: r.u64(), tick: r.u32() };
      break;
    case 3: {
      const v = r.variant(DISCONNECT_VARIANTS.length, 'DisconnectReason');
      /** @type {DisconnectReason} */
      const reason =
        v === 0
          ? { type: 'VersionMismatch', server: r.u32(), client: r.u32() }
          : /** @type {DisconnectReason} */ ({ type: DISCONNECT_VARIANTS[v] });
      msg = { type: 'Disconnect', reason };
      break;
    }
    case 4:
      msg = {
        type: 'DatagramChannel',
        port: r.u16(),
        id: r.fixedBytes(DATAGRAM_ID_BYTES),
        key: r.fixedBytes(DATAGRAM_KEY_BYTES),
      };
      break;
    default:
      // r.variant() refused every other index already.
      throw new CodecError('unreachable ServerMsg variant');
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
      w.u32(msg.resumeGraceMs);
      break;
    case 'Snapshot': {
      const s = msg.snapshot;
      w.u32(s.tick);
      w.u32(s.baseAge);
      w.u32(s.inputAck);
      w.u32(s.checksum);
      w.vec(s.removed, (v) => w.u32(v));
      const section = packEntities(s);
      w.u64(section.length);
      w.reserve(section.length);
      w.bytes.set(section, w.at);
      w.at += section.length;
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
    case 'DatagramChannel':
      w.u16(msg.port);
      w.fixedBytes(msg.id, DATAGRAM_ID_BYTES);
      w.fixedBytes(msg.key, DATAGRAM_KEY_BYTES);
      break;
  }
  return w.finish();
}
