// Acknowledging snapshots, protocol 3 (PROTOCOL.md 3.2): every input carries
// the newest snapshot tick this client holds (`InputCmd.ack`), so a playing
// client sends one message per tick, not an input and an `Ack`. Each message
// costs the server a read, a task wake-up and a TCP segment back.
//
// A standalone `Ack` goes out only when a newer snapshot is held and no input
// will carry it soon:
// * on a simulation tick that sends no input (the pacer skipped it to drain
//   the server's backlog, or stopped inputs because the server takes none);
// * when a snapshot arrives and the simulation loop has not run for
//   STALL_MS: a background tab, whose timers the browser throttles to once a
//   second or less while WebSocket messages keep arriving. Without this the
//   ack would wait for the next throttled tick, the server's baseline would
//   fall behind, and after its ack timeout (10 s) it would drop the client
//   as too slow.
//
// Before any snapshot is held the ack is `Welcome.tick`, which no snapshot
// carries: it tells the server this page holds nothing, and the server
// answers with a full snapshot (also after a resume without kept states).
// The server ignores acks older than the newest it has read, so an input
// resent after a resume may carry the current ack without harm.
//
// Pure: the socket is a send function, times arrive as arguments.

/** No simulation tick for this long (ms) means the loop is not running. */
export const STALL_MS = 250;

/**
 * @typedef {import('./codec.js').ClientMsg} ClientMsg
 * @typedef {{seq: number, tick: number, buttons: number, aim: number}} InputFields
 */

export class Acker {
  /**
   * @param {(msg: ClientMsg) => boolean} send sends one message; false when
   *   the socket was not open and nothing went out
   * @param {number} [stallMs]
   */
  constructor(send, stallMs = STALL_MS) {
    this.send = send;
    this.stallMs = stallMs;
    /** The tick to acknowledge: the newest held, or Welcome.tick before any. */
    this.tick = 0;
    /** Whether `tick` names a held state (false for Welcome.tick). */
    this.holding = false;
    /** Whether `tick` is newer than anything sent on this connection. */
    this.pending = false;
    /** The newest tick whose ack went out (or that an earlier page acknowledged); null: none. */
    this.acked = /** @type {number|null} */ (null);
    /** When the simulation loop last ran a tick. */
    this.lastTickAt = 0;
    /** Standalone Acks sent, and how many of them because the loop had stalled. */
    this.alone = 0;
    this.aloneStalled = 0;
  }

  /**
   * A new game (a Welcome that starts or replaces the client's state).
   * @param {number} tick Welcome.tick when nothing is held; the tick of a
   *   state kept by an earlier page of the same session when there is one
   * @param {boolean} held whether `tick` is a held state
   * @param {number} now
   */
  reset(tick, held, now) {
    this.tick = tick >>> 0;
    this.holding = held;
    this.pending = held;
    this.acked = held ? this.tick : null;
    this.lastTickAt = now;
  }

  /**
   * The same session on a new connection: whatever was acknowledged on the
   * old one may not have arrived, so the newest held tick is due again (the
   * resent inputs or the next input carry it). Holding nothing yet, the ack
   * is the new Welcome's tick.
   * @param {number} welcomeTick
   * @param {number} now
   */
  reconnected(welcomeTick, now) {
    if (!this.holding) this.tick = welcomeTick >>> 0;
    this.pending = this.holding;
    this.lastTickAt = now;
  }

  /**
   * What was held is of no use (a kept state the server does not take as a
   * baseline): acknowledge Welcome.tick, holding nothing, so that the server
   * sends a full snapshot. Sent at once (the loop may be throttled in a
   * background tab), or with the next input if the socket is not open.
   * @param {number} welcomeTick
   */
  forget(welcomeTick) {
    this.tick = welcomeTick >>> 0;
    this.holding = false;
    this.pending = true;
    this.acked = null;
    this.sendAlone();
  }

  /**
   * A snapshot was applied and verified: its tick is the newest held. Sends
   * an Ack at once only when the simulation loop is not running.
   * @param {number} tick
   * @param {number} now
   */
  held(tick, now) {
    this.tick = tick >>> 0;
    this.holding = true;
    this.pending = true;
    if (now - this.lastTickAt > this.stallMs && this.sendAlone()) this.aloneStalled++;
  }

  /**
   * A simulation tick that sends an input: the input carries the ack.
   * @param {InputFields} input
   * @param {number} now
   * @returns {boolean} whether it was sent
   */
  input(input, now) {
    this.lastTickAt = now;
    return this.sendInput(input);
  }

  /**
   * A simulation tick that sends no input: acknowledges on its own, if a
   * newer snapshot is held than the last ack sent.
   * @param {number} now
   */
  tickWithoutInput(now) {
    this.lastTickAt = now;
    if (this.pending) this.sendAlone();
  }

  /**
   * Inputs sent again after a resume, under their own seq, tick, buttons and
   * aim, but acknowledging what is held now (an older ack would be ignored).
   * @param {InputFields[]} inputs
   * @returns {number} how many were sent
   */
  resend(inputs) {
    let sent = 0;
    for (const p of inputs) if (this.sendInput(p)) sent++;
    return sent;
  }

  /** The page is going away: acknowledge the newest held state now. */
  flush() {
    if (this.pending) this.sendAlone();
  }

  /** @param {InputFields} p */
  sendInput(p) {
    const sent = this.send({ type: 'Input', seq: p.seq, tick: p.tick, ack: this.tick, buttons: p.buttons, aim: p.aim });
    if (sent) this.wentOut();
    return sent;
  }

  sendAlone() {
    const sent = this.send({ type: 'Ack', tick: this.tick });
    if (sent) {
      this.alone++;
      this.wentOut();
    }
    return sent;
  }

  wentOut() {
    this.pending = false;
    // Welcome.tick names no state: nothing acknowledged to keep.
    if (this.holding) this.acked = this.tick;
  }
}
