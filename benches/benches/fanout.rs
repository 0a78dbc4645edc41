//! `fanout`: one tick's snapshots for 100, 1,000 and 5,000 clients in
//! process, on a tokio multi-thread runtime with a worker per core, tasks
//! woken by a `watch` of the newest published state, each client's delta
//! against its own baseline (ages 1 to 8 ticks, spread evenly over the
//! clients). No sockets.
//!
//! Four variants, measured in the same run:
//! * `diff_into`: the server's path until commit 875f6cd, `diff_into` +
//!   `encode_snapshot` per client (the state's checksum recomputed by every
//!   client);
//! * `checksum_once`: the same with the checksum computed once per tick
//!   (`diff_into_with_checksum`);
//! * `shared_deltas`: one diff + encode per distinct baseline per tick
//!   (`SharedSnapshot`), each client copying it with its own input ack: what
//!   the server did until the fan-out shards, one task per client;
//! * `sharded`: the same work, one task per [`server::SHARD_CLIENTS`]
//!   clients, each serving its clients in turn: what the server does now
//!   (`server/src/fanout.rs`).
//!
//! The world is a fixed arena of about 1,000 entities in the realistic mix,
//! so the cost per client is the same at every client count and any growth
//! is the fan-out's own.
//!
//! `fanout/metrics_per_snapshot` is the server's own accounting for one
//! snapshot written to one client, the calls `server/src/fanout.rs` makes:
//! the byte and snapshot counters, and the baseline's age into its histogram,
//! whose lock is taken and released uncontended, as on the server's one
//! worker. The age cycles through 1, 2 and 3, what the load test sees.

use std::hint::black_box;
use std::sync::atomic::{
    AtomicUsize,
    Ordering::{AcqRel, Release},
};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};

use benches::{Arena, Census};
use criterion::{BenchmarkId, Criterion, Throughput};
use shared::codec::{self, SharedSnapshot};
use shared::snapshot::{self, SnapshotMsg, WorldState};
use tokio::sync::watch;

const HISTORY: usize = 64;
/// Oldest baseline a client holds, in ticks.
const MAX_AGE: usize = 8;
const CLIENTS: [usize; 3] = [100, 1_000, 5_000];
const ENTITIES: usize = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    DiffInto,
    ChecksumOnce,
    SharedDeltas,
    Sharded,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Self::DiffInto => "diff_into",
            Self::ChecksumOnce => "checksum_once",
            Self::SharedDeltas => "shared_deltas",
            Self::Sharded => "sharded",
        }
    }
}

/// The published states and their checksums, shared by every client task.
struct History {
    states: Vec<Arc<WorldState>>,
    sums: Vec<u32>,
}

/// One published tick: its index in the history, and the deltas encoded so
/// far for it, by baseline age (for `shared_deltas`).
struct Tick {
    t: usize,
    deltas: [OnceLock<SharedSnapshot>; MAX_AGE + 1],
}

impl Tick {
    fn new(t: usize) -> Arc<Self> {
        Arc::new(Self {
            t,
            deltas: std::array::from_fn(|_| OnceLock::new()),
        })
    }
}

/// A task serving the clients of `lags` (their baseline ages): wait for a
/// tick, encode each one's snapshot, report. One client per task for every
/// variant but `sharded`.
async fn clients(
    lags: Vec<usize>,
    variant: Variant,
    history: Arc<History>,
    mut ticks: watch::Receiver<Arc<Tick>>,
    pending: Arc<AtomicUsize>,
    done: mpsc::Sender<()>,
) {
    let mut msg = SnapshotMsg::default();
    let mut buf = Vec::new();
    while ticks.changed().await.is_ok() {
        let tick = Arc::clone(&ticks.borrow_and_update());
        for &lag in &lags {
            encode(variant, &history, &tick, lag, &mut msg, &mut buf);
        }
        if pending.fetch_sub(lags.len(), AcqRel) == lags.len() {
            let _ = done.send(());
        }
    }
}

/// One client's snapshot of `tick`, against a baseline `lag` ticks old.
fn encode(
    variant: Variant,
    history: &History,
    tick: &Tick,
    lag: usize,
    msg: &mut SnapshotMsg,
    buf: &mut Vec<u8>,
) {
    let input_ack = 1000 + lag as u32;
    let t = tick.t;
    let (base, current) = (&history.states[t - lag], &history.states[t]);
    match variant {
        Variant::DiffInto => {
            snapshot::diff_into(Some(base), current, input_ack, msg);
            codec::encode_snapshot(msg, buf);
        }
        Variant::ChecksumOnce => {
            let sum = history.sums[t];
            snapshot::diff_into_with_checksum(Some(base), current, sum, input_ack, msg);
            codec::encode_snapshot(msg, buf);
        }
        Variant::SharedDeltas | Variant::Sharded => {
            let shared = tick.deltas[lag].get_or_init(|| {
                let sum = history.sums[t];
                let mut msg = SnapshotMsg::default();
                snapshot::diff_into_with_checksum(Some(base), current, sum, 0, &mut msg);
                SharedSnapshot::new(&msg)
            });
            shared.write_for(input_ack, buf);
        }
    }
    black_box(buf.len());
}

fn fanout(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    };
    let mut arena = Arena::realistic(ENTITIES, 42);
    let states = arena.history(HISTORY);
    println!(
        "fanout: {} on {cores} worker threads",
        Census::of(&states[HISTORY - 1])
    );
    let sums = states.iter().map(|s| snapshot::checksum(s)).collect();
    let history = Arc::new(History { states, sums });

    let mut group = c.benchmark_group("fanout");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for clients in CLIENTS {
        for variant in [
            Variant::DiffInto,
            Variant::ChecksumOnce,
            Variant::SharedDeltas,
            Variant::Sharded,
        ] {
            let (tick_tx, tick_rx) = watch::channel(Tick::new(MAX_AGE));
            let pending = Arc::new(AtomicUsize::new(0));
            let (done_tx, done_rx) = mpsc::channel();
            let lags: Vec<usize> = (0..clients).map(|i| 1 + i % MAX_AGE).collect();
            let per_task = if variant == Variant::Sharded {
                server::SHARD_CLIENTS
            } else {
                1
            };
            for lags in lags.chunks(per_task) {
                runtime.spawn(self::clients(
                    lags.to_vec(),
                    variant,
                    Arc::clone(&history),
                    tick_rx.clone(),
                    Arc::clone(&pending),
                    done_tx.clone(),
                ));
            }
            drop(tick_rx);
            let mut t = MAX_AGE;
            let mut one_tick = || {
                t = if t + 1 < HISTORY { t + 1 } else { MAX_AGE };
                let tick = Tick::new(t);
                pending.store(clients, Release);
                let start = Instant::now();
                tick_tx.send_replace(tick);
                if done_rx.recv().is_err() {
                    unreachable!("client tasks outlive the bench");
                }
                start.elapsed()
            };
            // Let every task reach its first await.
            one_tick();
            group.throughput(Throughput::Elements(clients as u64));
            group.bench_function(BenchmarkId::new(variant.name(), clients), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| one_tick()).sum());
            });
            // Dropping the sender ends every client task.
            drop(tick_tx);
        }
    }
    group.finish();
}

fn metrics(c: &mut Criterion) {
    let metrics = server::metrics::Metrics::new();
    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(1));
    let mut age = 0;
    group.bench_function("metrics_per_snapshot", |b| {
        b.iter(|| {
            age = age % 3 + 1;
            metrics.snapshot_written(black_box(580), black_box(0));
            metrics.observe_baseline_age(black_box(age), black_box(age as u64));
        });
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    fanout(&mut c);
    metrics(&mut c);
    c.final_summary();
}
