//! The room task: the fixed-rate loop that alone owns a [`World`].
//!
//! Connection tasks never touch the world. They send joins and leaves on a
//! small command queue and inputs on a bounded input queue; the room drains
//! both at the start of each tick, steps the world, and publishes one
//! immutable [`Published`] snapshot through a `watch` channel. `watch` keeps
//! only the newest value, which is exactly the policy a slow client needs:
//! it skips to the newest snapshot, and its delta (against its own last
//! acknowledged baseline) stays correct.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;

use shared::Tick;
use shared::codec::SharedSnapshot;
use shared::protocol::{DisconnectReason, InputCmd};
use shared::snapshot::{self, WorldState};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};
use tracing::{Instrument, debug, info, warn};

use crate::config::Config;
use crate::game::{EntityKey, World, WorldConfig};
use crate::metrics::{InputDrop, Metrics, Phase};

/// Inputs further ahead of the last applied one than this are refused: no
/// honest client runs that far ahead.
const FUTURE_INPUT_WINDOW: u32 = 64;
/// Joins and leaves handled per tick at most; the rest wait for the next one.
const COMMANDS_PER_TICK: usize = 256;

/// A player's seat in the room: the slot index plus the entity key, whose
/// generation makes a handle from a departed player useless even after the
/// slot is reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PlayerHandle {
    key: EntityKey,
    slot: u32,
}

/// What a successful join returns to the connection.
#[derive(Debug)]
pub(crate) struct Joined {
    pub(crate) handle: PlayerHandle,
    pub(crate) player_id: u32,
    pub(crate) tick: Tick,
}

/// Requests to the room that must not be lost (unlike inputs).
#[derive(Debug)]
pub(crate) enum RoomCmd {
    Join {
        name: String,
        reply: oneshot::Sender<Result<Joined, DisconnectReason>>,
    },
    Leave {
        player: PlayerHandle,
    },
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
    /// Deltas already encoded against a baseline tick (`None`: full). Every
    /// client sees the whole arena, so clients that acknowledged the same
    /// baseline get the same bytes but for their input ack: the first
    /// writer to need one encodes it, the others copy it. A std mutex: held
    /// for a lookup or a push, never across `.await`.
    deltas: Mutex<Vec<(Option<Tick>, Arc<SharedSnapshot>)>>,
}

/// Distinct baselines cached per published tick; clients beyond them encode
/// their own delta.
const SHARED_DELTAS: usize = 32;

impl Published {
    pub(crate) fn input_ack(&self, player: PlayerHandle) -> u32 {
        self.acks.get(player.slot as usize).copied().unwrap_or(0)
    }

    /// The delta against `baseline` (a tick this state's writers sent
    /// before, or `None` for a full snapshot), encoded by `encode` at most
    /// about once per distinct baseline.
    pub(crate) fn shared_delta(
        &self,
        baseline: Option<Tick>,
        encode: impl FnOnce() -> SharedSnapshot,
    ) -> Arc<SharedSnapshot> {
        let lock = || self.deltas.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, hit)) = lock().iter().find(|(b, _)| *b == baseline) {
            return Arc::clone(hit);
        }
        // Encode without the lock; two writers may race to encode the same
        // baseline, which costs one redundant encode and nothing else.
        let fresh = Arc::new(encode());
        let mut deltas = lock();
        if deltas.len() < SHARED_DELTAS && deltas.iter().all(|(b, _)| *b != baseline) {
            deltas.push((baseline, Arc::clone(&fresh)));
        }
        fresh
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
    /// One entry per second, oldest first, for the last minute.
    pub per_second: VecDeque<SecondSample>,
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
    /// When the room started.
    pub started: std::time::Instant,
    /// Players now.
    pub players: Gauge,
    /// Entities now.
    pub entities: Gauge,
    /// Written by the room once per second; held only to copy.
    pub ticks: Mutex<TickReport>,
}

/// Per-second tick statistics kept inside the room task (no sharing).
struct TickClock {
    current: Histogram<u64>,
    recent: VecDeque<Histogram<u64>>,
    ticks_in_second: u32,
    total_ticks: u64,
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant digits; cannot fail for these bounds.
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| unreachable!())
}

impl TickClock {
    fn new() -> Self {
        Self {
            current: new_histogram(),
            recent: VecDeque::with_capacity(WINDOW_SECS),
            ticks_in_second: 0,
            total_ticks: 0,
        }
    }

    /// Records one tick; once per `tick_hz` ticks, folds the second into the
    /// report.
    fn record(&mut self, us: u64, tick_hz: u32, status: &RoomStatus, overruns: u64) {
        self.current.saturating_record(us.max(1));
        self.ticks_in_second += 1;
        self.total_ticks += 1;
        if self.ticks_in_second < tick_hz {
            return;
        }
        self.ticks_in_second = 0;
        let second = SecondSample {
            p50_us: self.current.value_at_quantile(0.5) as f64,
            p99_us: self.current.value_at_quantile(0.99) as f64,
            max_us: self.current.max() as f64,
        };
        let finished = std::mem::replace(&mut self.current, new_histogram());
        if self.recent.len() == WINDOW_SECS {
            self.recent.pop_front();
        }
        self.recent.push_back(finished);
        let mut window = new_histogram();
        for h in &self.recent {
            let _ = window.add(h);
        }
        let mut report = status
            .ticks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        report.ticks = self.total_ticks;
        report.overruns = overruns;
        report.p50_us = window.value_at_quantile(0.5) as f64;
        report.p99_us = window.value_at_quantile(0.99) as f64;
        report.max_us = window.max() as f64;
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
    pub(crate) status: Arc<RoomStatus>,
}

struct Slot {
    key: EntityKey,
    inputs: VecDeque<InputCmd>,
    last_applied: u32,
}

struct Room {
    config: Config,
    world: World,
    slots: Vec<Option<Slot>>,
    free_slots: Vec<u32>,
    cmds: mpsc::Receiver<RoomCmd>,
    inputs: mpsc::Receiver<(PlayerHandle, InputCmd)>,
    input_budget: usize,
    publish: watch::Sender<Arc<Published>>,
    metrics: Arc<Metrics>,
    status: Arc<RoomStatus>,
    clock: TickClock,
}

/// Starts a room on the current runtime. It runs until `shutdown` turns true,
/// finishing the tick in progress.
pub(crate) fn spawn(
    name: &str,
    config: &Config,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> (RoomHandle, tokio::task::JoinHandle<()>) {
    let (cmd_tx, cmds) = mpsc::channel(COMMANDS_PER_TICK);
    let input_capacity = (config.max_clients * 4).max(1024);
    let (input_tx, inputs) = mpsc::channel(input_capacity);
    let (publish, snapshots) = watch::channel(Arc::new(Published::default()));
    let (players, entities) = metrics.room(name);
    let status = Arc::new(RoomStatus {
        name: name.to_owned(),
        started: std::time::Instant::now(),
        players,
        entities,
        ticks: Mutex::new(TickReport {
            budget_us: 1e6 / f64::from(config.tick_hz),
            ..TickReport::default()
        }),
    });
    let mut world = World::new(WorldConfig {
        tick_hz: config.tick_hz,
        seed: config.seed,
        // Ids stay unused well past the longest baseline a client may hold.
        id_quarantine_ticks: (config.snapshot_history as u32)
            .saturating_mul(config.tick_hz.div_ceil(config.snapshot_hz))
            .saturating_add(config.tick_hz),
    });
    for _ in 0..config.npcs {
        world.spawn_npc();
    }
    let mut room = Room {
        config: config.clone(),
        world,
        slots: Vec::new(),
        free_slots: Vec::new(),
        cmds,
        inputs,
        input_budget: input_capacity,
        publish,
        metrics,
        status: Arc::clone(&status),
        clock: TickClock::new(),
    };
    let handle = RoomHandle {
        cmds: cmd_tx,
        inputs: input_tx,
        snapshots,
        status,
    };
    let span = tracing::info_span!("room", room = name);
    let task = tokio::spawn(
        async move {
            room.run(&mut shutdown).await;
        }
        .instrument(span),
    );
    (handle, task)
}

impl Room {
    async fn run(&mut self, shutdown: &mut watch::Receiver<bool>) {
        let period = Duration::from_secs_f64(1.0 / f64::from(self.config.tick_hz));
        info!(
            tick_hz = self.config.tick_hz,
            snapshot_hz = self.config.snapshot_hz,
            npcs = self.config.npcs,
            "room running"
        );
        self.publish_snapshot();
        // Deadlines, not sleep(period): the schedule never drifts, whatever
        // each tick costs.
        let mut next = Instant::now() + period;
        loop {
            tokio::select! {
                biased;
                () = crate::stopped(shutdown) => break,
                () = sleep_until(next) => {}
            }
            let mut steps = 0;
            while Instant::now() >= next && steps < self.config.max_catchup_ticks {
                self.metrics
                    .tick_jitter
                    .observe((Instant::now() - next).as_secs_f64());
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
                warn!(missed, "tick loop overran; skipping ticks");
                next += period * missed as u32;
            }
        }
        info!("room stopped");
    }

    fn tick(&mut self) {
        let started = std::time::Instant::now();
        self.drain_commands();
        self.drain_inputs();
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
        if self.config.snapshot_due(self.world.tick().0) {
            self.publish_snapshot();
        }
        let done = std::time::Instant::now();
        let m = &self.metrics;
        m.tick_phase(Phase::Ingest)
            .observe((ingested - started).as_secs_f64());
        m.tick_phase(Phase::Simulate)
            .observe((simulated - ingested).as_secs_f64());
        m.tick_phase(Phase::Snapshot)
            .observe((done - simulated).as_secs_f64());
        let total = done - started;
        m.tick_phase(Phase::Total).observe(total.as_secs_f64());
        self.status.entities.set(self.world.entity_count() as i64);
        self.clock.record(
            total.as_micros() as u64,
            self.config.tick_hz,
            &self.status,
            m.tick_overruns.get(),
        );
    }

    fn publish_snapshot(&mut self) {
        let acks = self
            .slots
            .iter()
            .map(|s| s.as_ref().map_or(0, |s| s.last_applied))
            .collect();
        let state = self.world.snapshot();
        let published = Published {
            checksum: snapshot::checksum(&state),
            state,
            acks,
            deltas: Mutex::default(),
        };
        self.publish.send_replace(Arc::new(published));
    }

    fn drain_commands(&mut self) {
        for _ in 0..COMMANDS_PER_TICK {
            let Ok(cmd) = self.cmds.try_recv() else {
                break;
            };
            match cmd {
                RoomCmd::Join { name, reply } => {
                    let joined = self.join(name);
                    if let Err(Ok(joined)) = reply.send(joined) {
                        // The connection gave up waiting: undo the join.
                        self.leave(joined.handle);
                    }
                }
                RoomCmd::Leave { player } => self.leave(player),
            }
        }
        self.status
            .players
            .set((self.slots.len() - self.free_slots.len()) as i64);
    }

    fn join(&mut self, name: String) -> Result<Joined, DisconnectReason> {
        let (key, player_id) = self
            .world
            .spawn_player(name)
            .ok_or(DisconnectReason::ServerFull)?;
        let slot = Slot {
            key,
            inputs: VecDeque::with_capacity(self.config.input_buffer),
            last_applied: 0,
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
        debug!(player_id, slot = index, "player joined");
        Ok(Joined {
            handle: PlayerHandle { key, slot: index },
            player_id,
            tick: self.world.tick(),
        })
    }

    fn leave(&mut self, player: PlayerHandle) {
        let i = player.slot as usize;
        if self.slots.get(i).and_then(Option::as_ref).map(|s| s.key) == Some(player.key) {
            self.slots[i] = None;
            self.free_slots.push(player.slot);
            self.world.remove(player.key);
            debug!(slot = player.slot, "player left");
        }
    }

    fn drain_inputs(&mut self) {
        let cap = self.config.input_buffer;
        for _ in 0..self.input_budget {
            let Ok((player, cmd)) = self.inputs.try_recv() else {
                break;
            };
            let Some(slot) = self
                .slots
                .get_mut(player.slot as usize)
                .and_then(Option::as_mut)
                .filter(|s| s.key == player.key)
            else {
                continue; // from a player who already left
            };
            if let Err(reason) = accept_input(slot, cmd, cap) {
                self.metrics.count_input_drop(reason);
            }
        }
    }
}

/// Files an input into a player's ordered buffer. Refuses stale, duplicate and
/// far-future sequence numbers, and anything beyond the buffer's capacity.
fn accept_input(slot: &mut Slot, cmd: InputCmd, cap: usize) -> Result<(), InputDrop> {
    if cmd.seq <= slot.last_applied {
        return Err(InputDrop::Stale);
    }
    if cmd.seq - slot.last_applied > FUTURE_INPUT_WINDOW {
        return Err(InputDrop::Future);
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot() -> Slot {
        let mut keys: slotmap::SlotMap<EntityKey, ()> = slotmap::SlotMap::with_key();
        Slot {
            key: keys.insert(()),
            inputs: VecDeque::new(),
            last_applied: 10,
        }
    }

    fn cmd(seq: u32) -> InputCmd {
        InputCmd {
            seq,
            ..InputCmd::default()
        }
    }

    #[test]
    fn one_encode_per_distinct_baseline() {
        let published = Published::default();
        let encodes = std::cell::Cell::new(0);
        let encode = || {
            encodes.set(encodes.get() + 1);
            SharedSnapshot::default()
        };
        let a = published.shared_delta(Some(Tick(5)), encode);
        let b = published.shared_delta(Some(Tick(5)), encode);
        let _full = published.shared_delta(None, encode);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(encodes.get(), 2);
        for t in 0..2 * SHARED_DELTAS as u32 {
            let _ = published.shared_delta(Some(Tick(100 + t)), encode);
        }
        assert_eq!(
            published.deltas.lock().map(|d| d.len()).unwrap_or(0),
            SHARED_DELTAS,
            "the cache is bounded"
        );
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

    #[test]
    fn stale_future_and_overflowing_inputs_are_refused() {
        let mut s = slot();
        assert_eq!(accept_input(&mut s, cmd(10), 8), Err(InputDrop::Stale));
        assert_eq!(accept_input(&mut s, cmd(3), 8), Err(InputDrop::Stale));
        assert_eq!(
            accept_input(&mut s, cmd(10 + FUTURE_INPUT_WINDOW + 1), 8),
            Err(InputDrop::Future)
        );
        for seq in 11..13 {
            assert_eq!(accept_input(&mut s, cmd(seq), 2), Ok(()));
        }
        assert_eq!(accept_input(&mut s, cmd(13), 2), Err(InputDrop::BufferFull));
    }
}
