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
//! Arguments: `tick|diff|diff-once|diff-indexed|decode ENTITIES AGE ITERATIONS`, or
//! `time-diff-once ENTITIES AGE ROUNDS` for a quick wall-clock check (it
//! also prints what the diff finds per message), and
//! `time-diff-once-hot ENTITIES AGE ROUNDS`, the same on the first four
//! pairs only, so the states stay in cache and the branch predictor has
//! seen the same four messages before (`time-diff-indexed` and
//! `time-diff-indexed-hot` time `diff_into_indexed`; `time-diff-once`, like the criterion
//! bench, reads for every message two states not read for 60 messages).
//! The set-up
//! (building and warming the arena) is outside the loop; the loop's own cost
//! is what `callgrind_annotate` shows under `profile::run_*`.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use std::sync::Arc;

use benches::{Arena, indices, pairs};
use shared::codec;
use shared::protocol::ServerMsg;
use shared::snapshot::{self, SnapshotMsg, StateIndex, WorldState};

const HISTORY: usize = 64;

#[inline(never)]
fn run_tick(arena: &mut Arena, iterations: usize) {
    for _ in 0..iterations {
        arena.step();
    }
}

/// Which diff a run measures.
#[derive(Clone, Copy, PartialEq)]
enum Diff {
    /// `diff_into`: the checksum computed per message.
    Walk,
    /// `diff_into_with_checksum`: the merge walk, the checksum given.
    ChecksumOnce,
    /// `diff_into_indexed`: what the server runs, the indices given.
    Indexed,
}

/// One message of `mode` for pair `k` (baseline state `k`, current state
/// `k + age` of `history`).
#[inline(always)]
fn diff_one(
    mode: Diff,
    history: &[Arc<WorldState>],
    index: &[StateIndex],
    sums: &[u32],
    age: usize,
    k: usize,
    msg: &mut SnapshotMsg,
) {
    let (base, current) = (&history[k], &history[k + age]);
    match mode {
        Diff::Walk => snapshot::diff_into(Some(base), current, 1, msg),
        Diff::ChecksumOnce => {
            snapshot::diff_into_with_checksum(Some(base), current, sums[k], 1, msg);
        }
        Diff::Indexed => snapshot::diff_into_indexed(
            Some((base, &index[k])),
            (current, &index[k + age]),
            sums[k],
            1,
            msg,
        ),
    }
}

#[inline(never)]
fn run_diff(arena: &mut Arena, age: usize, iterations: usize, mode: Diff) {
    let history = arena.history(HISTORY);
    let index = indices(&history);
    let pairs = HISTORY - age;
    let sums: Vec<u32> = history[age..]
        .iter()
        .map(|c| snapshot::checksum(c))
        .collect();
    let mut msg = SnapshotMsg::default();
    let mut buf = Vec::new();
    for i in 0..iterations {
        diff_one(mode, &history, &index, &sums, age, i % pairs, &mut msg);
        codec::encode_snapshot(&msg, &mut buf);
        black_box(buf.len());
    }
}

/// Times `diff-once` on this machine: the median and the fastest of
/// `rounds` passes over every pair (or, `hot`, as many messages over the
/// first four pairs), in ns per message. A quick A/B check between two
/// builds; criterion gives the figures that are quoted.
fn time_diff(arena: &mut Arena, age: usize, rounds: usize, hot: bool, mode: Diff) {
    let history = arena.history(HISTORY);
    let index = indices(&history);
    let sums: Vec<u32> = history[age..]
        .iter()
        .map(|c| snapshot::checksum(c))
        .collect();
    // Pair k is baseline state `order[k]` and its state `age` later.
    let order: Vec<usize> = (0..HISTORY - age)
        .map(|k| if hot { k % 4 } else { k })
        .collect();
    let mut msg = SnapshotMsg::default();
    let mut buf = Vec::new();
    // What the diff finds, per message: the entities that left dead
    // reckoning (change heads), their values, and the created and removed.
    let (mut heads, mut values, mut created, mut removed) = (0, 0, 0, 0);
    for &k in &order {
        diff_one(mode, &history, &index, &sums, age, k, &mut msg);
        heads += msg.changed.len();
        values += msg.values.len();
        created += msg.created.len();
        removed += msg.removed.len();
    }
    let per_msg = |n: usize| n as f64 / order.len() as f64;
    let mut pass = || {
        let start = Instant::now();
        for &k in &order {
            diff_one(mode, &history, &index, &sums, age, k, &mut msg);
            codec::encode_snapshot(&msg, &mut buf);
            black_box(buf.len());
        }
        start.elapsed().as_nanos() as f64 / order.len() as f64
    };
    pass();
    let mut ns: Vec<f64> = (0..rounds.max(1)).map(|_| pass()).collect();
    ns.sort_by(f64::total_cmp);
    println!(
        "{}{} {} entities, age {age}: median {:.0} ns, fastest {:.0} ns per message; \
         per message {:.0} off dead reckoning, {:.0} values, {:.1} created, {:.1} removed",
        if mode == Diff::Indexed {
            "diff-indexed"
        } else {
            "diff-once"
        },
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
        Some("diff") => run_diff(&mut arena, age, iterations, Diff::Walk),
        Some("diff-once") => run_diff(&mut arena, age, iterations, Diff::ChecksumOnce),
        Some("diff-indexed") => run_diff(&mut arena, age, iterations, Diff::Indexed),
        Some("decode") => run_decode(&mut arena, age, iterations),
        Some("time-diff-once") => {
            time_diff(&mut arena, age, iterations, false, Diff::ChecksumOnce);
        }
        Some("time-diff-once-hot") => {
            time_diff(&mut arena, age, iterations, true, Diff::ChecksumOnce);
        }
        Some("time-diff-indexed") => {
            time_diff(&mut arena, age, iterations, false, Diff::Indexed);
        }
        Some("time-diff-indexed-hot") => {
            time_diff(&mut arena, age, iterations, true, Diff::Indexed);
        }
        _ => {
            eprintln!(
                "usage: profile tick|diff|diff-once|diff-indexed|decode|time-diff-once\
                 |time-diff-once-hot|time-diff-indexed|time-diff-indexed-hot \
                 ENTITIES AGE ITERATIONS"
            );
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
