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
use shared::snapshot::{self, EntityKind, NetEntity, SnapshotMsg, WorldState, fields};

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

/// Size of a `u32` varint in bytes.
fn varint_len(v: u32) -> usize {
    match v {
        0..=250 => 1,
        251..=65_535 => 3,
        _ => 5,
    }
}

fn zigzag(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

/// What-if of format proposal A, "turn-aware dead reckoning": for an entity
/// whose velocity changed, the server also sends `k`, the number of ticks
/// since the turn (one byte, only when the baseline is more than one tick
/// old), and the position residual against
/// `base.pos + base.vel * (age - k) + new.vel * k`, picking the `k` that
/// makes the residual cheapest (zero for anything that turned once and was
/// not stopped by a wall). The velocity change is decoded first, so the
/// client has everything it needs. Returns the message's size in bytes with
/// that predictor (same layout otherwise).
fn turn_aware_size(base: &WorldState, current: &WorldState, msg: &SnapshotMsg) -> usize {
    let age = msg.base_age as i32;
    let find = |s: &WorldState, id: u32| {
        s.entities
            .binary_search_by_key(&id, |e| e.id)
            .ok()
            .map(|i| s.entities[i])
    };
    let mut out = msg.clone();
    out.changed.clear();
    out.values.clear();
    let (mut id, mut at) = (None::<u32>, 0);
    for &head in &msg.changed {
        let gap = head >> 4;
        let this = id.map_or(gap, |p| p + 1 + gap);
        id = Some(this);
        let mut mask = head & 0xf;
        let mut vals: Vec<i32> = Vec::new();
        let n = [fields::POS, fields::VEL, fields::ANGLE, fields::HP]
            .iter()
            .map(|f| match (mask & f != 0, *f) {
                (false, _) => 0,
                (true, fields::POS | fields::VEL) => 2,
                (true, _) => 1,
            })
            .sum::<usize>();
        let old = &msg.values[at..at + n];
        at += n;
        if let (Some(b), Some(c)) = (find(base, this), find(current, this))
            && mask & fields::VEL != 0
        {
            let residual = |k: i32| {
                (
                    c.x - (b.x + b.vx * (age - k) + c.vx * k),
                    c.y - (b.y + b.vy * (age - k) + c.vy * k),
                )
            };
            let cost = |(rx, ry): (i32, i32)| {
                if rx == 0 && ry == 0 {
                    0
                } else {
                    varint_len(zigzag(rx)) + varint_len(zigzag(ry))
                }
            };
            let k = (1..=age.max(1))
                .min_by_key(|&k| cost(residual(k)))
                .unwrap_or(1);
            let (rx, ry) = residual(k);
            let skip = if mask & fields::POS != 0 { 2 } else { 0 };
            mask &= !fields::POS;
            if age > 1 {
                vals.push(k);
            }
            if rx != 0 || ry != 0 {
                mask |= fields::POS;
                vals.extend([rx, ry]);
            }
            vals.extend_from_slice(&old[skip..]);
        } else {
            vals.extend_from_slice(old);
        }
        out.changed.push((gap << 4) | mask);
        out.values.extend(vals);
    }
    let mut buf = Vec::new();
    codec::encode_snapshot(&out, &mut buf);
    buf.len()
}

/// What-if of format proposal B, "score-only scoreboard updates": an entry
/// whose player was already in the baseline's scoreboard under the same name
/// is sent as `id gap, score change, deaths change` (three varints) instead
/// of `id, name, score, deaths`. Returns the bytes it would save.
fn score_only_saving(base: &WorldState, msg: &SnapshotMsg) -> usize {
    let mut prev = None::<u32>;
    msg.players_upserted
        .iter()
        .filter_map(|p| {
            let old = base
                .players
                .iter()
                .find(|b| b.id == p.id && b.name == p.name)?;
            let full =
                varint_len(p.id) + 1 + p.name.len() + varint_len(p.score) + varint_len(p.deaths);
            let gap = prev.map_or(p.id, |q| p.id - q - 1);
            prev = Some(p.id);
            let compact = varint_len(gap)
                + varint_len(zigzag(p.score as i32 - old.score as i32))
                + varint_len(zigzag(p.deaths as i32 - old.deaths as i32));
            Some(full.saturating_sub(compact))
        })
        .sum()
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
        "| baseline age | bytes/snapshot | moving entities | **bytes/moving entity** | header | removed | created | changes | scoreboard | kbit/s per client at {TICK_HZ} Hz | what-if A: bytes/moving | what-if A+B: bytes/moving |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
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
        let n = pairs.len().max(1) as f64;
        let mut with_a = 0.0;
        let mut saved_b = 0.0;
        for (b, c) in &pairs {
            let msg = snapshot::diff(Some(b), c, 1);
            with_a += turn_aware_size(b, c, &msg) as f64 / n;
            saved_b += score_only_saving(b, &msg) as f64 / n;
        }
        println!(
            "| {age} | {:.0} | {:.0} | **{:.2}** | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.2} | {:.2} |",
            m.bytes,
            m.moving,
            m.bytes / m.moving.max(1.0),
            p.header,
            p.removed,
            p.created,
            p.changed,
            p.scoreboard,
            m.bytes * 8.0 * f64::from(TICK_HZ) / 1000.0,
            with_a / m.moving.max(1.0),
            (with_a - saved_b) / m.moving.max(1.0),
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
