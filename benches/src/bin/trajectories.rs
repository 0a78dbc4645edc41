//! Writes the bandwidth bin's worlds, and a room of the default deployment
//! (16 players, 8 NPCs: `room-16.json`), tick by tick as JSON, with what
//! this server's protocol makes of each tick, for the comparisons with
//! Colyseus (`benches/compare`: its schema encoder in `colyseus.mjs`, its
//! server in `e2e/loadtest-colyseus.mjs`; `BENCHMARKS.md` section 9).
//!
//! `cargo run --release -p benches --bin trajectories -- [DIR [TICKS]]`
//! writes one file per scenario to `DIR` (default `target/compare`), each
//! `TICKS` + 1 states long (default 150 + 1: five seconds at 30 Hz; the test
//! command uses a few). For each tick after the first, a file holds the
//! delta this protocol sends a client that acknowledged the tick before
//! (age 1: what a Colyseus patch carries, since Colyseus sends every client
//! every patch in order), its size, the entities that moved, and the median
//! time of this server's diff + encode of it.
//!
//! Format: `{ name, census, tick_hz, states: [{ tick, entities: [id, kind, x,
//! y, vx, vy, angle, hp, id, …], players: [[id, name, score, deaths], …] }],
//! ours: { full_bytes, full_hex, delta_bytes: [..], delta_hex: [..], moving:
//! [..], encode_ns: [..] } }`, with `delta_*[i]`, `moving[i]` and
//! `encode_ns[i]` for `states[i]` → `states[i + 1]`, and `full_hex` the full
//! snapshot of `states[0]`. The `_hex` fields are the messages as sent (a
//! `ServerMsg::Snapshot`), for the browser's decoder to replay.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use benches::{Arena, Census, DeltaStats, TICK_HZ, all_moving};
use serde_json::{Value, json};
use shared::codec;
use shared::snapshot::{self, SnapshotMsg, WorldState};

/// Ticks per scenario unless told (5 s at 30 Hz).
const TICKS: usize = 150;
/// Timed passes over a scenario's ticks, after one untimed pass; per tick
/// the median is kept. As `benches/compare/colyseus.mjs` times Colyseus's
/// encoder (10 passes, the first untimed), so that both sides see each
/// tick once per pass, the other ticks in between, rather than one side
/// the same tick many times in a row (which the branch predictor and the
/// caches learn).
const PASSES: usize = 10;

/// This server's diff + encode of each state against the one before, as
/// the fan-out runs it once per distinct baseline (checksum computed once
/// per state, buffers reused): per tick, the median over [`PASSES`] - 1
/// timed passes, in ns.
fn encode_ns(history: &[Arc<WorldState>]) -> Vec<u64> {
    let checksums: Vec<u32> = history.iter().map(|s| snapshot::checksum(s)).collect();
    let (mut msg, mut buf) = (SnapshotMsg::default(), Vec::new());
    let mut runs = vec![Vec::with_capacity(PASSES); history.len().saturating_sub(1)];
    for pass in 0..PASSES {
        for (i, pair) in history.windows(2).enumerate() {
            let started = Instant::now();
            snapshot::diff_into_with_checksum(
                Some(&pair[0]),
                &pair[1],
                checksums[i + 1],
                1,
                &mut msg,
            );
            buf.clear();
            codec::encode_snapshot(&msg, &mut buf);
            let ns = started.elapsed().as_nanos() as u64;
            if pass > 0 {
                runs[i].push(ns);
            }
        }
    }
    runs.into_iter()
        .map(|mut r| {
            r.sort_unstable();
            r[r.len() / 2]
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn scenario(name: &str, history: &[Arc<WorldState>]) -> Value {
    let census = Census::of(&history[history.len() - 1]);
    let mut full = Vec::new();
    codec::encode_snapshot(&snapshot::diff(None, &history[0], 0), &mut full);
    let (mut msg, mut buf) = (SnapshotMsg::default(), Vec::new());
    let (mut delta_bytes, mut delta_hex) = (Vec::new(), Vec::new());
    let mut moving = Vec::new();
    for pair in history.windows(2) {
        let stats = DeltaStats::measure(&pair[0], &pair[1]);
        delta_bytes.push(stats.bytes);
        moving.push(stats.moving);
        snapshot::diff_into(Some(&pair[0]), &pair[1], 1, &mut msg);
        buf.clear();
        codec::encode_snapshot(&msg, &mut buf);
        assert_eq!(buf.len(), stats.bytes, "the same delta, encoded twice");
        delta_hex.push(hex(&buf));
    }
    let timings = encode_ns(history);
    let states: Vec<Value> = history
        .iter()
        .map(|s| {
            let entities: Vec<i64> = s
                .entities
                .iter()
                .flat_map(|e| {
                    [
                        i64::from(e.id),
                        i64::from(e.kind.index()),
                        i64::from(e.x),
                        i64::from(e.y),
                        i64::from(e.vx),
                        i64::from(e.vy),
                        i64::from(e.angle),
                        i64::from(e.hp),
                    ]
                })
                .collect();
            let players: Vec<Value> = s
                .players
                .iter()
                .map(|p| json!([p.id, &*p.name, p.score, p.deaths]))
                .collect();
            json!({ "tick": s.tick.0, "entities": entities, "players": players })
        })
        .collect();
    json!({
        "name": name,
        "census": census.to_string(),
        "tick_hz": TICK_HZ,
        "states": states,
        "ours": {
            "full_bytes": full.len(),
            "full_hex": hex(&full),
            "delta_bytes": delta_bytes,
            "delta_hex": delta_hex,
            "moving": moving,
            "encode_ns": timings,
        },
    })
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "target/compare".into()));
    let ticks = match args.next() {
        Some(n) => n.parse().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "TICKS: a number")
        })?,
        None => TICKS,
    };
    std::fs::create_dir_all(&dir)?;
    let mut scenarios = Vec::new();
    for entities in [1_000, 5_000] {
        let history = Arena::realistic(entities, 42).history(ticks + 1);
        scenarios.push((
            format!("realistic-{entities}"),
            format!("Realistic mix, {entities}"),
            history,
        ));
    }
    // The default deployment's room: 16 players and the server's 8 NPCs,
    // stepped three seconds as the realistic arenas are.
    let mut room = Arena::new(16, 8, 42);
    room.run(3 * TICK_HZ);
    scenarios.push((
        "room-16".into(),
        "A room of 16 players and 8 NPCs".into(),
        room.history(ticks + 1),
    ));
    scenarios.push((
        "all-moving-1000".into(),
        "All moving, turning about once a second, 1000".into(),
        all_moving(1_000, ticks + 1, 1.0 / f64::from(TICK_HZ), 7),
    ));
    for (file, name, history) in scenarios {
        let path = dir.join(format!("{file}.json"));
        std::fs::write(&path, scenario(&name, &history).to_string())?;
        println!("{}", path.display());
    }
    Ok(())
}
