//! `snapshot`: building the per-tick published state, and one client's
//! diff + encode against a baseline 1, 3 and 10 ticks old, at 100, 1,000 and
//! 5,000 entities in the realistic mix.
//!
//! A counting global allocator proves the per-client path allocates nothing
//! in steady state: the count per client per tick is printed for every case.

use std::hint::black_box;
use std::time::Duration;

use benches::{Arena, Census, CountingAlloc, DeltaStats, pairs};
use criterion::{BenchmarkId, Criterion, Throughput};
use shared::codec::{self, SharedSnapshot};
use shared::snapshot::{self, SnapshotMsg};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Published states kept per arena; every baseline age cycles through them.
const HISTORY: usize = 64;
const SIZES: [usize; 3] = [100, 1_000, 5_000];
const AGES: [usize; 3] = [1, 3, 10];

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot/build");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for entities in SIZES {
        let mut arena = Arena::realistic(entities, 42);
        let n = arena.world.entity_count();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("world_snapshot", entities), |b| {
            b.iter(|| black_box(arena.world.snapshot()));
        });
        let state = arena.world.snapshot();
        group.bench_function(BenchmarkId::new("checksum", entities), |b| {
            b.iter(|| black_box(snapshot::checksum(black_box(&state))));
        });
    }
    group.finish();
}

fn diff_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot/diff_encode");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for entities in SIZES {
        let mut arena = Arena::realistic(entities, 42);
        let history = arena.history(HISTORY);
        println!("snapshot/{entities}: {}", Census::of(&history[HISTORY - 1]));
        for age in AGES {
            let pairs = pairs(&history, age);
            let stats: Vec<_> = pairs
                .iter()
                .map(|(b, c)| DeltaStats::measure(b, c))
                .collect();
            let mean = DeltaStats::mean(&stats);
            // The checksum of each state, as a server computes it once per
            // published tick for all its clients.
            let sums: Vec<u32> = pairs.iter().map(|(_, c)| snapshot::checksum(c)).collect();
            let mut msg = SnapshotMsg::default();
            let mut buf = Vec::new();
            let mut i = 0;
            let mut one = |msg: &mut SnapshotMsg, buf: &mut Vec<u8>, cached: bool| {
                let (base, current) = &pairs[i];
                if cached {
                    snapshot::diff_into_with_checksum(Some(base), current, sums[i], 7, msg);
                } else {
                    snapshot::diff_into(Some(base), current, 7, msg);
                }
                codec::encode_snapshot(msg, buf);
                black_box(buf.len());
                i = (i + 1) % pairs.len();
            };
            // Steady state: warm the reused buffers on every pair, then count.
            for cached in [false, true] {
                for _ in 0..2 * pairs.len() {
                    one(&mut msg, &mut buf, cached);
                }
            }
            let iterations = 10 * pairs.len();
            let before = CountingAlloc::count();
            for cached in [false, true] {
                for _ in 0..iterations {
                    one(&mut msg, &mut buf, cached);
                }
            }
            let iterations = 2 * iterations;
            let allocations = CountingAlloc::count() - before;
            // The server's path since deltas are shared: one encode per
            // baseline per tick, then each client's copy with its own ack.
            let shared: Vec<SharedSnapshot> = pairs
                .iter()
                .zip(&sums)
                .map(|((b, c), &sum)| {
                    let mut msg = SnapshotMsg::default();
                    snapshot::diff_into_with_checksum(Some(b), c, sum, 0, &mut msg);
                    SharedSnapshot::new(&msg)
                })
                .collect();
            let mut k = 0;
            let mut copy = |buf: &mut Vec<u8>| {
                shared[k % shared.len()].write_for(1000 + k as u32, buf);
                black_box(buf.len());
                k += 1;
            };
            for _ in 0..2 * shared.len() {
                copy(&mut buf);
            }
            let copies = 10 * shared.len();
            let before_copies = CountingAlloc::count();
            for _ in 0..copies {
                copy(&mut buf);
            }
            let copy_allocations = CountingAlloc::count() - before_copies;
            println!(
                "snapshot/diff_encode/{entities}/age{age}: moving {:.0}, changed {:.0}, \
                 changed+created+removed {:.0}, {:.1} bytes/msg, \
                 {:.2} bytes/moving entity; allocations per client per tick: {} ({allocations} in {iterations}); \
                 shared-delta copies: {} ({copy_allocations} in {copies})",
                mean.moving,
                mean.changed,
                mean.touched,
                mean.bytes,
                mean.bytes / mean.moving.max(1.0),
                allocations as f64 / iterations as f64,
                copy_allocations as f64 / copies as f64,
            );
            group.throughput(Throughput::Elements(mean.touched.round() as u64));
            group.bench_function(
                BenchmarkId::new(format!("{entities}"), format!("age{age}")),
                |b| b.iter(|| one(&mut msg, &mut buf, false)),
            );
            group.bench_function(
                BenchmarkId::new(format!("{entities}"), format!("age{age}_checksum_once")),
                |b| b.iter(|| one(&mut msg, &mut buf, true)),
            );
            group.bench_function(
                BenchmarkId::new(format!("{entities}"), format!("age{age}_shared_copy")),
                |b| b.iter(|| copy(&mut buf)),
            );
        }
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    build(&mut c);
    diff_encode(&mut c);
    c.final_summary();
}
