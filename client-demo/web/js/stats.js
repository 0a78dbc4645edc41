// Network and frame statistics for the overlay. Rates are counted over a
// sliding one-second window, so they react within a second and do not jump
// at window boundaries. Pure: times are passed in.

/** Counts events (with an optional amount each) over the last `windowMs`. */
export class RateWindow {
  constructor(windowMs = 1000) {
    this.windowMs = windowMs;
    /** @type {number[]} */
    this.times = [];
    /** @type {number[]} */
    this.amounts = [];
    this.sum = 0;
  }

  /** @param {number} now @param {number} [amount] */
  add(now, amount = 1) {
    this.times.push(now);
    this.amounts.push(amount);
    this.sum += amount;
    this.trim(now);
  }

  /** @param {number} now */
  trim(now) {
    let drop = 0;
    while (drop < this.times.length && this.times[drop] <= now - this.windowMs) {
      this.sum -= this.amounts[drop];
      drop++;
    }
    if (drop > 0) {
      this.times.splice(0, drop);
      this.amounts.splice(0, drop);
    }
  }

  /** Amount per second over the window. @param {number} now */
  rate(now) {
    this.trim(now);
    return (this.sum * 1000) / this.windowMs;
  }

  reset() {
    this.times = [];
    this.amounts = [];
    this.sum = 0;
  }
}

export class NetStats {
  constructor() {
    this.snapshots = new RateWindow();
    this.bytesIn = new RateWindow();
    this.frames = new RateWindow();
    /** Round-trip time of the last ping, in ms (null before the first pong). */
    this.pingMs = /** @type {number|null} */ (null);
    this.lastSnapshotBytes = 0;
    this.totalBytesIn = 0;
  }

  /** @param {number} now @param {number} bytes */
  messageIn(now, bytes) {
    this.bytesIn.add(now, bytes);
    this.totalBytesIn += bytes;
  }

  /** @param {number} now @param {number} bytes */
  snapshotIn(now, bytes) {
    this.snapshots.add(now);
    this.lastSnapshotBytes = bytes;
  }

  /** @param {number} now */
  frame(now) {
    this.frames.add(now);
  }

  /** Clears the per-connection numbers (not the FPS). */
  resetConnection() {
    this.snapshots.reset();
    this.bytesIn.reset();
    this.pingMs = null;
    this.lastSnapshotBytes = 0;
  }
}

/**
 * The overlay's lines, label and value.
 * @param {{now: number, room: string|null, resumes: number, paced: number,
 *   net: NetStats, corrections: number, lastCorrection: number,
 *   desyncs: number, badSnapshots: number, tickHz: number, snapshotHz: number,
 *   entities: number, pending: number, underruns: number, interpDelayMs: number}} s
 * @returns {[string, string][]}
 */
export function statsLines(s) {
  const { now, net } = s;
  return [
    ['room', s.room ?? '–'],
    ['ping', net.pingMs === null ? '–' : `${Math.round(net.pingMs)} ms`],
    ['snapshots/s', net.snapshots.rate(now).toFixed(1)],
    ['kB/s in', (net.bytesIn.rate(now) / 1000).toFixed(2)],
    ['last snapshot', `${net.lastSnapshotBytes} B`],
    ['corrections', `${s.corrections}${s.corrections ? ` (last ${(s.lastCorrection / 4).toFixed(1)} u)` : ''}`],
    ['desyncs', `${s.desyncs}${s.badSnapshots ? ` (+${s.badSnapshots} unusable)` : ''}`],
    ['fps', net.frames.rate(now).toFixed(0)],
    ['tick / snap Hz', `${s.tickHz} / ${s.snapshotHz}`],
    ['entities', String(s.entities)],
    ['unacked inputs', String(s.pending)],
    ['interp delay', `${Math.round(s.interpDelayMs)} ms (${s.underruns} stalls)`],
    ['resumed / paced', `${s.resumes} / ${s.paced}`],
  ];
}
