//! Bandwidth of the snapshot format: bytes per snapshot and per moving
//! entity, for the realistic mix and for synthetic worlds where every entity
//! moves, against baselines of several ages. Prints markdown tables.
//!
//! `cargo run --release -p benches --bin bandwidth`
//!
//! "Moving" counts entities present in both states whose position differs
//! (what the issue asks to divide by); every byte of the message, header and
//! scoreboard included, is charged to them.

use std::sync::Arc;

use benches::{Arena, Breakdown, Census, DeltaStats, TICK_HZ, pairs};
use shared::codec;
use shared::rules::{ARENA_HEIGHT, ARENA_WIDTH, TickRules};
use shared::snapshot::{self, EntityKind, NetEntity, WorldState};

/// Ticks recorded per scenario (10 s at 30 Hz).
const TICKS: usize = 300;
const AGES: [usize; 5] = [1, 2, 3, 5, 10];

/// A synthetic world where every entity moves at player speed in one of the
/// eight directions, and turns with probability `turn` per tick (changing
/// its facing too).
fn all_moving(entities: usize, turn: f64, seed: u64) -> Vec<Arc<WorldState>> {
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
            }
        })
        .collect();
    let mut history = Vec::with_capacity(TICKS);
    for t in 0..TICKS {
        for e in &mut world {
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
        }
        history.push(Arc::new(WorldState {
            tick: shared::Tick(t as u32 + 1),
            entities: world.clone(),
            players: Arc::default(),
        }));
    }
    history
}

/// One table row per baseline age.
fn report(name: &str, history: &[Arc<WorldState>]) {
    let census = Census::of(&history[history.len() - 1]);
    let full = {
        let mut buf = Vec::new();
        codec::encode_snapshot(
            &snapshot::diff(None, &history[history.len() - 1], 0),
            &mut buf,
        );
        buf.len()
    };
    println!("\n#### {name}: {census}\n");
    println!(
        "Full snapshot: {full} bytes ({:.1} bytes per entity).\n",
        full as f64 / census.total().max(1) as f64
    );
    println!(
        "| baseline age | bytes/snapshot | moving entities | **bytes/moving entity** | header | removed | created | changes | scoreboard | kbit/s per client at {TICK_HZ} Hz |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for age in AGES {
        let pairs = pairs(history, age);
        let stats: Vec<_> = pairs
            .iter()
            .map(|(b, c)| DeltaStats::measure(b, c))
            .collect();
        let parts: Vec<_> = pairs
            .iter()
            .map(|(b, c)| Breakdown::of(&snapshot::diff(Some(b), c, 1)))
            .collect();
        let (m, p) = (DeltaStats::mean(&stats), Breakdown::mean(&parts));
        println!(
            "| {age} | {:.0} | {:.0} | **{:.2}** | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} |",
            m.bytes,
            m.moving,
            m.bytes / m.moving.max(1.0),
            p.header,
            p.removed,
            p.created,
            p.changed,
            p.scoreboard,
            m.bytes * 8.0 * f64::from(TICK_HZ) / 1000.0,
        );
    }
}

fn main() {
    println!("### Bandwidth (`cargo run --release -p benches --bin bandwidth`)");
    for entities in [100, 1_000, 5_000] {
        let mut arena = Arena::realistic(entities, 42);
        let history = arena.history(TICKS);
        report(&format!("Realistic mix, {entities}"), &history);
    }
    for entities in [1_000, 5_000] {
        report(
            &format!("All moving, turning about once a second, {entities}"),
            &all_moving(entities, 1.0 / f64::from(TICK_HZ), 7),
        );
        report(
            &format!("All moving, new direction every tick (worst case), {entities}"),
            &all_moving(entities, 1.0, 7),
        );
    }
}
