// Client-side prediction of the own player, and reconciliation against the
// server's acknowledged input sequence.
//
// Every tick the client samples its buttons, sends them as input `seq`, and
// moves its own player with the same movePlayer the server will run for that
// input. When a snapshot arrives it carries the own player's authoritative
// position after input `inputAck`: the client drops the inputs up to it and
// replays the rest on top. Because positions are integers and movePlayer is
// an exact port, the replay lands where the server will land: a correction
// only happens when something the client could not know moved the player
// (a respawn, a dropped input). Small corrections are hidden by an offset
// that decays over ~100 ms instead of a visible snap.
//
// Pure: no DOM, no clock (time arrives as arguments), so Node tests drive it.

import { movePlayer } from './rules.js';

/** A correction larger than this (quanta) is a teleport: snap, don't smooth. */
const TELEPORT = 200 * 4;
/** Pending inputs kept at most; about 8 s at 30 Hz without any ack. */
const MAX_PENDING = 256;
/** Time constant of the visual error decay, in ms. */
const SMOOTHING_MS = 60;

/** @typedef {import('./rules.js').TickRules} TickRules */

export class Predictor {
  /** @param {TickRules} rules */
  constructor(rules) {
    this.rules = rules;
    /**
     * Inputs not yet acknowledged, with the position predicted after each,
     * and what was sent (tick, aim) so they can be sent again after a resume.
     * @type {{seq: number, tick: number, buttons: number, aim: number, x: number, y: number}[]}
     */
    this.pending = [];
    this.nextSeq = 1;
    /** Predicted position after the newest input; null until the server told us where we are. */
    this.x = /** @type {number|null} */ (null);
    this.y = /** @type {number|null} */ (null);
    /** Position before the newest input, for drawing between ticks. */
    this.prevX = 0;
    this.prevY = 0;
    /** Whether the own player was alive in the newest snapshot (the dead do not move). */
    this.alive = true;
    /** Reconciliations that had to move the predicted player. */
    this.corrections = 0;
    /** Size of the last correction, in quanta. */
    this.lastCorrection = 0;
    /** Visual offset still to be blended out, in quanta. */
    this.errX = 0;
    this.errY = 0;
  }

  /**
   * Applies one tick of local input and returns its sequence number.
   * @param {number} buttons
   * @param {{tick?: number, aim?: number}} [sent] the rest of the input as sent
   * @returns {number} seq
   */
  step(buttons, sent = {}) {
    const seq = this.nextSeq++;
    if (this.x !== null && this.y !== null) {
      this.prevX = this.x;
      this.prevY = this.y;
      if (this.alive) [this.x, this.y] = movePlayer(this.x, this.y, buttons, this.rules);
    }
    this.pending.push({ seq, tick: sent.tick ?? 0, buttons, aim: sent.aim ?? 0, x: this.x ?? 0, y: this.y ?? 0 });
    if (this.pending.length > MAX_PENDING) this.pending.shift();
    return seq;
  }

  /**
   * A tick without an input: the server does not move the player either, so
   * the drawn position rests where the last step ended.
   */
  idle() {
    if (this.x === null || this.y === null) return;
    this.prevX = this.x;
    this.prevY = this.y;
  }

  /**
   * After a resumed session: the server has received every input up to
   * `inputSeq`. Numbering goes on above it (a reloaded page starts from 1 and
   * must not send seqs the server already had), and the inputs in `lost` are
   * forgotten: the server will never apply them, so prediction must not
   * replay them. The next snapshot's reconciliation corrects for them.
   * @param {number} inputSeq Welcome.input_seq
   * @param {{seq: number}[]} lost
   */
  resume(inputSeq, lost) {
    this.nextSeq = Math.max(this.nextSeq, inputSeq + 1);
    if (lost.length === 0) return;
    const gone = new Set(lost.map((p) => p.seq));
    this.pending = this.pending.filter((p) => !gone.has(p.seq));
  }

  /**
   * Reconciles with the authoritative own entity of a snapshot.
   * @param {{x: number, y: number, hp: number}} own the own entity as the server has it
   * @param {number} inputAck the last input the server applied before that state
   */
  reconcile(own, inputAck) {
    let drop = 0;
    while (drop < this.pending.length && this.pending[drop].seq <= inputAck) drop++;
    if (drop > 0) this.pending.splice(0, drop);

    const wasAlive = this.alive;
    this.alive = own.hp > 0;
    let x = own.x;
    let y = own.y;
    for (const p of this.pending) {
      if (this.alive) [x, y] = movePlayer(x, y, p.buttons, this.rules);
      p.x = x;
      p.y = y;
    }
    if (this.x === null || this.y === null) {
      this.x = this.prevX = x;
      this.y = this.prevY = y;
      return;
    }
    const dx = this.x - x;
    const dy = this.y - y;
    if (dx === 0 && dy === 0) return;
    const teleport = Math.abs(dx) > TELEPORT || Math.abs(dy) > TELEPORT || wasAlive !== this.alive;
    if (teleport) {
      this.errX = 0;
      this.errY = 0;
      this.prevX = x;
      this.prevY = y;
    } else {
      this.corrections++;
      this.lastCorrection = Math.hypot(dx, dy);
      this.errX += dx;
      this.errY += dy;
      this.prevX -= dx;
      this.prevY -= dy;
    }
    this.x = x;
    this.y = y;
  }

  /**
   * Where to draw the own player: between the last two predicted ticks by
   * `alpha` (0..1, the fraction of the current tick elapsed), plus the
   * correction offset still being blended out.
   * @param {number} alpha
   * @returns {{x: number, y: number}|null}
   */
  renderPosition(alpha) {
    if (this.x === null || this.y === null) return null;
    const a = Math.min(Math.max(alpha, 0), 1);
    return {
      x: this.prevX + (this.x - this.prevX) * a + this.errX,
      y: this.prevY + (this.y - this.prevY) * a + this.errY,
    };
  }

  /** Blends out the correction offset. @param {number} dtMs */
  decay(dtMs) {
    const k = Math.exp(-dtMs / SMOOTHING_MS);
    this.errX *= k;
    this.errY *= k;
    if (Math.abs(this.errX) < 0.5) this.errX = 0;
    if (Math.abs(this.errY) < 0.5) this.errY = 0;
  }
}
