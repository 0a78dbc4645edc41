// The WebSocket connection: hello/welcome handshake, message dispatch,
// pings, and reconnecting with exponential backoff.
//
// The server answers a refused hello, a kick or a shutdown with a
// ServerMsg::Disconnect and then a close frame whose reason is the same text;
// the decoded reason wins, the close frame's text is the fallback, and a
// connection that just dies is "connection lost". Reasons that retrying cannot
// fix (a protocol version mismatch, a message the server refused) stop the
// automatic retries; the player gets a button instead.

import { CodecError, decodeServer, encodeClient } from './codec.js';
import { PROTOCOL_VERSION, reasonRetries, reasonText } from './protocol.js';

/** First retry delay (ms); doubles per failed attempt up to MAX_BACKOFF_MS. */
const FIRST_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 15000;
/** Time from opening the socket to the welcome before we give up (ms). */
const HANDSHAKE_TIMEOUT_MS = 8000;
const PING_INTERVAL_MS = 1000;

/**
 * @typedef {import('./codec.js').ServerMsg} ServerMsg
 * @typedef {import('./codec.js').ClientMsg} ClientMsg
 * @typedef {Extract<ServerMsg, {type: 'Welcome'}>} Welcome
 * @typedef {import('./codec.js').SnapshotMsg} SnapshotMsg
 * @typedef {{state: 'connecting'} | {state: 'playing'}
 *   | {state: 'closed', message: string, retryAt: number|null, fatal: boolean}} ConnStatus
 */

export class Connection {
  /**
   * @param {{
   *   url: string,
   *   name: () => string,
   *   onWelcome: (w: Welcome) => void,
   *   onSnapshot: (s: SnapshotMsg, bytes: number) => void,
   *   onBytes: (bytes: number) => void,
   *   onPing: (rttMs: number) => void,
   *   onStatus: (s: ConnStatus) => void,
   * }} opts
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
    this.status = { state: 'connecting' };
    /** Why the last game session ended; kept while the retries fail, so the
     * player still sees the server's reason rather than "could not connect". */
    this.lostMessage = /** @type {string|null} */ (null);
  }

  /** @param {ConnStatus} s */
  setStatus(s) {
    this.status = s;
    this.opts.onStatus(s);
  }

  /** Opens a connection now (cancelling a scheduled retry). */
  connect() {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.teardown();
    this.welcomed = false;
    this.serverReason = null;
    this.setStatus({ state: 'connecting' });
    let ws;
    try {
      ws = new WebSocket(this.opts.url);
    } catch (e) {
      this.closed(`cannot open ${this.opts.url}: ${e}`, true);
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.handshakeTimer = setTimeout(() => {
      if (this.ws === ws && !this.welcomed) {
        this.serverReason = null;
        ws.close(4000, 'handshake timeout');
        this.closed('the server did not answer the hello in time', true);
      }
    }, HANDSHAKE_TIMEOUT_MS);
    ws.onopen = () => {
      this.send({ type: 'Hello', protocol: PROTOCOL_VERSION, name: this.opts.name() });
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws || !(ev.data instanceof ArrayBuffer)) return;
      this.opts.onBytes(ev.data.byteLength);
      let msg;
      try {
        msg = decodeServer(ev.data);
      } catch (e) {
        if (!(e instanceof CodecError)) throw e;
        // A message we cannot read means we no longer understand the server.
        ws.close(1002, 'malformed server message');
        this.closed(`could not read a server message (${e.message})`, true);
        return;
      }
      this.dispatch(msg, ev.data.byteLength);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      let message;
      let retry = true;
      if (this.serverReason) {
        message = `Disconnected by the server: ${reasonText(this.serverReason)}`;
        retry = reasonRetries(this.serverReason);
      } else if (ev.reason) {
        message = `Disconnected by the server: ${ev.reason} (code ${ev.code})`;
      } else if (!this.welcomed) {
        message = 'Could not connect to the server';
      } else {
        message = 'Connection lost';
      }
      this.closed(message, retry);
    };
    ws.onerror = () => {
      // Always followed by a close event, which reports it.
    };
  }

  /** @param {ServerMsg} msg @param {number} bytes */
  dispatch(msg, bytes) {
    switch (msg.type) {
      case 'Welcome':
        if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
        this.handshakeTimer = null;
        this.welcomed = true;
        this.attempt = 0;
        this.lostMessage = null;
        this.setStatus({ state: 'playing' });
        this.opts.onWelcome(msg);
        this.ping();
        this.pingTimer = setInterval(() => this.ping(), PING_INTERVAL_MS);
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

  /** @param {ClientMsg} msg */
  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(encodeClient(msg));
  }

  /** Whether the handshake is done and messages can flow. */
  get playing() {
    return this.welcomed && this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  teardown() {
    if (this.pingTimer) clearInterval(this.pingTimer);
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.pingTimer = null;
    this.handshakeTimer = null;
    this.pings.clear();
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, 'bye');
  }

  /**
   * The connection is over: report it and schedule a retry if one can help.
   * @param {string} message
   * @param {boolean} retry
   */
  closed(message, retry) {
    const sessionEnded = this.welcomed;
    this.teardown();
    this.welcomed = false;
    if (sessionEnded || this.lostMessage === null || !retry) {
      this.lostMessage = message;
    } else {
      message = `${this.lostMessage} (reconnect attempt ${this.attempt} failed)`;
    }
    if (!retry) {
      this.setStatus({ state: 'closed', message, retryAt: null, fatal: true });
      return;
    }
    const base = Math.min(FIRST_BACKOFF_MS * 2 ** this.attempt, MAX_BACKOFF_MS);
    const delay = Math.round(base * (0.8 + 0.4 * Math.random()));
    this.attempt++;
    this.retryTimer = setTimeout(() => this.connect(), delay);
    this.setStatus({ state: 'closed', message, retryAt: performance.now() + delay, fatal: false });
  }
}
