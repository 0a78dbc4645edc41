// Session resume, the pure parts: what to do after a connection ends, which
// hello to send, which inputs to send again after a resume, and the session
// record kept in sessionStorage so that a reload resumes too.
//
// The server keeps a player whose connection dropped (anything but a Leave or
// a kick for breaking a rule) for its resume grace period. A hello that
// presents the Welcome's session token in that time gets the same player back
// (`Welcome.resumed`), with `Welcome.input_seq` = the highest input seq the
// server received: the client sends its unacknowledged inputs after that one
// again and numbers on from its own counter.
//
// No DOM, no clock, no socket: the storage is passed in, so Node tests drive
// all of it.

import { SESSION_TOKEN_BYTES } from './codec.js';
import { PROTOCOL_VERSION, reasonNext } from './protocol.js';

/** sessionStorage key of the session record. Per tab: a second tab is a second player. */
export const SESSION_KEY = 'arena.session';

/**
 * Inputs the server buffers per player (its `--input-buffer`, default 8).
 * More resent at once would only be dropped as overflow.
 */
export const MAX_RESEND = 8;

/**
 * @typedef {import('./codec.js').DisconnectReason} DisconnectReason
 * @typedef {import('./codec.js').ClientMsg} ClientMsg
 * @typedef {{requested: string|null, room: string, token: Uint8Array, playerId: number}} Session
 *   `requested` is what the page asked for (null: matchmaking), `room` the
 *   room the Welcome named.
 * @typedef {{seq: number, tick: number, buttons: number, aim: number}} SentInput
 * @typedef {'resume'|'rejoin'|'fresh'|'stop'} NextStep
 */

/**
 * What to do after a connection ended.
 * @param {DisconnectReason|null} reason the server's reason, or null when the
 *   connection just died (no Disconnect message): network trouble, so resume.
 * @returns {NextStep}
 */
export function nextStep(reason) {
  return reason === null ? 'resume' : reasonNext(reason);
}

/**
 * The hello to send: a resume of `session` when it belongs to the room this
 * page asks for, else a fresh join. A resume names the session's room and
 * carries no auth token: the session token is the credential.
 * @param {{name: string, room: string|null, auth: string|null, session: Session|null}} p
 * @returns {ClientMsg & {type: 'Hello'}}
 */
export function helloFor({ name, room, auth, session }) {
  if (session && session.requested === room) {
    return { type: 'Hello', protocol: PROTOCOL_VERSION, name, room: session.room, auth: null, resume: session.token };
  }
  return { type: 'Hello', protocol: PROTOCOL_VERSION, name, room, auth, resume: null };
}

/**
 * Splits the unacknowledged inputs after a resume: those the server never
 * received (`seq > inputSeq`) are sent again, oldest first, as many as its
 * buffer takes; the rest of those are given up (the server never applies
 * them, so prediction must not count on them). Inputs at or below `inputSeq`
 * reached the server and are acknowledged as usual.
 * @template {SentInput} T
 * @param {T[]} pending unacknowledged inputs, in seq order
 * @param {number} inputSeq Welcome.input_seq
 * @param {number} [max]
 * @returns {{resend: T[], dropped: T[]}}
 */
export function inputsToResend(pending, inputSeq, max = MAX_RESEND) {
  const lost = pending.filter((p) => p.seq > inputSeq);
  return { resend: lost.slice(0, max), dropped: lost.slice(max) };
}

/** @param {Uint8Array} bytes */
export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** @param {string} hex @returns {Uint8Array|null} null unless exactly a session token */
function tokenFromHex(hex) {
  if (typeof hex !== 'string' || !/^[0-9a-f]*$/.test(hex) || hex.length !== 2 * SESSION_TOKEN_BYTES) return null;
  const out = new Uint8Array(SESSION_TOKEN_BYTES);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * The session record in a Storage (sessionStorage in the browser). Reading
 * tolerates anything: a record that does not parse is no session. Storage
 * that throws (disabled, full) only costs resuming after a reload.
 */
export class SessionStore {
  /** @param {Pick<Storage, 'getItem'|'setItem'|'removeItem'>|null} storage */
  constructor(storage) {
    this.storage = storage;
  }

  /** @returns {Session|null} */
  load() {
    try {
      const raw = this.storage?.getItem(SESSION_KEY);
      if (!raw) return null;
      const v = JSON.parse(raw);
      const token = tokenFromHex(v?.token);
      const requested = v?.requested ?? null;
      if (!token || typeof v.room !== 'string' || !(requested === null || typeof requested === 'string')) return null;
      if (!Number.isInteger(v.playerId)) return null;
      return { requested, room: v.room, token, playerId: v.playerId };
    } catch {
      return null;
    }
  }

  /** @param {Session} s */
  save(s) {
    try {
      this.storage?.setItem(
        SESSION_KEY,
        JSON.stringify({ requested: s.requested, room: s.room, token: toHex(s.token), playerId: s.playerId }),
      );
    } catch {
      // Resuming after a reload is a convenience.
    }
  }

  clear() {
    try {
      this.storage?.removeItem(SESSION_KEY);
    } catch {
      // As above.
    }
  }
}
