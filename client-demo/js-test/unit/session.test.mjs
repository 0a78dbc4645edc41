// Protocol v2 and v3 on the browser's side: the hello and welcome fields, what
// the client does after each disconnect reason, session resume (which hello,
// which inputs again, the sessionStorage record), the connection's reconnect
// logic against a scripted fake socket, and input pacing. No browser, no
// server: time is a fake clock.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import {
  CodecError,
  DISCONNECT_VARIANTS,
  MAX_AUTH_TOKEN_BYTES,
  MAX_ROOM_NAME_BYTES,
  SESSION_TOKEN_BYTES,
  decodeClient,
  decodeServer,
  encodeClient,
  encodeServer,
  isValidRoomName,
} from '../../web/js/codec.js';
import { CLOSE_HANDSHAKE_TIMEOUT, CLOSE_UNREADABLE, Connection, stopAdvice } from '../../web/js/net.js';
import { InputPacer, MAX_BACKLOG, MAX_UNACKED } from '../../web/js/pacing.js';
import { Predictor } from '../../web/js/prediction.js';
import { PROTOCOL_VERSION, reasonNext, reasonSessionKept } from '../../web/js/protocol.js';
import { Buttons, movePlayer, tickRules } from '../../web/js/rules.js';
import {
  MAX_RESEND,
  SESSION_KEY,
  STATE_KEY,
  SessionStore,
  answerClaims,
  heldElsewhere,
  helloFor,
  inputsToResend,
  nextStep,
} from '../../web/js/session.js';
import { SnapshotReceiver } from '../../web/js/snapshot.js';
import { fromSerdeState, hexToBytes } from './serde-shape.mjs';
import { bytesToHex } from './serde-shape.mjs';

const rules30 = tickRules(30);
const token = (/** @type {number} */ fill) => new Uint8Array(SESSION_TOKEN_BYTES).fill(fill);

// ---------------------------------------------------------------------------
// Codec

test('token and room limits match the Rust constants', () => {
  const c = JSON.parse(readFileSync(new URL('../golden.json', import.meta.url), 'utf8')).constants;
  assert.equal(SESSION_TOKEN_BYTES, c.SESSION_TOKEN_BYTES);
  assert.equal(MAX_ROOM_NAME_BYTES, c.MAX_ROOM_NAME_BYTES);
  assert.equal(MAX_AUTH_TOKEN_BYTES, c.MAX_AUTH_TOKEN_BYTES);
});

test('room names: the cases shared::protocol tests', () => {
  for (const ok of ['a', 'duel-7', 'Team_Blue', 'x'.repeat(MAX_ROOM_NAME_BYTES)]) assert.ok(isValidRoomName(ok), ok);
  for (const bad of ['', 'a b', 'a/b', 'é', 'a\n', '<script>', 'x'.repeat(MAX_ROOM_NAME_BYTES + 1)]) {
    assert.ok(!isValidRoomName(bad), JSON.stringify(bad));
  }
});

test('every hello shape round-trips, and the token is 16 raw bytes', () => {
  const base = { type: 'Hello', protocol: PROTOCOL_VERSION, name: 'ana' };
  for (const room of [null, 'duel-7', '']) {
    for (const auth of [null, 'alice.1.x', '']) {
      for (const resume of [null, token(0xab)]) {
        const msg = { ...base, room, auth, resume };
        assert.deepEqual(decodeClient(encodeClient(msg)), msg);
      }
    }
  }
  const without = encodeClient({ ...base, room: null, auth: null, resume: null });
  const withToken = encodeClient({ ...base, room: null, auth: null, resume: token(0xff) });
  assert.equal(withToken.length, without.length + SESSION_TOKEN_BYTES, 'tag byte 1 instead of 0, then the bytes');
  assert.deepEqual([...withToken.subarray(-16)], [...token(0xff)]);
  assert.equal(bytesToHex(encodeClient({ type: 'Leave' })), '04');
});

test('bad option tags and bools are refused, as bincode refuses them', () => {
  const V = PROTOCOL_VERSION;
  const hello = encodeClient({ type: 'Hello', protocol: V, name: '', room: null, auth: null, resume: null });
  // [0, version (one varint byte), 0 (name), 0 (Matchmake), auth tag, resume tag]
  assert.deepEqual([...hello], [0, V, 0, 0, 0, 0]);
  assert.throws(() => decodeClient(Uint8Array.from([0, V, 0, 0, 2, 0])), CodecError, 'auth tag 2');
  assert.throws(() => decodeClient(Uint8Array.from([0, V, 0, 0, 0, 2])), CodecError, 'resume tag 2');
  assert.throws(() => decodeClient(Uint8Array.from([0, V, 0, 2, 0, 0])), CodecError, 'room variant 2');
  assert.throws(() => decodeClient(Uint8Array.from([0, V, 0, 0, 0, 1, 1, 2, 3])), CodecError, 'short token');
  const welcome = encodeServer({
    type: 'Welcome',
    protocol: V,
    playerId: 1,
    tickHz: 30,
    snapshotHz: 30,
    tick: 5,
    room: 'r',
    session: token(1),
    resumed: true,
    inputSeq: 9,
    resumeGraceMs: 0,
  });
  const resumedAt = welcome.length - 3; // then input_seq and resume_grace_ms (one byte each)
  assert.equal(welcome[resumedAt], 1);
  for (const b of [0, 1]) {
    const ok = welcome.slice();
    ok[resumedAt] = b;
    assert.equal(/** @type {any} */ (decodeServer(ok)).resumed, b === 1);
  }
  const bad = welcome.slice();
  bad[resumedAt] = 2;
  assert.throws(() => decodeServer(bad), CodecError, 'bool 2');
});

test('the encoder refuses a session token of the wrong size and a non-bool', () => {
  const hello = { type: 'Hello', protocol: PROTOCOL_VERSION, name: '', room: null, auth: null };
  assert.throws(() => encodeClient({ ...hello, resume: new Uint8Array(15) }), RangeError);
  assert.throws(() => encodeClient({ ...hello, resume: /** @type {any} */ ([1, 2]) }), RangeError);
  const welcome = {
    type: 'Welcome',
    protocol: PROTOCOL_VERSION,
    playerId: 1,
    tickHz: 30,
    snapshotHz: 30,
    tick: 5,
    room: 'r',
    inputSeq: 0,
    resumeGraceMs: 10000,
  };
  assert.throws(() => encodeServer({ ...welcome, session: token(0), resumed: /** @type {any} */ (1) }), TypeError);
  assert.throws(() => encodeServer({ ...welcome, session: new Uint8Array(17), resumed: false }), RangeError);
});

// ---------------------------------------------------------------------------
// What to do after a disconnect

test('which reasons resume, rejoin, join fresh or stop', () => {
  const expected = {
    resume: ['ServerFull', 'HelloTimeout', 'IdleTimeout', 'TooSlow', 'RoomFull'],
    rejoin: ['ServerShutdown', 'RoomClosed'],
    fresh: ['SessionExpired', 'SessionWrongRoom'],
    stop: [
      'VersionMismatch',
      'MalformedMessage',
      'MessageTooLarge',
      'UnexpectedMessage',
      'RateLimited',
      'InvalidRoomName',
      'SessionReplaced',
      'AuthRequired',
      'AuthInvalid',
      'AuthExpired',
      'Left',
    ],
  };
  const got = { resume: [], rejoin: [], fresh: [], stop: [] };
  for (const type of DISCONNECT_VARIANTS) got[reasonNext(/** @type {any} */ ({ type }))].push(type);
  assert.deepEqual(got, expected);
  // A connection that just died is network trouble: resume.
  assert.equal(nextStep(null), 'resume');
  // session_kept, as Rust has it: exactly the network trouble.
  const kept = DISCONNECT_VARIANTS.filter((type) => reasonSessionKept(/** @type {any} */ ({ type })));
  assert.deepEqual(kept, ['IdleTimeout', 'TooSlow']);
  for (const type of kept) assert.equal(reasonNext(/** @type {any} */ ({ type })), 'resume');
  // Every stop says what can help.
  for (const type of expected.stop) assert.ok(stopAdvice(/** @type {any} */ ({ type })).hint.length > 0, type);
  assert.equal(stopAdvice({ type: 'Left' }).button, 'rejoin');
  assert.equal(stopAdvice({ type: 'SessionReplaced' }).button, 'rejoin');
  assert.equal(stopAdvice({ type: 'VersionMismatch', server: 2, client: 1 }).button, 'reload');
});

test('the hello resumes only a session of the room this page asks for', () => {
  const session = { requested: null, room: 'public-3', token: token(7), playerId: 4 };
  // Matchmade session, matchmaking page: resume in the session's room, no
  // auth, no name (ignored on a resume).
  assert.deepEqual(helloFor({ name: 'ana', room: null, auth: 'secret', session }), {
    type: 'Hello',
    protocol: PROTOCOL_VERSION,
    name: '',
    room: 'public-3',
    auth: null,
    resume: session.token,
  });
  // The page now asks for a private room: a fresh join there, with auth.
  assert.deepEqual(helloFor({ name: 'ana', room: 'duel', auth: 'secret', session }), {
    type: 'Hello',
    protocol: PROTOCOL_VERSION,
    name: 'ana',
    room: 'duel',
    auth: 'secret',
    resume: null,
  });
  const priv = { ...session, requested: 'duel', room: 'duel' };
  assert.equal(helloFor({ name: 'a', room: 'duel', auth: null, session: priv }).resume, priv.token);
  assert.equal(helloFor({ name: 'a', room: null, auth: null, session: priv }).resume, null);
  assert.equal(helloFor({ name: 'a', room: null, auth: null, session: null }).resume, null);
});

test('after a resume, only inputs the server never received are sent again, at most its buffer', () => {
  const pending = [5, 6, 7, 8].map((seq) => ({ seq, tick: 100 + seq, buttons: seq, aim: seq }));
  assert.deepEqual(inputsToResend(pending, 6), { resend: pending.slice(2), dropped: [] });
  assert.deepEqual(inputsToResend(pending, 8), { resend: [], dropped: [] });
  assert.deepEqual(inputsToResend(pending, 0), { resend: pending, dropped: [] });
  const many = Array.from({ length: 20 }, (_, i) => ({ seq: i + 1, tick: 0, buttons: 0, aim: 0 }));
  const { resend, dropped } = inputsToResend(many, 2);
  assert.deepEqual(resend.map((p) => p.seq), [3, 4, 5, 6, 7, 8, 9, 10]);
  assert.equal(resend.length, MAX_RESEND);
  assert.deepEqual(dropped.map((p) => p.seq), [11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
  // The server still holds 2 and 3 of its buffer's 8, received, not yet
  // applied (the newest input_ack was 1): room for 6 more.
  const after = inputsToResend(many, 3, 1);
  assert.deepEqual(after.resend.map((p) => p.seq), [4, 5, 6, 7, 8, 9]);
  assert.equal(after.dropped[0].seq, 10);
  // A buffer already full takes none.
  assert.deepEqual(inputsToResend(many, 10, 1).resend, []);
});

/** A Storage on a Map. */
function memoryStorage() {
  const m = new Map();
  return {
    m,
    getItem: (/** @type {string} */ k) => (m.has(k) ? m.get(k) : null),
    setItem: (/** @type {string} */ k, /** @type {string} */ v) => void m.set(k, String(v)),
    removeItem: (/** @type {string} */ k) => void m.delete(k),
  };
}

test('the session record survives a reload and tolerates garbage', () => {
  const storage = memoryStorage();
  const store = new SessionStore(storage);
  assert.equal(store.load(), null);
  const s = { requested: 'duel', room: 'duel', token: token(0x5a), playerId: 12 };
  store.save(s);
  assert.deepEqual(new SessionStore(storage).load(), s);
  store.clear();
  assert.equal(store.load(), null);
  for (const junk of ['{', 'null', '{"room":"r","token":"zz","playerId":1}', '{"room":"r","token":"00","playerId":1}', '{"room":5}']) {
    storage.setItem(SESSION_KEY, junk);
    assert.equal(store.load(), null, junk);
  }
  const broken = {
    getItem() {
      throw new Error('denied');
    },
    setItem() {
      throw new Error('full');
    },
    removeItem() {
      throw new Error('denied');
    },
  };
  const b = new SessionStore(broken);
  assert.equal(b.load(), null);
  b.save(s);
  b.clear();
  assert.equal(new SessionStore(null).load(), null);
});

test('a reloaded page keeps the acknowledged state and applies the next delta against it', () => {
  const golden = JSON.parse(readFileSync(new URL('../golden.json', import.meta.url), 'utf8'));
  const delta = golden.snapshots.find((v) => v.name === 'delta: every change kind and field mask');
  const baseline = fromSerdeState(delta.baseline);
  const storage = memoryStorage();
  const store = new SessionStore(storage);
  store.saveState(baseline);
  // The next page: the state comes back exactly, once.
  const kept = new SessionStore(storage).takeState();
  assert.deepEqual(kept, baseline);
  assert.equal(store.takeState(), null, 'used once');
  const r = new SnapshotReceiver();
  r.seed(/** @type {any} */ (kept));
  const state = r.receive(decodeServer(hexToBytes(delta.hex)).snapshot);
  assert.ok(state, 'the delta applied and its checksum matched');
  assert.equal(r.desyncs + r.missingBaselines + r.badDeltas, 0);
  // Clearing the session drops the state too; garbage is no state.
  store.saveState(baseline);
  store.clear();
  assert.equal(store.takeState(), null);
  for (const junk of ['{', '[]', '{"tick":1,"entities":[[1,2]],"players":[]}', '{"tick":1,"entities":[],"players":[[1,2,3,4]]}']) {
    storage.setItem(STATE_KEY, junk);
    assert.equal(store.takeState(), null, junk);
  }
});

test('a resumed predictor replays only what the server will apply, and numbers on', () => {
  const p = new Predictor(rules30);
  p.reconcile({ x: 4000, y: 3000, hp: 100 }, 0);
  const server = { x: 4000, y: 3000 };
  for (let i = 0; i < 6; i++) p.step(Buttons.RIGHT, { tick: 10 + i, aim: 100 });
  assert.deepEqual(p.pending.map((q) => [q.seq, q.tick, q.aim]), [1, 2, 3, 4, 5, 6].map((s) => [s, 9 + s, 100]));
  // The server got inputs 1..4 and applied 1..3 before the link died.
  for (let i = 0; i < 3; i++) [server.x, server.y] = movePlayer(server.x, server.y, Buttons.RIGHT, rules30);
  p.reconcile({ x: server.x, y: server.y, hp: 100 }, 3);
  const { resend, dropped } = inputsToResend(p.pending, 4);
  assert.deepEqual(resend.map((q) => q.seq), [5, 6]);
  p.resume(4, dropped);
  assert.equal(p.nextSeq, 7, 'numbering goes on from the own counter');
  // The server applies 4 (received before), then the resent 5 and 6.
  for (let i = 0; i < 3; i++) [server.x, server.y] = movePlayer(server.x, server.y, Buttons.RIGHT, rules30);
  p.reconcile({ x: server.x, y: server.y, hp: 100 }, 6);
  assert.deepEqual([p.x, p.y], [server.x, server.y]);
  assert.equal(p.corrections, 0);

  // A reloaded page starts from 1: it must go on above what the server had.
  const fresh = new Predictor(rules30);
  fresh.resume(500, []);
  assert.equal(fresh.step(0), 501);
});

test('inputs the server will never get are given up, with one correction', () => {
  const p = new Predictor(rules30);
  p.reconcile({ x: 4000, y: 3000, hp: 100 }, 0);
  for (let i = 0; i < 20; i++) p.step(Buttons.DOWN);
  const { dropped } = inputsToResend(p.pending, 0);
  p.resume(0, dropped);
  assert.deepEqual(p.pending.map((q) => q.seq), [1, 2, 3, 4, 5, 6, 7, 8]);
  // The server applied the 8 resent inputs: prediction agrees after one fix-up.
  let [x, y] = [4000, 3000];
  for (let i = 0; i < 8; i++) [x, y] = movePlayer(x, y, Buttons.DOWN, rules30);
  p.reconcile({ x, y, hp: 100 }, 8);
  assert.deepEqual([p.x, p.y], [x, y]);
  assert.deepEqual(p.pending, []);
});

// ---------------------------------------------------------------------------
// The connection, against a scripted socket and a fake clock

/** Timers and performance.now() on a clock that moves only when told. */
/**
 * Runs `fn` with timers and `performance.now` faked, restoring them however
 * it ends.
 * @param {(clock: ReturnType<typeof fakeClock>) => void} fn
 */
function withFakeClock(fn) {
  const clock = fakeClock();
  try {
    fn(clock);
  } finally {
    clock.restore();
  }
}

function fakeClock() {
  let now = 0;
  let nextId = 1;
  /** @type {Map<number, {at: number, fn: () => void, every: number}>} */
  const timers = new Map();
  const saved = {
    setTimeout: globalThis.setTimeout,
    setInterval: globalThis.setInterval,
    clearTimeout: globalThis.clearTimeout,
    clearInterval: globalThis.clearInterval,
    now: performance.now,
  };
  const add = (/** @type {() => void} */ fn, /** @type {number} */ ms, /** @type {number} */ every) => {
    const id = nextId++;
    timers.set(id, { at: now + Math.max(0, ms), fn, every });
    return id;
  };
  Object.assign(globalThis, {
    setTimeout: (/** @type {() => void} */ fn, ms = 0) => add(fn, ms, 0),
    setInterval: (/** @type {() => void} */ fn, /** @type {number} */ ms) => add(fn, ms, Math.max(1, ms)),
    clearTimeout: (/** @type {number} */ id) => void timers.delete(id),
    clearInterval: (/** @type {number} */ id) => void timers.delete(id),
  });
  performance.now = () => now;
  return {
    /** @param {number} ms */
    advance(ms) {
      const end = now + ms;
      for (;;) {
        let next = null;
        for (const [id, t] of timers) if (t.at <= end && (!next || t.at < next[1].at)) next = [id, t];
        if (!next) break;
        const [id, t] = next;
        now = t.at;
        if (t.every) t.at += t.every;
        else timers.delete(id);
        t.fn();
      }
      now = end;
    },
    restore() {
      Object.assign(globalThis, {
        setTimeout: saved.setTimeout,
        setInterval: saved.setInterval,
        clearTimeout: saved.clearTimeout,
        clearInterval: saved.clearInterval,
      });
      performance.now = saved.now;
    },
  };
}

/** A WebSocket the test plays the server of. */
class FakeSocket {
  /** @type {FakeSocket[]} */
  static all = [];
  /** @param {string} url */
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    /** @type {any[]} decoded client messages */
    this.sent = [];
    /** @type {{code: number, reason: string}|null} */
    this.closedByClient = null;
    /** @type {any} */ this.onopen = null;
    /** @type {any} */ this.onmessage = null;
    /** @type {any} */ this.onclose = null;
    /** @type {any} */ this.onerror = null;
    FakeSocket.all.push(this);
  }
  /** @param {Uint8Array} bytes */
  send(bytes) {
    this.sent.push(decodeClient(bytes));
  }
  /**
   * As a browser does, refuses close codes a page may not send (only 1000
   * and 3000-4999 are allowed) by throwing, without closing.
   * @param {number} code @param {string} reason
   */
  close(code, reason) {
    if (code !== undefined && code !== 1000 && (code < 3000 || code > 4999)) {
      throw new DOMException(`close code ${code} is not allowed`, 'InvalidAccessError');
    }
    this.readyState = 3;
    this.closedByClient = { code, reason };
  }
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  /** @param {any} msg a ServerMsg */
  receive(msg) {
    const bytes = encodeServer(msg);
    this.onmessage?.({ data: bytes.buffer });
  }
  /** The server says why and closes. @param {any} reason */
  kick(reason) {
    this.receive({ type: 'Disconnect', reason });
    this.die(1008, 'kicked');
  }
  /** The connection ends, with or without a close frame. */
  die(code = 1006, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  get hello() {
    return this.sent.find((m) => m.type === 'Hello');
  }
}

/** @param {{room?: string|null, auth?: string|null, storage?: any}} [o] */
function connection(o = {}) {
  FakeSocket.all = [];
  /** @type {any[]} */
  const statuses = [];
  /** @type {any[]} */
  const welcomes = [];
  const storage = o.storage ?? memoryStorage();
  const conn = new Connection({
    url: 'ws://test/ws',
    name: () => 'ana',
    room: o.room ?? null,
    auth: o.auth ?? null,
    storage,
    onWelcome: (w) => welcomes.push(w),
    onSnapshot: () => {},
    onBytes: () => {},
    onPing: () => {},
    onStatus: (s) => statuses.push(s),
    WebSocket: /** @type {any} */ (FakeSocket),
  });
  const last = () => FakeSocket.all[FakeSocket.all.length - 1];
  return { conn, statuses, welcomes, storage, last, status: () => statuses[statuses.length - 1] };
}

/**
 * A connection that has connected, opened and been welcomed: playing.
 * @param {{room?: string|null, auth?: string|null, storage?: any}} [o] @param {Partial<any>} [w]
 */
function playing(o = {}, w = {}) {
  const c = connection(o);
  c.conn.connect();
  c.last().open();
  c.last().receive(welcome(w));
  return c;
}

/** @param {Partial<any>} [w] */
function welcome(w = {}) {
  return {
    type: 'Welcome',
    protocol: PROTOCOL_VERSION,
    playerId: 7,
    tickHz: 30,
    snapshotHz: 30,
    tick: 100,
    room: 'public-1',
    session: token(0x42),
    resumed: false,
    inputSeq: 0,
    resumeGraceMs: 10000,
    ...w,
  };
}

test('a dropped connection resumes the session with the welcome\'s token and room', () => {
  withFakeClock((clock) => {
    const c = connection({ auth: 'tok' });
    c.conn.connect();
    c.last().open();
    assert.deepEqual(c.last().hello, { type: 'Hello', protocol: PROTOCOL_VERSION, name: 'ana', room: null, auth: 'tok', resume: null });
    c.last().receive(welcome());
    assert.equal(c.status().state, 'playing');
    assert.ok(c.storage.getItem(SESSION_KEY), 'the session is kept for a reload');

    c.last().die(); // no Disconnect, no close frame
    assert.equal(c.status().state, 'closed');
    assert.equal(c.status().fatal, false);
    assert.equal(c.status().resuming, true);
    assert.match(c.status().message, /Connection lost/);
    clock.advance(700); // first retry: 500 ms ± 20 %
    assert.equal(FakeSocket.all.length, 2);
    c.last().open();
    assert.deepEqual(c.last().hello, {
      type: 'Hello',
      protocol: PROTOCOL_VERSION,
      name: '',
      room: 'public-1',
      auth: null,
      resume: token(0x42),
    });
    c.last().receive(welcome({ resumed: true, inputSeq: 33 }));
    assert.deepEqual(c.status(), { state: 'playing', resumed: true, room: 'public-1' });
    assert.equal(c.welcomes[1].inputSeq, 33);
    c.conn.teardown();
  });
});

test('past the server\'s resume grace the page stops promising a resume and joins afresh', () => {
  withFakeClock((clock) => {
    const c = playing({}, { resumeGraceMs: 3000 });
    c.last().die();
    assert.equal(c.status().resuming, true);
    assert.doesNotMatch(c.status().message, /ended/);
    // The server is down: every attempt fails, at most 2 s apart while the
    // seat is held.
    let attempts = 0;
    while (c.status().resuming) {
      clock.advance(2500);
      c.last().die();
      attempts++;
      assert.ok(attempts < 10, 'still resuming long past the grace');
    }
    assert.ok(performance.now() >= 3000, 'resumed for the whole grace');
    assert.ok(performance.now() < 3000 + 2500 + 1, 'not long after it');
    assert.equal(c.status().state, 'closed');
    assert.equal(c.status().fatal, false);
    assert.match(c.status().message, /Your game has ended \(the server holds a seat for 3 s/);
    assert.equal(c.storage.getItem(SESSION_KEY), null, 'the token is forgotten');
    // The next attempts say so too, and join as a new player.
    const nextAttempt = () => {
      const sockets = FakeSocket.all.length;
      for (let waited = 0; FakeSocket.all.length === sockets; waited += 100) {
        assert.ok(waited < 20000, 'no retry');
        clock.advance(100);
      }
    };
    nextAttempt();
    c.last().die();
    assert.match(c.status().message, /reconnect attempt \d+ failed\)\. Your game has ended/);
    nextAttempt();
    c.last().open();
    assert.equal(c.last().hello.resume, null);
    c.last().receive(welcome({ session: token(0x43) }));
    assert.equal(c.status().state, 'playing');
    // A new game, a new grace: a drop resumes again.
    c.last().die();
    assert.equal(c.status().resuming, true);
    assert.doesNotMatch(c.status().message, /ended/);
    c.conn.teardown();
  });
});

test('a server that holds no seat is joined afresh after any drop', () => {
  withFakeClock((clock) => {
    const c = playing({}, { resumeGraceMs: 0 });
    c.last().die();
    assert.equal(c.status().resuming, false);
    assert.match(c.status().message, /this server holds no seat/);
    clock.advance(700);
    c.last().open();
    assert.equal(c.last().hello.resume, null);
    c.conn.teardown();
  });
});

test('a page that cannot use the server\'s snapshots stops, asks for a reload and keeps the session', () => {
  withFakeClock((clock) => {
    const c = playing();
    const socket = c.last();
    c.conn.abandon('The game state from the server does not check out on this page');
    assert.equal(socket.closedByClient?.code, 4002);
    assert.equal(c.status().state, 'closed');
    assert.equal(c.status().fatal, true);
    assert.equal(c.status().button, 'reload');
    assert.match(c.status().message, /does not check out/);
    clock.advance(60000);
    assert.equal(FakeSocket.all.length, 1, 'no reconnect behind the player\'s back');
    // The reloaded page resumes the player.
    const again = connection({ storage: c.storage });
    again.conn.connect();
    again.last().open();
    assert.deepEqual(again.last().hello.resume, token(0x42));
    again.conn.teardown();
  });
});

test('a server message that does not decode closes the socket, says why and resumes', () => {
  withFakeClock((clock) => {
    const c = playing();
    const socket = c.last();
    // Variant 9 of a five-variant enum: not a ServerMsg.
    socket.onmessage?.({ data: new Uint8Array([9, 0, 0]).buffer });
    assert.equal(socket.readyState, 3, 'the page closed the socket');
    assert.deepEqual(socket.closedByClient, { code: CLOSE_UNREADABLE, reason: 'malformed server message' });
    assert.equal(c.status().state, 'closed');
    assert.equal(c.status().fatal, false);
    assert.equal(c.status().resuming, true, 'the session is kept');
    assert.match(c.status().message, /^Could not read a server message \(unknown ServerMsg variant 9/);
    clock.advance(700);
    assert.equal(FakeSocket.all.length, 2, 'a new socket resumes the session');
    c.last().open();
    assert.deepEqual(c.last().hello.resume, token(0x42));
    c.conn.teardown();
  });
});

test('a datagram channel the page never asked for is ignored (protocols 8 and 9)', () => {
  withFakeClock(() => {
    const c = playing();
    const socket = c.last();
    const sent = socket.sent.length;
    const statuses = c.statuses.length;
    for (const port of [0, 8080]) {
      socket.receive({ type: 'DatagramChannel', port, id: token(port & 0xff).subarray(0, 8), key: token(port & 0xff) });
    }
    assert.equal(socket.readyState, 1, 'the socket stays open');
    assert.equal(socket.closedByClient, null);
    assert.equal(socket.sent.length, sent, 'nothing is sent in reply');
    assert.equal(c.statuses.length, statuses, 'the status does not change');
    assert.equal(c.status().state, 'playing');
    assert.ok(socket.sent.every((m) => m.type !== 'OpenDatagrams'), 'the page never asks for datagrams');
    c.conn.teardown();
  });
});

test('no welcome in time closes the socket with the page\'s own code and retries', () => {
  withFakeClock((clock) => {
    const c = connection();
    c.conn.connect();
    c.last().open();
    const socket = c.last();
    clock.advance(8001);
    assert.deepEqual(socket.closedByClient, { code: CLOSE_HANDSHAKE_TIMEOUT, reason: 'handshake timeout' });
    assert.equal(c.status().state, 'closed');
    assert.match(c.status().message, /did not answer the hello in time/);
    c.conn.teardown();
    if (c.conn.retryTimer) clearTimeout(c.conn.retryTimer);
  });
});

test('an expired or foreign session falls back to a fresh join at once', () => {
  for (const type of ['SessionExpired', 'SessionWrongRoom']) {
    withFakeClock((clock) => {
      const storage = memoryStorage();
      new SessionStore(storage).save({ requested: 'duel', room: 'duel', token: token(9), playerId: 3 });
      const c = connection({ room: 'duel', auth: 'tok', storage });
      c.conn.connect();
      c.last().open();
      assert.deepEqual(c.last().hello.resume, token(9), 'a reload resumes from sessionStorage');
      assert.equal(c.last().hello.room, 'duel');
      c.last().kick({ type });
      assert.equal(storage.getItem(SESSION_KEY), null, `${type} clears the stored session`);
      assert.equal(c.status().state, 'connecting');
      assert.match(c.status().note, /joining as a new player/);
      clock.advance(0);
      assert.equal(FakeSocket.all.length, 2, `${type}: reconnected without waiting`);
      c.last().open();
      assert.deepEqual(c.last().hello, { type: 'Hello', protocol: PROTOCOL_VERSION, name: 'ana', room: 'duel', auth: 'tok', resume: null });
      // A fresh join refused the same way (it cannot be) does not loop at once.
      c.last().kick({ type });
      clock.advance(0);
      assert.equal(FakeSocket.all.length, 2);
      assert.equal(c.status().state, 'closed');
      c.conn.teardown();
      if (c.conn.retryTimer) clearTimeout(c.conn.retryTimer);
    });
  }
});

test('no reconnect after a replaced session, a leave, bad auth or a broken rule', () => {
  const stops = [
    { type: 'SessionReplaced' },
    { type: 'AuthRequired' },
    { type: 'AuthInvalid' },
    { type: 'AuthExpired' },
    { type: 'VersionMismatch', server: 2, client: 1 },
    { type: 'MalformedMessage' },
    { type: 'RateLimited' },
    { type: 'InvalidRoomName' },
  ];
  for (const reason of stops) {
    withFakeClock((clock) => {
      const c = playing();
      c.last().kick(reason);
      const s = c.status();
      assert.equal(s.state, 'closed', reason.type);
      assert.equal(s.fatal, true, reason.type);
      assert.equal(s.retryAt, null);
      assert.match(s.message, /^Disconnected by the server: /);
      assert.equal(c.storage.getItem(SESSION_KEY), null, `${reason.type} forgets the session`);
      clock.advance(60000);
      assert.equal(FakeSocket.all.length, 1, `${reason.type}: never reconnects`);
    });
  }
  // Network trouble the server names keeps the session.
  for (const type of ['IdleTimeout', 'TooSlow']) {
    withFakeClock((clock) => {
      const c = playing();
      c.last().kick({ type });
      assert.equal(c.status().fatal, false);
      clock.advance(1000);
      c.last().open();
      assert.deepEqual(c.last().hello.resume, token(0x42), type);
      c.conn.teardown();
    });
  }
});

test('a room name the server would refuse is refused before connecting, with the room advice', () => {
  withFakeClock((clock) => {
    // Past the size of a hello, the server would answer "message too
    // large", whose advice (a newer client) is wrong.
    for (const room of ['x'.repeat(2000), 'a b', 'é']) {
      const c = connection({ room });
      c.conn.connect();
      assert.equal(FakeSocket.all.length, 0, `${room.slice(0, 8)}: no socket opened`);
      const s = c.status();
      assert.equal(s.state, 'closed');
      assert.equal(s.fatal, true);
      assert.match(s.message, /room name in the address cannot be used: invalid room name/);
      assert.equal(s.hint, stopAdvice({ type: 'InvalidRoomName' }).hint);
      clock.advance(60000);
      assert.equal(FakeSocket.all.length, 0, 'and never retried');
    }
  });
});

test('a second welcome, or one of another protocol, is not taken', () => {
  withFakeClock((clock) => {
    const c = playing();
    const first = c.last();
    first.receive(welcome({ playerId: 8 }));
    assert.equal(c.welcomes.length, 1, 'the second one is not applied');
    assert.deepEqual(first.closedByClient, { code: CLOSE_UNREADABLE, reason: 'unexpected welcome' });
    assert.equal(c.status().state, 'closed');
    assert.equal(c.status().resuming, true, 'the session is kept and resumed');
    assert.equal(c.conn.pingTimer, null, 'no timers left running');
    c.conn.teardown();
    if (c.conn.retryTimer) clearTimeout(c.conn.retryTimer);
    clock.advance(0);

    const d = playing({}, { protocol: PROTOCOL_VERSION + 1 });
    assert.equal(d.welcomes.length, 0);
    assert.equal(d.status().fatal, true);
    assert.match(d.status().message, new RegExp(`speaks protocol ${PROTOCOL_VERSION + 1}; this page speaks ${PROTOCOL_VERSION}`));
    assert.equal(d.status().button, 'reload');
  });
});

test('a refused reconnect names the server\'s reason', () => {
  withFakeClock((clock) => {
    const c = playing({ room: 'duel' }, { room: 'duel' });
    c.last().die();
    assert.match(c.status().message, /^Connection lost$/);
    clock.advance(700);
    c.last().open();
    c.last().kick({ type: 'RoomFull' });
    assert.equal(c.status().fatal, false);
    assert.equal(c.status().message, 'Connection lost (reconnect attempt 1 failed: room full)');
    c.conn.teardown();
    if (c.conn.retryTimer) clearTimeout(c.conn.retryTimer);
  });
});

test('leaving ends the game for good, and "Play again" joins as a new player', () => {
  withFakeClock((clock) => {
    const c = playing({ room: 'duel' }, { room: 'duel' });
    c.conn.leave();
    assert.deepEqual(c.last().sent.at(-1), { type: 'Leave' });
    c.last().kick({ type: 'Left' });
    assert.equal(c.status().fatal, true);
    assert.equal(c.status().message, 'You left the game');
    assert.equal(c.status().button, 'rejoin');
    c.conn.rejoin();
    c.last().open();
    assert.deepEqual(c.last().hello, { type: 'Hello', protocol: PROTOCOL_VERSION, name: 'ana', room: 'duel', auth: null, resume: null });
    c.conn.teardown();
  });
});

test('a leave sticks whatever becomes of the connection', () => {
  /** @param {(c: ReturnType<typeof connection>, clock: any) => void} after */
  const leaveThen = (after) =>
    withFakeClock((clock) => {
      const c = playing({ room: 'duel' }, { room: 'duel' });
      c.conn.leave();
      assert.equal(c.storage.getItem(SESSION_KEY), null, 'the session is forgotten at once');
      after(c, clock);
      const s = c.status();
      assert.equal(s.state, 'closed');
      assert.equal(s.fatal, true);
      assert.equal(s.message, 'You left the game');
      assert.equal(s.button, 'rejoin');
      clock.advance(60000);
      assert.equal(FakeSocket.all.length, 1, 'never reconnected, neither resumed nor fresh');
    });
  // The connection drops before the server's answer.
  leaveThen((c) => c.last().die());
  // The server goes silent instead.
  leaveThen((c, clock) => clock.advance(10000));
  // Or sends what the page cannot read.
  leaveThen((c) => c.last().onmessage?.({ data: new Uint8Array([9, 0, 0]).buffer }));
  // Or a second welcome.
  leaveThen((c) => c.last().receive(welcome({ room: 'duel' })));
  // Only the server's answer says the seat is free now.
  withFakeClock(() => {
    const c = playing();
    c.conn.leave();
    c.last().die();
    assert.match(c.status().hint, /once the server stops waiting for you/);
  });
  withFakeClock(() => {
    const c = playing();
    c.conn.leave();
    c.last().kick({ type: 'Left' });
    assert.equal(c.status().hint, stopAdvice({ type: 'Left' }).hint);
    // And a stopped page has nothing to leave: the button changes nothing.
    const stopped = c.status();
    c.conn.leave();
    assert.equal(c.status(), stopped);
  });
  // Leaving while the page is reconnecting stops the retries.
  withFakeClock((clock) => {
    const c = playing();
    c.last().die();
    assert.equal(c.status().fatal, false, 'a retry is scheduled');
    c.conn.leave();
    assert.equal(c.status().fatal, true);
    assert.equal(c.status().message, 'You left the game');
    assert.equal(c.storage.getItem(SESSION_KEY), null);
    clock.advance(60000);
    assert.equal(FakeSocket.all.length, 1, 'the scheduled retry never ran');
  });
});

test('a server gone silent is given up and the session resumed', () => {
  withFakeClock((clock) => {
    const c = playing();
    const first = c.last();
    // Pongs keep it alive.
    for (let i = 0; i < 10; i++) {
      clock.advance(1000);
      first.receive({ type: 'Pong', nonce: 1n, tick: 1 });
    }
    assert.equal(c.status().state, 'playing');
    // Then nothing: no close, no error, just silence.
    clock.advance(6000);
    assert.equal(c.status().state, 'closed');
    assert.match(c.status().message, /nothing from the server for \d s/);
    assert.ok(first.closedByClient, 'the dead socket is closed');
    clock.advance(2500);
    const second = c.last();
    assert.notEqual(second, first);
    second.open();
    assert.deepEqual(second.hello.resume, token(0x42));
    // The old socket's late close changes nothing.
    first.die();
    assert.equal(c.status().state, 'connecting');
    c.conn.teardown();
  });
});

test('a stored session of another room is not used and is dropped', () => {
  const storage = memoryStorage();
  new SessionStore(storage).save({ requested: 'other', room: 'other', token: token(1), playerId: 3 });
  const c = connection({ room: 'duel', storage });
  assert.equal(c.conn.session, null);
  assert.equal(storage.getItem(SESSION_KEY), null);
});

// ---------------------------------------------------------------------------
// Input pacing

test('a server that holds a backlog gets one input fewer per second until it drains', () => {
  const tickMs = 1000 / 30;
  const pacer = new InputPacer(30, 30);
  // Before any round trip is known, nothing is judged.
  for (let i = 0; i < 100; i++) pacer.onSnapshot(20);
  assert.equal(pacer.skip(20), false);
  pacer.onRtt(100); // 3 ticks in flight
  // A steady queue of 4 inputs on the server: unacked = 3 in flight + 1 + 4.
  for (let i = 0; i < 29; i++) {
    pacer.onSnapshot(8);
    assert.equal(pacer.skip(8), false, 'judged before the window was full');
  }
  pacer.onSnapshot(8);
  assert.equal(pacer.skip(8), true);
  assert.equal(pacer.skip(8), false, 'one skip per window');
  assert.equal(pacer.paced, 1);
  // Without a queue (jitter puts some samples higher, none lower): no skip.
  for (let i = 0; i < 30; i++) pacer.onSnapshot(i % 3 === 0 ? 4 : 6);
  assert.equal(pacer.skip(5), false);
  // Just at the limit of the allowed backlog: no skip either.
  const inFlight = 100 / tickMs + 1;
  for (let i = 0; i < 30; i++) pacer.onSnapshot(Math.floor(inFlight + MAX_BACKLOG));
  assert.equal(pacer.skip(5), false);
});

test('a server that takes no input stops the inputs until it acknowledges again', () => {
  const pacer = new InputPacer(30, 30);
  assert.equal(pacer.skip(MAX_UNACKED - 1), false);
  assert.equal(pacer.skip(MAX_UNACKED), true);
  assert.equal(pacer.stalled, 1);
});

test('pacing drains a backlog in a model of the server', () => {
  // The server applies one input per tick from its buffer; a stall of the
  // sender (a hidden tab: nothing for 5 ticks, then 6 at once) leaves 5 in
  // the buffer, and one in, one out per tick would keep them there.
  const pacer = new InputPacer(30, 30);
  pacer.onRtt(0);
  let sent = 0;
  let applied = 0;
  /** @type {number[]} */
  const buffer = [];
  const backlog = [];
  for (let t = 0; t < 400; t++) {
    const burst = t >= 45 && t < 50 ? 0 : t === 50 ? 6 : 1;
    for (let i = 0; i < burst; i++) {
      if (pacer.skip(sent - applied)) continue;
      buffer.push(++sent);
    }
    if (buffer.length) applied = /** @type {number} */ (buffer.shift());
    pacer.onSnapshot(sent - applied);
    backlog.push(buffer.length);
  }
  assert.ok(Math.max(...backlog.slice(50, 60)) >= 5, 'the stall built a backlog');
  // The pacer allows a tick of phase on top of MAX_BACKLOG; this model has none.
  assert.ok(backlog.at(-1) <= MAX_BACKLOG + 1, `backlog at the end: ${backlog.at(-1)}`);
  assert.ok(backlog.slice(300).every((b) => b === backlog.at(-1)), 'and it stays there');
  assert.ok(pacer.paced >= 2 && pacer.paced <= 6, `${pacer.paced} skips`);
});

test('a page copied from a playing one (a duplicated tab) learns that its session is taken', async () => {
  // Two pages of one browser: BroadcastChannels of one name.
  const name = `claims-${Math.random()}`;
  const playing = new BroadcastChannel(name);
  const starting = new BroadcastChannel(name);
  try {
    const token = new Uint8Array(SESSION_TOKEN_BYTES).fill(7);
    const other = new Uint8Array(SESSION_TOKEN_BYTES).fill(9);
    /** @type {Uint8Array|null} */
    let current = null;
    answerClaims(playing, () => current);
    // Nobody plays it yet (a reload: the old page is gone): resume.
    assert.equal(await heldElsewhere(starting, token, 100), false);
    current = token;
    assert.equal(await heldElsewhere(starting, token, 1000), true);
    // Another session, or no channel at all, is nobody's.
    assert.equal(await heldElsewhere(starting, other, 100), false);
    assert.equal(await heldElsewhere(null, token), false);
  } finally {
    playing.close();
    starting.close();
  }
});
