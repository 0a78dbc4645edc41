//! Measurements shared by every bot of a swarm.
//!
//! Counters are relaxed atomics: each bot bumps them as things happen and the
//! progress line reads them while the run goes on. Latency-like samples go
//! into HDR histograms, but not one set per bot: a histogram with 3
//! significant digits over a minute of microseconds is tens of KiB, times
//! thousands of bots. Instead each bot buffers its samples in a small
//! [`Samples`] and merges them about once a second into the swarm-wide
//! histograms behind a `std::sync::Mutex` (never held across an `.await`, so
//! a blocking mutex is the right, cheaper tool).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

/// Highest time a histogram records, in microseconds (60 s); longer samples
/// are clamped to it.
const MAX_TIME_US: u64 = 60_000_000;
/// Highest prediction error recorded, in thousandths of a world unit (the
/// arena's diagonal is under 3,000 units).
const MAX_ERROR_MILLIUNITS: u64 = 10_000_000;
/// Significant digits kept by every histogram (0.1% resolution).
const SIGFIG: u8 = 3;
/// How often a bot merges its buffered samples into the shared histograms.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The part of a run whose measurements describe it at full load: from the
/// moment the last bot was started to the moment the bots are told to leave.
///
/// A swarm ramps its bots up, and a sample taken during the ramp describes a
/// lighter load (at 2,000 clients about a fifth of a run's samples came from
/// the ramp), so latencies, rates, prediction checks and play time are
/// counted only inside it. Correctness counts (desyncs, decode and protocol
/// errors, inputs never acknowledged, resumes) cover the whole run.
///
/// The swarm reads the counters behind the rates (snapshots, bytes) when
/// its task wakes at the window's ends, a little after them, while play
/// time is cut at the window's exact ends; the difference is the task's
/// wake-up delay over the window's length, small against a run of
/// seconds unless the bot process is saturated (which its report says).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Start, inclusive.
    pub from: Instant,
    /// End, exclusive.
    pub until: Instant,
}

impl Window {
    /// Whether `at` lies in the window.
    #[must_use]
    pub fn contains(&self, at: Instant) -> bool {
        self.from <= at && at < self.until
    }

    /// How much of the span from `start` to `end` lies in the window.
    #[must_use]
    pub fn overlap(&self, start: Instant, end: Instant) -> Duration {
        end.min(self.until)
            .saturating_duration_since(start.max(self.from))
    }
}

/// A relaxed atomic counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Replaces the value (for settings the server announces).
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Subtracts one (for gauges).
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    /// Raises the value to `v` if it is lower (for maxima).
    pub fn max(&self, v: u64) {
        self.0.fetch_max(v, Ordering::Relaxed);
    }
    /// The current value.
    #[must_use]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The swarm-wide histograms.
#[derive(Debug, Clone)]
pub struct Histograms {
    /// Input sent to first snapshot acknowledging it, in microseconds.
    pub input_ack_latency_us: Histogram<u64>,
    /// Time between two snapshots arriving at one bot, in microseconds.
    pub snapshot_interval_us: Histogram<u64>,
    /// Prediction error, in thousandths of a world unit.
    pub prediction_error_milliunits: Histogram<u64>,
    /// Ping to pong, in microseconds.
    pub rtt_us: Histogram<u64>,
    /// How late a bot's tick timer fired, in microseconds: the bot process's
    /// own saturation, which decides whether the other figures are valid.
    pub input_send_lateness_us: Histogram<u64>,
    /// From losing a connection to the welcome that resumed its session, in
    /// microseconds.
    pub resume_time_us: Histogram<u64>,
    /// From the start of a bot's first TCP connect to its first snapshot
    /// (connect, WebSocket upgrade, hello, welcome, a tick), in
    /// microseconds: how long a player waits to see the game.
    pub join_time_us: Histogram<u64>,
}

fn histogram(high: u64) -> Histogram<u64> {
    // The bounds are constants that satisfy hdrhistogram's requirements
    // (low >= 1, high >= 2 * low, sigfig <= 5), so this cannot fail.
    Histogram::new_with_bounds(1, high, SIGFIG).expect("constant histogram bounds are valid")
}

impl Default for Histograms {
    fn default() -> Self {
        Self {
            input_ack_latency_us: histogram(MAX_TIME_US),
            snapshot_interval_us: histogram(MAX_TIME_US),
            prediction_error_milliunits: histogram(MAX_ERROR_MILLIUNITS),
            rtt_us: histogram(MAX_TIME_US),
            input_send_lateness_us: histogram(MAX_TIME_US),
            resume_time_us: histogram(MAX_TIME_US),
            join_time_us: histogram(MAX_TIME_US),
        }
    }
}

/// Everything the bots of one swarm measure together.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Bots connected and welcomed right now (a gauge).
    pub connected_now: Counter,
    /// Bots that were ever welcomed.
    pub connected_total: Counter,
    /// Snapshots received (including ones that failed to apply).
    pub snapshots: Counter,
    /// Bytes received: WebSocket payloads plus frame headers, and datagram
    /// payloads.
    pub bytes_received: Counter,
    /// Bytes sent: WebSocket payloads plus (masked) frame headers, and
    /// datagram payloads.
    pub bytes_sent: Counter,
    /// Snapshots that came as datagrams (`--datagrams`).
    pub snapshots_by_datagram: Counter,
    /// Snapshots dropped on arrival because a newer one had come first
    /// (datagrams may be reordered, or overtake a large snapshot on the
    /// WebSocket).
    pub stale_snapshots_dropped: Counter,
    /// Datagrams the bot's socket did not take (its buffer was full).
    pub datagrams_unsent: Counter,
    /// Links that gave up on datagrams (none acknowledged, or no snapshot
    /// came) and went back to the WebSocket alone.
    pub datagram_fallbacks: Counter,
    /// Tries at datagrams again after a fall-back (after 10 s of ticks,
    /// then twice as long after each failure).
    pub datagram_retries: Counter,
    /// Server messages that did not decode.
    pub decode_errors: Counter,
    /// Snapshots whose rebuilt state did not match the server's checksum, or
    /// that could not be rebuilt at all.
    pub desyncs: Counter,
    /// Messages valid in themselves but breaking the protocol's order
    /// (stale snapshot, regressing input ack, second welcome, text frame).
    pub protocol_errors: Counter,
    /// Inputs sent.
    pub inputs_sent: Counter,
    /// Inputs acknowledged by a snapshot.
    pub inputs_acked: Counter,
    /// Ticks on which a bot skipped its input to drain its queue on the
    /// server (see [`crate::pacing`]).
    pub inputs_paced: Counter,
    /// Inputs forgotten because the server did not acknowledge them for far
    /// too long (see [`crate::prediction::MAX_PENDING_INPUTS`]).
    pub inputs_never_acked: Counter,
    /// Prediction checks that went into the error histogram (inside the
    /// measurement [`Window`]).
    pub prediction_samples: Counter,
    /// Of those, checks with a non-zero error.
    pub mispredictions: Counter,
    /// Corrections caused by a death or respawn (not in the histogram),
    /// inside the measurement [`Window`].
    pub life_event_corrections: Counter,
    /// Inputs the server skipped rather than applied, at least: a snapshot's
    /// `input_ack` that moved further than the ticks since the previous
    /// snapshot (the server applies at most one input per tick) passed over
    /// inputs the server dropped (its buffer was full). Not those given up
    /// at a resume ([`Self::inputs_given_up`]).
    pub inputs_skipped_by_server: Counter,
    /// The longest time any bot went without a snapshot while connected,
    /// over the whole run, the ramp included, in microseconds (a maximum,
    /// not a sum: [`Self::snapshot_gap`]). The snapshot interval
    /// histogram only has the measurement [`Window`]'s.
    pub longest_snapshot_gap_us: Counter,
    /// Bots that were welcomed and ended without receiving a single
    /// snapshot.
    pub clients_without_snapshot: Counter,
    /// Bots that sent a close frame but saw no close frame back in time.
    pub unclean_closes: Counter,
    /// Bots still closing at the swarm's drain deadline, and aborted (their
    /// figures were booked at the stop, before they began to leave).
    pub bots_aborted: Counter,
    /// Sum over bots of server ticks advanced between their first and last
    /// snapshot inside the measurement [`Window`]; with `tick_time_us`, the
    /// server's real tick rate.
    pub server_ticks: Counter,
    /// Sum over bots of the time between their first and last snapshot, in
    /// microseconds.
    pub tick_time_us: Counter,
    /// Sum over bots of the time they were connected and playing (welcome to
    /// the end of the run or the disconnect) inside the measurement
    /// [`Window`], in microseconds.
    pub play_time_us: Counter,
    /// Sessions the bots tried to resume after losing a connection (on
    /// purpose or not).
    pub resumes_attempted: Counter,
    /// Of those, resumed and verified: same player, input numbering in line
    /// with what the bot sent and had acknowledged.
    pub resumes_succeeded: Counter,
    /// Of those, refused by the server or failing verification.
    pub resumes_failed: Counter,
    /// Of those, cut short by the end of the run.
    pub resumes_interrupted: Counter,
    /// Inputs sent again after a resume because the server had not received
    /// them (sequence number above `Welcome::input_seq`).
    pub inputs_resent: Counter,
    /// Inputs given up at a resume instead of resent: more than the
    /// server's input buffer still took (their effect is dropped from the
    /// prediction, as the page does).
    pub inputs_given_up: Counter,
    /// First snapshots after a resume that were deltas (against a baseline
    /// acknowledged on the lost connection).
    pub resume_first_deltas: Counter,
    /// First snapshots after a resume that were full.
    pub resume_first_full: Counter,
    /// Prediction checks in the first second after a resume.
    pub resume_prediction_checks: Counter,
    /// Of those, checks with a non-zero error.
    pub resume_mispredictions: Counter,
    /// Tick rate announced by the server (the last welcome seen).
    pub tick_hz: Counter,
    /// Snapshot rate announced by the server (the last welcome seen).
    pub snapshot_hz: Counter,
    /// Rooms the server placed bots in, by name.
    pub rooms: Mutex<BTreeSet<String>>,
    /// Connection failures by reason label.
    pub connect_failure_reasons: Mutex<BTreeMap<String, u64>>,
    /// Unexpected disconnects by reason label.
    pub disconnect_reasons: Mutex<BTreeMap<String, u64>>,
    /// Why connections were lost and resumed: `chaos` for the deliberate
    /// drops of `resume_chance`, else what ended the connection.
    pub resume_triggers: Mutex<BTreeMap<String, u64>>,
    /// Failed resumes by reason label.
    pub resume_failure_reasons: Mutex<BTreeMap<String, u64>>,
    /// The swarm-wide histograms.
    pub histograms: Mutex<Histograms>,
}

impl Metrics {
    /// Notes that a bot went `d` without a snapshot while connected: the
    /// time from its connection's `Welcome` (or its last snapshot) to its
    /// next snapshot, to the loss of the connection, or to the stop.
    pub fn snapshot_gap(&self, d: Duration) {
        self.longest_snapshot_gap_us.max(micros(d));
    }

    /// Counts one occurrence of `label` in `map`.
    pub fn count_reason(map: &Mutex<BTreeMap<String, u64>>, label: &str) {
        let mut map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *map.entry(label.to_owned()).or_default() += 1;
    }

    /// Notes the room a welcome placed a bot in.
    pub fn saw_room(&self, room: &str) {
        let mut rooms = self
            .rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !rooms.contains(room) {
            rooms.insert(room.to_owned());
        }
    }

    /// Number of distinct rooms bots were placed in so far.
    #[must_use]
    pub fn room_count(&self) -> u64 {
        let rooms = self
            .rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        rooms.len() as u64
    }

    /// Records the time one resume took.
    pub fn resume_time(&self, d: Duration) {
        self.lock_histograms()
            .resume_time_us
            .saturating_record(micros(d));
    }

    /// Records the time one bot took to join: from its connect to its
    /// first snapshot.
    pub fn join_time(&self, d: Duration) {
        self.lock_histograms()
            .join_time_us
            .saturating_record(micros(d));
    }

    /// A copy of the histograms as they are now.
    #[must_use]
    pub fn histograms(&self) -> Histograms {
        self.lock_histograms().clone()
    }

    /// The p99 input-to-ack latency so far, in milliseconds, for the progress
    /// line (`None` before the first sample).
    #[must_use]
    pub fn latency_p99_ms(&self) -> Option<f64> {
        let h = self.lock_histograms();
        (!h.input_ack_latency_us.is_empty())
            .then(|| h.input_ack_latency_us.value_at_quantile(0.99) as f64 / 1000.0)
    }

    fn lock_histograms(&self) -> std::sync::MutexGuard<'_, Histograms> {
        // A panic while holding the lock cannot leave a histogram half
        // updated in a way that matters for a report; keep going.
        self.histograms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One bot's samples waiting to be merged into the shared histograms. A
/// sample taken outside the measurement [`Window`] is dropped.
#[derive(Debug)]
pub struct Samples {
    window: Option<Window>,
    input_ack_latency_us: Vec<u64>,
    snapshot_interval_us: Vec<u64>,
    prediction_error_milliunits: Vec<u64>,
    rtt_us: Vec<u64>,
    input_send_lateness_us: Vec<u64>,
    last_flush: Instant,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Samples {
    /// An empty buffer; `now` starts the flush clock. Samples taken outside
    /// `window` are dropped (`None`: all are kept).
    #[must_use]
    pub fn new(now: Instant, window: Option<Window>) -> Self {
        Self {
            window,
            input_ack_latency_us: Vec::new(),
            snapshot_interval_us: Vec::new(),
            prediction_error_milliunits: Vec::new(),
            rtt_us: Vec::new(),
            input_send_lateness_us: Vec::new(),
            last_flush: now,
        }
    }

    /// How much of a connection's play from `since` to `now` counts as
    /// play time: its share of the window (all of it without one).
    #[must_use]
    pub fn played(&self, since: Instant, now: Instant) -> Duration {
        self.window.map_or_else(
            || now.saturating_duration_since(since),
            |w| w.overlap(since, now),
        )
    }

    /// Whether a sample taken at `at` is kept.
    #[must_use]
    pub fn measuring(&self, at: Instant) -> bool {
        self.window.is_none_or(|w| w.contains(at))
    }

    /// The end of the measurement window, if there is one.
    #[must_use]
    pub fn window_end(&self) -> Option<Instant> {
        self.window.map(|w| w.until)
    }

    /// An input-to-ack latency, taken at `at`.
    pub fn input_ack_latency(&mut self, at: Instant, d: Duration) {
        if self.measuring(at) {
            self.input_ack_latency_us.push(micros(d));
        }
    }
    /// A gap between two snapshots, the second arriving at `at`.
    pub fn snapshot_interval(&mut self, at: Instant, d: Duration) {
        if self.measuring(at) {
            self.snapshot_interval_us.push(micros(d));
        }
    }
    /// A prediction error in world units, checked at `at`.
    pub fn prediction_error(&mut self, at: Instant, units: f64) {
        if self.measuring(at) {
            self.prediction_error_milliunits
                .push((units * 1000.0).round().max(0.0) as u64);
        }
    }
    /// A ping round trip, its pong arriving at `at`.
    pub fn rtt(&mut self, at: Instant, d: Duration) {
        if self.measuring(at) {
            self.rtt_us.push(micros(d));
        }
    }
    /// How late a tick timer fired, noticed at `at`.
    pub fn input_send_lateness(&mut self, at: Instant, d: Duration) {
        if self.measuring(at) {
            self.input_send_lateness_us.push(micros(d));
        }
    }

    /// Merges the buffered samples if [`FLUSH_EVERY`] has passed.
    pub fn flush_if_due(&mut self, metrics: &Metrics, now: Instant) {
        if now.saturating_duration_since(self.last_flush) >= FLUSH_EVERY {
            self.flush(metrics, now);
        }
    }

    /// Merges the buffered samples into the shared histograms.
    pub fn flush(&mut self, metrics: &Metrics, now: Instant) {
        self.last_flush = now;
        let mut guard = metrics.lock_histograms();
        let h = &mut *guard;
        let pairs = [
            (&mut self.input_ack_latency_us, &mut h.input_ack_latency_us),
            (&mut self.snapshot_interval_us, &mut h.snapshot_interval_us),
            (
                &mut self.prediction_error_milliunits,
                &mut h.prediction_error_milliunits,
            ),
            (&mut self.rtt_us, &mut h.rtt_us),
            (
                &mut self.input_send_lateness_us,
                &mut h.input_send_lateness_us,
            ),
        ];
        for (buffer, histogram) in pairs {
            for v in buffer.drain(..) {
                // Values above the bound are clamped to it: an outlier is
                // still counted as the worst case, never dropped.
                histogram.saturating_record(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_reach_the_shared_histograms_on_flush() {
        let metrics = Metrics::default();
        let t0 = Instant::now();
        let mut s = Samples::new(t0, None);
        for ms in 1..=100u64 {
            s.input_ack_latency(t0, Duration::from_millis(ms));
        }
        s.prediction_error(t0, 0.0);
        s.prediction_error(t0, 2.5);
        s.flush_if_due(&metrics, t0 + Duration::from_millis(10));
        assert!(metrics.histograms().input_ack_latency_us.is_empty());
        s.flush_if_due(&metrics, t0 + FLUSH_EVERY);
        let h = metrics.histograms();
        assert_eq!(h.input_ack_latency_us.len(), 100);
        let p99 = metrics.latency_p99_ms().unwrap_or_default();
        assert!((98.9..=99.1).contains(&p99), "{p99}");
        assert_eq!(h.prediction_error_milliunits.len(), 2);
        // hdrhistogram reports the top of the 0.1% bucket holding 2500.
        assert!(
            h.prediction_error_milliunits
                .equivalent(h.prediction_error_milliunits.max(), 2500)
        );
        assert_eq!(h.prediction_error_milliunits.min(), 0);
    }

    #[test]
    fn outliers_are_clamped_not_lost() {
        let metrics = Metrics::default();
        let t0 = Instant::now();
        let mut s = Samples::new(t0, None);
        s.rtt(t0, Duration::from_secs(3600));
        s.flush(&metrics, t0);
        let h = metrics.histograms();
        assert_eq!(h.rtt_us.len(), 1);
        assert!(h.rtt_us.max() >= MAX_TIME_US);
    }

    #[test]
    fn only_samples_taken_inside_the_window_are_kept() {
        let metrics = Metrics::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let window = Window {
            from: t0 + ms(100),
            until: t0 + ms(200),
        };
        let mut s = Samples::new(t0, Some(window));
        // The ramp, the window's first instant, its inside, its end (out),
        // and after the stop.
        for at in [ms(0), ms(99), ms(100), ms(150), ms(199), ms(200), ms(300)] {
            s.input_ack_latency(t0 + at, ms(5));
            s.snapshot_interval(t0 + at, ms(33));
            s.prediction_error(t0 + at, 1.0);
            s.rtt(t0 + at, ms(2));
            s.input_send_lateness(t0 + at, ms(1));
        }
        s.flush(&metrics, t0 + ms(300));
        let h = metrics.histograms();
        for (name, hist) in [
            ("input_ack_latency", &h.input_ack_latency_us),
            ("snapshot_interval", &h.snapshot_interval_us),
            ("prediction_error", &h.prediction_error_milliunits),
            ("rtt", &h.rtt_us),
            ("input_send_lateness", &h.input_send_lateness_us),
        ] {
            assert_eq!(hist.len(), 3, "{name}");
        }
    }

    #[test]
    fn play_time_counts_only_the_windows_share() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let window = Window {
            from: t0 + ms(100),
            until: t0 + ms(200),
        };
        // Joined during the ramp, played past the stop.
        assert_eq!(window.overlap(t0, t0 + ms(250)), ms(100));
        // Joined during the ramp, disconnected inside.
        assert_eq!(window.overlap(t0 + ms(50), t0 + ms(130)), ms(30));
        // Entirely inside.
        assert_eq!(window.overlap(t0 + ms(110), t0 + ms(120)), ms(10));
        // Entirely before, entirely after.
        assert_eq!(window.overlap(t0, t0 + ms(90)), Duration::ZERO);
        assert_eq!(window.overlap(t0 + ms(210), t0 + ms(290)), Duration::ZERO);
        assert!(!window.contains(t0 + ms(200)));
        // What a bot books for a connection: the window's share, or the
        // whole span without a window.
        assert_eq!(
            Samples::new(t0, Some(window)).played(t0, t0 + ms(250)),
            ms(100)
        );
        assert_eq!(Samples::new(t0, None).played(t0, t0 + ms(250)), ms(250));
    }

    #[test]
    fn reasons_are_counted_by_label() {
        let metrics = Metrics::default();
        Metrics::count_reason(&metrics.disconnect_reasons, "too_slow");
        Metrics::count_reason(&metrics.disconnect_reasons, "too_slow");
        Metrics::count_reason(&metrics.disconnect_reasons, "idle_timeout");
        let map = metrics
            .disconnect_reasons
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        assert_eq!(map.get("too_slow"), Some(&2));
        assert_eq!(map.get("idle_timeout"), Some(&1));
    }
}
