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

use benches::{Arena, Breakdown, Census, DeltaStats, TICK_HZ, all_moving, pairs};
use shared::codec;
use shared::snapshot::{self, WorldState};

/// Ticks recorded per scenario (10 s at 30 Hz).
const TICKS: usize = 300;
const AGES: [usize; 5] = [1, 2, 3, 5, 10];

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
            &all_moving(entities, TICKS, 1.0 / f64::from(TICK_HZ), 7),
        );
        report(
            &format!("All moving, new direction every tick (worst case), {entities}"),
            &all_moving(entities, TICKS, 1.0, 7),
        );
    }
}
