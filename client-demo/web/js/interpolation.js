// Entity interpolation: other players, NPCs and projectiles are drawn a
// little in the past (about 100 ms), between the two snapshots that bracket
// that moment, so they move smoothly although snapshots arrive at 30 Hz and
// with jitter.
//
// Time is kept in server ticks. Every snapshot arrival gives one sample of
// "server tick at this local time"; the clock follows the earliest arrivals
// of the last second (the on-time ones), turns the local clock into a
// server-tick clock that runs at exactly tick_hz, and the render time is that
// clock minus the interpolation delay, which covers how late snapshots
// arrive. A late snapshot, or a stall and the burst that ends it, does not
// drag the clock back: what arrives after it is on time again, and the
// picture goes on from where it would have been. Pure: the caller passes
// `now`.

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
/** Arrival samples the clock follows the earliest of (about 1 s at 30 Hz). */
const CLOCK_SAMPLES = 30;
/** A clock this many ticks off its samples jumps to them instead of gliding. */
const RESYNC_TICKS = 10;

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
    /** Frames that had to extrapolate past the newest snapshot. */
    this.underruns = 0;
    /** Highest-tick state pushed, to unwrap u32 ticks into a monotonic number. */
    this.baseTick = /** @type {number|null} */ (null);
    /** The last arrival samples (server tick minus local ticks), oldest first. */
    this.samples = /** @type {number[]} */ ([]);
    /** When the last state arrived (local ms), or null. */
    this.lastArrival = /** @type {number|null} */ (null);
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
    this.samples.push(sample);
    if (this.samples.length > CLOCK_SAMPLES) this.samples.shift();
    // On time is the earliest arrival of the last second. A late snapshot
    // (a sample below it) leaves it be; a shift of the whole path (every
    // sample later, for longer than the window) moves it down.
    const onTime = Math.max(...this.samples);
    if (this.offset === null || Math.abs(onTime - this.offset) > RESYNC_TICKS) {
      this.offset = onTime; // first sample, or the server's clock jumped
    } else {
      this.offset += (onTime - this.offset) * 0.1;
    }
    // The delay covers a few times the typical lateness. A snapshot that
    // arrives with the one before it (the backlog after a stall, read in
    // one go) is late only because that one was: it is not counted again.
    const queued = this.lastArrival !== null && now - this.lastArrival < this.tickMs / 4;
    this.lastArrival = now;
    if (!queued) this.jitter += (Math.max(0, onTime - sample) - this.jitter) * 0.05;
    this.delayTicks = Math.max(this.minDelayTicks, this.snapshotTicks + 3 * this.jitter);
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
    let rt = this.serverTick(now) - this.delayTicks;
    // Never run backwards: a smoothed offset step would make things jitter.
    if (rt < this.lastRenderTick) rt = this.lastRenderTick;
    this.lastRenderTick = rt;

    const first = this.states[0];
    const newest = this.states[n - 1];
    if (rt <= first.tick) return { tick: first.tick, entities: first.entities.map(copy) };
    if (rt >= newest.tick) {
      if (rt > newest.tick + 0.5) this.underruns++;
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
    const reach = TELEPORT + this.maxStep * (b.tick - a.tick);
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
