//! `decode`: the client side of a snapshot, as the bots and the browser run
//! it: decode the bytes, then apply the delta to the acknowledged baseline.
//! `…_header_only` is what a light bot (`bots --light`) does instead: read
//! the tick, base age and input ack from the header
//! (`codec::peek_snapshot_header`) to acknowledge it.

use std::hint::black_box;
use std::time::Duration;

use benches::{Arena, Census, pairs};
use criterion::{BenchmarkId, Criterion, Throughput};
use shared::codec;
use shared::protocol::ServerMsg;
use shared::snapshot::{self, WorldState};

const HISTORY: usize = 64;
const SIZES: [usize; 3] = [100, 1_000, 5_000];
const AGES: [usize; 2] = [1, 3];

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for entities in SIZES {
        let mut arena = Arena::realistic(entities, 42);
        let history = arena.history(HISTORY);
        println!("decode/{entities}: {}", Census::of(&history[HISTORY - 1]));
        for age in AGES {
            let pairs = pairs(&history, age);
            let encoded: Vec<Vec<u8>> = pairs
                .iter()
                .map(|(b, c)| {
                    let mut buf = Vec::new();
                    codec::encode_snapshot(&snapshot::diff(Some(b), c, 1), &mut buf);
                    buf
                })
                .collect();
            let n = history[HISTORY - 1].entities.len();
            group.throughput(Throughput::Elements(n as u64));
            let mut out = WorldState::default();
            let mut i = 0;
            // What a client does per snapshot: decode, apply, verify.
            group.bench_function(
                BenchmarkId::new(format!("{entities}"), format!("age{age}")),
                |b| {
                    b.iter(|| {
                        let Ok(ServerMsg::Snapshot(msg)) = codec::decode_server(&encoded[i]) else {
                            unreachable!("the bench encoded a snapshot");
                        };
                        if snapshot::apply_into(Some(&pairs[i].0), &msg, &mut out).is_err() {
                            unreachable!("a correct delta applies");
                        }
                        assert_eq!(snapshot::checksum(&out), msg.checksum);
                        black_box(&out);
                        i = (i + 1) % pairs.len();
                    });
                },
            );
            let mut i = 0;
            group.bench_function(
                BenchmarkId::new(format!("{entities}"), format!("age{age}_decode_only")),
                |b| {
                    b.iter(|| {
                        black_box(codec::decode_server(black_box(&encoded[i])).is_ok());
                        i = (i + 1) % pairs.len();
                    });
                },
            );
            let mut i = 0;
            group.bench_function(
                BenchmarkId::new(format!("{entities}"), format!("age{age}_header_only")),
                |b| {
                    b.iter(|| {
                        black_box(codec::peek_snapshot_header(black_box(&encoded[i])));
                        i = (i + 1) % pairs.len();
                    });
                },
            );
        }
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    decode(&mut c);
    c.final_summary();
}
