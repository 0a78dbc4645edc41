//! `fanout`: one tick's snapshots for 100, 1,000 and 5,000 clients in
//! process, the way the server sends them: one task per client on a tokio
//! multi-thread runtime with a worker per core, each woken by a `watch` of
//! the newest published state and encoding a delta against its own
//! baseline (ages 1 to 8 ticks, spread evenly over the clients). No sockets.
//!
//! The world is a fixed arena of about 1,000 entities in the realistic mix,
//! so the cost per client is the same at every client count and any growth
//! is the fan-out's own.

use std::sync::atomic::{
    AtomicUsize,
    Ordering::{AcqRel, Release},
};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use benches::{Arena, Census};
use criterion::{BenchmarkId, Criterion, Throughput};
use shared::codec;
use shared::snapshot::{self, SnapshotMsg, WorldState};
use tokio::sync::watch;

const HISTORY: usize = 64;
/// Oldest baseline a client holds, in ticks.
const MAX_AGE: usize = 8;
const CLIENTS: [usize; 3] = [100, 1_000, 5_000];
const ENTITIES: usize = 1_000;

/// What every client task shares: the published states and their checksums.
struct Published {
    states: Vec<Arc<WorldState>>,
    sums: Vec<u32>,
}

/// One client's writer loop: wait for a tick, diff + encode, report done.
async fn client(
    lag: usize,
    checksum_once: bool,
    published: Arc<Published>,
    mut ticks: watch::Receiver<usize>,
    pending: Arc<AtomicUsize>,
    done: mpsc::Sender<()>,
) {
    let mut msg = SnapshotMsg::default();
    let mut buf = Vec::new();
    while ticks.changed().await.is_ok() {
        let t = *ticks.borrow_and_update();
        let (base, current) = (&published.states[t - lag], &published.states[t]);
        if checksum_once {
            snapshot::diff_into_with_checksum(Some(base), current, published.sums[t], 1, &mut msg);
        } else {
            snapshot::diff_into(Some(base), current, 1, &mut msg);
        }
        codec::encode_snapshot(&msg, &mut buf);
        std::hint::black_box(buf.len());
        if pending.fetch_sub(1, AcqRel) == 1 {
            let _ = done.send(());
        }
    }
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
    let published = Arc::new(Published { states, sums });

    let mut group = c.benchmark_group("fanout");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for clients in CLIENTS {
        for checksum_once in [false, true] {
            let (tick_tx, tick_rx) = watch::channel(MAX_AGE);
            let pending = Arc::new(AtomicUsize::new(0));
            let (done_tx, done_rx) = mpsc::channel();
            for i in 0..clients {
                runtime.spawn(client(
                    1 + i % MAX_AGE,
                    checksum_once,
                    Arc::clone(&published),
                    tick_rx.clone(),
                    Arc::clone(&pending),
                    done_tx.clone(),
                ));
            }
            drop(tick_rx);
            let mut t = MAX_AGE;
            let mut one_tick = || {
                t = if t + 1 < HISTORY { t + 1 } else { MAX_AGE };
                pending.store(clients, Release);
                let start = Instant::now();
                tick_tx.send_replace(t);
                if done_rx.recv().is_err() {
                    unreachable!("client tasks outlive the bench");
                }
                start.elapsed()
            };
            // Let every task reach its first await.
            one_tick();
            group.throughput(Throughput::Elements(clients as u64));
            let name = if checksum_once {
                "checksum_once"
            } else {
                "diff_into"
            };
            group.bench_function(BenchmarkId::new(name, clients), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| one_tick()).sum());
            });
            // Dropping the sender ends every client task.
            drop(tick_tx);
        }
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    fanout(&mut c);
    c.final_summary();
}
