// The WebSocket connection: hello/welcome handshake, message dispatch,
// pings, session resume, and reconnecting with exponential backoff.
//
// The server answers a refused hello, a kick or a shutdown with a
// ServerMsg::Disconnect and then a close frame whose reason is the same text;
// the decoded reason wins, the close frame's text is the fallback, and a
// connection that just dies is "connection lost". What happens next depends
// on the reason (protocol.js, session.js): a lost connection reconnects and
// presents the session token to get the same player back; an expired token
// joins as a new player at once; a reason that retrying cannot fix (an
// out-of-date page, a broken rule, bad credentials, a deliberate leave,
// another tab that took the session) stops, and the player gets a button.
//
// A connection can die without a close (a laptop lid, a dead Wi-Fi): the
// browser may not notice for minutes. Snapshots arrive many times a second
// and pongs every second, so a silent server means a dead link: after
// SILENCE_TIMEOUT_MS the socket is abandoned and the session resumed.

import { CodecError, decodeServer, encodeClient, isValidRoomName } from './codec.js';
import { PROTOCOL_VERSION, reasonText } from './protocol.js';
import { SessionStore, helloFor, nextStep } from './session.js';

/** First retry delay (ms); doubles per failed attempt up to MAX_BACKOFF_MS. */
const FIRST_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 15000;
/** Retry cap while a session may still be resumed: the server's grace period
 * is short (10 s by default), so try often enough to make it. */
const MAX_RESUME_BACKOFF_MS = 2000;
/** Time from opening the socket to the welcome before we give up (ms). */
const HANDSHAKE_TIMEOUT_MS = 8000;
const PING_INTERVAL_MS = 1000;
/** WebSocket.readyState of an open socket (CONNECTING is 0). */
const OPEN = 1;
/** Nothing at all from the server for this long while playing: the link is dead (ms). */
const SILENCE_TIMEOUT_MS = 5000;
/** The page's own close codes, in the range RFC 6455 leaves to applications
 * (a script may close only with 1000 or 3000-4999): no welcome in time, and
 * a server message that does not decode. The server echoes them. */
export const CLOSE_HANDSHAKE_TIMEOUT = 4000;
export const CLOSE_UNREADABLE = 4002;

/**
 * @typedef {import('./codec.js').ServerMsg} ServerMsg
 * @typedef {import('./codec.js').ClientMsg} ClientMsg
 * @typedef {import('./codec.js').DisconnectReason} DisconnectReason
 * @typedef {Extract<ServerMsg, {type: 'Welcome'}>} Welcome
 * @typedef {import('./codec.js').SnapshotMsg} SnapshotMsg
 * @typedef {import('./session.js').NextStep} NextStep
 * @typedef {{state: 'connecting', resuming: boolean, note: string}
 *   | {state: 'playing', resumed: boolean, room: string}
 *   | {state: 'closed', message: string, retryAt: number|null, fatal: boolean,
 *      resuming: boolean, hint: string, button: 'reconnect'|'reload'|'rejoin'}} ConnStatus
 *   `resuming`: the next hello presents a session token. `hint` and `button`
 *   tell a player who is not reconnected automatically what can help.
 */

/**
 * What a player can do after the server stopped the game for good.
 * @param {DisconnectReason|null} reason
 * @returns {{hint: string, button: 'reload'|'rejoin'}}
 */
export function stopAdvice(reason) {
  switch (reason?.type) {
    case 'Left':
      return { hint: 'Your seat is free for someone else.', button: 'rejoin' };
    case 'SessionReplaced':
      return { hint: 'Your game continues in another tab or window.', button: 'rejoin' };
    case 'AuthRequired':
    case 'AuthInvalid':
    case 'AuthExpired':
      return { hint: 'This server needs a valid token in the address (?token=…).', button: 'reload' };
    case 'InvalidRoomName':
      return { hint: 'Room names are 1 to 32 letters, digits, - and _ (?room=…).', button: 'reload' };
    default:
      return { hint: "Reload the page to get the server's current client.", button: 'reload' };
  }
}

/** A duration for a player: `10 s`, `2.5 s`. @param {number} ms */
function seconds(ms) {
  return `${Number((ms / 1000).toFixed(1))} s`;
}

export class Connection {
  /**
   * @param {{
   *   url: string,
   *   name: () => string,
   *   room: string|null,
   *   auth: string|null,
   *   storage: Pick<Storage, 'getItem'|'setItem'|'removeItem'>|null,
   *   onWelcome: (w: Welcome) => void,
   *   onSnapshot: (s: SnapshotMsg, bytes: number) => void,
   *   onBytes: (bytes: number) => void,
   *   onPing: (rttMs: number) => void,
   *   onStatus: (s: ConnStatus) => void,
   *   WebSocket?: typeof WebSocket,
   * }} opts `WebSocket` replaces the browser's, for tests.
   */
  constructor(opts) {
    this.opts = opts;
    /** @type {WebSocket|null} */
    this.ws = null;
    this.attempt = 0;
    this.welcomed = false;
    /** @type {import('./codec.js').DisconnectReason|null} */
    this.serverReason = null;
    /** @type {ReturnType<typeof setTimeout>|null} */
    this.retryTimer = null;
    /** @type {ReturnType<typeof setInterval>|null} */
    this.pingTimer = null;
    /** @type {ReturnType<typeof setTimeout>|null} */
    this.handshakeTimer = null;
    this.nextNonce = 1n;
    /** @type {Map<bigint, number>} nonce -> send time */
    this.pings = new Map();
    /** @type {ConnStatus} */
    this.status = { state: 'connecting', resuming: false, note: '' };
    this.store = new SessionStore(opts.storage);
    /** The session to resume, if any; only one of the room this page asks for. */
    this.session = this.store.load();
    if (this.session && this.session.requested !== opts.room) {
      this.session = null;
      this.store.clear();
    }
    /** Whether the hello of the current connection presents a session token. */
    this.resuming = false;
    /** When the last message of any kind arrived (performance.now()). */
    this.lastMessageAt = 0;
    /** @type {ReturnType<typeof setInterval>|null} */
    this.silenceTimer = null;
    /** Whether this page sent Leave: the Left that follows is expected. */
    this.leaving = false;
    /** Why the last game session ended; kept while the retries fail, so the
     * player still sees the server's reason rather than "could not connect". */
    this.lostMessage = /** @type {string|null} */ (null);
    /** How long the server holds this page's seat for a resume, from its
     * welcome (ms; null: not welcomed by this page yet, as after a reload). */
    this.graceMs = /** @type {number|null} */ (null);
    /** When the welcomed connection was lost (performance.now()), while
     * reconnecting. */
    this.lostAt = /** @type {number|null} */ (null);
    /** Said while reconnecting once the resume grace has passed. */
    this.endedNote = /** @type {string|null} */ (null);
  }

  /** @param {ConnStatus} s */
  setStatus(s) {
    this.status = s;
    this.opts.onStatus(s);
  }

  /**
   * Opens a connection now (cancelling a scheduled retry).
   * @param {string} [note] why, for the player, when it is not obvious
   */
  connect(note = '') {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.teardown();
    this.welcomed = false;
    this.serverReason = null;
    this.leaving = false;
    if (this.opts.room !== null && !isValidRoomName(this.opts.room)) {
      // The server would refuse it as InvalidRoomName, or, past the size
      // of a hello, as a message too large, whose advice is wrong here.
      this.serverReason = { type: 'InvalidRoomName' };
      this.closed(`The room name in the address cannot be used: ${reasonText(this.serverReason)}`, 'stop');
      return;
    }
    const hello = helloFor({ name: this.opts.name(), room: this.opts.room, auth: this.opts.auth, session: this.session });
    this.resuming = hello.resume !== null;
    this.setStatus({ state: 'connecting', resuming: this.resuming, note });
    let ws;
    try {
      ws = new (this.opts.WebSocket ?? WebSocket)(this.opts.url);
    } catch (e) {
      this.closed(`cannot open ${this.opts.url}: ${e}`, 'stop');
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.handshakeTimer = setTimeout(() => {
      if (this.ws === ws && !this.welcomed) {
        this.serverReason = null;
        ws.close(CLOSE_HANDSHAKE_TIMEOUT, 'handshake timeout');
        this.closed('The server did not answer the hello in time', 'resume');
      }
    }, HANDSHAKE_TIMEOUT_MS);
    ws.onopen = () => {
      // The hello may hold an auth token: it goes to the socket and nowhere else.
      this.send(hello);
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws || !(ev.data instanceof ArrayBuffer)) return;
      this.lastMessageAt = performance.now();
      this.opts.onBytes(ev.data.byteLength);
      let msg;
      try {
        msg = decodeServer(ev.data);
      } catch (e) {
        if (!(e instanceof CodecError)) throw e;
        // A message we cannot read means we no longer understand the server.
        // Retry, as before sessions existed: the session is kept (our close
        // is no leave), and a server that was mid-upgrade may be fine again.
        // A page may close only with 1000 or 3000-4999 (the browser throws
        // on any other code, 1002 included, and the close would never
        // happen), so the application's range says "protocol error" here.
        ws.close(CLOSE_UNREADABLE, 'malformed server message');
        this.closed(`Could not read a server message (${e.message})`, 'resume');
        return;
      }
      this.dispatch(msg, ev.data.byteLength);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      let message;
      const step = nextStep(this.serverReason);
      if (this.serverReason) {
        message = `Disconnected by the server: ${reasonText(this.serverReason)}`;
      } else if (ev.reason) {
        message = `Disconnected by the server: ${ev.reason} (code ${ev.code})`;
      } else if (!this.welcomed) {
        message = 'Could not connect to the server';
      } else {
        message = 'Connection lost';
      }
      this.closed(message, step);
    };
    ws.onerror = () => {
      // Always followed by a close event, which reports it.
    };
  }

  /** @param {ServerMsg} msg @param {number} bytes */
  dispatch(msg, bytes) {
    switch (msg.type) {
      case 'Welcome':
        if (this.welcomed || msg.protocol !== PROTOCOL_VERSION) {
          // A second welcome would start a second set of timers; another
          // protocol's means this page no longer understands the server.
          const ws = this.ws;
          this.serverReason = null;
          ws?.close(CLOSE_UNREADABLE, 'unexpected welcome');
          if (this.welcomed) {
            this.closed('The server sent a second welcome', 'resume');
          } else {
            this.closed(`The server speaks protocol ${msg.protocol}; this page speaks ${PROTOCOL_VERSION}`, 'stop');
          }
          return;
        }
        if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
        this.handshakeTimer = null;
        this.welcomed = true;
        this.attempt = 0;
        this.lostMessage = null;
        this.lostAt = null;
        this.endedNote = null;
        this.graceMs = msg.resumeGraceMs;
        this.session = { requested: this.opts.room, room: msg.room, token: msg.session, playerId: msg.playerId };
        this.store.save(this.session);
        this.setStatus({ state: 'playing', resumed: msg.resumed, room: msg.room });
        this.opts.onWelcome(msg);
        this.ping();
        this.pingTimer = setInterval(() => this.ping(), PING_INTERVAL_MS);
        this.silenceTimer = setInterval(() => this.checkSilence(), 1000);
        break;
      case 'Snapshot':
        if (this.welcomed) this.opts.onSnapshot(msg.snapshot, bytes);
        break;
      case 'Pong': {
        const sent = this.pings.get(msg.nonce);
        if (sent !== undefined) {
          this.pings.delete(msg.nonce);
          this.opts.onPing(performance.now() - sent);
        }
        break;
      }
      case 'Disconnect':
        // The close frame follows; remember why.
        this.serverReason = msg.reason;
        break;
      case 'DatagramChannel':
        // The answer to an OpenDatagrams, which only a native client sends
        // (a browser has no UDP socket): the page never asks, so one that
        // arrives anyway is ignored.
        break;
    }
  }

  ping() {
    const nonce = this.nextNonce++;
    this.pings.set(nonce, performance.now());
    // Unanswered pings are forgotten after a while.
    const oldest = this.pings.keys().next().value;
    if (this.pings.size > 30 && oldest !== undefined) this.pings.delete(oldest);
    this.send({ type: 'Ping', nonce });
  }

  /**
   * Sends one message if the socket is open.
   * @param {ClientMsg} msg
   * @returns {boolean} whether it went out (false: not connected)
   */
  send(msg) {
    if (!this.ws || this.ws.readyState !== OPEN) return false;
    this.ws.send(encodeClient(msg));
    return true;
  }

  /**
   * Gives up a socket the server has gone silent on, without waiting for the
   * browser to notice, and resumes the session on a new one.
   */
  checkSilence() {
    const silent = performance.now() - this.lastMessageAt;
    if (this.welcomed && silent > SILENCE_TIMEOUT_MS) {
      this.closed(`Connection lost (nothing from the server for ${Math.round(silent / 1000)} s)`, 'resume');
    }
  }

  /**
   * Leaves the game for good: the server frees the seat and answers Left.
   * From then on the game is over for this page whatever becomes of the
   * connection: a close or a silence before the answer must not resume the
   * session, or join afresh, behind the player's back. Not connected (the
   * page is reconnecting), it stops trying and lets the session lapse at
   * the server (its resume grace).
   */
  leave() {
    // Already stopped (a refusal, or left): nothing to leave.
    if (this.status?.state === 'closed' && this.status.fatal) return;
    this.leaving = true;
    if (this.playing) {
      this.send({ type: 'Leave' });
      this.forgetSession();
      return;
    }
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.serverReason = null;
    this.closed('You left the game', 'stop');
  }

  /**
   * Stops for good on the page's own finding that it cannot play with this
   * server (its snapshots do not check out here), and asks the player to
   * reload. The session is kept, parked at the server for its grace: the
   * reloaded page, which may be the server's current one, resumes it.
   * @param {string} message
   */
  abandon(message) {
    const session = this.session;
    this.serverReason = null;
    this.ws?.close(CLOSE_UNREADABLE, 'unusable snapshots');
    this.closed(message, 'stop');
    if (session) {
      this.session = session;
      this.store.save(session);
    }
  }

  /** Joins as a new player, giving up any session this tab holds. */
  rejoin() {
    this.forgetSession();
    this.endedNote = null;
    this.attempt = 0;
    this.lostMessage = null;
    this.connect();
  }

  forgetSession() {
    this.session = null;
    this.store.clear();
  }

  /** Whether the handshake is done and messages can flow. */
  get playing() {
    return this.welcomed && this.ws !== null && this.ws.readyState === OPEN;
  }

  teardown() {
    if (this.pingTimer) clearInterval(this.pingTimer);
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    if (this.silenceTimer) clearInterval(this.silenceTimer);
    this.pingTimer = null;
    this.handshakeTimer = null;
    this.silenceTimer = null;
    this.pings.clear();
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= OPEN) ws.close(1000, 'bye');
  }

  /**
   * The connection is over: report it, and reconnect if that can help.
   * @param {string} message
   * @param {NextStep} step
   */
  closed(message, step) {
    // After a leave, any end is the end of the game (see `leave`).
    if (this.leaving) {
      step = 'stop';
      message = 'You left the game';
    }
    const sessionEnded = this.welcomed;
    const wasResuming = this.resuming;
    const reason = this.serverReason;
    this.teardown();
    this.welcomed = false;
    if (step !== 'resume') this.forgetSession();
    if (step === 'fresh' && !wasResuming) step = 'rejoin'; // no token was refused: never loop
    if (sessionEnded) this.lostAt = performance.now();
    // Past the server's resume grace the seat is gone: a resume could only
    // be refused, so stop promising one and join afresh once it answers.
    const lapsed =
      step === 'resume' &&
      this.session !== null &&
      this.graceMs !== null &&
      this.lostAt !== null &&
      performance.now() - this.lostAt >= this.graceMs;
    if (lapsed) {
      this.forgetSession();
      const grace = /** @type {number} */ (this.graceMs);
      const held = grace ? `the server holds a seat for ${seconds(grace)}` : 'this server holds no seat';
      this.endedNote = `Your game has ended (${held} after a connection is lost): you will join as a new player`;
    }
    if (sessionEnded || this.lostMessage === null || step === 'stop') {
      this.lostMessage = message;
    } else if (step !== 'fresh') {
      // The server's own words, when it refused the attempt.
      const why = reason ? `: ${reasonText(reason)}` : '';
      message = `${this.lostMessage} (reconnect attempt ${this.attempt} failed${why})`;
    }
    if (this.endedNote !== null && step !== 'stop') message = `${message}. ${this.endedNote}`;
    if (step === 'stop') {
      const advice = stopAdvice(this.leaving ? { type: 'Left' } : reason);
      const { button } = advice;
      // Unconfirmed by the server, the seat is held for its resume grace.
      const wait = this.graceMs === null ? 'a few seconds' : seconds(this.graceMs);
      const hint =
        this.leaving && reason?.type !== 'Left'
          ? `Your seat is free for someone else once the server stops waiting for you (${wait}).`
          : advice.hint;
      this.setStatus({ state: 'closed', message, retryAt: null, fatal: true, resuming: false, hint, button });
      return;
    }
    if (step === 'fresh') {
      // The session is gone (its grace period ran out, or the server
      // restarted): join as a new player now.
      const note = `${message}: joining as a new player`;
      this.retryTimer = setTimeout(() => this.connect(note), 0);
      this.setStatus({ state: 'connecting', resuming: false, note });
      return;
    }
    const cap = this.session ? MAX_RESUME_BACKOFF_MS : MAX_BACKOFF_MS;
    const base = Math.min(FIRST_BACKOFF_MS * 2 ** this.attempt, cap);
    const delay = Math.round(base * (0.8 + 0.4 * Math.random()));
    this.attempt++;
    this.retryTimer = setTimeout(() => this.connect(), delay);
    this.setStatus({
      state: 'closed',
      message,
      retryAt: performance.now() + delay,
      fatal: false,
      resuming: this.session !== null,
      hint: '',
      button: 'reconnect',
    });
  }
}
