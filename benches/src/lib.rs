//! Shared fixtures of the benchmarks: a deterministic arena driven by
//! bot-like inputs, histories of published states, delta statistics, and a
//! counting global allocator.
//!
//! Everything is seeded, so two runs (or two variants in one run) measure the
//! same worlds.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use server::game::{EntityKey, World, WorldConfig};
use shared::codec;
use shared::protocol::InputCmd;
use shared::rules::{ARENA_HEIGHT, ARENA_WIDTH, TickRules, buttons};
use shared::snapshot::{self, EntityKind, NetEntity, SnapshotMsg, WorldState};

/// Simulation rate of every benchmark, as the server's default (Hz).
pub const TICK_HZ: u32 = 30;

/// Share of players among the fighters (players + NPCs) of a benchmark arena.
/// The rest are NPCs; projectiles come from both firing.
pub const PLAYER_SHARE: f64 = 0.4;

/// The eight movement directions plus "stand still", as button bits.
const DIRECTIONS: [u8; 9] = [
    0,
    buttons::UP,
    buttons::DOWN,
    buttons::LEFT,
    buttons::RIGHT,
    buttons::UP | buttons::LEFT,
    buttons::UP | buttons::RIGHT,
    buttons::DOWN | buttons::LEFT,
    buttons::DOWN | buttons::RIGHT,
];

/// One simulated human: holds a direction for about a second, sweeps the aim
/// like a mouse, and holds fire in bursts.
#[derive(Clone, Debug)]
struct Bot {
    key: EntityKey,
    seq: u32,
    buttons: u8,
    aim: u16,
    /// Aim change per tick, in 1/65536 turns.
    aim_rate: i16,
    /// Ticks until the next change of direction, aim rate and trigger.
    change_in: u32,
}

/// A [`World`] with players driven by bot-like inputs, as the room drives
/// it: one input per player per tick, then one step.
#[derive(Debug)]
pub struct Arena {
    /// The simulated world.
    pub world: World,
    bots: Vec<Bot>,
    rng: fastrand::Rng,
}

/// Entity counts by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Connected players.
    pub players: usize,
    /// NPCs.
    pub npcs: usize,
    /// Projectiles in flight.
    pub projectiles: usize,
}

impl Census {
    /// Counts a published state.
    #[must_use]
    pub fn of(state: &WorldState) -> Self {
        let mut c = Self::default();
        for e in &state.entities {
            match e.kind {
                EntityKind::Player => c.players += 1,
                EntityKind::Npc => c.npcs += 1,
                EntityKind::Projectile => c.projectiles += 1,
            }
        }
        c
    }

    /// All entities.
    #[must_use]
    pub fn total(&self) -> usize {
        self.players + self.npcs + self.projectiles
    }
}

impl std::fmt::Display for Census {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} entities ({} players, {} NPCs, {} projectiles)",
            self.total(),
            self.players,
            self.npcs,
            self.projectiles
        )
    }
}

impl Arena {
    /// An arena with `players` bot-driven players and `npcs` NPCs, not yet
    /// stepped (so without projectiles).
    #[must_use]
    pub fn new(players: usize, npcs: usize, seed: u64) -> Self {
        let mut world = World::new(WorldConfig {
            tick_hz: TICK_HZ,
            seed,
            ..WorldConfig::default()
        });
        let mut rng = fastrand::Rng::with_seed(seed ^ 0xb07);
        let mut bots = Vec::with_capacity(players);
        for i in 0..players {
            let Some((key, _)) = world.spawn_player(format!("bot{i}")) else {
                break;
            };
            bots.push(Bot {
                key,
                seq: 0,
                buttons: 0,
                aim: rng.u16(..),
                aim_rate: 0,
                change_in: rng.u32(..TICK_HZ),
            });
        }
        for _ in 0..npcs {
            world.spawn_npc();
        }
        Self { world, bots, rng }
    }

    /// An arena of about `entities` entities in the realistic mix: 40% of the
    /// fighters players and 60% NPCs, plus the projectiles their fire keeps
    /// in flight. Stepped three seconds so projectiles, deaths and respawns
    /// reach their steady state.
    ///
    /// The arena's size is a game rule, so density grows with the entity
    /// count, shots hit sooner, and the projectile share falls (about a tenth
    /// of all entities at 1,000, a few percent at 50,000). The number of
    /// fighters is calibrated once so the total lands near `entities`.
    #[must_use]
    pub fn realistic(entities: usize, seed: u64) -> Self {
        let build = |fighters: usize| {
            let players = (fighters as f64 * PLAYER_SHARE).round() as usize;
            let mut arena = Self::new(players, fighters - players, seed);
            arena.run(3 * TICK_HZ);
            arena
        };
        let guess = (entities as f64 / 1.1).round() as usize;
        let arena = build(guess);
        let total = arena.world.entity_count().max(1);
        build((guess as f64 * entities as f64 / total as f64).round() as usize)
    }

    /// Number of bot-driven players.
    #[must_use]
    pub fn players(&self) -> usize {
        self.bots.len()
    }

    /// Gives every player this tick's input, as the room does before a step.
    pub fn feed_inputs(&mut self) {
        let tick = self.world.tick();
        for bot in &mut self.bots {
            if bot.change_in == 0 {
                // About once a second: new direction, new aim sweep, and the
                // trigger held a third of the time.
                bot.change_in = self.rng.u32(TICK_HZ / 2..=3 * TICK_HZ / 2);
                let dir = DIRECTIONS[self.rng.usize(..DIRECTIONS.len())];
                let fire = if self.rng.u32(..3) == 0 {
                    buttons::FIRE
                } else {
                    0
                };
                bot.buttons = dir | fire;
                bot.aim_rate = self.rng.i16(-400..=400);
            }
            bot.change_in -= 1;
            bot.aim = bot.aim.wrapping_add_signed(bot.aim_rate);
            bot.seq += 1;
            self.world.set_input(
                bot.key,
                InputCmd {
                    seq: bot.seq,
                    tick,
                    ack: tick,
                    buttons: bot.buttons,
                    aim: bot.aim,
                },
            );
        }
    }

    /// One room tick: inputs, then the world step.
    pub fn step(&mut self) {
        self.feed_inputs();
        self.world.step();
    }

    /// `ticks` room ticks.
    pub fn run(&mut self, ticks: u32) {
        for _ in 0..ticks {
            self.step();
        }
    }

    /// Steps `ticks` times and keeps the published state of every tick,
    /// oldest first, each shared as the server shares it.
    #[must_use]
    pub fn history(&mut self, ticks: usize) -> Vec<Arc<WorldState>> {
        (0..ticks)
            .map(|_| {
                self.step();
                Arc::new(self.world.snapshot())
            })
            .collect()
    }
}

/// How a delta compares with its baseline.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DeltaStats {
    /// Entities in the current state.
    pub entities: usize,
    /// Entities present in both states whose position differs.
    pub moving: usize,
    /// Entities present in both states with any replicated field changed.
    pub changed: usize,
    /// Entities created since the baseline.
    pub created: usize,
    /// Entities removed since the baseline.
    pub removed: usize,
    /// Bytes of the encoded message.
    pub bytes: usize,
}

impl DeltaStats {
    /// Compares `current` with `baseline` and encodes the delta.
    #[must_use]
    pub fn measure(baseline: &WorldState, current: &WorldState) -> Self {
        let mut s = Self {
            entities: current.entities.len(),
            ..Self::default()
        };
        let (bs, cs) = (&baseline.entities, &current.entities);
        let (mut i, mut j) = (0, 0);
        while i < bs.len() && j < cs.len() {
            let (b, c) = (&bs[i], &cs[j]);
            if b.id == c.id && b.kind == c.kind {
                s.moving += usize::from(b.x != c.x || b.y != c.y);
                s.changed += usize::from(b != c);
                i += 1;
                j += 1;
            } else if b.id <= c.id {
                s.removed += 1;
                i += 1;
            } else {
                s.created += 1;
                j += 1;
            }
        }
        s.removed += bs.len() - i;
        s.created += cs.len() - j;
        let mut msg = SnapshotMsg::default();
        let mut buf = Vec::new();
        snapshot::diff_into(Some(baseline), current, 1, &mut msg);
        codec::encode_snapshot(&msg, &mut buf);
        s.bytes = buf.len();
        s
    }

    /// Entities that cost the encoder work: changed, created or removed.
    #[must_use]
    pub fn touched(&self) -> usize {
        self.changed + self.created + self.removed
    }

    /// Averages over many deltas.
    #[must_use]
    pub fn mean(all: &[Self]) -> MeanDelta {
        let n = all.len().max(1) as f64;
        let sum = |f: fn(&Self) -> usize| all.iter().map(f).sum::<usize>() as f64 / n;
        MeanDelta {
            entities: sum(|s| s.entities),
            moving: sum(|s| s.moving),
            changed: sum(|s| s.changed),
            touched: sum(Self::touched),
            bytes: sum(|s| s.bytes),
        }
    }
}

/// [`DeltaStats`] averaged over several deltas.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MeanDelta {
    /// Entities in the current state.
    pub entities: f64,
    /// Entities whose position changed since the baseline.
    pub moving: f64,
    /// Entities with any replicated field changed.
    pub changed: f64,
    /// Changed, created or removed entities.
    pub touched: f64,
    /// Encoded bytes per message.
    pub bytes: f64,
}

/// Where the bytes of one encoded delta go, by section.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Breakdown {
    /// The whole message.
    pub total: f64,
    /// Variant, tick, baseline age, input ack, checksum and the six list
    /// lengths.
    pub header: f64,
    /// Removed entity ids.
    pub removed: f64,
    /// Created entities.
    pub created: f64,
    /// Change heads and field values.
    pub changed: f64,
    /// Scoreboard removals and upserts.
    pub scoreboard: f64,
}

impl Breakdown {
    /// Measures each section by encoding the message without it.
    #[must_use]
    pub fn of(msg: &SnapshotMsg) -> Self {
        let size = |m: &SnapshotMsg| {
            let mut buf = Vec::new();
            codec::encode_snapshot(m, &mut buf);
            buf.len() as f64
        };
        let total = size(msg);
        let without = |strip: fn(&mut SnapshotMsg)| {
            let mut m = msg.clone();
            strip(&mut m);
            total - size(&m)
        };
        let removed = without(|m| m.removed.clear());
        let created = without(|m| m.created.clear());
        let changed = without(|m| {
            m.changed.clear();
            m.values.clear();
        });
        let scoreboard = without(|m| {
            m.players_removed.clear();
            m.players_upserted.clear();
            m.players_scored.clear();
        });
        Self {
            total,
            header: total - removed - created - changed - scoreboard,
            removed,
            created,
            changed,
            scoreboard,
        }
    }

    /// Averages over many messages.
    #[must_use]
    pub fn mean(all: &[Self]) -> Self {
        let n = all.len().max(1) as f64;
        let sum = |f: fn(&Self) -> f64| all.iter().map(f).sum::<f64>() / n;
        Self {
            total: sum(|b| b.total),
            header: sum(|b| b.header),
            removed: sum(|b| b.removed),
            created: sum(|b| b.created),
            changed: sum(|b| b.changed),
            scoreboard: sum(|b| b.scoreboard),
        }
    }
}

/// Pairs `(baseline, current)` of a history for a baseline `age` ticks old,
/// every current state from `age` on.
#[must_use]
pub fn pairs(history: &[Arc<WorldState>], age: usize) -> Vec<(Arc<WorldState>, Arc<WorldState>)> {
    (age..history.len())
        .map(|t| (Arc::clone(&history[t - age]), Arc::clone(&history[t])))
        .collect()
}

/// A synthetic world where every entity moves at player speed in one of the
/// eight directions, and turns with probability `turn` per tick (changing
/// its facing too): `ticks` states, oldest first. No scoreboard.
#[must_use]
pub fn all_moving(entities: usize, ticks: usize, turn: f64, seed: u64) -> Vec<Arc<WorldState>> {
    let rules = TickRules::new(TICK_HZ);
    let (s, d) = (rules.player_step, rules.player_step_diag);
    let dirs = [
        (s, 0),
        (-s, 0),
        (0, s),
        (0, -s),
        (d, d),
        (d, -d),
        (-d, d),
        (-d, -d),
    ];
    let mut rng = fastrand::Rng::with_seed(seed);
    let kinds = [EntityKind::Player, EntityKind::Npc, EntityKind::Npc];
    let mut world: Vec<NetEntity> = (0..entities as u32)
        .map(|id| {
            let (vx, vy) = dirs[rng.usize(..dirs.len())];
            NetEntity {
                id,
                kind: kinds[id as usize % kinds.len()],
                x: rng.i32(0..ARENA_WIDTH),
                y: rng.i32(0..ARENA_HEIGHT),
                vx,
                vy,
                angle: rng.u8(..),
                hp: 100,
                vel_age: 1,
            }
        })
        .collect();
    let mut history = Vec::with_capacity(ticks);
    for t in 0..ticks {
        for e in &mut world {
            let vel = (e.vx, e.vy);
            if rng.f64() < turn {
                (e.vx, e.vy) = dirs[rng.usize(..dirs.len())];
                e.angle = rng.u8(..);
            }
            // Bounce off the walls: a turn like any other.
            if !(0..ARENA_WIDTH).contains(&(e.x + e.vx)) {
                e.vx = -e.vx;
            }
            if !(0..ARENA_HEIGHT).contains(&(e.y + e.vy)) {
                e.vy = -e.vy;
            }
            e.x += e.vx;
            e.y += e.vy;
            // What the server's simulation knows (`NetEntity::vel_age`).
            e.vel_age = if (e.vx, e.vy) == vel {
                e.vel_age.saturating_add(1)
            } else {
                1
            };
        }
        history.push(Arc::new(WorldState {
            tick: shared::Tick(t as u32 + 1),
            entities: world.clone(),
            players: Arc::default(),
        }));
    }
    history
}

/// Allocations counted by [`CountingAlloc`] since the start of the process.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// A global allocator that counts allocations (including reallocations) and
/// forwards everything to the system allocator. Install it in a bench with
/// `#[global_allocator] static A: CountingAlloc = CountingAlloc;`.
#[derive(Debug)]
pub struct CountingAlloc;

impl CountingAlloc {
    /// Allocations and reallocations so far, on every thread.
    #[must_use]
    pub fn count() -> u64 {
        ALLOCATIONS.load(Relaxed)
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees carry over; the counter is a relaxed
// atomic add with no other effect.
#[allow(
    unsafe_code,
    reason = "a GlobalAlloc impl is unsafe by definition; it only forwards to System"
)]
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// One line naming the machine figures come from: its cores, and its CPU
/// with family, model and cache size as `/proc/cpuinfo` gives them, or
/// "CPU not known" where there is none. (That cache is the L2 per core on
/// AMD, the last level on Intel.) A VM may call different
/// generations of core by one bare name: this project's benchmark VM
/// reported "AMD EPYC" on a Zen 3 host and then on a Zen 4 one, a third
/// faster, and only the family and model told them apart (`BENCHMARKS.md`,
/// "Machine and method").
#[must_use]
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    describe_machine(&cpuinfo, cores)
}

/// [`machine`]'s line from the text of `/proc/cpuinfo`: the fields of its
/// first processor.
fn describe_machine(cpuinfo: &str, cores: usize) -> String {
    let field = |name: &str| {
        cpuinfo
            .lines()
            .take_while(|line| !line.trim().is_empty())
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| key.trim() == name)
            .map(|(_, value)| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    };
    let Some(name) = field("model name") else {
        return format!("{cores} cores, CPU not known");
    };
    let mut detail = Vec::new();
    if let (Some(family), Some(model)) = (field("cpu family"), field("model")) {
        detail.push(format!("family {family} model {model}"));
    }
    if let Some(cache) = field("cache size") {
        detail.push(format!("cache size {cache}"));
    }
    if detail.is_empty() {
        format!("{cores} cores, {name}")
    } else {
        format!("{cores} cores, {name} ({})", detail.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realistic_arena_has_every_kind_and_is_deterministic() {
        let mut a = Arena::realistic(1000, 7);
        let mut b = Arena::realistic(1000, 7);
        let (sa, sb) = (a.world.snapshot(), b.world.snapshot());
        assert_eq!(sa, sb);
        let c = Census::of(&sa);
        assert!(c.players > 0 && c.npcs > 0 && c.projectiles > 0, "{c}");
        assert!((900..1100).contains(&c.total()), "{c}");
    }

    #[test]
    fn the_machine_line_names_the_cpu_generation() {
        let zen4 = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n\
                    model\t\t: 17\nmodel name\t: AMD EPYC\ncache size\t: 1024 KB\n\n\
                    processor\t: 1\ncpu family\t: 99\nmodel\t\t: 99\n";
        assert_eq!(
            describe_machine(zen4, 2),
            "2 cores, AMD EPYC (family 25 model 17, cache size 1024 KB)"
        );
        assert_eq!(
            describe_machine("model name\t: Some CPU\n", 4),
            "4 cores, Some CPU"
        );
        assert_eq!(describe_machine("", 8), "8 cores, CPU not known");
    }

    #[test]
    fn delta_stats_count_what_moved() {
        let mut a = Arena::realistic(300, 1);
        let h = a.history(4);
        let s = DeltaStats::measure(&h[2], &h[3]);
        assert_eq!(s.entities, h[3].entities.len());
        assert!(s.moving > 0 && s.moving <= s.entities);
        assert!(s.bytes > 0);
    }
}
