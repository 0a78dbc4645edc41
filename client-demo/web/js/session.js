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
 * sessionStorage key of the newest acknowledged world state, written when the
 * page goes away. The server's first snapshot after a resume is a delta
 * against the state it saw acknowledged last; a reloaded page that kept it
 * can apply that delta at once, instead of waiting until the server no
 * longer holds that state and sends a full snapshot (about 2 s).
 */
export const STATE_KEY = 'arena.state';

/**
 * Inputs the server buffers per player (its `--input-buffer`, default 8).
 * More resent at once would only be dropped as overflow.
 */
export const MAX_RESEND = 8;

/**
 * @typedef {import('./codec.js').DisconnectReason} DisconnectReason
 * @typedef {import('./codec.js').ClientMsg} ClientMsg
 * @typedef {import('./snapshot.js').WorldState} WorldState
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
 * carries no name (the player keeps its own) and no auth token (the session
 * token is the credential), as PROTOCOL.md 3.4 recommends.
 * @param {{name: string, room: string|null, auth: string|null, session: Session|null}} p
 * @returns {ClientMsg & {type: 'Hello'}}
 */
export function helloFor({ name, room, auth, session }) {
  if (session && session.requested === room) {
    return { type: 'Hello', protocol: PROTOCOL_VERSION, name: '', room: session.room, auth: null, resume: session.token };
  }
  return { type: 'Hello', protocol: PROTOCOL_VERSION, name, room, auth, resume: null };
}

/**
 * Splits the unacknowledged inputs after a resume: those the server never
 * received (`seq > inputSeq`) are sent again, oldest first, as many as its
 * buffer still takes; the rest of those are given up (the server never
 * applies them, so prediction must not count on them). Inputs at or below
 * `inputSeq` reached the server and are acknowledged as usual.
 *
 * The buffer holds what the server received and has not applied yet,
 * `inputSeq - appliedSeq`, where `appliedSeq` is the caller's estimate (the
 * newest `input_ack` seen, plus an input per tick since, at most
 * `inputSeq`). Erring low gives up an input, which costs a step; erring
 * high sends one the full buffer drops, which the prediction would have
 * counted on: a correction.
 * @template {SentInput} T
 * @param {T[]} pending unacknowledged inputs, in seq order
 * @param {number} inputSeq Welcome.input_seq
 * @param {number} [appliedSeq] what the server has applied, as estimated; inputSeq by default
 * @param {number} [max] the server's input buffer
 * @returns {{resend: T[], dropped: T[]}}
 */
export function inputsToResend(pending, inputSeq, appliedSeq = inputSeq, max = MAX_RESEND) {
  const lost = pending.filter((p) => p.seq > inputSeq);
  const room = Math.max(0, max - Math.max(0, inputSeq - appliedSeq));
  return { resend: lost.slice(0, room), dropped: lost.slice(room) };
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

/** BroadcastChannel on which the pages of one browser ask who plays a session. */
export const CLAIM_CHANNEL = 'arena.session';
/** How long a starting page waits for another page to say a session is its own. */
export const CLAIM_WAIT_MS = 200;

/**
 * Whether another open page of this browser plays the session `token` now.
 *
 * A duplicated tab starts with a copy of the original's sessionStorage,
 * session record included: resuming it would take the player away from the
 * page it was copied from (which the server then closes with
 * SessionReplaced). So a starting page asks first, and joins as a new player
 * when a page answers (answerClaims). A reloaded page asks too, but the page
 * it replaces is gone: nobody answers, and it resumes after `waitMs`.
 * @param {BroadcastChannel|null} channel null where the browser has none
 * @param {Uint8Array} token
 * @returns {Promise<boolean>}
 */
export function heldElsewhere(channel, token, waitMs = CLAIM_WAIT_MS) {
  if (!channel) return Promise.resolve(false);
  const hex = toHex(token);
  return new Promise((resolve) => {
    const done = (/** @type {boolean} */ held) => {
      clearTimeout(timer);
      channel.removeEventListener('message', onMessage);
      resolve(held);
    };
    const onMessage = (/** @type {MessageEvent} */ e) => {
      if (e.data?.mine === hex) done(true);
    };
    const timer = setTimeout(() => done(false), waitMs);
    channel.addEventListener('message', onMessage);
    channel.postMessage({ who: hex });
  });
}

/**
 * Answers other pages' heldElsewhere for the session this page plays.
 * @param {BroadcastChannel|null} channel
 * @param {() => Uint8Array|null} playing the token of the session this page plays now
 */
export function answerClaims(channel, playing) {
  channel?.addEventListener('message', (e) => {
    const token = playing();
    if (token && typeof e.data?.who === 'string' && e.data.who === toHex(token)) channel.postMessage({ mine: e.data.who });
  });
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
      this.storage?.removeItem(STATE_KEY);
    } catch {
      // As above.
    }
  }

  /**
   * Keeps a world state for the next page, compactly (a full arena fits:
   * about 40 bytes per entity).
   * @param {WorldState} state
   */
  saveState(state) {
    try {
      const entities = state.entities.map((e) => [e.id, e.kind, e.x, e.y, e.vx, e.vy, e.angle, e.hp]);
      const players = state.players.map((p) => [p.id, p.name, p.score, p.deaths]);
      this.storage?.setItem(STATE_KEY, JSON.stringify({ tick: state.tick, entities, players }));
    } catch {
      // Too big or no storage: the reloaded page waits for a full snapshot.
    }
  }

  /**
   * Takes the kept world state (it is used once), or null if there is none
   * or it does not have the shape of one. A state that has the shape but not
   * the content can only fail the next snapshot's checksum, which the
   * receiver handles like any mismatch.
   * @returns {WorldState|null}
   */
  takeState() {
    let raw = null;
    try {
      raw = this.storage?.getItem(STATE_KEY) ?? null;
      this.storage?.removeItem(STATE_KEY);
    } catch {
      return null;
    }
    try {
      const v = JSON.parse(raw ?? 'null');
      const int = (/** @type {unknown} */ n) => Number.isInteger(n);
      if (!v || !int(v.tick) || !Array.isArray(v.entities) || !Array.isArray(v.players)) return null;
      if (!v.entities.every((/** @type {unknown} */ e) => Array.isArray(e) && e.length === 8 && e.every(int))) return null;
      const playerOk = (/** @type {any} */ p) =>
        Array.isArray(p) && p.length === 4 && int(p[0]) && typeof p[1] === 'string' && int(p[2]) && int(p[3]);
      if (!v.players.every(playerOk)) return null;
      return {
        tick: v.tick,
        entities: v.entities.map((/** @type {number[]} */ [id, kind, x, y, vx, vy, angle, hp]) => ({ id, kind, x, y, vx, vy, angle, hp })),
        players: v.players.map((/** @type {any[]} */ [id, name, score, deaths]) => ({ id, name, score, deaths })),
      };
    } catch {
      return null;
    }
  }
}
