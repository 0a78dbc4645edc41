//! The run report: the JSON object a CI job or a spreadsheet reads, and the
//! human summary printed at the end of a run.
//!
//! Field names of the first block are a contract (issue 3): scripts parse
//! them. Times are milliseconds, distances world units, rates per connected
//! client per second of play.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::bot::CHAOS_TRIGGER;
use crate::metrics::{Histograms, Metrics};

/// Summary of one histogram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
    /// Arithmetic mean (for comparison only: judge by the percentiles).
    pub mean: f64,
    /// Number of samples.
    pub samples: u64,
}

impl Percentiles {
    /// Summarises `h`, dividing every value by `scale` (1000 turns
    /// microseconds into milliseconds and milli-units into units). All zero
    /// for an empty histogram.
    #[must_use]
    pub fn from_histogram(h: &Histogram<u64>, scale: f64) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let q = |q: f64| round3(h.value_at_quantile(q) as f64 / scale);
        Self {
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            max: round3(h.max() as f64 / scale),
            mean: round3(h.mean() / scale),
            samples: h.len(),
        }
    }
}

/// A CPU percentage for the summary, or "unknown".
fn percent_text(cpu: Option<f64>) -> String {
    cpu.map_or_else(|| "unknown".to_owned(), |c| format!("{c:.0}%"))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A bot that went this long (ms) without a snapshot while connected saw
/// the game freeze: the run is not healthy (a warning only when the bots
/// were saturated, which can delay their reads as much). Counted over the
/// whole run, the ramp included, from each connection's welcome: the time
/// to a connection's first snapshot, and a gap still open at the stop or at
/// the loss of the connection, count too.
pub const SNAPSHOT_GAP_MS: f64 = 2000.0;

/// Everything a run measured, in the shape of the JSON report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// Bots the run was asked to start.
    pub clients_requested: u64,
    /// Bots that completed the handshake and got a welcome.
    pub clients_connected: u64,
    /// Bots that never got a welcome (refused, timed out, rejected).
    pub connect_failures: u64,
    /// Welcomed bots whose connection ended before the run did.
    pub disconnects: u64,
    /// Seconds of play at full load: from the moment the last bot was
    /// started to the moment the bots were told to leave.
    pub duration_s: f64,
    /// Simulation rate the server announced, in Hz.
    pub tick_hz: u32,
    /// Snapshots received by all bots together.
    pub snapshots_received: u64,
    /// Snapshots per connected bot per second of play at full load (the
    /// ramp and the drain left out, as in every rate and latency below).
    pub snapshots_per_client_per_s: f64,
    /// WebSocket bytes (payloads and frame headers, not TCP/IP) received per
    /// connected bot per second of play at full load.
    pub bytes_received_per_client_per_s: f64,
    /// WebSocket bytes sent per connected bot per second of play at full
    /// load.
    pub bytes_sent_per_client_per_s: f64,
    /// Server messages that failed to decode.
    pub decode_errors: u64,
    /// Snapshots whose rebuilt world did not match the server's checksum or
    /// could not be rebuilt.
    pub desyncs: u64,
    /// From sending an input to the first snapshot whose `input_ack` covers
    /// it, including the link conditioner's delays, in milliseconds.
    pub input_ack_latency_ms: Percentiles,
    /// Time between two consecutive snapshots at one bot, in milliseconds.
    pub snapshot_interval_ms: Percentiles,
    /// Distance between the authoritative and the predicted own position for
    /// the acknowledged input, in world units (deaths and respawns excluded,
    /// see `life_event_corrections`).
    pub prediction_error: Percentiles,

    /// Whether the run passed every health check (`problems` is empty).
    pub healthy: bool,
    /// Why the run is unhealthy, one line per failed check.
    pub problems: Vec<String>,
    /// Warnings that do not fail the run but qualify its figures.
    pub warnings: Vec<String>,
    /// Light mode (`--light`): the bots read only each snapshot's header,
    /// so `desyncs` and the prediction figures are not measured and stay 0.
    pub light_mode: bool,
    /// Whether every snapshot was rebuilt and checked against the server's
    /// checksum (false in light mode).
    pub desync_checking: bool,
    /// The server URL.
    pub url: String,
    /// Distinct rooms the server placed the bots in (matchmaking spreads
    /// them over public rooms of `--room-capacity` seats; `--room` puts them
    /// all in one).
    pub rooms: u64,
    /// Seed of every bot's choices and jitter.
    pub seed: u64,
    /// Start rate of the ramp, bots per second.
    pub ramp_per_sec: f64,
    /// Seconds from the first to the last bot start.
    pub ramp_s: f64,
    /// Seconds from the first bot start to the last bot finished.
    pub wall_s: f64,
    /// Snapshot rate the server announced, in Hz.
    pub snapshot_hz: u32,
    /// Server tick rate as seen from the snapshots' tick numbers over wall
    /// time; below `tick_hz` means the server could not keep its tick rate.
    pub server_tick_hz_measured: f64,
    /// Link conditioner one-way latency, in milliseconds.
    pub link_latency_ms: f64,
    /// Link conditioner one-way jitter (uniform ±), in milliseconds.
    pub link_jitter_ms: f64,
    /// Messages that broke the protocol's order (stale snapshot, regressing
    /// input ack, unexpected message).
    pub protocol_errors: u64,
    /// Snapshots that came as datagrams (bots run with `--datagrams`).
    pub snapshots_by_datagram: u64,
    /// Snapshots dropped on arrival because a newer one had come first.
    pub stale_snapshots_dropped: u64,
    /// Datagrams the bots' sockets did not take.
    pub datagrams_unsent: u64,
    /// Connections that gave up on datagrams and went back to the
    /// WebSocket alone (their datagrams did not get through).
    pub datagram_fallbacks: u64,
    /// Tries at datagrams again after a fall-back.
    pub datagram_retries: u64,
    /// Bots whose close frame got no close frame back in time.
    pub unclean_closes: u64,
    /// Bots still closing at the swarm's drain deadline, and aborted (their
    /// figures were booked before they began to leave).
    pub bots_aborted: u64,
    /// Welcomed bots that ended without receiving a single snapshot.
    pub clients_without_snapshot: u64,
    /// The longest time a bot went without a snapshot while connected, over
    /// the whole run (the ramp included, unlike `snapshot_interval_ms`),
    /// from each connection's welcome, in milliseconds.
    pub longest_snapshot_gap_ms: f64,
    /// Inputs sent by all bots.
    pub inputs_sent: u64,
    /// Inputs acknowledged by a snapshot.
    pub inputs_acked: u64,
    /// Inputs skipped because every input of the previous second had waited
    /// more than a tick in the server's buffer (see `client_demo::pacing`);
    /// a high count means the server lets input buffers grow.
    pub inputs_paced: u64,
    /// Inputs the server never acknowledged although far newer ones were
    /// sent (the bot stopped waiting for them).
    pub inputs_never_acked: u64,
    /// Inputs the server passed over instead of applying, at least: a
    /// snapshot's `input_ack` that moved further than the ticks since the
    /// bot's previous snapshot (one input per tick is applied) skipped the
    /// rest, which the server dropped (its buffer of them was full).
    pub inputs_skipped_by_server: u64,
    /// Prediction checks in `prediction_error`.
    pub prediction_samples: u64,
    /// Prediction checks with a non-zero error.
    pub mispredictions: u64,
    /// Position corrections caused by a death or respawn.
    pub life_event_corrections: u64,
    /// Ping to pong round trip (transport plus conditioner, no tick wait),
    /// in milliseconds.
    pub rtt_ms: Percentiles,
    /// From the start of each bot's first connect to its first snapshot
    /// (TCP connect, WebSocket upgrade, hello, welcome, then up to a tick),
    /// in milliseconds: one sample per bot that saw a snapshot.
    pub join_time_ms: Percentiles,
    /// How late the bots' tick timers fired, in milliseconds: the bot
    /// process's own health.
    pub input_send_lateness_ms: Percentiles,
    /// CPU time of the whole bot process over the run (ramp and drain
    /// included), in percent of one core (Linux only).
    pub bot_cpu_percent: Option<f64>,
    /// The same over the full-load window only (`duration_s`, after the
    /// ramp): what the saturation verdict uses.
    pub bot_cpu_percent_full_load: Option<f64>,
    /// Cores the bot process could use.
    pub bot_cores: u32,
    /// Whether the bot process itself was the bottleneck: its tick timers
    /// fired more than a quarter tick late at p99, or it used more than 90%
    /// of its cores at full load (over the whole run when that is unknown).
    /// When true, latency figures describe the bots, not the server.
    pub bot_cpu_saturated: bool,
    /// Connection failures by reason.
    pub connect_failure_reasons: BTreeMap<String, u64>,
    /// Unexpected disconnects by reason.
    pub disconnect_reasons: BTreeMap<String, u64>,

    /// Probability per bot per second of a deliberate connection drop
    /// followed by a session resume (`--resume-chance`).
    pub resume_chance: f64,
    /// Connections lost (deliberately or not) whose session the bots tried
    /// to resume.
    pub resumes_attempted: u64,
    /// Of those, resumed and verified: the same player, in the same room,
    /// and an `input_seq` neither ahead of the inputs sent nor behind the
    /// inputs acknowledged.
    pub resumes_succeeded: u64,
    /// Of those, refused by the server or failing verification (see
    /// `resume_failure_reasons`).
    pub resumes_failed: u64,
    /// Of those, cut short by the end of the run (neither success nor
    /// failure).
    pub resumes_interrupted: u64,
    /// What ended the connections that were resumed: `chaos` for the
    /// deliberate drops, anything else was not planned.
    pub resume_triggers: BTreeMap<String, u64>,
    /// Failed resumes by reason: a server refusal (`session_expired`, ...),
    /// a failed check (`not_resumed`, `player_changed`, `room_changed`,
    /// `session_changed`, `input_seq_ahead`, `input_seq_behind`) or the
    /// transport.
    pub resume_failure_reasons: BTreeMap<String, u64>,
    /// From losing the connection to the welcome that resumed the session,
    /// in milliseconds.
    pub resume_time_ms: Percentiles,
    /// Inputs sent again after a resume because the server had not
    /// received them.
    pub inputs_resent: u64,
    /// Inputs given up at a resume: more than the server's input buffer
    /// still took.
    pub inputs_given_up: u64,
    /// First snapshots after a resume that were deltas against a baseline
    /// acknowledged on the lost connection.
    pub resume_first_snapshot_deltas: u64,
    /// First snapshots after a resume that were full.
    pub resume_first_snapshot_full: u64,
    /// Prediction checks in the first second after each resume.
    pub resume_prediction_checks: u64,
    /// Of those, checks with a non-zero error.
    pub resume_mispredictions: u64,
}

/// The counters per-second rates are computed from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Snapshots received.
    pub snapshots: u64,
    /// WebSocket bytes received.
    pub bytes_received: u64,
    /// WebSocket bytes sent.
    pub bytes_sent: u64,
}

impl Counts {
    /// The counters' values now.
    #[must_use]
    pub fn read(metrics: &Metrics) -> Self {
        Self {
            snapshots: metrics.snapshots.get(),
            bytes_received: metrics.bytes_received.get(),
            bytes_sent: metrics.bytes_sent.get(),
        }
    }

    /// What was counted from `earlier` to `self`.
    #[must_use]
    pub fn since(self, earlier: Self) -> Self {
        Self {
            snapshots: self.snapshots.saturating_sub(earlier.snapshots),
            bytes_received: self.bytes_received.saturating_sub(earlier.bytes_received),
            bytes_sent: self.bytes_sent.saturating_sub(earlier.bytes_sent),
        }
    }
}

/// Facts about a run that the bots do not measure themselves.
#[derive(Clone, Debug, Default)]
pub struct RunFacts {
    /// Bots requested.
    pub clients_requested: u64,
    /// Server URL.
    pub url: String,
    /// Seed.
    pub seed: u64,
    /// Ramp rate, bots per second.
    pub ramp_per_sec: f64,
    /// First to last bot start.
    pub ramp: Duration,
    /// Last bot start to the stop signal.
    pub play: Duration,
    /// First bot start to the last bot finished.
    pub wall: Duration,
    /// Conditioner one-way latency.
    pub link_latency: Duration,
    /// Conditioner one-way jitter.
    pub link_jitter: Duration,
    /// Bots that connected and never got a welcome.
    pub connect_failures: u64,
    /// Welcomed bots that ended before the stop signal.
    pub disconnects: u64,
    /// Process CPU time used during the run.
    pub cpu_time: Option<Duration>,
    /// Process CPU time used during `play`, the full-load window.
    pub full_load_cpu_time: Option<Duration>,
    /// What the bots counted during `play`, the full-load window (the
    /// [`crate::metrics::Window`] of their play time).
    pub full_load_counts: Counts,
    /// Cores available to the process.
    pub cores: u32,
    /// Deliberate drops per bot per second.
    pub resume_chance: f64,
    /// The bots ran in light mode.
    pub light: bool,
}

fn per_client_per_s(total: u64, play_time_us: u64) -> f64 {
    if play_time_us == 0 {
        return 0.0;
    }
    round3(total as f64 / (play_time_us as f64 / 1e6))
}

impl Report {
    /// Builds the report from the swarm's metrics and the run's facts, and
    /// judges its health.
    #[must_use]
    pub fn build(facts: &RunFacts, metrics: &Metrics) -> Self {
        let h: Histograms = metrics.histograms();
        let play_us = metrics.play_time_us.get();
        let full_load = facts.full_load_counts;
        let map = |m: &std::sync::Mutex<BTreeMap<String, u64>>| {
            m.lock()
                .map(|m| m.clone())
                .unwrap_or_else(|p| p.into_inner().clone())
        };
        let tick_time_us = metrics.tick_time_us.get();
        let percent = |cpu: Option<Duration>, over: Duration| {
            let secs = over.as_secs_f64();
            cpu.filter(|_| secs > 0.0)
                .map(|cpu| round3(100.0 * cpu.as_secs_f64() / secs))
        };
        let cpu_percent = percent(facts.cpu_time, facts.wall);
        let cpu_percent_full_load = percent(facts.full_load_cpu_time, facts.play);
        let mut report = Self {
            clients_requested: facts.clients_requested,
            clients_connected: metrics.connected_total.get(),
            connect_failures: facts.connect_failures,
            disconnects: facts.disconnects,
            duration_s: round3(facts.play.as_secs_f64()),
            tick_hz: metrics.tick_hz.get() as u32,
            snapshots_received: metrics.snapshots.get(),
            snapshots_per_client_per_s: per_client_per_s(full_load.snapshots, play_us),
            bytes_received_per_client_per_s: per_client_per_s(full_load.bytes_received, play_us),
            bytes_sent_per_client_per_s: per_client_per_s(full_load.bytes_sent, play_us),
            decode_errors: metrics.decode_errors.get(),
            desyncs: metrics.desyncs.get(),
            input_ack_latency_ms: Percentiles::from_histogram(&h.input_ack_latency_us, 1000.0),
            snapshot_interval_ms: Percentiles::from_histogram(&h.snapshot_interval_us, 1000.0),
            prediction_error: Percentiles::from_histogram(&h.prediction_error_milliunits, 1000.0),
            healthy: false,
            problems: Vec::new(),
            warnings: Vec::new(),
            light_mode: facts.light,
            desync_checking: !facts.light,
            url: facts.url.clone(),
            rooms: metrics.room_count(),
            seed: facts.seed,
            ramp_per_sec: facts.ramp_per_sec,
            ramp_s: round3(facts.ramp.as_secs_f64()),
            wall_s: round3(facts.wall.as_secs_f64()),
            snapshot_hz: metrics.snapshot_hz.get() as u32,
            server_tick_hz_measured: if tick_time_us == 0 {
                0.0
            } else {
                round3(metrics.server_ticks.get() as f64 / (tick_time_us as f64 / 1e6))
            },
            link_latency_ms: facts.link_latency.as_secs_f64() * 1000.0,
            link_jitter_ms: facts.link_jitter.as_secs_f64() * 1000.0,
            protocol_errors: metrics.protocol_errors.get(),
            snapshots_by_datagram: metrics.snapshots_by_datagram.get(),
            stale_snapshots_dropped: metrics.stale_snapshots_dropped.get(),
            datagrams_unsent: metrics.datagrams_unsent.get(),
            datagram_fallbacks: metrics.datagram_fallbacks.get(),
            datagram_retries: metrics.datagram_retries.get(),
            unclean_closes: metrics.unclean_closes.get(),
            bots_aborted: metrics.bots_aborted.get(),
            clients_without_snapshot: metrics.clients_without_snapshot.get(),
            longest_snapshot_gap_ms: round3(metrics.longest_snapshot_gap_us.get() as f64 / 1000.0),
            inputs_sent: metrics.inputs_sent.get(),
            inputs_acked: metrics.inputs_acked.get(),
            inputs_paced: metrics.inputs_paced.get(),
            inputs_never_acked: metrics.inputs_never_acked.get(),
            inputs_skipped_by_server: metrics.inputs_skipped_by_server.get(),
            prediction_samples: metrics.prediction_samples.get(),
            mispredictions: metrics.mispredictions.get(),
            life_event_corrections: metrics.life_event_corrections.get(),
            rtt_ms: Percentiles::from_histogram(&h.rtt_us, 1000.0),
            join_time_ms: Percentiles::from_histogram(&h.join_time_us, 1000.0),
            input_send_lateness_ms: Percentiles::from_histogram(&h.input_send_lateness_us, 1000.0),
            bot_cpu_percent: cpu_percent,
            bot_cpu_percent_full_load: cpu_percent_full_load,
            bot_cores: facts.cores,
            bot_cpu_saturated: false,
            connect_failure_reasons: map(&metrics.connect_failure_reasons),
            disconnect_reasons: map(&metrics.disconnect_reasons),
            resume_chance: facts.resume_chance,
            resumes_attempted: metrics.resumes_attempted.get(),
            resumes_succeeded: metrics.resumes_succeeded.get(),
            resumes_failed: metrics.resumes_failed.get(),
            resumes_interrupted: metrics.resumes_interrupted.get(),
            resume_triggers: map(&metrics.resume_triggers),
            resume_failure_reasons: map(&metrics.resume_failure_reasons),
            resume_time_ms: Percentiles::from_histogram(&h.resume_time_us, 1000.0),
            inputs_resent: metrics.inputs_resent.get(),
            inputs_given_up: metrics.inputs_given_up.get(),
            resume_first_snapshot_deltas: metrics.resume_first_deltas.get(),
            resume_first_snapshot_full: metrics.resume_first_full.get(),
            resume_prediction_checks: metrics.resume_prediction_checks.get(),
            resume_mispredictions: metrics.resume_mispredictions.get(),
        };
        report.judge();
        report
    }

    /// Fills `healthy`, `problems`, `warnings` and `bot_cpu_saturated` from
    /// the figures: see [`SNAPSHOT_GAP_MS`] and README.md, "Load testing".
    pub fn judge(&mut self) {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        if self.clients_connected < self.clients_requested {
            problems.push(format!(
                "only {} of {} clients connected",
                self.clients_connected, self.clients_requested
            ));
        }
        let counts = [
            (self.connect_failures, "connection failures"),
            (self.disconnects, "unexpected disconnects"),
            (self.desyncs, "desyncs"),
            (self.decode_errors, "decode errors"),
            (self.protocol_errors, "protocol errors"),
            (self.inputs_never_acked, "inputs never acknowledged"),
            (
                self.clients_without_snapshot,
                "bots connected but never received a snapshot",
            ),
            (self.resumes_failed, "failed session resumes"),
        ];
        for (n, what) in counts {
            if n > 0 {
                problems.push(format!("{n} {what}"));
            }
        }
        if self.clients_connected > 0 && self.snapshots_received == 0 {
            problems.push("no snapshot received".into());
        }

        let tick_ms = if self.tick_hz > 0 {
            1000.0 / f64::from(self.tick_hz)
        } else {
            0.0
        };
        let late = tick_ms > 0.0 && self.input_send_lateness_ms.p99 > tick_ms / 4.0;
        // The full-load figure, or the whole run's when that is unknown.
        let cpu = self.bot_cpu_percent_full_load.or(self.bot_cpu_percent);
        let busy =
            cpu.is_some_and(|cpu| self.bot_cores > 0 && cpu > 90.0 * f64::from(self.bot_cores));
        self.bot_cpu_saturated = late || busy;
        // What the clients were promised: the announced snapshot rate,
        // without long gaps. Missed with the bots keeping time, the server
        // failed them; with the bots saturated, the bots may have.
        let mut shortfalls = Vec::new();
        let promised = f64::from(self.snapshot_hz.min(self.tick_hz));
        if promised > 0.0
            && self.snapshots_received > 0
            && self.snapshots_per_client_per_s < 0.9 * promised
        {
            shortfalls.push(format!(
                "the bots got {:.1} snapshots a second each of the {promised} announced",
                self.snapshots_per_client_per_s
            ));
        }
        let gap = self
            .longest_snapshot_gap_ms
            .max(self.snapshot_interval_ms.max);
        if gap > SNAPSHOT_GAP_MS {
            shortfalls.push(format!("a bot went {gap:.0} ms without a snapshot"));
        }
        if self.inputs_skipped_by_server > 0 {
            shortfalls.push(format!(
                "the server dropped at least {} inputs (its buffer of a player's inputs \
                 was full): players lost those moves",
                self.inputs_skipped_by_server
            ));
        }
        if self.bot_cpu_saturated {
            warnings.extend(shortfalls);
        } else {
            problems.extend(shortfalls);
        }
        if self.bot_cpu_saturated {
            warnings.push(format!(
                "the bots could not keep time (timer lateness p99 {:.1} ms, bot CPU {}): \
                 the machine running them is short of CPU, so latency figures include \
                 the bots' own delays; run fewer bots per process or spread them over machines",
                self.input_send_lateness_ms.p99,
                percent_text(cpu),
            ));
        }
        if self.light_mode {
            warnings.push(
                "light mode: snapshots were acknowledged from their header only; desyncs, \
                 snapshot bodies and prediction were NOT checked"
                    .into(),
            );
        }
        // A lost connection is resumed, as a page would, but a player would
        // have seen it: the server closed it (too slow, idle) or it broke.
        let unplanned: u64 = self
            .resume_triggers
            .iter()
            .filter(|(trigger, _)| trigger.as_str() != CHAOS_TRIGGER)
            .map(|(_, n)| n)
            .sum();
        if unplanned > 0 {
            problems.push(format!(
                "{unplanned} connections were lost without the bots dropping them and had \
                 to be resumed (see resume_triggers)"
            ));
        }
        if self.mispredictions > 0 {
            warnings.push(format!(
                "{} of {} prediction checks were off (see prediction_error)",
                self.mispredictions, self.prediction_samples
            ));
        }
        if self.resume_mispredictions > 0 {
            warnings.push(format!(
                "{} of {} prediction checks right after a resume were off",
                self.resume_mispredictions, self.resume_prediction_checks
            ));
        }
        if self.unclean_closes > 0 {
            warnings.push(format!(
                "{} bots got no close frame back from the server",
                self.unclean_closes
            ));
        }
        if self.bots_aborted > 0 {
            warnings.push(format!(
                "{} bots were still leaving at the drain deadline and were aborted",
                self.bots_aborted
            ));
        }
        if self.tick_hz > 0
            && self.server_tick_hz_measured > 0.0
            && self.server_tick_hz_measured < 0.95 * f64::from(self.tick_hz)
        {
            warnings.push(format!(
                "the server ticked at {:.1} Hz instead of {} Hz",
                self.server_tick_hz_measured, self.tick_hz
            ));
        }
        self.healthy = problems.is_empty();
        self.problems = problems;
        self.warnings = warnings;
    }
}

fn write_percentiles(
    f: &mut fmt::Formatter<'_>,
    label: &str,
    p: &Percentiles,
    unit: &str,
) -> fmt::Result {
    if p.samples == 0 {
        return writeln!(f, "  {label:<22} no samples");
    }
    writeln!(
        f,
        "  {label:<22} p50 {:>8.2}  p90 {:>8.2}  p99 {:>8.2}  max {:>8.2} {unit}  ({} samples)",
        p.p50, p.p90, p.p99, p.max, p.samples
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.healthy { "HEALTHY" } else { "UNHEALTHY" };
        writeln!(f, "bot swarm report: {verdict}")?;
        writeln!(
            f,
            "  clients                {} connected of {} requested, {} connect failures, {} disconnects",
            self.clients_connected, self.clients_requested, self.connect_failures, self.disconnects
        )?;
        writeln!(f, "  rooms                  {} distinct", self.rooms)?;
        writeln!(
            f,
            "  run                    {:.1} s at full load after a {:.1} s ramp ({:.1} s wall)",
            self.duration_s, self.ramp_s, self.wall_s
        )?;
        writeln!(
            f,
            "  server                 tick {} Hz (measured {:.2} Hz), snapshots {} Hz",
            self.tick_hz, self.server_tick_hz_measured, self.snapshot_hz
        )?;
        writeln!(
            f,
            "  link conditioner       {} ms ± {} ms each way",
            self.link_latency_ms, self.link_jitter_ms
        )?;
        writeln!(
            f,
            "  snapshots              {} received, {:.2} per client per s",
            self.snapshots_received, self.snapshots_per_client_per_s
        )?;
        writeln!(
            f,
            "  bandwidth per client   {:.2} kB/s down, {:.2} kB/s up",
            self.bytes_received_per_client_per_s / 1000.0,
            self.bytes_sent_per_client_per_s / 1000.0
        )?;
        if self.snapshots_by_datagram > 0
            || self.datagrams_unsent > 0
            || self.datagram_fallbacks > 0
        {
            writeln!(
                f,
                "  datagrams              {} snapshots by datagram, {} stale dropped, {} unsent, \
                 {} fall-backs to the WebSocket, {} tries again",
                self.snapshots_by_datagram,
                self.stale_snapshots_dropped,
                self.datagrams_unsent,
                self.datagram_fallbacks,
                self.datagram_retries
            )?;
        }
        if self.desync_checking {
            writeln!(
                f,
                "  correctness            {} desyncs, {} decode errors, {} protocol errors",
                self.desyncs, self.decode_errors, self.protocol_errors
            )?;
        } else {
            writeln!(
                f,
                "  correctness            desync checking OFF (light mode), {} decode errors, \
                 {} protocol errors",
                self.decode_errors, self.protocol_errors
            )?;
        }
        write_percentiles(f, "input→ack latency", &self.input_ack_latency_ms, "ms")?;
        write_percentiles(f, "snapshot interval", &self.snapshot_interval_ms, "ms")?;
        writeln!(
            f,
            "  longest snapshot gap   {:.0} ms (whole run, ramp included); {} bots never got a snapshot",
            self.longest_snapshot_gap_ms, self.clients_without_snapshot
        )?;
        write_percentiles(f, "prediction error", &self.prediction_error, "units")?;
        write_percentiles(f, "ping rtt", &self.rtt_ms, "ms")?;
        write_percentiles(f, "time to join", &self.join_time_ms, "ms")?;
        write_percentiles(f, "bot timer lateness", &self.input_send_lateness_ms, "ms")?;
        writeln!(
            f,
            "  inputs                 {} sent, {} acknowledged, {} skipped to drain the server's buffer, \
             {} dropped by the server (at least)",
            self.inputs_sent, self.inputs_acked, self.inputs_paced, self.inputs_skipped_by_server
        )?;
        writeln!(
            f,
            "  prediction             {} checks, {} mispredicted, {} death/respawn corrections",
            self.prediction_samples, self.mispredictions, self.life_event_corrections
        )?;
        writeln!(
            f,
            "  bot process            CPU {} at full load ({} over the run) on {} cores, saturated: {}",
            percent_text(self.bot_cpu_percent_full_load),
            percent_text(self.bot_cpu_percent),
            self.bot_cores,
            self.bot_cpu_saturated
        )?;
        if self.resumes_attempted > 0 || self.resume_chance > 0.0 {
            writeln!(
                f,
                "  resumes                {} attempted, {} succeeded, {} failed, {} cut short by the end \
                 (chance {} per bot per s)",
                self.resumes_attempted,
                self.resumes_succeeded,
                self.resumes_failed,
                self.resumes_interrupted,
                self.resume_chance
            )?;
            writeln!(
                f,
                "  after resumes          {} inputs resent, {} given up (past the server's input \
                 buffer), first snapshot {} deltas / {} full, {} of {} prediction checks off",
                self.inputs_resent,
                self.inputs_given_up,
                self.resume_first_snapshot_deltas,
                self.resume_first_snapshot_full,
                self.resume_mispredictions,
                self.resume_prediction_checks
            )?;
            write_percentiles(f, "time to resume", &self.resume_time_ms, "ms")?;
            for (trigger, n) in &self.resume_triggers {
                writeln!(f, "  resume trigger         {n} × {trigger}")?;
            }
            for (reason, n) in &self.resume_failure_reasons {
                writeln!(f, "  resume failure         {n} × {reason}")?;
            }
        }
        for (reason, n) in &self.connect_failure_reasons {
            writeln!(f, "  connect failure        {n} × {reason}")?;
        }
        for (reason, n) in &self.disconnect_reasons {
            writeln!(f, "  disconnect             {n} × {reason}")?;
        }
        for w in &self.warnings {
            writeln!(f, "  warning: {w}")?;
        }
        for p in &self.problems {
            writeln!(f, "  problem: {p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Samples;
    use tokio::time::Instant;

    fn healthy_metrics() -> Metrics {
        let m = Metrics::default();
        m.connected_total.add(2);
        // Whole run; `facts` has what of it fell in the full-load window.
        m.snapshots.add(700);
        m.bytes_received.add(700_000);
        m.bytes_sent.add(14_000);
        m.play_time_us.add(20_000_000);
        m.tick_hz.add(30);
        m.snapshot_hz.add(30);
        m.server_ticks.add(600);
        m.tick_time_us.add(20_000_000);
        let t0 = Instant::now();
        let mut s = Samples::new(t0, None);
        for i in 0..1000u64 {
            s.input_ack_latency(t0, Duration::from_micros(20_000 + i * 10));
            s.snapshot_interval(t0, Duration::from_micros(33_333));
            s.input_send_lateness(t0, Duration::from_micros(300));
        }
        s.prediction_error(t0, 0.0);
        s.flush(&m, t0);
        m.join_time(Duration::from_millis(4));
        m.join_time(Duration::from_millis(6));
        m
    }

    fn facts() -> RunFacts {
        RunFacts {
            clients_requested: 2,
            url: "ws://127.0.0.1:1/ws".into(),
            play: Duration::from_secs(10),
            wall: Duration::from_secs(11),
            cores: 2,
            cpu_time: Some(Duration::from_secs(2)),
            full_load_cpu_time: Some(Duration::from_secs(2)),
            full_load_counts: Counts {
                snapshots: 600,
                bytes_received: 600_000,
                bytes_sent: 12_000,
            },
            ..RunFacts::default()
        }
    }

    #[test]
    fn json_has_the_contract_field_names() {
        let report = Report::build(&facts(), &healthy_metrics());
        let json = serde_json::to_value(&report).unwrap_or_default();
        for key in [
            "clients_requested",
            "clients_connected",
            "connect_failures",
            "disconnects",
            "duration_s",
            "tick_hz",
            "snapshots_received",
            "snapshots_per_client_per_s",
            "bytes_received_per_client_per_s",
            "bytes_sent_per_client_per_s",
            "decode_errors",
            "desyncs",
            "input_ack_latency_ms",
            "snapshot_interval_ms",
            "prediction_error",
            "join_time_ms",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        for key in [
            "input_ack_latency_ms",
            "snapshot_interval_ms",
            "prediction_error",
            "join_time_ms",
        ] {
            for sub in ["p50", "p99", "max"] {
                assert!(
                    json[key].get(sub).is_some_and(|v| v.is_number()),
                    "{key}.{sub}"
                );
            }
        }
    }

    #[test]
    fn rates_are_per_client_second_and_times_in_ms() {
        let report = Report::build(&facts(), &healthy_metrics());
        // 600 snapshots over 20 client-seconds, both at full load: the
        // ramp's 100 are in the total only.
        assert_eq!(report.snapshots_received, 700);
        assert_eq!(report.snapshots_per_client_per_s, 30.0);
        assert_eq!(report.bytes_received_per_client_per_s, 30_000.0);
        assert_eq!(report.bytes_sent_per_client_per_s, 600.0);
        assert_eq!(report.server_tick_hz_measured, 30.0);
        assert!((20.0..=30.1).contains(&report.input_ack_latency_ms.p50));
        assert!((29.7..=30.1).contains(&report.input_ack_latency_ms.p99));
        assert_eq!(report.input_ack_latency_ms.samples, 1000);
        assert!((33.3..=33.4).contains(&report.snapshot_interval_ms.p50));
        // One join per connected bot, from its connect to its first snapshot.
        assert_eq!(report.join_time_ms.samples, 2);
        assert!((3.99..=4.01).contains(&report.join_time_ms.p50));
        assert!((5.99..=6.01).contains(&report.join_time_ms.max));
        assert_eq!(report.bot_cpu_percent.map(|c| c.round()), Some(18.0));
        assert!(report.healthy, "{:?}", report.problems);
        assert!(!report.bot_cpu_saturated);
    }

    #[test]
    fn any_failure_count_makes_the_run_unhealthy() {
        let setters: [fn(&mut Report); 8] = [
            |r| r.clients_without_snapshot = 1,
            |r| r.resumes_failed = 1,
            |r| r.connect_failures = 1,
            |r| r.disconnects = 1,
            |r| r.desyncs = 1,
            |r| r.decode_errors = 1,
            |r| r.protocol_errors = 1,
            |r| r.clients_connected = 1,
        ];
        for set in setters {
            let mut report = Report::build(&facts(), &healthy_metrics());
            set(&mut report);
            report.judge();
            assert!(!report.healthy);
            assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        }
    }

    #[test]
    fn late_timers_or_full_cpu_mark_the_bots_saturated() {
        let mut report = Report::build(&facts(), &healthy_metrics());
        report.input_send_lateness_ms.p99 = 9.0; // > 33.3 / 4
        report.judge();
        assert!(report.bot_cpu_saturated && report.healthy);
        assert_eq!(report.warnings.len(), 1);

        let mut report = Report::build(&facts(), &healthy_metrics());
        report.bot_cpu_percent_full_load = Some(185.0);
        report.judge();
        assert!(report.bot_cpu_saturated);

        // One core, busy at full load: the whole run's average, diluted by
        // the ramp and the drain, would hide it.
        let busy = RunFacts {
            cores: 1,
            cpu_time: Some(Duration::from_millis(8_800)),
            full_load_cpu_time: Some(Duration::from_millis(9_500)),
            ..facts()
        };
        let report = Report::build(&busy, &healthy_metrics());
        assert_eq!(report.bot_cpu_percent, Some(80.0));
        assert_eq!(report.bot_cpu_percent_full_load, Some(95.0));
        assert!(report.bot_cpu_saturated);
    }

    #[test]
    fn summary_mentions_the_verdict_and_the_figures() {
        let report = Report::build(&facts(), &healthy_metrics());
        let text = report.to_string();
        assert!(text.contains("HEALTHY"));
        assert!(text.contains("2 connected of 2 requested"));
        assert!(text.contains("input→ack latency"));
        let mut bad = report;
        bad.desyncs = 3;
        bad.judge();
        let text = bad.to_string();
        assert!(text.contains("UNHEALTHY") && text.contains("3 desyncs"));
    }

    #[test]
    fn a_short_snapshot_rate_or_a_long_gap_fails_the_run_unless_the_bots_were_saturated() {
        let shortfalls: [fn(&mut Report); 4] = [
            |r| r.snapshots_per_client_per_s = 20.0,
            |r| r.snapshot_interval_ms.max = SNAPSHOT_GAP_MS + 1.0,
            // In the ramp, outside the window of the intervals.
            |r| r.longest_snapshot_gap_ms = SNAPSHOT_GAP_MS + 1.0,
            |r| r.inputs_skipped_by_server = 1,
        ];
        for short in shortfalls {
            let mut report = Report::build(&facts(), &healthy_metrics());
            short(&mut report);
            report.judge();
            assert!(!report.healthy);
            assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
            // Bots that could not keep time may have caused it themselves.
            report.input_send_lateness_ms.p99 = 9.0;
            report.judge();
            assert!(report.healthy, "{:?}", report.problems);
            assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
        }
        // Within a tenth of the announced rate, and gaps up to the limit, pass.
        let mut report = Report::build(&facts(), &healthy_metrics());
        report.snapshots_per_client_per_s = 27.5;
        report.snapshot_interval_ms.max = SNAPSHOT_GAP_MS;
        report.longest_snapshot_gap_ms = SNAPSHOT_GAP_MS;
        report.judge();
        assert!(report.healthy && report.warnings.is_empty(), "{report:?}");
    }

    #[test]
    fn mispredictions_are_warned_about() {
        let mut report = Report::build(&facts(), &healthy_metrics());
        report.mispredictions = 3;
        report.judge();
        assert!(report.healthy);
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    }

    #[test]
    fn resumes_are_reported_and_unplanned_ones_fail_the_run() {
        let m = healthy_metrics();
        m.resumes_attempted.add(5);
        m.resumes_succeeded.add(5);
        Metrics::count_reason(&m.resume_triggers, CHAOS_TRIGGER);
        m.resume_time(Duration::from_millis(3));
        let report = Report::build(&facts(), &m);
        assert!(report.healthy && report.warnings.is_empty(), "{report:?}");
        assert_eq!(report.resume_time_ms.samples, 1);
        let text = report.to_string();
        assert!(
            text.contains("5 attempted, 5 succeeded, 0 failed"),
            "{text}"
        );
        assert!(text.contains("time to resume"), "{text}");
        let json = serde_json::to_value(&report).unwrap_or_default();
        for key in [
            "resumes_attempted",
            "resume_failure_reasons",
            "resume_time_ms",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }

        // Lost without the bots dropping it (the server closed it as too
        // slow, say): resumed, but a player would have seen it.
        Metrics::count_reason(&m.resume_triggers, "connection_lost");
        let report = Report::build(&facts(), &m);
        assert!(!report.healthy);
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    }

    #[test]
    fn light_mode_says_that_desyncs_were_not_checked() {
        let report = Report::build(
            &RunFacts {
                light: true,
                ..facts()
            },
            &healthy_metrics(),
        );
        assert!(report.light_mode && !report.desync_checking);
        assert!(report.healthy);
        assert!(
            report.warnings.iter().any(|w| w.contains("NOT checked")),
            "{:?}",
            report.warnings
        );
        assert!(report.to_string().contains("desync checking OFF"));
        let json = serde_json::to_value(&report).unwrap_or_default();
        assert_eq!(json["desync_checking"], serde_json::Value::Bool(false));
    }

    #[test]
    fn empty_histograms_summarise_to_zero() {
        let h = Histograms::default();
        assert_eq!(
            Percentiles::from_histogram(&h.rtt_us, 1000.0),
            Percentiles::default()
        );
    }
}
