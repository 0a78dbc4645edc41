//! `tick`: one room tick (inputs + `World::step`) of the arena at 1k, 10k
//! and 50k entities in the realistic mix, collisions included.

use std::time::Duration;

use benches::{Arena, Census};
use criterion::{BenchmarkId, Criterion, Throughput};

fn tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("tick");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for entities in [1_000, 10_000, 50_000] {
        let mut arena = Arena::realistic(entities, 42);
        let census = Census::of(&arena.world.snapshot());
        println!("tick/{entities}: {census}");
        group.throughput(Throughput::Elements(census.total() as u64));
        group.bench_function(BenchmarkId::from_parameter(entities), |b| {
            b.iter(|| arena.step());
        });
        println!(
            "tick/{entities}: after the run {}",
            Census::of(&arena.world.snapshot())
        );
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    tick(&mut c);
    c.final_summary();
}
