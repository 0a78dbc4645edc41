// Input pacing: keeps the server's buffer of this player's inputs from holding
// extra ticks of latency, and stops input when the server takes none.
//
// The server applies at most one input per player per tick and buffers the
// rest. After a stall (the server's or this page's: a hidden tab, a GC pause,
// a busy network) inputs pile up in that buffer, and since one goes in and
// one comes out per tick the pile never drains: every later input waits as
// many ticks longer, for the rest of the game. The Rust bots fix it the same
// way (client-demo/src/pacing.rs): skip one input.
//
// Detection, from what every snapshot carries: `lastSent - input_ack` inputs
// are unacknowledged. About a round trip's worth of them is in flight (plus
// up to a snapshot interval and a tick of phase); the rest sit in the
// server's buffer. If over a whole window (one second of snapshots) the
// server never held fewer than MAX_BACKLOG inputs, the next input is
// skipped: no send, no prediction, so the seqs stay consecutive and the
// prediction exact. The round trip is the lowest of the recent pings, which
// errs towards a larger backlog estimate; the minimum over the window picks
// the least jittered sample.
//
// Separately, with MAX_UNACKED inputs unacknowledged the server is not taking
// input at all (stalled, or the link is dead and not yet noticed): inputs
// stop until it acknowledges again: what would be sent meanwhile could only
// overflow the server's buffer of 8, or be given up at a resume.
//
// Pure: times and counts arrive as arguments.

/** Inputs the server may hold beyond the ones in flight before one is skipped. */
export const MAX_BACKLOG = 2;
/** Unacknowledged inputs at which inputs stop (1.5 s at 30 Hz). */
export const MAX_UNACKED = 45;
/** Pings whose minimum is the round-trip estimate. */
const RTT_SAMPLES = 10;

export class InputPacer {
  /** @param {number} tickHz @param {number} snapshotHz */
  constructor(tickHz, snapshotHz) {
    this.tickMs = 1000 / tickHz;
    /** Ticks between two snapshots, minus one: the ack lags by up to that much more. */
    this.snapshotLag = Math.max(0, tickHz / Math.max(1, snapshotHz) - 1);
    /** Snapshots per judgement: one second's worth. */
    this.window = Math.max(1, snapshotHz);
    /** @type {number[]} recent round trips, ms */
    this.rtts = [];
    this.minBacklog = Infinity;
    this.samples = 0;
    this.skipNext = false;
    /** Inputs skipped to drain the server's backlog. */
    this.paced = 0;
    /** Inputs not sent because too many were unacknowledged. */
    this.stalled = 0;
  }

  /** A ping round trip, in ms. @param {number} ms */
  onRtt(ms) {
    this.rtts.push(ms);
    if (this.rtts.length > RTT_SAMPLES) this.rtts.shift();
  }

  /**
   * A snapshot arrived with `unacked` = last sent seq − its input_ack.
   * @param {number} unacked
   */
  onSnapshot(unacked) {
    if (this.rtts.length === 0) return;
    const inFlight = Math.min(...this.rtts) / this.tickMs + this.snapshotLag + 1;
    this.minBacklog = Math.min(this.minBacklog, unacked - inFlight);
    if (++this.samples < this.window) return;
    if (this.minBacklog > MAX_BACKLOG) this.skipNext = true;
    this.minBacklog = Infinity;
    this.samples = 0;
  }

  /**
   * Whether this tick's input is skipped; at most one paced skip per window.
   * @param {number} unacked inputs sent and not yet acknowledged
   */
  skip(unacked) {
    if (unacked >= MAX_UNACKED) {
      this.stalled++;
      return true;
    }
    if (!this.skipNext) return false;
    this.skipNext = false;
    this.paced++;
    return true;
  }
}
