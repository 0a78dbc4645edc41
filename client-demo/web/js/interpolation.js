// Entity interpolation: other players, NPCs and projectiles are drawn a
// little in the past (about 100 ms), between the two snapshots that bracket
// that moment, so they move smoothly although snapshots arrive at 30 Hz and
// with jitter.
//
// Time is kept in server ticks. Every snapshot arrival gives one sample of
// "server tick at this local time"; the clock follows the earliest arrival
// of the last second or so (the on-time ones), turns the local clock into a
// server-tick clock that runs at exactly tick_hz, and the render time is that
// clock minus the interpolation delay, which covers how late snapshots
// arrive. A late snapshot, or a network stall and the burst that ends it,
// does not drag the clock back: what arrives after it is on time again, and
// the picture goes on from where it would have been. Only when every arrival
// of a quarter second, or a few in a row, is late (the server's clock fell
// behind after a stall it could not catch up, or the route got longer) does
// the clock move back to them at once. The delay follows the lateness
// smoothly: the picture slows or hurries a little, and never runs backwards.
// Pure: the caller passes `now`.

import { PROJECTILE_SPEED } from './rules.js';

/** @typedef {import('./snapshot.js').WorldState} WorldState */
/** @typedef {import('./snapshot.js').NetEntity} NetEntity */

/**
 * @typedef {{id: number, kind: number, x: number, y: number, vx: number, vy: number,
 *   angle: number, hp: number}} RenderEntity angle in 1/256 turns, may be fractional
 */

/**
 * A jump between two snapshots longer than the fastest entity could move
 * in the ticks between them, plus this (quanta), is a teleport.
 */
const TELEPORT = 150 * 4;
/** States kept, at most (about 2 s at 30 Hz). */
const MAX_STATES = 64;
/** Ticks past the newest state that we extrapolate along the velocity before freezing. */
const MAX_EXTRAPOLATION_TICKS = 6;
/**
 * How far back the clock looks for the earliest arrival, in ms of server
 * ticks (at least four snapshot intervals).
 */
const CLOCK_WINDOW_MS = 1000;
/**
 * Every arrival of this span (ms; at least two snapshot intervals) later
 * than on time by more than SHIFT_LATE_MS (and three times the jitter) is a
 * shift of the server's clock or of the route, not lateness.
 */
const SHIFT_SPAN_MS = 250;
const SHIFT_LATE_MS = 50;
/** Or this many arrivals in a row (not counting those queued behind another) that late. */
const SHIFT_ARRIVALS = 4;
/** The most the delay moves, in ticks per tick of time. */
const DELAY_SLEW = 0.25;
/** A clock this many ticks off its samples jumps to them instead of gliding. */
const RESYNC_TICKS = 10;
/** A teleport test's reach never exceeds this (quanta): half the arena's height. */
const MAX_REACH = 800 * 4;

export class Interpolator {
  /**
   * @param {number} tickHz
   * @param {number} snapshotHz
   * @param {number} [delayMs] how far behind the newest snapshot to draw;
   *   at least two snapshot intervals so one late packet does not starve it
   */
  constructor(tickHz, snapshotHz, delayMs = 100) {
    this.tickMs = 1000 / tickHz;
    const snapshotMs = 1000 / Math.max(1, Math.min(snapshotHz, tickHz));
    this.snapshotTicks = snapshotMs / this.tickMs;
    /** The delay never goes below this, in ticks. */
    this.minDelayTicks = Math.max(delayMs, 2 * snapshotMs + 10) / this.tickMs;
    /** Current delay in ticks: grows with the arrival jitter. */
    this.delayTicks = this.minDelayTicks;
    /** Smoothed lateness of snapshot arrivals against the clock, in ticks. */
    this.jitter = 0;
    /** @type {{tick: number, byId: Map<number, NetEntity>, entities: NetEntity[]}[]} */
    this.states = [];
    /** Server tick = now / tickMs + offset (null until the first sample). */
    this.offset = /** @type {number|null} */ (null);
    this.lastRenderTick = -Infinity;
    /** What the delay should be: `delayTicks` moves towards it. */
    this.targetDelayTicks = this.minDelayTicks;
    /** When the last frame was sampled (local ms), or null. */
    this.sampledAt = /** @type {number|null} */ (null);
    /**
     * Times the picture ran past the newest snapshot and had to
     * extrapolate: once per stall, however many frames it lasts (a count
     * per frame would grow with the display's refresh rate).
     */
    this.underruns = 0;
    /** Whether the last frame was past the newest snapshot. */
    this.underrunning = false;
    /** Highest-tick state pushed, to unwrap u32 ticks into a monotonic number. */
    this.baseTick = /** @type {number|null} */ (null);
    /**
     * The arrivals of the clock's window, oldest first: the snapshot's
     * tick, when it arrived (local ms), the sample (server tick minus local
     * ticks), whether it came queued behind the one before, and whether its
     * lateness was counted into the jitter yet.
     * @type {{tick: number, at: number, sample: number, queued: boolean, counted: boolean}[]}
     */
    this.samples = [];
    this.windowTicks = Math.max(CLOCK_WINDOW_MS, 4 * snapshotMs) / this.tickMs;
    this.shiftSpanMs = Math.max(SHIFT_SPAN_MS, 2 * snapshotMs);
    /** The farthest an entity can move in one tick (a shot), in quanta. */
    this.maxStep = Math.ceil(PROJECTILE_SPEED / tickHz);
  }

  /**
   * Ticks are u32 on the wire and wrap; here they are unwrapped relative to
   * the first one seen so arithmetic stays simple.
   * @param {number} tick
   */
  unwrap(tick) {
    if (this.baseTick === null) this.baseTick = tick;
    return (tick - this.baseTick) | 0;
  }

  /**
   * Adds a received state.
   * @param {WorldState} state
   * @param {number} now local time in ms (performance.now())
   */
  push(state, now) {
    const t = this.unwrap(state.tick);
    const last = this.states[this.states.length - 1];
    if (last && t <= last.tick) return;
    const byId = new Map();
    for (const e of state.entities) byId.set(e.id, e);
    this.states.push({ tick: t, byId, entities: state.entities });
    if (this.states.length > MAX_STATES) this.states.shift();

    const sample = t - now / this.tickMs;
    // A snapshot that arrives with the one before it (the backlog after a
    // stall, read in one go) is late only because that one was: its
    // lateness is not counted again.
    const window = this.samples;
    const previous = window[window.length - 1];
    const queued = previous !== undefined && now - previous.at < this.tickMs / 4;
    window.push({ tick: t, at: now, sample, queued, counted: false });
    // The window is counted in ticks, not arrival time: across a gap in
    // arrivals (a network stall) it keeps the snapshots before the gap, so
    // the backlog the stall releases is measured against the clock before
    // it; the backlog ends with a snapshot on time.
    while (t - window[0].tick > this.windowTicks) window.shift();
    let onTime = earliest(window);
    // Every arrival late for a shift span or longer, or for a few arrivals
    // in a row: the clock, or the route, has moved. Those arrivals are the
    // new on time. (The burst that ends a network stall is late too, but
    // arrives at once, and its last snapshot is on time.) Late means beyond
    // what the jitter explains: on a link that jitters a lot, a few late
    // arrivals in a row are no shift.
    const late = Math.max(SHIFT_LATE_MS / this.tickMs, 3 * this.jitter);
    let first = window.length;
    let arrivals = 0;
    while (first > 0 && window[first - 1].sample < onTime - late) {
      first--;
      if (!window[first].queued) arrivals++;
    }
    if (first < window.length && (now - window[first].at >= this.shiftSpanMs || arrivals >= SHIFT_ARRIVALS)) {
      window.splice(0, first);
      onTime = earliest(window);
    }
    // An arrival's lateness counts once it is a shift span old and no shift
    // explained it: the lateness of a shift is not jitter, and counted at
    // once it would raise the delay, pushing the render time back, just
    // when the clock must catch up.
    for (const s of window) {
      if (s.counted || now - s.at < this.shiftSpanMs) continue;
      s.counted = true;
      if (!s.queued) this.jitter += (Math.max(0, onTime - s.sample) - this.jitter) * 0.05;
    }
    if (this.offset === null || Math.abs(onTime - this.offset) > RESYNC_TICKS) {
      this.offset = onTime; // first sample, or the server's clock jumped
    } else {
      // Back by at most a tenth of a tick per arrival: the picture slows a
      // little rather than stops (the render time never runs backwards).
      this.offset += Math.max((onTime - this.offset) * 0.1, -0.1);
    }
    // The delay covers a few times the typical lateness; `sample` moves
    // towards it.
    this.targetDelayTicks = Math.max(this.minDelayTicks, this.snapshotTicks + 3 * this.jitter);
  }

  /** The server tick the clock says it is now (fractional). @param {number} now */
  serverTick(now) {
    return this.offset === null ? 0 : now / this.tickMs + this.offset;
  }

  /**
   * The entities as they were at the render time (now minus the delay).
   * @param {number} now
   * @returns {{tick: number, entities: RenderEntity[]}}
   */
  sample(now) {
    const n = this.states.length;
    if (n === 0 || this.offset === null) return { tick: 0, entities: [] };
    // The delay moves by at most a quarter of the time that passes, so the
    // picture slows or hurries a little instead of stopping or skipping
    // when the estimate moves.
    const step = (DELAY_SLEW * Math.max(0, now - (this.sampledAt ?? now))) / this.tickMs;
    this.sampledAt = now;
    this.delayTicks += Math.min(Math.max(this.targetDelayTicks - this.delayTicks, -step), step);
    let rt = this.serverTick(now) - this.delayTicks;
    // Never run backwards: a smoothed offset step would make things jitter.
    if (rt < this.lastRenderTick) rt = this.lastRenderTick;
    this.lastRenderTick = rt;

    const first = this.states[0];
    const newest = this.states[n - 1];
    const past = rt > newest.tick + 0.5;
    if (past && !this.underrunning) this.underruns++;
    this.underrunning = past;
    if (rt <= first.tick) return { tick: first.tick, entities: first.entities.map(copy) };
    if (rt >= newest.tick) {
      const ahead = Math.min(rt - newest.tick, MAX_EXTRAPOLATION_TICKS);
      return {
        tick: rt,
        entities: newest.entities.map((e) => {
          const r = copy(e);
          if (e.hp > 0) {
            r.x += e.vx * ahead;
            r.y += e.vy * ahead;
          }
          return r;
        }),
      };
    }
    // Bracketing pair: a.tick <= rt < b.tick.
    let i = n - 2;
    while (i > 0 && this.states[i].tick > rt) i--;
    const a = this.states[i];
    const b = this.states[i + 1];
    const alpha = (rt - a.tick) / (b.tick - a.tick);
    const reach = Math.min(TELEPORT + this.maxStep * (b.tick - a.tick), MAX_REACH);
    const out = [];
    for (const ea of a.entities) {
      const eb = b.byId.get(ea.id);
      if (!eb || eb.kind !== ea.kind) {
        // Gone by the next snapshot: show it where it was until then.
        out.push(copy(ea));
        continue;
      }
      // A respawn (dead, then alive elsewhere), or a jump nothing could
      // make in the time: no sweep across the map.
      const respawn = ea.hp === 0 && eb.hp > 0;
      if (respawn || Math.abs(eb.x - ea.x) > reach || Math.abs(eb.y - ea.y) > reach) {
        out.push(copy(alpha < 0.5 ? ea : eb));
        continue;
      }
      out.push({
        id: ea.id,
        kind: ea.kind,
        x: ea.x + (eb.x - ea.x) * alpha,
        y: ea.y + (eb.y - ea.y) * alpha,
        vx: eb.vx,
        vy: eb.vy,
        angle: lerpAngle(ea.angle, eb.angle, alpha),
        hp: ea.hp,
      });
    }
    return { tick: rt, entities: out };
  }
}

/**
 * The on-time sample of a window of arrivals: the highest, the arrival least
 * late against the server's ticks.
 * @param {{sample: number}[]} window
 */
function earliest(window) {
  let onTime = -Infinity;
  for (const s of window) onTime = Math.max(onTime, s.sample);
  return onTime;
}

/** @param {NetEntity} e @returns {RenderEntity} */
function copy(e) {
  return { id: e.id, kind: e.kind, x: e.x, y: e.y, vx: e.vx, vy: e.vy, angle: e.angle, hp: e.hp };
}

/**
 * Interpolates an angle in 1/256 turns along the shorter way round.
 * @param {number} a @param {number} b @param {number} t
 */
export function lerpAngle(a, b, t) {
  let d = (b - a) & 0xff;
  if (d > 128) d -= 256;
  return (a + d * t + 256) % 256;
}
