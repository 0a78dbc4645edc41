//! Everything the server counts, in one place, exported at `GET /metrics` in
//! the Prometheus text format by `prometheus-client` and read back for
//! `GET /status.json`. Counters and gauges are atomics: hot paths only add.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use shared::protocol::DisconnectReason;

/// Phases of one tick.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Phase {
    /// Draining joins, leaves and inputs.
    Ingest,
    /// `World::step`.
    Simulate,
    /// Building and publishing the snapshot, observed on the ticks that
    /// publish one (every `tick_hz / snapshot_hz`).
    Snapshot,
    /// The whole tick.
    Total,
}

/// Bucket bounds of [`Metrics::baseline_age`], in ticks: every age a
/// healthy client has one by one, then doubling to the snapshot history.
const BASELINE_AGE_BUCKETS: [f64; 11] = [0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0, 64.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: Phase,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoomLabel {
    room: String,
}

/// Why an input was not applied.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum InputDrop {
    /// The room's input queue was full.
    QueueFull,
    /// The player's input buffer was full.
    BufferFull,
    /// Sequence already applied, or a duplicate.
    Stale,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabel {
    reason: InputDrop,
}

/// Why a datagram from a client was not used (`PROTOCOL.md` section 3.7).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum DatagramRefusal {
    /// Too short to hold an id and a tag, or its id names no connection
    /// in play.
    UnknownId,
    /// The id of a connection whose WebSocket came from another IP
    /// address: a copied id, or a client that moved.
    WrongAddress,
    /// The id of a connection, from its address, without that
    /// connection's tag: forged (the id is no secret), corrupted on the
    /// way, or over the size limit. Dropped; the connection is not told.
    BadTag,
    /// Signed by the client, but not a valid datagram: the connection is
    /// closed with `MalformedMessage`.
    Malformed,
    /// Over the connection's message rate.
    RateLimited,
}

impl DatagramRefusal {
    const ALL: [Self; 5] = [
        Self::UnknownId,
        Self::WrongAddress,
        Self::BadTag,
        Self::Malformed,
        Self::RateLimited,
    ];
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabel {
    reason: DatagramRefusal,
}

/// Every disconnect reason label, indexed by [`DisconnectReason::index`].
pub const REASONS: [&str; DisconnectReason::LABELS.len()] = DisconnectReason::LABELS;

/// The server's metrics. Handles are created once; recording is an atomic
/// add (histograms: a short uncontended lock).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    tick_phases: [Histogram; 4],
    /// Ticks skipped because the loop fell behind.
    pub tick_overruns: Counter,
    /// The highest tick p99 of any room over its last 10 seconds of
    /// ticks, in seconds, set when `/metrics` is read: one slow room among
    /// a hundred is under 1% of the tick histogram's samples and never
    /// reaches its p99.
    pub worst_room_tick_p99: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// How late each tick started against its deadline, in seconds.
    pub tick_jitter: Histogram,
    room_players: Family<RoomLabel, Gauge>,
    room_entities: Family<RoomLabel, Gauge>,
    /// WebSocket connections open now.
    pub connections: Gauge,
    /// Players seated by a room's join (resumes not included).
    pub joins: Counter,
    /// Seats freed (any reason): `joins - leaves` is the seats taken.
    pub leaves: Counter,
    /// Sessions taken back by a new connection with their token.
    pub resumes: Counter,
    /// Sessions whose resume grace ran out; their players were removed.
    pub sessions_expired: Counter,
    /// Sessions whose connection was lost while their address already had
    /// `max_clients_per_ip` sessions awaiting a resume: removed at once.
    pub sessions_not_parked: Counter,
    /// Rooms open now.
    pub rooms: Gauge,
    /// Rooms created since start.
    pub rooms_created: Counter,
    /// Empty rooms closed before their grace ended, to open a new room at
    /// the room limit.
    pub rooms_evicted: Counter,
    kicks: [Counter; REASONS.len()],
    /// Sessions ended because their user joined again (join tokens: one
    /// game per user).
    pub sessions_replaced: Counter,
    /// Upgrade requests refused with 503 because the server was full.
    pub refused_full: Counter,
    /// Upgrade requests refused with 403 for a disallowed `Origin`.
    pub refused_origin: Counter,
    /// Upgrade requests refused with 429 (too many WebSockets from the IP),
    /// and connections closed at accept (too many of any kind from it).
    pub refused_per_ip: Counter,
    /// TCP connections open now, of any kind (`max_connections` at most).
    pub tcp_connections: Gauge,
    /// Connections accepted while every connection slot was taken: each
    /// closed a connection that was not a player yet
    /// ([`Metrics::connections_evicted`]), or, with none to close, waited
    /// for a slot.
    pub connection_slots_full: Counter,
    /// Connections that were not players yet (plain HTTP, or a WebSocket
    /// before its hello), closed to make room, the oldest of the address
    /// holding the most of them first: for a new
    /// connection when every slot was taken, or for an upgrade when every
    /// player's place was (WebSockets only).
    pub connections_evicted: Counter,
    /// Messages dropped by a connection's rate limit.
    pub rate_limited: Counter,
    /// Inputs decoded from clients.
    pub inputs_received: Counter,
    /// Inputs applied by a tick.
    pub inputs_applied: Counter,
    inputs_dropped: [Counter; 3],
    /// Client datagrams used (their id, address, tag and content were valid).
    pub datagrams_received: Counter,
    datagrams_refused: [Counter; DatagramRefusal::ALL.len()],
    /// Snapshots sent as datagrams (counted in `snapshots_sent` too).
    pub datagram_snapshots: Counter,
    /// Snapshots a datagram route could not send (the socket's buffer was
    /// full, or the system call failed): skipped, like a busy WebSocket's.
    pub datagram_send_failures: Counter,
    /// Snapshots written to clients.
    pub snapshots_sent: Counter,
    /// Of those, full snapshots (the client had no usable baseline).
    pub snapshots_full: Counter,
    /// Published snapshots a client did not get (the skip-to-newest policy
    /// at work): its socket had not taken the previous frame yet, or it had
    /// not yet acknowledged the full snapshot it was sent. Counted when the
    /// client's next snapshot is written.
    pub snapshots_skipped: Counter,
    /// Payload bytes written to clients.
    pub bytes_out: Counter,
    /// Payload bytes read from joined clients.
    pub bytes_in: Counter,
    /// Time to diff and encode one client's snapshot, in seconds.
    pub encode_seconds: Histogram,
    /// Age in ticks of the baseline of each snapshot written, 0 for a full
    /// snapshot: how far behind the clients' acknowledgements run. A
    /// client that acknowledges every snapshot is at the ticks between two
    /// snapshots (1 at the default rates); loss, a slow
    /// link or a busy client push it up (`BENCHMARKS.md` section 2 prices
    /// the diff at ages 1, 3 and 10). Observe with
    /// [`Self::observe_baseline_age`].
    pub baseline_age: Histogram,
    /// Snapshots written against the snapshot before, and against a
    /// baseline more than 3 snapshots old: the two ends of
    /// [`Self::baseline_age`], counted in snapshots rather than ticks (the
    /// same with `snapshot_hz` = `tick_hz`; with fewer snapshots than
    /// ticks a client that acknowledges every one is at age 1 here, at 2
    /// or more ticks in the histogram), as counters `/status.json` can read
    /// (a histogram's buckets are only readable by encoding it). Not
    /// exported to Prometheus, which has the histogram.
    pub snapshots_age_1: Counter,
    /// See [`Self::snapshots_age_1`].
    pub snapshots_older_than_3: Counter,
    /// Control messages (pongs) dropped because a client's outbound control
    /// queue was full.
    pub outbound_drops: Counter,
}

fn drop_index(reason: InputDrop) -> usize {
    match reason {
        InputDrop::QueueFull => 0,
        InputDrop::BufferFull => 1,
        InputDrop::Stale => 2,
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `arena` prefix.
    #[must_use]
    pub fn new() -> Self {
        let mut root = Registry::with_prefix("arena");
        // 50 µs .. ~100 ms: a 30 Hz tick has a 33 ms budget.
        let tick_buckets = || Histogram::new(exponential_buckets(50e-6, 2.0, 12));
        let tick_family = Family::<PhaseLabel, Histogram>::new_with_constructor(tick_buckets);
        let phases = [
            Phase::Ingest,
            Phase::Simulate,
            Phase::Snapshot,
            Phase::Total,
        ];
        let tick_phases =
            phases.map(|phase| tick_family.get_or_create_owned(&PhaseLabel { phase }));
        root.register_with_unit(
            "tick_duration",
            "Duration of one tick, by phase",
            Unit::Seconds,
            tick_family,
        );
        let tick_overruns = Counter::default();
        root.register(
            "tick_overruns",
            "Ticks skipped because the loop fell behind",
            tick_overruns.clone(),
        );
        let worst_room_tick_p99 = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        root.register_with_unit(
            "worst_room_tick_p99",
            "The highest tick p99 of any room over its last 10 s of ticks",
            Unit::Seconds,
            worst_room_tick_p99.clone(),
        );
        let tick_jitter = Histogram::new(exponential_buckets(10e-6, 2.0, 14));
        root.register_with_unit(
            "tick_start_lateness",
            "How late each tick started against its deadline",
            Unit::Seconds,
            tick_jitter.clone(),
        );
        let room_players = Family::<RoomLabel, Gauge>::default();
        root.register("room_players", "Players in the room", room_players.clone());
        let room_entities = Family::<RoomLabel, Gauge>::default();
        root.register(
            "room_entities",
            "Entities in the room's world",
            room_entities.clone(),
        );

        let connections = Gauge::default();
        root.register(
            "connections",
            "WebSocket connections open",
            connections.clone(),
        );
        let joins = Counter::default();
        root.register("joins", "Players seated by a join", joins.clone());
        let leaves = Counter::default();
        root.register("leaves", "Seats freed, for any reason", leaves.clone());
        let resumes = Counter::default();
        root.register(
            "resumes",
            "Sessions resumed by a new connection within the grace period",
            resumes.clone(),
        );
        let sessions_expired = Counter::default();
        root.register(
            "sessions_expired",
            "Dropped sessions not resumed within the grace period",
            sessions_expired.clone(),
        );
        let sessions_not_parked = Counter::default();
        root.register(
            "sessions_not_parked",
            "Dropped sessions removed at once: their address had as many awaiting a resume as it may",
            sessions_not_parked.clone(),
        );
        let rooms = Gauge::default();
        root.register("rooms", "Rooms open", rooms.clone());
        let rooms_created = Counter::default();
        root.register(
            "rooms_created",
            "Rooms created since start",
            rooms_created.clone(),
        );
        let rooms_evicted = Counter::default();
        root.register(
            "rooms_evicted",
            "Empty rooms closed early to open a new room at the room limit",
            rooms_evicted.clone(),
        );
        let kick_family = Family::<ReasonLabel, Counter>::default();
        let kicks = REASONS.map(|reason| kick_family.get_or_create_owned(&ReasonLabel { reason }));
        root.register(
            "kicks",
            "Connections closed by the server, by reason",
            kick_family,
        );
        let refused_full = Counter::default();
        root.register(
            "refused_full",
            "Upgrade requests refused because the server was full",
            refused_full.clone(),
        );

        let sessions_replaced = Counter::default();
        root.register(
            "sessions_replaced",
            "Sessions ended because their user joined again (join tokens: one game per user)",
            sessions_replaced.clone(),
        );
        let refused_origin = Counter::default();
        root.register(
            "refused_origin",
            "Upgrade requests refused because their Origin is not allowed",
            refused_origin.clone(),
        );
        let refused_per_ip = Counter::default();
        root.register(
            "refused_per_ip",
            "Upgrades refused (HTTP 429), or connections closed at accept, because their IP had too many",
            refused_per_ip.clone(),
        );
        let tcp_connections = Gauge::default();
        root.register(
            "tcp_connections",
            "TCP connections open, of any kind (HTTP and WebSocket)",
            tcp_connections.clone(),
        );
        let connection_slots_full = Counter::default();
        root.register(
            "connection_slots_full",
            "Connections accepted while every connection slot was taken",
            connection_slots_full.clone(),
        );
        let connections_evicted = Counter::default();
        root.register(
            "connections_evicted",
            "Connections not yet players (HTTP, or WebSocket before its hello) closed to make room (the oldest of the address holding the most first) when every connection slot or player's place was taken",
            connections_evicted.clone(),
        );
        let rate_limited = Counter::default();
        root.register(
            "messages_rate_limited",
            "Client messages dropped by the per-connection rate limit",
            rate_limited.clone(),
        );
        let inputs_received = Counter::default();
        root.register(
            "inputs_received",
            "Inputs received from clients",
            inputs_received.clone(),
        );
        let inputs_applied = Counter::default();
        root.register(
            "inputs_applied",
            "Inputs applied by the simulation",
            inputs_applied.clone(),
        );
        let drop_family = Family::<DropLabel, Counter>::default();
        let inputs_dropped = [
            InputDrop::QueueFull,
            InputDrop::BufferFull,
            InputDrop::Stale,
        ]
        .map(|reason| drop_family.get_or_create_owned(&DropLabel { reason }));
        root.register(
            "inputs_dropped",
            "Inputs not applied, by reason",
            drop_family,
        );
        let datagrams_received = Counter::default();
        root.register(
            "datagrams_received",
            "Client datagrams used",
            datagrams_received.clone(),
        );
        let refusal_family = Family::<RefusalLabel, Counter>::default();
        let datagrams_refused = DatagramRefusal::ALL
            .map(|reason| refusal_family.get_or_create_owned(&RefusalLabel { reason }));
        root.register(
            "datagrams_refused",
            "Client datagrams not used, by reason",
            refusal_family,
        );
        let datagram_snapshots = Counter::default();
        root.register(
            "datagram_snapshots",
            "Snapshots sent as datagrams",
            datagram_snapshots.clone(),
        );
        let datagram_send_failures = Counter::default();
        root.register(
            "datagram_send_failures",
            "Snapshots a datagram route could not send (skipped)",
            datagram_send_failures.clone(),
        );

        let snapshots_sent = Counter::default();
        root.register(
            "snapshots_sent",
            "Snapshots written to clients",
            snapshots_sent.clone(),
        );
        let snapshots_full = Counter::default();
        root.register(
            "snapshots_full",
            "Full snapshots written (no usable baseline)",
            snapshots_full.clone(),
        );
        let snapshots_skipped = Counter::default();
        root.register(
            "snapshots_skipped",
            "Snapshots skipped for clients still writing an older one or yet to acknowledge a full one",
            snapshots_skipped.clone(),
        );
        let bytes_out = Counter::default();
        root.register_with_unit(
            "sent",
            "Payload bytes written to clients",
            Unit::Bytes,
            bytes_out.clone(),
        );
        let bytes_in = Counter::default();
        root.register_with_unit(
            "received",
            "Payload bytes read from clients",
            Unit::Bytes,
            bytes_in.clone(),
        );
        let encode_seconds = Histogram::new(exponential_buckets(250e-9, 2.0, 14));
        root.register_with_unit(
            "snapshot_encode",
            "Time to diff and encode one client's snapshot",
            Unit::Seconds,
            encode_seconds.clone(),
        );
        let baseline_age = Histogram::new(BASELINE_AGE_BUCKETS);
        root.register_with_unit(
            "snapshot_baseline_age",
            "Age of each written snapshot's baseline, 0 for a full snapshot",
            Unit::Other("ticks".to_owned()),
            baseline_age.clone(),
        );
        let outbound_drops = Counter::default();
        root.register(
            "outbound_drops",
            "Control messages dropped because a client's outbound queue was full",
            outbound_drops.clone(),
        );
        Self {
            registry: root,
            tick_phases,
            tick_overruns,
            worst_room_tick_p99,
            tick_jitter,
            room_players,
            room_entities,
            connections,
            joins,
            leaves,
            resumes,
            sessions_expired,
            sessions_not_parked,
            rooms,
            rooms_created,
            rooms_evicted,
            kicks,
            sessions_replaced,
            refused_full,
            refused_origin,
            refused_per_ip,
            tcp_connections,
            connection_slots_full,
            connections_evicted,
            rate_limited,
            inputs_received,
            inputs_applied,
            inputs_dropped,
            datagrams_received,
            datagrams_refused,
            datagram_snapshots,
            datagram_send_failures,
            snapshots_sent,
            snapshots_full,
            snapshots_skipped,
            bytes_out,
            bytes_in,
            encode_seconds,
            baseline_age,
            snapshots_age_1: Counter::default(),
            snapshots_older_than_3: Counter::default(),
            outbound_drops,
        }
    }

    /// Counts one snapshot of `bytes` written to a client, after
    /// `skipped` published since the last one it was written were skipped
    /// for it. Its baseline's age goes to [`Self::observe_baseline_age`].
    pub fn snapshot_written(&self, bytes: u64, skipped: u64) {
        self.bytes_out.inc_by(bytes);
        self.snapshots_sent.inc();
        self.snapshots_skipped.inc_by(skipped);
    }

    /// Counts one snapshot written against a baseline `ticks` old, which is
    /// `snapshots` published snapshots back (both 0 for a full snapshot).
    pub fn observe_baseline_age(&self, ticks: i32, snapshots: u64) {
        self.baseline_age.observe(f64::from(ticks));
        if snapshots == 1 {
            self.snapshots_age_1.inc();
        } else if snapshots > 3 {
            self.snapshots_older_than_3.inc();
        }
    }

    /// The histogram of one tick phase.
    #[must_use]
    pub fn tick_phase(&self, phase: Phase) -> &Histogram {
        &self.tick_phases[phase as usize]
    }

    /// Drops a disposed room's series, so room churn does not grow the
    /// scrape forever.
    pub fn remove_room(&self, room: &str) {
        let label = RoomLabel {
            room: room.to_owned(),
        };
        self.room_players.remove(&label);
        self.room_entities.remove(&label);
    }

    /// Gauges of one room: (players, entities).
    #[must_use]
    pub fn room(&self, room: &str) -> (Gauge, Gauge) {
        let label = RoomLabel {
            room: room.to_owned(),
        };
        (
            self.room_players.get_or_create_owned(&label),
            self.room_entities.get_or_create_owned(&label),
        )
    }

    /// Counts a connection the server closed, by reason.
    pub fn count_kick(&self, reason: &DisconnectReason) {
        self.kicks[reason.index()].inc();
    }

    /// Connections closed with this reason so far.
    #[must_use]
    pub fn kicks(&self, reason: &DisconnectReason) -> u64 {
        self.kicks[reason.index()].get()
    }

    /// Every kick counter by label.
    pub fn kicks_by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        REASONS.iter().zip(&self.kicks).map(|(l, c)| (*l, c.get()))
    }

    /// Counts an input that was not applied.
    pub fn count_input_drop(&self, reason: InputDrop) {
        self.inputs_dropped[drop_index(reason)].inc();
    }

    /// Counts a client datagram that was not used.
    pub fn count_datagram_refusal(&self, reason: DatagramRefusal) {
        self.datagrams_refused[reason as usize].inc();
    }

    /// Client datagrams not used so far, all reasons.
    #[must_use]
    pub fn datagrams_refused_total(&self) -> u64 {
        self.datagrams_refused.iter().map(Counter::get).sum()
    }

    /// Inputs dropped so far, all reasons.
    #[must_use]
    pub fn inputs_dropped(&self) -> u64 {
        self.inputs_dropped.iter().map(Counter::get).sum()
    }

    /// The Prometheus text exposition of every metric.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Shared handle.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_counter() {
        let all = DisconnectReason::every();
        let m = Metrics::new();
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
            assert_eq!(REASONS[i], r.label());
            m.count_kick(r);
        }
        assert!(m.kicks_by_reason().all(|(_, n)| n == 1));
    }

    #[test]
    fn baseline_ages_feed_the_histogram_and_both_status_counters() {
        let m = Metrics::new();
        // Ticks and snapshots as at 60 Hz ticks and 30 Hz snapshots: the
        // histogram has the ticks, the counters the snapshots.
        for age in [0, 1, 1, 2, 3, 4, 10] {
            m.observe_baseline_age(age * 2, age as u64);
        }
        assert_eq!(m.snapshots_age_1.get(), 2);
        assert_eq!(m.snapshots_older_than_3.get(), 2);
        let text = m.render();
        for series in [
            "arena_snapshot_baseline_age_ticks_count 7",
            "arena_snapshot_baseline_age_ticks_bucket{le=\"0.0\"} 1",
            "arena_snapshot_baseline_age_ticks_bucket{le=\"1.0\"} 1",
            "arena_snapshot_baseline_age_ticks_bucket{le=\"2.0\"} 3",
            "arena_snapshot_baseline_age_ticks_bucket{le=\"6.0\"} 5",
            "arena_snapshot_baseline_age_ticks_bucket{le=\"8.0\"} 6",
            "arena_snapshot_baseline_age_ticks_bucket{le=\"32.0\"} 7",
        ] {
            assert!(text.contains(series), "missing {series} in\n{text}");
        }
    }

    #[test]
    fn render_names_the_key_series() {
        let m = Metrics::new();
        m.tick_phase(Phase::Simulate).observe(0.001);
        let (players, _) = m.room("main");
        players.set(3);
        m.count_input_drop(InputDrop::Stale);
        let text = m.render();
        for series in [
            "arena_tick_duration_seconds_bucket{le=",
            "phase=\"Simulate\"",
            "arena_room_players{room=\"main\"} 3",
            "arena_kicks_total{reason=\"too_slow\"} 0",
            "arena_inputs_dropped_total{reason=\"Stale\"} 1",
            "arena_snapshot_encode_seconds_count 0",
            "arena_snapshot_baseline_age_ticks_bucket{le=\"1.0\"} 0",
            "arena_sent_bytes_total 0",
        ] {
            assert!(text.contains(series), "missing {series} in\n{text}");
        }
    }
}
