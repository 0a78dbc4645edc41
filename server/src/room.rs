//! A room: the fixed-rate loop that alone owns a [`World`], on its own thread.
//!
//! Connection tasks never touch the world. They send joins, resumes and
//! disconnects on a small command queue and inputs on a bounded input queue;
//! the room drains both at the start of each tick, steps the world, and
//! publishes one immutable [`Published`] snapshot through a `watch` channel.
//! `watch` keeps only the newest value, which is exactly the policy a slow
//! client needs: it skips to the newest snapshot, and its delta (against its
//! own last acknowledged baseline) stays correct.
//!
//! Each room runs on its own OS thread (with a single-threaded tokio runtime
//! for its timer), so the kernel schedules rooms preemptively: a room whose
//! tick runs long delays only itself, never another room's tick or the
//! connection tasks on the I/O runtime. Rooms tick on one grid of deadlines
//! in a few phases (`first_deadline`, `phase_epoch`, `--tick-phases`), so
//! that many small rooms wake the I/O runtime a few times per period rather
//! than once per room.
//!
//! A player's seat is a *session*: when the connection drops without a
//! deliberate leave or a kick for breaking the rules, the entity stays for
//! [`Config::resume_grace`], and a new
//! connection presenting the session token takes it back, with its input
//! numbering and (if still held) its last acknowledged snapshot.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;

use shared::Tick;
use shared::codec::SharedSnapshot;
use shared::protocol::{DisconnectReason, InputCmd, SESSION_TOKEN_BYTES, SessionToken};
use shared::snapshot::{self, WorldState};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

use crate::config::{Config, MAX_TICK_PHASES};
use crate::fanout::Fanout;
use crate::game::{EntityKey, World, WorldConfig};
use crate::guard::IpPermit;
use crate::metrics::{InputDrop, Metrics, Phase};
use crate::registry::{Listing, Registry};
use crate::users::UserClaim;

/// Joins, resumes and disconnects handled per tick at most; the rest wait
/// for the next one.
const COMMANDS_PER_TICK: usize = 256;
/// Tokens of replaced sessions a room remembers ([`RoomStatus::replaced`]):
/// far more than its seats, bounded against a user joining again and again.
const REPLACED_TOKENS: usize = 256;

/// Tokens of sessions ended because their user joined again (`crate::users`),
/// each until its resume grace would have ended: a resume of one is
/// answered `SessionReplaced`, not `SessionExpired`, so that the client
/// stops instead of joining afresh and taking the game back. Oldest first,
/// bounded: past the bound the oldest is forgotten (its resume is then told
/// `SessionExpired`).
#[derive(Debug)]
pub(crate) struct ReplacedTokens {
    bound: usize,
    tokens: Mutex<VecDeque<(SessionToken, Instant)>>,
}

impl ReplacedTokens {
    pub(crate) fn new(bound: usize) -> Self {
        Self {
            bound,
            tokens: Mutex::new(VecDeque::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(SessionToken, Instant)>> {
        // Held for a scan of at most `bound` entries, never across an await.
        crate::lock(&self.tokens)
    }

    /// Remembers `token` until `until`.
    pub(crate) fn remember(&self, token: SessionToken, until: Instant) {
        self.absorb(std::iter::once((token, until)));
    }

    /// Remembers each of `tokens`, in order, as [`Self::remember`] does.
    pub(crate) fn absorb(&self, tokens: impl IntoIterator<Item = (SessionToken, Instant)>) {
        let mut held = self.lock();
        for entry in tokens {
            if held.len() == self.bound {
                held.pop_front();
            }
            held.push_back(entry);
        }
    }

    /// Whether `token` is remembered (and not past its time at `now`).
    pub(crate) fn contains(&self, token: &SessionToken, now: Instant) -> bool {
        self.lock()
            .iter()
            .any(|(t, until)| t == token && *until > now)
    }

    /// Forgets the tokens whose time has come.
    pub(crate) fn expire(&self, now: Instant) {
        let mut held = self.lock();
        while held.front().is_some_and(|&(_, until)| until <= now) {
            held.pop_front();
        }
    }

    /// Takes every token remembered (for the registry, when the room goes).
    pub(crate) fn take(&self) -> VecDeque<(SessionToken, Instant)> {
        std::mem::take(&mut *self.lock())
    }
}

/// The "nothing acknowledged yet" value of an ack cell.
pub(crate) const NO_ACK: u64 = u64::MAX;

/// A player's seat in the room: the slot index plus the entity key, whose
/// generation makes a handle from a departed player useless even after the
/// slot is reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PlayerHandle {
    key: EntityKey,
    slot: u32,
}

#[cfg(test)]
impl PlayerHandle {
    /// The player in slot `slot`, for tests that need no world entity.
    pub(crate) fn for_test(slot: u32) -> Self {
        Self {
            key: EntityKey::default(),
            slot,
        }
    }
}

/// What a successful join or resume hands the connection.
#[derive(Debug)]
pub(crate) struct Seat {
    pub(crate) handle: PlayerHandle,
    /// Which connection of this session this is; a disconnect from an older
    /// one is ignored.
    pub(crate) epoch: u32,
    pub(crate) player_id: u32,
    pub(crate) tick: Tick,
    pub(crate) session: SessionToken,
    pub(crate) resumed: bool,
    /// Highest input sequence number received for this player.
    pub(crate) input_seq: u32,
    /// The session's ack as this connection sees it: seeded with the last
    /// one on a resume; the reader stores the acks of snapshots this
    /// connection delivered; the room reads it for the next resume's
    /// baseline. (The fan-out follows the reader's own cell instead.)
    pub(crate) acked: Arc<AtomicU64>,
    /// Fires when the room ends this connection: another one resumed the
    /// session.
    pub(crate) kicked: oneshot::Receiver<DisconnectReason>,
    /// On a resume, the snapshot the client last acknowledged, if the room
    /// still holds it: the first delta is encoded against it.
    pub(crate) baseline: Option<Arc<Published>>,
}

/// Requests to the room that must not be lost (unlike inputs).
#[derive(Debug)]
pub(crate) enum RoomCmd {
    /// A new player; its seat was reserved in the registry. `ip`: the
    /// connection's peer, whose count of sessions awaiting a resume a
    /// parked session adds to.
    Join {
        name: String,
        ip: IpAddr,
        /// The user's claim to their one session, kept with the seat
        /// (`crate::users`).
        claim: Option<UserClaim>,
        reply: oneshot::Sender<Result<Seat, DisconnectReason>>,
    },
    /// A new connection, from `ip`, for an existing session, in the room
    /// the hello `named` (if it named one).
    Resume {
        token: SessionToken,
        named: Option<String>,
        ip: IpAddr,
        reply: oneshot::Sender<Result<Seat, DisconnectReason>>,
    },
    /// A connection ended. `forfeit`: the player left on purpose or was
    /// kicked for breaking rules, so the seat goes now; otherwise the
    /// session waits for a resume.
    Disconnected {
        player: PlayerHandle,
        epoch: u32,
        forfeit: bool,
    },
    /// The player's user joined again (`crate::users`): the session ends,
    /// its connection, if it has one, told `SessionReplaced`.
    Replaced { player: PlayerHandle },
}

/// One published tick: the replicated state plus each player's last applied
/// input sequence, shared by every client's writer.
#[derive(Debug, Default)]
pub struct Published {
    /// The replicated world.
    pub state: WorldState,
    /// `snapshot::checksum(&state)`, computed once here instead of once per
    /// client.
    pub checksum: u32,
    /// Last applied input sequence by player slot.
    acks: Vec<u32>,
    /// Deltas encoded, or being encoded, against a baseline tick (`None`:
    /// full). Every client sees the whole arena, so clients that
    /// acknowledged the same baseline get the same bytes but for their
    /// input ack: the first client to need one encodes it, the others copy
    /// it. A std mutex: held for a lookup or a push, never across `.await`
    /// nor during an encode.
    deltas: Mutex<Vec<SharedDelta>>,
}

/// Distinct older baselines a published tick is encoded against, besides
/// the recent ones and the full snapshot. A client whose baseline is older
/// than [`RECENT_SNAPSHOTS`] and not among them once they are taken gets the
/// full snapshot: however its clients acknowledge (a hostile swarm can hold
/// dozens of different old baselines), a tick costs at most
/// `SHARED_DELTAS + RECENT_SNAPSHOTS + 1` encodes, not one per client.
pub(crate) const SHARED_DELTAS: usize = 32;

/// Baselines at most this many snapshots old always get their shared delta:
/// that is where clients that keep up are (99-100% of them in the load
/// test), so clients holding old baselines cannot take their places.
pub(crate) const RECENT_SNAPSHOTS: u64 = 3;

/// A delta of one published tick against one baseline (`None`: the full
/// snapshot).
#[derive(Debug)]
struct SharedDelta {
    baseline: Option<Tick>,
    /// Counted against [`SHARED_DELTAS`]: an older baseline.
    counted: bool,
    slot: SharedSlot,
}

/// One cached delta, filled once by the first shard that needs it.
type SharedSlot = Arc<OnceLock<Arc<SharedSnapshot>>>;

impl Published {
    /// A published tick of `state`, with each player slot's last applied
    /// input sequence in `acks`.
    pub(crate) fn new(state: WorldState, acks: Vec<u32>) -> Self {
        Self {
            checksum: snapshot::checksum(&state),
            state,
            acks,
            deltas: Mutex::default(),
        }
    }

    pub(crate) fn input_ack(&self, player: PlayerHandle) -> u32 {
        self.acks.get(player.slot as usize).copied().unwrap_or(0)
    }

    /// The delta against `baseline` (a tick the fan-out sent before, or
    /// `None` for a full snapshot), encoded by `encode` once per distinct
    /// baseline, and the baseline it is against: `baseline`, or `None` when
    /// it is not `recent` (at most [`RECENT_SNAPSHOTS`] old) and
    /// [`SHARED_DELTAS`] other older baselines have their delta already
    /// (then `encode` is asked for the full snapshot, once per tick).
    ///
    /// The first shard to need a baseline claims its slot under the lock
    /// and encodes outside it; a shard on another worker that needs the same
    /// baseline meanwhile waits for that encode (as long as doing it itself
    /// would take) instead of repeating it, so a multi-core server encodes
    /// each baseline once, as the fan-out bench assumes.
    pub(crate) fn shared_delta(
        &self,
        baseline: Option<Tick>,
        recent: bool,
        encode: impl FnOnce(Option<Tick>) -> SharedSnapshot,
    ) -> (Option<Tick>, Arc<SharedSnapshot>) {
        let (baseline, slot) = {
            let mut deltas = crate::lock(&self.deltas);
            let cached = |deltas: &[SharedDelta], baseline| {
                deltas
                    .iter()
                    .find(|d| d.baseline == baseline)
                    .map(|d| Arc::clone(&d.slot))
            };
            let counted = baseline.is_some() && !recent;
            match cached(&deltas, baseline) {
                Some(slot) => (baseline, slot),
                None => {
                    // An older baseline past the cap gets the full snapshot,
                    // which may be cached already.
                    let full =
                        counted && deltas.iter().filter(|d| d.counted).count() >= SHARED_DELTAS;
                    let baseline = if full { None } else { baseline };
                    let cached_full = if full { cached(&deltas, None) } else { None };
                    let slot = cached_full.unwrap_or_else(|| {
                        let slot = SharedSlot::default();
                        deltas.push(SharedDelta {
                            baseline,
                            counted: counted && !full,
                            slot: Arc::clone(&slot),
                        });
                        slot
                    });
                    (baseline, slot)
                }
            }
        };
        let bytes = slot.get_or_init(|| Arc::new(encode(baseline)));
        (baseline, Arc::clone(bytes))
    }
}

/// Tick durations as the room measured them, refreshed once per second.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TickReport {
    /// Ticks simulated since start.
    pub ticks: u64,
    /// Ticks skipped because the loop fell behind.
    pub overruns: u64,
    /// The tick budget (1 / tick rate), in microseconds.
    pub budget_us: f64,
    /// Median tick duration over the last [`WINDOW_SECS`] seconds, in µs.
    pub p50_us: f64,
    /// 99th percentile over the same window, in µs.
    pub p99_us: f64,
    /// Longest tick in the same window, in µs.
    pub max_us: f64,
    /// Median of how late ticks started against their deadline, over the
    /// same window, in µs: what another room or a stalled thread cost this
    /// room's schedule.
    pub late_p50_us: f64,
    /// 99th percentile of the same, in µs.
    pub late_p99_us: f64,
    /// One entry per second, oldest first, for the last minute.
    pub per_second: VecDeque<SecondSample>,
}

impl TickReport {
    /// The figures without the one-minute chart (`per_second` empty).
    pub(crate) fn without_chart(&self) -> Self {
        Self {
            per_second: VecDeque::new(),
            ..*self
        }
    }
}

/// Tick durations during one second.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct SecondSample {
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Longest, µs.
    pub max_us: f64,
}

/// Seconds of history behind the p50/p99 in [`TickReport`].
pub const WINDOW_SECS: usize = 10;
const CHART_SECS: usize = 60;

/// What the status endpoints can read about a room without disturbing it.
#[derive(Debug)]
pub struct RoomStatus {
    /// The room's name.
    pub name: String,
    /// How the room is shown to anyone but an operator: its name if it is
    /// public; a private room's name is the key to join it, so
    /// `persistent#N` for the Nth configured persistent room, else
    /// `private#SERIAL` (`#` is in no room name). The `room` label of its
    /// metric series.
    pub label: String,
    /// The registry's number for this room, which its session tokens carry.
    pub(crate) serial: u32,
    /// Whether matchmaking may place players here (else: joined by name).
    pub public: bool,
    /// Kept open when empty.
    pub persistent: bool,
    /// Which phase of the tick period the room ticks in
    /// ([`Config::tick_phases`]).
    pub tick_phase: u32,
    /// Seats taken or reserved now (the limit is [`Config::room_capacity`]). Incremented only by the registry under
    /// its lock (so disposal can check it race-free), decremented by the
    /// room when a seat frees up.
    pub occupancy: AtomicUsize,
    /// When the room started.
    pub started: std::time::Instant,
    /// Players now.
    pub players: Gauge,
    /// Entities now.
    pub entities: Gauge,
    /// Written by the room once per second; held only to copy.
    pub ticks: Mutex<TickReport>,
    /// Set by the registry when it unlisted this room, empty, to open
    /// another at the room limit; the room stops at its next tick.
    pub(crate) evicted: AtomicBool,
    /// Sessions of this room ended because their user joined again; the
    /// registry takes them over when the room goes, so that a resume of one
    /// is still told why after that (`Registry::find_session`).
    pub(crate) replaced: ReplacedTokens,
    /// Since when the room has been empty: when its last seat was given
    /// back, in microseconds after `started`; [`NOT_EMPTY`] from the moment
    /// a seat is reserved, and before the first. Read through
    /// [`RoomStatus::idle_for`].
    pub(crate) empty_since_us: AtomicU64,
}

/// [`RoomStatus::empty_since_us`] of a room that is not empty.
pub(crate) const NOT_EMPTY: u64 = u64::MAX;

impl RoomStatus {
    /// The room's tick figures, locked (a panic while they were held
    /// leaves them readable).
    pub(crate) fn tick_report(&self) -> std::sync::MutexGuard<'_, TickReport> {
        crate::lock(&self.ticks)
    }

    /// Gives a seat back: the registry may hand it to someone else.
    pub(crate) fn release_seat(&self) {
        if self.occupancy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.set_empty_since(Some(std::time::Instant::now()));
        }
    }

    /// Takes a seat; the registry calls it under its lock.
    pub(crate) fn reserve_seat(&self) {
        self.occupancy.fetch_add(1, Ordering::AcqRel);
        self.set_empty_since(None);
    }

    /// How long the room has stood empty, since its last seat was given
    /// back: no player, no parked session, no reserved seat. `None` while a
    /// seat is taken, before the first is, and for a persistent room. What
    /// the room's disposal after its grace and the registry's eviction go
    /// by. (A release racing a reservation may leave a time on an occupied
    /// room: the occupancy is checked as well.)
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        if self.persistent || self.occupancy.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.empty_since_us.load(Ordering::Acquire);
        (since != NOT_EMPTY).then(|| {
            self.started
                .elapsed()
                .saturating_sub(Duration::from_micros(since))
        })
    }

    fn set_empty_since(&self, since: Option<std::time::Instant>) {
        let us = since.map_or(NOT_EMPTY, |t| {
            t.saturating_duration_since(self.started).as_micros() as u64
        });
        self.empty_since_us.store(us, Ordering::Release);
    }
}

/// The snapshot of the acknowledged tick `ack` (an ack cell's value) among
/// `history`, searched from the newest: the baseline of the next delta.
pub(crate) fn acked_snapshot(
    history: &VecDeque<Arc<Published>>,
    ack: u64,
) -> Option<&Arc<Published>> {
    if ack == NO_ACK {
        return None;
    }
    let tick = Tick(ack as u32);
    history.iter().rev().find(|p| p.state.tick == tick)
}

/// Per-second tick statistics kept inside the room task (no sharing): the
/// raw samples of the last [`WINDOW_SECS`] seconds in two rings, so the
/// percentiles are exact and a room costs a few KiB, not a histogram each
/// second.
struct TickClock {
    /// Tick durations, µs, newest last; at most `WINDOW_SECS * tick_hz`.
    durations: VecDeque<u32>,
    /// Start lateness, µs, same shape.
    lateness: VecDeque<u32>,
    /// Scratch for selecting percentiles.
    scratch: Vec<u32>,
    ticks_in_second: u32,
    total_ticks: u64,
}

/// The `q` quantile of `samples` (nearest rank), reordering `samples`.
fn quantile(samples: &mut [u32], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
    f64::from(*samples.select_nth_unstable(rank).1)
}

impl TickClock {
    fn new() -> Self {
        Self {
            durations: VecDeque::new(),
            lateness: VecDeque::new(),
            scratch: Vec::new(),
            ticks_in_second: 0,
            total_ticks: 0,
        }
    }

    /// Records one tick; once per `tick_hz` ticks, folds the second into the
    /// report.
    fn record(&mut self, us: u64, late_us: u64, tick_hz: u32, status: &RoomStatus, overruns: u64) {
        let cap = WINDOW_SECS * tick_hz as usize;
        for (ring, v) in [(&mut self.durations, us), (&mut self.lateness, late_us)] {
            if ring.len() >= cap {
                ring.pop_front();
            }
            ring.push_back(u32::try_from(v).unwrap_or(u32::MAX));
        }
        self.ticks_in_second += 1;
        self.total_ticks += 1;
        if self.ticks_in_second < tick_hz {
            return;
        }
        let last = self.ticks_in_second as usize;
        self.ticks_in_second = 0;
        let scratch = &mut self.scratch;
        scratch.clear();
        scratch.extend(self.durations.iter().rev().take(last));
        let second = SecondSample {
            p50_us: quantile(scratch, 0.5),
            p99_us: quantile(scratch, 0.99),
            max_us: f64::from(scratch.iter().copied().max().unwrap_or(0)),
        };
        scratch.clear();
        scratch.extend(self.durations.iter());
        let (p50, p99, max) = (
            quantile(scratch, 0.5),
            quantile(scratch, 0.99),
            f64::from(scratch.iter().copied().max().unwrap_or(0)),
        );
        scratch.clear();
        scratch.extend(self.lateness.iter());
        let (late_p50, late_p99) = (quantile(scratch, 0.5), quantile(scratch, 0.99));
        let mut report = status.tick_report();
        report.ticks = self.total_ticks;
        report.overruns = overruns;
        report.p50_us = p50;
        report.p99_us = p99;
        report.max_us = max;
        report.late_p50_us = late_p50;
        report.late_p99_us = late_p99;
        if report.per_second.len() == CHART_SECS {
            report.per_second.pop_front();
        }
        report.per_second.push_back(second);
    }
}

/// How connection tasks reach a room. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct RoomHandle {
    pub(crate) cmds: mpsc::Sender<RoomCmd>,
    /// Full-queue policy: the sender uses `try_send` and drops the input
    /// (counted); a later input supersedes it anyway.
    pub(crate) inputs: mpsc::Sender<(PlayerHandle, InputCmd)>,
    pub(crate) snapshots: watch::Receiver<Arc<Published>>,
    /// Writes the published snapshots to the room's clients.
    pub(crate) fanout: Arc<Fanout>,
    pub(crate) status: Arc<RoomStatus>,
}

/// Hands a player's input to its room (`RoomHandle::inputs`), counted
/// received; a full queue drops it, counted too (the queue's policy).
pub(crate) fn pass_input(
    inputs: &mpsc::Sender<(PlayerHandle, InputCmd)>,
    player: PlayerHandle,
    cmd: InputCmd,
    metrics: &Metrics,
) {
    metrics.inputs_received.inc();
    if inputs.try_send((player, cmd)).is_err() {
        metrics.count_input_drop(InputDrop::QueueFull);
    }
}

/// The room serial a session token carries in its first four bytes; the
/// other twelve are random.
pub(crate) fn token_serial(token: &SessionToken) -> u32 {
    let b = token.0;
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn new_token(serial: u32) -> SessionToken {
    let mut bytes = [0u8; SESSION_TOKEN_BYTES];
    bytes[..4].copy_from_slice(&serial.to_le_bytes());
    crate::fill_random(&mut bytes[4..], "session token");
    SessionToken(bytes)
}

/// One player's session.
struct Slot {
    key: EntityKey,
    player_id: u32,
    inputs: VecDeque<InputCmd>,
    last_applied: u32,
    /// Highest sequence number accepted into `inputs` (or applied).
    last_received: u32,
    token: SessionToken,
    epoch: u32,
    /// The current connection's [`Seat::acked`].
    acked: Arc<AtomicU64>,
    /// Ends the attached connection; `None` while parked.
    kick: Option<oneshot::Sender<DisconnectReason>>,
    /// While the session waits for a resume: when it gives up.
    parked_until: Option<Instant>,
    /// The address of its last connection.
    ip: IpAddr,
    /// While parked: its place among its address's sessions awaiting a
    /// resume ([`Registry::park_permit`]).
    park_permit: Option<IpPermit>,
    /// Its user's one session, given up with the seat (`crate::users`).
    _claim: Option<UserClaim>,
}

impl Slot {
    /// Ends the session's connection, if it still has one: a newer one took
    /// the session (a resume, or the user's join elsewhere).
    fn end_replaced_connection(&mut self) {
        if let Some(kick) = self.kick.take() {
            let _ = kick.send(DisconnectReason::SessionReplaced);
        }
    }
}

/// How a room is started.
pub(crate) struct RoomSetup {
    /// The server's grid of tick deadlines, which every room shares,
    /// shifted to its own phase ([`first_deadline`], [`phase_epoch`]).
    pub(crate) grid_epoch: Instant,
    /// The room's phase of the tick period ([`least_loaded_phase`]).
    pub(crate) tick_phase: u32,
    pub(crate) name: String,
    /// See [`RoomStatus::label`].
    pub(crate) label: String,
    pub(crate) serial: u32,
    pub(crate) public: bool,
    pub(crate) persistent: bool,
    pub(crate) npcs: u32,
}

struct Room {
    config: Arc<Config>,
    world: World,
    slots: Vec<Option<Slot>>,
    free_slots: Vec<u32>,
    tokens: HashMap<SessionToken, u32>,
    parked: usize,
    cmds: mpsc::Receiver<RoomCmd>,
    inputs: mpsc::Receiver<(PlayerHandle, InputCmd)>,
    input_budget: usize,
    publish: watch::Sender<Arc<Published>>,
    /// The last published snapshots, newest last: a resuming client's
    /// baseline is looked up here.
    recent: VecDeque<Arc<Published>>,
    metrics: Arc<Metrics>,
    status: Arc<RoomStatus>,
    registry: Arc<Registry>,
    serial: u32,
    clock: TickClock,
    /// Start lateness of the last tick, for the clock.
    late_us: u64,
    /// Ticks this room skipped (the metric counts every room's).
    overruns: u64,
}

/// Starts a room on a thread of its own. It runs until `shutdown` turns
/// true (finishing the tick in progress) or until it has been empty for
/// [`Config::empty_room_grace`] and the registry agrees to dispose of it.
/// Called by the registry under its lock; `Err` if no thread could start.
pub(crate) fn spawn(
    setup: RoomSetup,
    config: &Arc<Config>,
    metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    mut shutdown: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
) -> std::io::Result<RoomHandle> {
    let (cmd_tx, cmds) = mpsc::channel(COMMANDS_PER_TICK);
    let input_capacity = (config.room_capacity * 4 * config.input_buffer).clamp(64, 1 << 16);
    let (input_tx, inputs) = mpsc::channel(input_capacity);
    let (publish, snapshots) = watch::channel(Arc::new(Published::default()));
    // Series of their own for public and configured rooms only: rooms
    // made by name are as many as players care to create, each under a
    // label of its own, and every series a scrape ever saw stays in
    // Prometheus. They are counted in `arena_rooms` and the totals.
    let (players, entities) = if setup.public || setup.persistent {
        metrics.room(&setup.label)
    } else {
        (Gauge::default(), Gauge::default())
    };
    let status = Arc::new(RoomStatus {
        name: setup.name.clone(),
        label: setup.label.clone(),
        serial: setup.serial,
        public: setup.public,
        persistent: setup.persistent,
        tick_phase: setup.tick_phase,
        occupancy: AtomicUsize::new(0),
        started: std::time::Instant::now(),
        players,
        entities,
        ticks: Mutex::new(TickReport {
            budget_us: 1e6 / f64::from(config.tick_hz),
            ..TickReport::default()
        }),
        evicted: AtomicBool::new(false),
        replaced: ReplacedTokens::new(REPLACED_TOKENS),
        empty_since_us: AtomicU64::new(NOT_EMPTY),
    });
    let handle = RoomHandle {
        cmds: cmd_tx,
        inputs: input_tx,
        fanout: Arc::new(Fanout::new(
            snapshots.clone(),
            Arc::clone(config),
            Arc::clone(&metrics),
        )),
        snapshots,
        status: Arc::clone(&status),
    };
    let config = Arc::clone(config);
    // A root span: the room outlives the connection whose join created it,
    // whose span is the current one here.
    // Named by its label: a private room's name is the key to join it.
    let span = tracing::info_span!(parent: None, "room", room = %setup.label);
    let (room_metrics, label) = (Arc::clone(&metrics), status.label.clone());
    std::thread::Builder::new()
        // By serial (logged with the label when the room is created), not
        // by name: thread names are world-readable in `/proc`, and a
        // private room's name is the key to join it. (Linux keeps 15
        // bytes: `room-` and a `u32`.)
        .name(format!("room-{}", setup.serial))
        .spawn(move || {
            let _alive = alive;
            // However the thread ends, a panic included, the room is
            // unlisted (see `Listing`). Made here, not before the spawn: a
            // spawn that fails drops its closure on the calling thread,
            // which holds the registry's lock.
            let _listing = Listing::new(Arc::clone(&registry), setup.serial);
            let _entered = span.enter();
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "room runtime failed to start");
                    return;
                }
            };
            let mut world = World::new(WorldConfig {
                tick_hz: config.tick_hz,
                seed: config.seed ^ u64::from(setup.serial),
                // Ids stay unused well past the longest baseline a client
                // may hold.
                id_quarantine_ticks: (config.snapshot_history as u32)
                    .saturating_mul(config.tick_hz.div_ceil(config.snapshot_hz))
                    .saturating_add(config.tick_hz),
            });
            for _ in 0..setup.npcs {
                world.spawn_npc();
            }
            let mut room = Room {
                config: Arc::clone(&config),
                world,
                slots: Vec::new(),
                free_slots: Vec::new(),
                tokens: HashMap::new(),
                parked: 0,
                cmds,
                inputs,
                input_budget: input_capacity,
                publish,
                recent: VecDeque::with_capacity(config.snapshot_history),
                metrics,
                status,
                registry,
                serial: setup.serial,
                clock: TickClock::new(),
                late_us: 0,
                overruns: 0,
            };
            runtime.block_on(room.run(setup.grid_epoch, &mut shutdown));
        })
        // The room was never listed: only its metric series are to undo.
        .inspect_err(|_| room_metrics.remove_room(&label))?;
    Ok(handle)
}

/// The first tick deadline after `now` on the grid of instants `period`
/// apart from `epoch`.
///
/// Every room of a server ticks on the same grid, shifted to one of a few
/// phases ([`phase_epoch`]), so their ticks, and the fan-outs they wake on
/// the I/O runtime, come together a few times per period instead of once
/// per room at times of their own: with many small rooms on few cores that
/// is a few wake-ups of the runtime's threads per period, not one per room
/// (each a context switch). Rooms keep their own threads, so a long tick
/// still delays only its own room.
fn first_deadline(epoch: Instant, now: Instant, period: Duration) -> Instant {
    let periods = now.saturating_duration_since(epoch).as_nanos() / period.as_nanos().max(1);
    u64::try_from(period.as_nanos().saturating_mul(periods + 1))
        .ok()
        .and_then(|offset| epoch.checked_add(Duration::from_nanos(offset)))
        .unwrap_or(now + period)
}

/// The time between two ticks at `tick_hz`.
fn tick_period(tick_hz: u32) -> Duration {
    Duration::from_secs_f64(1.0 / f64::from(tick_hz.max(1)))
}

/// The epoch of a room in phase `phase` of `phases` phases of the tick
/// period: the server's `epoch` plus `phase mod phases` fractions
/// `period / phases`.
///
/// With one phase every room's fan-out lands on the I/O runtime at once;
/// with a few, each burst is that many times smaller for that many
/// wake-ups per period ([`first_deadline`] says why few wake-ups matter).
/// The registry picks each new room's phase ([`least_loaded_phase`]).
fn phase_epoch(epoch: Instant, phase: u32, phases: u32, period: Duration) -> Instant {
    let phases = phases.max(1);
    epoch + period * (phase % phases) / phases
}

/// The phase for a new room, out of `phases`, given the phase and the
/// seats taken of every room already open: the phase whose rooms hold the
/// fewest seats, then the one with the fewest rooms, then the lowest.
///
/// A phase's fan-out burst grows with the clients of its rooms, so
/// balancing seats balances the bursts. Rooms opened one after another
/// while matchmaking fills each take the phases in turn, and a room opened
/// after others were disposed fills the phase they left, which taking
/// phases in order of creation would not.
pub(crate) fn least_loaded_phase(
    rooms: impl IntoIterator<Item = (u32, usize)>,
    phases: u32,
) -> u32 {
    let phases = phases.clamp(1, MAX_TICK_PHASES);
    // (seats, rooms) per phase.
    let mut load = [(0usize, 0usize); MAX_TICK_PHASES as usize];
    for (phase, seats) in rooms {
        let slot = &mut load[(phase % phases) as usize];
        slot.0 = slot.0.saturating_add(seats);
        slot.1 += 1;
    }
    (0..phases).min_by_key(|&p| load[p as usize]).unwrap_or(0)
}

impl Room {
    /// The tick loop, on the server's grid of deadlines from `grid_epoch`
    /// shifted to the room's phase.
    async fn run(&mut self, grid_epoch: Instant, shutdown: &mut watch::Receiver<bool>) {
        let period = tick_period(self.config.tick_hz);
        let tick_epoch = phase_epoch(
            grid_epoch,
            self.status.tick_phase,
            self.config.tick_phases,
            period,
        );
        info!(
            tick_hz = self.config.tick_hz,
            snapshot_hz = self.config.snapshot_hz,
            npcs = self.world.entity_count(),
            public = self.status.public,
            "room running"
        );
        self.publish_snapshot();
        // Deadlines, not sleep(period): the schedule never drifts, whatever
        // each tick costs.
        let mut next = first_deadline(tick_epoch, Instant::now(), period);
        loop {
            tokio::select! {
                biased;
                () = crate::stopped(shutdown) => break,
                () = sleep_until(next) => {}
            }
            let mut steps = 0;
            while Instant::now() >= next && steps < self.config.max_catchup_ticks {
                let late = Instant::now() - next;
                self.metrics.tick_jitter.observe(late.as_secs_f64());
                self.late_us = late.as_micros() as u64;
                self.tick();
                next += period;
                steps += 1;
            }
            let now = Instant::now();
            if now >= next {
                // Still behind after the catch-up budget: skip the missed
                // ticks rather than spiral.
                let missed = ((now - next).as_secs_f64() / period.as_secs_f64()) as u64 + 1;
                self.metrics.tick_overruns.inc_by(missed);
                self.overruns += missed;
                warn!(missed, "tick loop overran; skipping ticks");
                next += period * missed as u32;
            }
            if self.status.evicted.load(Ordering::Acquire) {
                info!("room empty at the room limit; evicted for a new one");
                break;
            }
            if self
                .status
                .idle_for()
                .is_some_and(|idle| idle >= self.config.empty_room_grace)
                && self.registry.dispose_if_empty(self.serial)
            {
                info!("room empty for its grace period; disposed");
                break;
            }
        }
        info!("room stopped");
    }

    fn tick(&mut self) {
        #[cfg(feature = "failpoints")]
        self.fail_point();
        let started = std::time::Instant::now();
        self.drain_commands();
        self.drain_inputs();
        if self.parked > 0 {
            self.expire_parked();
        }
        let mut applied = 0;
        for slot in self.slots.iter_mut().flatten() {
            if let Some(cmd) = slot.inputs.pop_front() {
                slot.last_applied = cmd.seq;
                self.world.set_input(slot.key, cmd);
                applied += 1;
            }
        }
        self.metrics.inputs_applied.inc_by(applied);
        let ingested = std::time::Instant::now();
        self.world.step();
        let simulated = std::time::Instant::now();
        let publishes = self.config.snapshot_due(self.world.tick().0);
        if publishes {
            self.publish_snapshot();
        }
        let done = std::time::Instant::now();
        let m = &self.metrics;
        m.tick_phase(Phase::Ingest)
            .observe((ingested - started).as_secs_f64());
        m.tick_phase(Phase::Simulate)
            .observe((simulated - ingested).as_secs_f64());
        if publishes {
            // Only ticks that publish: with fewer snapshots than ticks, the
            // others' zeros would pull its quantiles to nothing.
            m.tick_phase(Phase::Snapshot)
                .observe((done - simulated).as_secs_f64());
        }
        let total = done - started;
        m.tick_phase(Phase::Total).observe(total.as_secs_f64());
        self.status.entities.set(self.world.entity_count() as i64);
        self.clock.record(
            total.as_micros() as u64,
            self.late_us,
            self.config.tick_hz,
            &self.status,
            self.overruns,
        );
    }

    /// With the `failpoints` feature (the fault tests): the `room-tick`
    /// fail point set to `return(NAME)` makes the room named NAME panic at
    /// its next tick, as a bug in the room would.
    #[cfg(feature = "failpoints")]
    fn fail_point(&self) {
        let name = self.status.name.as_str();
        if fail::eval("room-tick", |target| target.as_deref() == Some(name)) == Some(true) {
            panic!("fail point room-tick: {} panics", self.status.label);
        }
    }

    fn publish_snapshot(&mut self) {
        let acks = self
            .slots
            .iter()
            .map(|s| s.as_ref().map_or(0, |s| s.last_applied))
            .collect();
        let published = Arc::new(Published::new(self.world.snapshot(), acks));
        if self.recent.len() == self.config.snapshot_history {
            self.recent.pop_front();
        }
        self.recent.push_back(Arc::clone(&published));
        self.publish.send_replace(published);
    }

    fn drain_commands(&mut self) {
        for _ in 0..COMMANDS_PER_TICK {
            let Ok(cmd) = self.cmds.try_recv() else {
                break;
            };
            match cmd {
                RoomCmd::Join {
                    name,
                    ip,
                    claim,
                    reply,
                } => {
                    let joined = self.join(name, ip, claim);
                    if joined.is_err() {
                        self.status.release_seat();
                    }
                    if let Err(Ok(seat)) = reply.send(joined) {
                        // The connection gave up waiting: undo the join.
                        self.remove(seat.handle);
                    }
                }
                RoomCmd::Resume {
                    token,
                    named,
                    ip,
                    reply,
                } => {
                    let resumed = self.resume(token, named.as_deref());
                    let handle = resumed.as_ref().ok().map(|seat| seat.handle);
                    match reply.send(resumed) {
                        // Gave up waiting: the session stays parked, in the
                        // place among its address's it had.
                        Err(Ok(seat)) => self.disconnected(seat.handle, seat.epoch, false),
                        // Its connection counts now, against the address it
                        // came from.
                        Ok(()) => {
                            if let Some(slot) = handle.and_then(|h| self.slot_mut(h)) {
                                slot.park_permit = None;
                                slot.ip = ip;
                            }
                        }
                        Err(Err(_)) => {}
                    }
                }
                RoomCmd::Disconnected {
                    player,
                    epoch,
                    forfeit,
                } => self.disconnected(player, epoch, forfeit),
                RoomCmd::Replaced { player } => self.replaced(player),
            }
        }
        let players = self.slots.len() - self.free_slots.len() - self.parked;
        self.status.players.set(players as i64);
    }

    fn slot_mut(&mut self, player: PlayerHandle) -> Option<&mut Slot> {
        self.slots
            .get_mut(player.slot as usize)
            .and_then(Option::as_mut)
            .filter(|s| s.key == player.key)
    }

    fn seat(&mut self, index: u32, resumed: bool) -> Option<Seat> {
        let tick = self.world.tick();
        let slot = self.slots.get_mut(index as usize)?.as_mut()?;
        let ack = slot.acked.load(Ordering::Relaxed);
        let acked = Arc::new(AtomicU64::new(ack));
        slot.acked = Arc::clone(&acked);
        let (kick, kicked) = oneshot::channel();
        slot.kick = Some(kick);
        let baseline = acked_snapshot(&self.recent, ack).cloned();
        Some(Seat {
            handle: PlayerHandle {
                key: slot.key,
                slot: index,
            },
            epoch: slot.epoch,
            player_id: slot.player_id,
            tick,
            session: slot.token,
            resumed,
            input_seq: slot.last_received,
            acked,
            kicked,
            baseline,
        })
    }

    fn join(
        &mut self,
        name: String,
        ip: IpAddr,
        claim: Option<UserClaim>,
    ) -> Result<Seat, DisconnectReason> {
        let (key, player_id) = self
            .world
            .spawn_player(name)
            .ok_or(DisconnectReason::ServerFull)?;
        let token = loop {
            let token = new_token(self.serial);
            if !self.tokens.contains_key(&token) {
                break token;
            }
        };
        let slot = Slot {
            key,
            player_id,
            inputs: VecDeque::with_capacity(self.config.input_buffer),
            last_applied: 0,
            last_received: 0,
            token,
            epoch: 0,
            acked: Arc::new(AtomicU64::new(NO_ACK)),
            kick: None,
            parked_until: None,
            ip,
            park_permit: None,
            _claim: claim,
        };
        let index = match self.free_slots.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        self.tokens.insert(token, index);
        debug!(player_id, slot = index, "player joined");
        // Counted where `leaves` is, so that every seat freed was counted
        // as taken, a join undone because its connection gave up included.
        self.metrics.joins.inc();
        self.seat(index, false).ok_or(DisconnectReason::ServerFull)
    }

    /// Hands a session its seat back, its old connection replaced: not for
    /// a token this room never issued (or whose session ended), then
    /// `SessionExpired` whatever the name, nor when the hello `named`
    /// another room (`SessionWrongRoom`, only to a holder of the token).
    fn resume(
        &mut self,
        token: SessionToken,
        named: Option<&str>,
    ) -> Result<Seat, DisconnectReason> {
        let Some(&index) = self.tokens.get(&token) else {
            return Err(if self.status.replaced.contains(&token, Instant::now()) {
                DisconnectReason::SessionReplaced
            } else {
                DisconnectReason::SessionExpired
            });
        };
        if named.is_some_and(|name| name != self.status.name) {
            return Err(DisconnectReason::SessionWrongRoom);
        }
        let slot = self.slots[index as usize]
            .as_mut()
            .ok_or(DisconnectReason::SessionExpired)?;
        // The old connection may still be attached (its peer may not know
        // yet that it is dead): the newer one wins.
        slot.end_replaced_connection();
        if slot.parked_until.take().is_some() {
            self.parked -= 1;
        }
        slot.epoch = slot.epoch.wrapping_add(1);
        let player_id = slot.player_id;
        self.metrics.resumes.inc();
        debug!(player_id, "session resumed");
        self.seat(index, true)
            .ok_or(DisconnectReason::SessionExpired)
    }

    /// Ends a session whose user joined again (`crate::users`): its
    /// connection, if it has one, is told `SessionReplaced`, and so is a
    /// resume of its token within the resume grace.
    fn replaced(&mut self, player: PlayerHandle) {
        let Some(slot) = self.slot_mut(player) else {
            return; // gone already
        };
        slot.end_replaced_connection();
        let token = slot.token;
        let until = Instant::now() + self.config.resume_grace;
        self.status.replaced.remember(token, until);
        self.metrics.sessions_replaced.inc();
        self.remove(player);
    }

    fn disconnected(&mut self, player: PlayerHandle, epoch: u32, forfeit: bool) {
        let grace = self.config.resume_grace;
        let Some(slot) = self.slot_mut(player) else {
            return;
        };
        if slot.epoch != epoch {
            return; // an older connection of a resumed session
        }
        if forfeit || grace.is_zero() {
            self.remove(player);
            return;
        }
        slot.kick = None;
        if slot.parked_until.is_some() {
            return;
        }
        // A parked session holds a seat, and often a room, with no
        // connection: it counts against its address's sessions
        // (`--max-clients-per-ip`), or else one address could open sessions
        // and drop them, holding every room of the server with a few
        // connections at a time. Past that count it is given up instead.
        let (ip, player_id) = (slot.ip, slot.player_id);
        // A resume that was never delivered kept the place it had.
        let held = slot.park_permit.take();
        let Some(permit) = held.or_else(|| self.registry.park_permit(ip)) else {
            debug!(
                player_id,
                "its address has as many sessions awaiting a resume as it may: removed"
            );
            self.metrics.sessions_not_parked.inc();
            self.remove(player);
            return;
        };
        if let Some(slot) = self.slot_mut(player) {
            slot.park_permit = Some(permit);
            slot.parked_until = Some(Instant::now() + grace);
            debug!(player_id, "session parked for resume");
            self.parked += 1;
        }
    }

    fn expire_parked(&mut self) {
        let now = Instant::now();
        self.status.replaced.expire(now);
        let expired: Vec<PlayerHandle> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let s = s.as_ref()?;
                s.parked_until.filter(|&t| t <= now).map(|_| PlayerHandle {
                    key: s.key,
                    slot: i as u32,
                })
            })
            .collect();
        for player in expired {
            debug!(slot = player.slot, "resume grace over; player removed");
            self.metrics.sessions_expired.inc();
            self.remove(player);
        }
    }

    /// Frees a seat for good: the entity, the token, the slot.
    fn remove(&mut self, player: PlayerHandle) {
        let i = player.slot as usize;
        if self.slots.get(i).and_then(Option::as_ref).map(|s| s.key) != Some(player.key) {
            return;
        }
        if let Some(slot) = self.slots[i].take() {
            if slot.parked_until.is_some() {
                self.parked -= 1;
            }
            self.tokens.remove(&slot.token);
            self.free_slots.push(player.slot);
            self.world.remove(player.key);
            self.status.release_seat();
            self.metrics.leaves.inc();
            debug!(slot = player.slot, "player left");
        }
    }

    fn drain_inputs(&mut self) {
        let cap = self.config.input_buffer;
        for _ in 0..self.input_budget {
            let Ok((player, cmd)) = self.inputs.try_recv() else {
                break;
            };
            let Some(slot) = self.slot_mut(player) else {
                continue; // from a player who already left
            };
            if let Err(reason) = accept_input(slot, cmd, cap) {
                self.metrics.count_input_drop(reason);
            }
        }
    }
}

/// Files an input into a player's ordered buffer. Refuses stale and
/// duplicate sequence numbers, and anything beyond the buffer's capacity.
///
/// However far ahead of the last applied input: a client that kept
/// sending through a stall (the server's, or a dead link it had not
/// noticed) sends numbers that the buffer's overflow left far ahead, and
/// refusing those froze the player for good, as every later number is
/// further ahead still. A number far ahead only skips the client's own
/// inputs in between.
fn accept_input(slot: &mut Slot, cmd: InputCmd, cap: usize) -> Result<(), InputDrop> {
    if cmd.seq <= slot.last_applied {
        return Err(InputDrop::Stale);
    }
    if slot.inputs.len() >= cap {
        return Err(InputDrop::BufferFull);
    }
    // Inputs arrive in order over TCP; search from the back.
    let at = slot
        .inputs
        .iter()
        .rposition(|q| q.seq <= cmd.seq)
        .map_or(0, |i| i + 1);
    if at > 0 && slot.inputs[at - 1].seq == cmd.seq {
        return Err(InputDrop::Stale);
    }
    slot.inputs.insert(at, cmd);
    slot.last_received = slot.last_received.max(cmd.seq);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaced_tokens_are_bounded_and_forgotten_in_time() {
        let now = Instant::now();
        let token = |b: u8| SessionToken([b; SESSION_TOKEN_BYTES]);
        let replaced = ReplacedTokens::new(2);
        replaced.remember(token(1), now + Duration::from_secs(1));
        replaced.remember(token(2), now + Duration::from_secs(5));
        assert!(replaced.contains(&token(1), now));
        assert!(
            !replaced.contains(&token(1), now + Duration::from_secs(1)),
            "its time came"
        );
        replaced.remember(token(3), now + Duration::from_secs(5));
        assert!(
            !replaced.contains(&token(1), now),
            "the oldest went past the bound"
        );
        assert!(replaced.contains(&token(2), now) && replaced.contains(&token(3), now));
        // Another set takes them over, as the registry does when a room goes.
        let gone = ReplacedTokens::new(8);
        gone.absorb(replaced.take());
        assert!(!replaced.contains(&token(2), now), "taken");
        assert!(gone.contains(&token(2), now) && gone.contains(&token(3), now));
        gone.expire(now + Duration::from_secs(5));
        assert!(gone.take().is_empty(), "expired");
    }

    fn slot() -> Slot {
        let mut keys: slotmap::SlotMap<EntityKey, ()> = slotmap::SlotMap::with_key();
        Slot {
            key: keys.insert(()),
            player_id: 1,
            inputs: VecDeque::new(),
            last_applied: 10,
            last_received: 10,
            token: SessionToken::default(),
            epoch: 0,
            acked: Arc::new(AtomicU64::new(NO_ACK)),
            kick: None,
            parked_until: None,
            ip: std::net::Ipv4Addr::LOCALHOST.into(),
            park_permit: None,
            _claim: None,
        }
    }

    fn cmd(seq: u32) -> InputCmd {
        InputCmd {
            seq,
            ..InputCmd::default()
        }
    }

    #[test]
    fn rooms_started_at_any_time_tick_on_one_grid() {
        let epoch = Instant::now();
        let period = Duration::from_micros(33_333);
        for started_us in [0, 1, 33_332, 33_333, 33_334, 1_000_000, 86_400_000_000] {
            let now = epoch + Duration::from_micros(started_us);
            let next = first_deadline(epoch, now, period);
            assert!(next > now, "the first tick is after the start");
            assert!(next - now <= period, "and at most one period later");
            let offset = (next - epoch).as_nanos();
            assert_eq!(
                offset % period.as_nanos(),
                0,
                "on the grid: {started_us} µs"
            );
        }
    }

    #[test]
    fn a_phase_shifts_the_rooms_grid_by_that_many_fractions_of_a_period() {
        let epoch = Instant::now();
        let period = Duration::from_micros(33_332);
        let quarter = period / 4;
        for phase in 0..8 {
            let offset = phase_epoch(epoch, phase, 4, period) - epoch;
            assert_eq!(offset, quarter * (phase % 4), "phase {phase} of 4");
        }
        // One phase: every room on the server's grid.
        for phase in [0, 1, 12_345] {
            assert_eq!(phase_epoch(epoch, phase, 1, period), epoch);
        }
        // A room in phase 3 of 4 ticks three quarter-periods after the grid,
        // and its first deadline keeps that phase whenever it starts.
        let shifted = phase_epoch(epoch, 3, 4, period);
        for started_us in [0, 5_000, 40_000, 1_000_000] {
            let now = epoch + Duration::from_micros(started_us);
            let next = first_deadline(shifted, now, period);
            assert_eq!(
                (next - epoch).as_nanos() % period.as_nanos(),
                (quarter * 3).as_nanos()
            );
        }
    }

    #[test]
    fn a_new_room_takes_the_phase_with_the_fewest_seats() {
        // Rooms opened one after another, each filled before the next (as
        // matchmaking does): the phases in turn.
        let mut rooms: Vec<(u32, usize)> = Vec::new();
        for _ in 0..8 {
            let phase = least_loaded_phase(rooms.iter().copied(), 4);
            rooms.push((phase, 16));
        }
        let phases: Vec<u32> = rooms.iter().map(|r| r.0).collect();
        assert_eq!(phases, [0, 1, 2, 3, 0, 1, 2, 3]);
        // Both rooms of phase 2 disposed: the next room fills that gap, where
        // the order of creation would have put it in phase 0.
        rooms.retain(|r| r.0 != 2);
        assert_eq!(least_loaded_phase(rooms.iter().copied(), 4), 2);
        // Seats weigh, not rooms: one big room keeps the next rooms away.
        let big = [(0, 1_000), (1, 16), (2, 16)];
        assert_eq!(least_loaded_phase(big, 4), 3);
        assert_eq!(
            least_loaded_phase([(0, 1_000), (1, 16), (2, 16), (3, 16)], 4),
            1
        );
        // Equal seats: the phase with fewer rooms.
        assert_eq!(least_loaded_phase([(0, 8), (0, 8), (1, 16)], 2), 1);
        // One phase (or none asked for): phase 0; phases beyond the count wrap.
        assert_eq!(least_loaded_phase([(0, 5)], 1), 0);
        assert_eq!(least_loaded_phase([], 0), 0);
        assert_eq!(least_loaded_phase([(4, 5), (1, 5)], 4), 2);
        // At the most phases, every one can be chosen.
        let all: Vec<(u32, usize)> = (0..MAX_TICK_PHASES - 1).map(|p| (p, 1)).collect();
        assert_eq!(
            least_loaded_phase(all, MAX_TICK_PHASES),
            MAX_TICK_PHASES - 1
        );
    }

    #[test]
    fn quantiles_are_exact_nearest_rank() {
        let mut samples: Vec<u32> = (1..=100).rev().collect();
        assert_eq!(quantile(&mut samples, 0.5), 50.0);
        assert_eq!(quantile(&mut samples, 0.99), 99.0);
        assert_eq!(quantile(&mut samples, 1.0), 100.0);
        assert_eq!(quantile(&mut [7], 0.99), 7.0);
        assert_eq!(quantile(&mut [], 0.5), 0.0);
    }

    #[test]
    fn the_tick_report_covers_the_last_window_only() {
        let status = RoomStatus {
            name: "t".into(),
            label: "private#1".into(),
            serial: 1,
            public: false,
            persistent: false,
            tick_phase: 0,
            occupancy: AtomicUsize::new(0),
            started: std::time::Instant::now(),
            players: Gauge::default(),
            entities: Gauge::default(),
            ticks: Mutex::default(),
            evicted: AtomicBool::new(false),
            replaced: ReplacedTokens::new(REPLACED_TOKENS),
            empty_since_us: AtomicU64::new(NOT_EMPTY),
        };
        let mut clock = TickClock::new();
        let hz = 10;
        // One slow second, then WINDOW_SECS fast ones: the slow one ages out
        // of the p99 but stays in the chart.
        for _ in 0..hz {
            clock.record(9_000, 0, hz, &status, 0);
        }
        for _ in 0..WINDOW_SECS as u32 * hz {
            clock.record(100, 5, hz, &status, 0);
        }
        let report = status.ticks.lock().expect("report").clone();
        assert_eq!(report.ticks, u64::from(hz) * (WINDOW_SECS as u64 + 1));
        assert_eq!(
            (report.p50_us, report.p99_us, report.max_us),
            (100.0, 100.0, 100.0)
        );
        assert_eq!(report.late_p99_us, 5.0);
        assert_eq!(report.per_second.front().map(|s| s.max_us), Some(9_000.0));
        assert_eq!(report.per_second.len(), WINDOW_SECS + 1);
    }

    /// Shards on two workers that need the same baseline at once: one
    /// encodes, the other waits for its bytes rather than encoding again.
    #[test]
    fn racing_shards_encode_a_baseline_once() {
        let published = Published::default();
        let encodes = AtomicUsize::new(0);
        let start = std::sync::Barrier::new(2);
        let got: Vec<(Option<Tick>, Arc<SharedSnapshot>)> = std::thread::scope(|scope| {
            let shard = || {
                start.wait();
                published.shared_delta(Some(Tick(9)), true, |_| {
                    encodes.fetch_add(1, Ordering::Relaxed);
                    // Long enough for the other shard to arrive meanwhile.
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    SharedSnapshot::default()
                })
            };
            let handles = [scope.spawn(shard), scope.spawn(shard)];
            handles.map(|h| h.join().expect("shard")).into()
        });
        assert_eq!(encodes.load(Ordering::Relaxed), 1);
        assert!(Arc::ptr_eq(&got[0].1, &got[1].1));
    }

    #[test]
    fn one_encode_per_distinct_baseline() {
        let published = Published::default();
        let encodes = std::cell::Cell::new(0);
        let encode = |_| {
            encodes.set(encodes.get() + 1);
            SharedSnapshot::default()
        };
        let (_, a) = published.shared_delta(Some(Tick(5)), false, encode);
        let (_, b) = published.shared_delta(Some(Tick(5)), false, encode);
        let (_, full) = published.shared_delta(None, false, encode);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(encodes.get(), 2);
        // Every client acknowledging a baseline of its own: once the
        // shared deltas are taken, the rest get the full snapshot.
        for t in 0..2 * SHARED_DELTAS as u32 {
            let (against, bytes) = published.shared_delta(Some(Tick(100 + t)), false, encode);
            if (t as usize) < SHARED_DELTAS - 1 {
                assert_eq!(against, Some(Tick(100 + t)));
            } else {
                assert_eq!(against, None, "baseline {t} of the loop");
                assert!(Arc::ptr_eq(&bytes, &full));
            }
        }
        assert_eq!(
            encodes.get(),
            SHARED_DELTAS + 1,
            "one per tick and baseline, bounded"
        );
        // A baseline with its delta still gets it.
        let (against, again) = published.shared_delta(Some(Tick(5)), false, encode);
        assert_eq!(against, Some(Tick(5)));
        assert!(Arc::ptr_eq(&again, &a));
        // Recent baselines always get theirs, however many older ones
        // took the rest.
        for t in 200..200 + RECENT_SNAPSHOTS as u32 {
            let (against, _) = published.shared_delta(Some(Tick(t)), true, encode);
            assert_eq!(against, Some(Tick(t)));
        }
        assert_eq!(encodes.get(), SHARED_DELTAS + 1 + RECENT_SNAPSHOTS as usize);
    }

    /// Without a full snapshot encoded first, the first client turned away
    /// from the taken shared deltas encodes it.
    #[test]
    fn the_full_snapshot_is_encoded_for_the_first_client_turned_away() {
        let published = Published::default();
        let encodes = std::cell::RefCell::new(Vec::new());
        let encode = |against| {
            encodes.borrow_mut().push(against);
            SharedSnapshot::default()
        };
        for t in 0..SHARED_DELTAS as u32 + 3 {
            let _ = published.shared_delta(Some(Tick(t)), false, encode);
        }
        let mut expected: Vec<Option<Tick>> =
            (0..SHARED_DELTAS as u32).map(|t| Some(Tick(t))).collect();
        expected.push(None);
        assert_eq!(*encodes.borrow(), expected);
    }

    #[test]
    fn inputs_are_ordered_and_deduplicated() {
        let mut s = slot();
        assert_eq!(accept_input(&mut s, cmd(12), 8), Ok(()));
        assert_eq!(accept_input(&mut s, cmd(11), 8), Ok(()));
        assert_eq!(accept_input(&mut s, cmd(13), 8), Ok(()));
        assert_eq!(
            accept_input(&mut s, cmd(12), 8),
            Err(InputDrop::Stale),
            "duplicate"
        );
        let seqs: Vec<_> = s.inputs.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, [11, 12, 13]);
    }

    /// A client that kept sending at its rate through a 3 s stall: the
    /// buffer took 8, the rest overflowed, and its next inputs are far
    /// ahead of the last applied one. They are taken: the player moves
    /// again (refusing them as too far ahead froze it for good).
    #[test]
    fn a_client_that_sent_through_a_stall_moves_again() {
        let mut s = slot();
        for seq in 11..=100 {
            let taken = accept_input(&mut s, cmd(seq), 8);
            assert_eq!(taken.is_ok(), seq <= 18, "{seq}");
        }
        // The stall ends: eight ticks apply the buffer.
        while let Some(applied) = s.inputs.pop_front() {
            s.last_applied = applied.seq;
        }
        assert_eq!(s.last_applied, 18);
        for seq in 101..=103 {
            assert_eq!(accept_input(&mut s, cmd(seq), 8), Ok(()), "{seq}");
        }
    }

    #[test]
    fn stale_and_overflowing_inputs_are_refused() {
        let mut s = slot();
        assert_eq!(accept_input(&mut s, cmd(10), 8), Err(InputDrop::Stale));
        assert_eq!(accept_input(&mut s, cmd(3), 8), Err(InputDrop::Stale));
        for seq in 11..13 {
            assert_eq!(accept_input(&mut s, cmd(seq), 2), Ok(()));
        }
        assert_eq!(accept_input(&mut s, cmd(13), 2), Err(InputDrop::BufferFull));
    }
}
