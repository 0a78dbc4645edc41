//! Runs one hot path in a loop, for `perf record` or
//! `valgrind --tool=callgrind` (whose instruction counts ignore the noise of
//! a shared machine).
//!
//! ```text
//! cargo build --profile bench -p benches --bin profile
//! valgrind --tool=callgrind target/release/profile diff 5000 3 200
//! target/release/profile tick 10000 0 300
//! ```
//!
//! Arguments: `tick|diff|diff-once|decode ENTITIES AGE ITERATIONS`, or
//! `time-diff-once ENTITIES AGE ROUNDS` for a quick wall-clock check (it
//! also prints what the diff finds per message), and
//! `time-diff-once-hot ENTITIES AGE ROUNDS`, the same on the first four
//! pairs only, so the states stay in cache and the branch predictor has
//! seen the same four messages before (`time-diff-once`, like the criterion
//! bench, reads for every message two states not read for 60 messages).
//! `time-split` and `time-split-hot` time the two halves apart: the diff
//! alone, then the encoder alone over the same messages diffed beforehand.
//! The set-up
//! (building and warming the arena) is outside the loop; the loop's own cost
//! is what `callgrind_annotate` shows under `profile::run_*`.

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use benches::{Arena, pairs};
use shared::codec;
use shared::protocol::ServerMsg;
use shared::snapshot::{self, SnapshotMsg, WorldState};

const HISTORY: usize = 64;

#[inline(never)]
fn run_tick(arena: &mut Arena, iterations: usize) {
    for _ in 0..iterations {
        arena.step();
    }
}

#[inline(never)]
fn run_diff(arena: &mut Arena, age: usize, iterations: usize, checksum_once: bool) {
    let history = arena.history(HISTORY);
    let pairs = pairs(&history, age);
    let sums: Vec<u32> = pairs.iter().map(|(_, c)| snapshot::checksum(c)).collect();
    let mut msg = SnapshotMsg::default();
    let mut buf = Vec::new();
    for i in 0..iterations {
        let k = i % pairs.len();
        let (base, current) = &pairs[k];
        if checksum_once {
            snapshot::diff_into_with_checksum(Some(base), current, sums[k], 1, &mut msg);
        } else {
            snapshot::diff_into(Some(base), current, 1, &mut msg);
        }
        codec::encode_snapshot(&msg, &mut buf);
        black_box(buf.len());
    }
}

/// A baseline and a state `age` ticks later.
type Pair = (Arc<WorldState>, Arc<WorldState>);

/// The (baseline, state) pairs `age` ticks apart the timing modes go over,
/// with each state's checksum: every pair of a 64-tick history, or, `hot`,
/// its first four over and over.
fn timed_pairs(arena: &mut Arena, age: usize, hot: bool) -> (Vec<Pair>, Vec<u32>) {
    let history = arena.history(HISTORY);
    let mut pairs = pairs(&history, age);
    if hot {
        pairs = (0..pairs.len()).map(|k| pairs[k % 4].clone()).collect();
    }
    let sums = pairs.iter().map(|(_, c)| snapshot::checksum(c)).collect();
    (pairs, sums)
}

/// Times `diff-once` on this machine: the median and the fastest of
/// `rounds` passes over every pair (or, `hot`, as many messages over the
/// first four pairs), in ns per message. A quick A/B check between two
/// builds; criterion gives the figures that are quoted.
fn time_diff(arena: &mut Arena, age: usize, rounds: usize, hot: bool) {
    let (pairs, sums) = timed_pairs(arena, age, hot);
    let mut msg = SnapshotMsg::default();
    let mut buf = Vec::new();
    // What the diff finds, per message: the entities that left dead
    // reckoning (change heads), their values, and the created and removed.
    let (mut heads, mut values, mut created, mut removed) = (0, 0, 0, 0);
    for ((base, current), &sum) in pairs.iter().zip(&sums) {
        snapshot::diff_into_with_checksum(Some(base), current, sum, 1, &mut msg);
        heads += msg.changed.len();
        values += msg.values.len();
        created += msg.created.len();
        removed += msg.removed.len();
    }
    let per_msg = |n: usize| n as f64 / pairs.len() as f64;
    let mut pass = || {
        let start = Instant::now();
        for ((base, current), &sum) in pairs.iter().zip(&sums) {
            snapshot::diff_into_with_checksum(Some(base), current, sum, 1, &mut msg);
            codec::encode_snapshot(&msg, &mut buf);
            black_box(buf.len());
        }
        start.elapsed().as_nanos() as f64 / pairs.len() as f64
    };
    pass();
    let mut ns: Vec<f64> = (0..rounds.max(1)).map(|_| pass()).collect();
    ns.sort_by(f64::total_cmp);
    println!(
        "diff-once{} {} entities, age {age}: median {:.0} ns, fastest {:.0} ns per message; \
         per message {:.0} off dead reckoning, {:.0} values, {:.1} created, {:.1} removed",
        if hot { " (hot)" } else { "" },
        arena.world.entity_count(),
        ns[ns.len() / 2],
        ns[0],
        per_msg(heads),
        per_msg(values),
        per_msg(created),
        per_msg(removed),
    );
}

/// Times the diff and the encoder apart, over the pairs of `time_diff`:
/// the median of `rounds` passes of each, in ns per message. What the
/// difference between the cold and the hot pairs costs, and where.
fn time_split(arena: &mut Arena, age: usize, rounds: usize, hot: bool) {
    let (pairs, sums) = timed_pairs(arena, age, hot);
    let msgs: Vec<SnapshotMsg> = pairs
        .iter()
        .zip(&sums)
        .map(|((base, current), &sum)| {
            let mut msg = SnapshotMsg::default();
            snapshot::diff_into_with_checksum(Some(base), current, sum, 1, &mut msg);
            msg
        })
        .collect();
    let mut msg = SnapshotMsg::default();
    let mut buf = Vec::new();
    let per_msg = |start: Instant| start.elapsed().as_nanos() as f64 / pairs.len() as f64;
    let (mut diff, mut encode) = (Vec::new(), Vec::new());
    for _ in 0..=rounds.max(1) {
        let start = Instant::now();
        for ((base, current), &sum) in pairs.iter().zip(&sums) {
            snapshot::diff_into_with_checksum(Some(base), current, sum, 1, &mut msg);
            black_box(&msg);
        }
        diff.push(per_msg(start));
        let start = Instant::now();
        for m in &msgs {
            codec::encode_snapshot(m, &mut buf);
            black_box(buf.len());
        }
        encode.push(per_msg(start));
    }
    // The first pass of each warms up.
    let median = |ns: &mut Vec<f64>| {
        ns.remove(0);
        ns.sort_by(f64::total_cmp);
        ns[ns.len() / 2]
    };
    println!(
        "split{} {} entities, age {age}: diff median {:.0} ns, encode median {:.0} ns per message",
        if hot { " (hot)" } else { "" },
        arena.world.entity_count(),
        median(&mut diff),
        median(&mut encode),
    );
}

#[inline(never)]
fn run_decode(arena: &mut Arena, age: usize, iterations: usize) {
    let history = arena.history(HISTORY);
    let pairs = pairs(&history, age);
    let encoded: Vec<Vec<u8>> = pairs
        .iter()
        .map(|(b, c)| {
            let mut buf = Vec::new();
            codec::encode_snapshot(&snapshot::diff(Some(b), c, 1), &mut buf);
            buf
        })
        .collect();
    let mut out = WorldState::default();
    for i in 0..iterations {
        let k = i % pairs.len();
        let Ok(ServerMsg::Snapshot(msg)) = codec::decode_server(&encoded[k]) else {
            unreachable!("the bench encoded a snapshot");
        };
        if snapshot::apply_into(Some(&pairs[k].0), &msg, &mut out).is_err() {
            unreachable!("a correct delta applies");
        }
        black_box(out.entities.len());
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (entities, age, iterations) = (num(1, 5000), num(2, 3), num(3, 200));
    let mut arena = Arena::realistic(entities, 42);
    match args.first().map(String::as_str) {
        Some("tick") => run_tick(&mut arena, iterations),
        Some("diff") => run_diff(&mut arena, age, iterations, false),
        Some("diff-once") => run_diff(&mut arena, age, iterations, true),
        Some("decode") => run_decode(&mut arena, age, iterations),
        Some("time-diff-once") => time_diff(&mut arena, age, iterations, false),
        Some("time-diff-once-hot") => time_diff(&mut arena, age, iterations, true),
        Some("time-split") => time_split(&mut arena, age, iterations, false),
        Some("time-split-hot") => time_split(&mut arena, age, iterations, true),
        _ => {
            eprintln!(
                "usage: profile tick|diff|diff-once|decode|time-diff-once|time-diff-once-hot\
                 |time-split|time-split-hot ENTITIES AGE ITERATIONS"
            );
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
