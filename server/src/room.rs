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
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use shared::Tick;
use shared::protocol::{DisconnectReason, InputCmd};
use shared::snapshot::WorldState;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::game::{EntityKey, World, WorldConfig};

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
    /// Last applied input sequence by player slot.
    acks: Vec<u32>,
}

impl Published {
    pub(crate) fn input_ack(&self, player: PlayerHandle) -> u32 {
        self.acks.get(player.slot as usize).copied().unwrap_or(0)
    }
}

/// Counters the room updates every tick, read by status endpoints and tests.
/// Atomics, so a reader never blocks the tick.
#[derive(Debug, Default)]
pub struct RoomStats {
    /// Ticks simulated.
    pub ticks: AtomicU64,
    /// Ticks given up on because the loop fell too far behind.
    pub overruns: AtomicU64,
    /// Duration of the last tick, in nanoseconds.
    pub last_tick_ns: AtomicU64,
    /// Longest tick so far, in nanoseconds.
    pub max_tick_ns: AtomicU64,
    /// Players in the room.
    pub players: AtomicU64,
    /// Entities in the world.
    pub entities: AtomicU64,
    /// Inputs applied.
    pub inputs_applied: AtomicU64,
    /// Inputs dropped: queue full, buffer full, stale, duplicate or too far
    /// ahead.
    pub inputs_dropped: AtomicU64,
}

/// How connection tasks reach a room. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct RoomHandle {
    pub(crate) cmds: mpsc::Sender<RoomCmd>,
    /// Full-queue policy: the sender uses `try_send` and drops the input
    /// (counted); a later input supersedes it anyway.
    pub(crate) inputs: mpsc::Sender<(PlayerHandle, InputCmd)>,
    pub(crate) snapshots: watch::Receiver<Arc<Published>>,
    pub(crate) stats: Arc<RoomStats>,
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
    stats: Arc<RoomStats>,
}

/// Starts a room on the current runtime. It runs until `shutdown` turns true,
/// finishing the tick in progress.
pub(crate) fn spawn(
    config: &Config,
    mut shutdown: watch::Receiver<bool>,
) -> (RoomHandle, tokio::task::JoinHandle<()>) {
    let (cmd_tx, cmds) = mpsc::channel(COMMANDS_PER_TICK);
    let input_capacity = (config.max_clients * 4).max(1024);
    let (input_tx, inputs) = mpsc::channel(input_capacity);
    let (publish, snapshots) = watch::channel(Arc::new(Published::default()));
    let stats = Arc::new(RoomStats::default());
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
        stats: Arc::clone(&stats),
    };
    let handle = RoomHandle {
        cmds: cmd_tx,
        inputs: input_tx,
        snapshots,
        stats,
    };
    let task = tokio::spawn(async move {
        room.run(&mut shutdown).await;
    });
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
                self.tick();
                next += period;
                steps += 1;
            }
            let now = Instant::now();
            if now >= next {
                // Still behind after the catch-up budget: skip the missed
                // ticks rather than spiral.
                let missed = ((now - next).as_secs_f64() / period.as_secs_f64()) as u64 + 1;
                self.stats.overruns.fetch_add(missed, Relaxed);
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
        for slot in self.slots.iter_mut().flatten() {
            if let Some(cmd) = slot.inputs.pop_front() {
                slot.last_applied = cmd.seq;
                self.world.set_input(slot.key, cmd);
                self.stats.inputs_applied.fetch_add(1, Relaxed);
            }
        }
        self.world.step();
        if self.config.snapshot_due(self.world.tick().0) {
            self.publish_snapshot();
        }
        let ns = started.elapsed().as_nanos() as u64;
        self.stats.ticks.fetch_add(1, Relaxed);
        self.stats.last_tick_ns.store(ns, Relaxed);
        self.stats.max_tick_ns.fetch_max(ns, Relaxed);
        self.stats
            .entities
            .store(self.world.entity_count() as u64, Relaxed);
    }

    fn publish_snapshot(&mut self) {
        let acks = self
            .slots
            .iter()
            .map(|s| s.as_ref().map_or(0, |s| s.last_applied))
            .collect();
        let published = Published {
            state: self.world.snapshot(),
            acks,
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
        self.stats
            .players
            .store((self.slots.len() - self.free_slots.len()) as u64, Relaxed);
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
        let mut dropped = 0;
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
            if !accept_input(slot, cmd, cap) {
                dropped += 1;
            }
        }
        self.stats.inputs_dropped.fetch_add(dropped, Relaxed);
    }
}

/// Files an input into a player's ordered buffer. Refuses stale, duplicate and
/// far-future sequence numbers, and anything beyond the buffer's capacity.
fn accept_input(slot: &mut Slot, cmd: InputCmd, cap: usize) -> bool {
    if cmd.seq <= slot.last_applied
        || cmd.seq - slot.last_applied > FUTURE_INPUT_WINDOW
        || slot.inputs.len() >= cap
    {
        return false;
    }
    // Inputs arrive in order over TCP; search from the back.
    let at = slot
        .inputs
        .iter()
        .rposition(|q| q.seq <= cmd.seq)
        .map_or(0, |i| i + 1);
    if at > 0 && slot.inputs[at - 1].seq == cmd.seq {
        return false;
    }
    slot.inputs.insert(at, cmd);
    true
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
    fn inputs_are_ordered_and_deduplicated() {
        let mut s = slot();
        assert!(accept_input(&mut s, cmd(12), 8));
        assert!(accept_input(&mut s, cmd(11), 8));
        assert!(accept_input(&mut s, cmd(13), 8));
        assert!(!accept_input(&mut s, cmd(12), 8), "duplicate");
        let seqs: Vec<_> = s.inputs.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, [11, 12, 13]);
    }

    #[test]
    fn stale_future_and_overflowing_inputs_are_refused() {
        let mut s = slot();
        assert!(!accept_input(&mut s, cmd(10), 8), "already applied");
        assert!(!accept_input(&mut s, cmd(3), 8), "replayed");
        assert!(!accept_input(&mut s, cmd(10 + FUTURE_INPUT_WINDOW + 1), 8));
        for seq in 11..13 {
            assert!(accept_input(&mut s, cmd(seq), 2));
        }
        assert!(!accept_input(&mut s, cmd(13), 2), "buffer full");
    }
}
