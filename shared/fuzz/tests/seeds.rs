//! The seed corpus generator, and a check that every fuzz target body accepts
//! every committed seed.
//!
//! Seeds are real messages: the server's own `World` plays a short match
//! (three players fighting at close range, two NPCs wandering, a player
//! leaving and another joining), the client inputs are the ones that drove
//! it, and the snapshots are `shared::snapshot::diff` of its states, encoded
//! by `shared::codec`. The fixed baseline of the `delta` target
//! (`seeds/baseline.bin`) is the full snapshot of that match at tick 20, and
//! most delta seeds are encoded against it, so the fuzzer starts from
//! messages that apply cleanly and mutates its way into the merge logic.
//!
//! Regenerate after a protocol or world change:
//!
//! ```text
//! UPDATE_SEEDS=1 cargo test --manifest-path shared/fuzz/Cargo.toml --test seeds
//! ```
//!
//! Without `UPDATE_SEEDS` the test fails when the committed seeds differ from
//! what the generator produces now.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use glam::IVec2;
use server::game::{EntityKey, World, WorldConfig};
use shared::Tick;
use shared::codec::{
    self, DatagramMac, DatagramMsg, client_bytes, decode_server, encode_snapshot, server_bytes,
};
use shared::protocol::{
    ClientMsg, DatagramId, DisconnectReason, Hello, InputCmd, PROTOCOL_VERSION, RoomRequest,
    ServerMsg, SessionToken, Welcome,
};
use shared::rules::buttons;
use shared::snapshot::{self, WorldState};

/// File name (relative to `seeds/`) to contents.
type Seeds = BTreeMap<String, Vec<u8>>;

/// Tick of the `delta` target's fixed baseline.
const BASELINE_TICK: u32 = 20;
/// Ticks the generated match lasts.
const MATCH_TICKS: u32 = 60;

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds")
}

/// Aim (1/65536 turns clockwise from +x, y down) from `from` towards `to`.
fn aim_at(from: IVec2, to: IVec2) -> u16 {
    let d = (to - from).as_vec2();
    let turns = d.y.atan2(d.x) / std::f32::consts::TAU;
    (turns.rem_euclid(1.0) * 65536.0) as u32 as u16
}

struct Match {
    /// The world's replicated state after every step; index = tick.
    states: Vec<WorldState>,
    /// Every input a client sent, in order.
    inputs: Vec<InputCmd>,
}

/// Plays the short match the delta seeds come from.
fn play() -> Match {
    let mut world = World::new(WorldConfig {
        seed: 7,
        ..WorldConfig::default()
    });
    let mut players: Vec<(EntityKey, u32)> = Vec::new();
    for (name, pos) in [
        ("ana", IVec2::new(4000, 3000)),
        ("bo", IVec2::new(4400, 3000)),
        ("Zoë", IVec2::new(4000, 3400)),
    ] {
        let (key, _) = world.spawn_player(name.into()).expect("ids are free");
        world.set_position(key, pos);
        players.push((key, 0));
    }
    for _ in 0..2 {
        world.spawn_npc().expect("ids are free");
    }

    let mut states = vec![world.snapshot()];
    let mut inputs = Vec::new();
    for t in 1..=MATCH_TICKS {
        if t == 30 {
            // bo leaves.
            let (bo, _) = players.remove(1);
            world.remove(bo);
        }
        if t == 40 {
            let (key, _) = world.spawn_player("dee".into()).expect("ids are free");
            world.set_position(key, IVec2::new(4200, 3600));
            players.push((key, 0));
        }
        let positions: Vec<IVec2> = players
            .iter()
            .map(|(k, _)| world.position(*k).unwrap_or_default())
            .collect();
        for (n, (key, seq)) in players.iter_mut().enumerate() {
            let target = positions[(n + 1) % positions.len()];
            let moves = match (n + t as usize / 10) % 4 {
                0 => buttons::UP,
                1 => buttons::DOWN | buttons::LEFT,
                2 => 0,
                _ => buttons::RIGHT,
            };
            *seq += 1;
            let cmd = InputCmd {
                seq: *seq,
                tick: world.tick(),
                ack: world.tick(),
                buttons: moves | buttons::FIRE,
                aim: aim_at(positions[n], target),
            };
            world.set_input(*key, cmd);
            inputs.push(cmd);
        }
        world.step();
        states.push(world.snapshot());
    }
    Match { states, inputs }
}

fn snapshot_bytes(base: Option<&WorldState>, current: &WorldState, ack: u32) -> Vec<u8> {
    let mut out = Vec::new();
    encode_snapshot(&snapshot::diff(base, current, ack), &mut out);
    out
}

fn hello(protocol: u32, name: &str) -> ClientMsg {
    ClientMsg::Hello(Hello {
        protocol,
        name: name.into(),
        room: RoomRequest::Matchmake,
        auth: None,
        resume: None,
    })
}

fn client_seeds(m: &Match, seeds: &mut Seeds) {
    let mut add = |name: &str, bytes: Vec<u8>| {
        seeds.insert(format!("client_msg/{name}"), bytes);
    };
    for (name, msg) in [
        ("hello_ana", hello(PROTOCOL_VERSION, "ana")),
        ("hello_empty_name", hello(PROTOCOL_VERSION, "")),
        (
            "hello_16_chars",
            hello(PROTOCOL_VERSION, "Sixteen_Chars_Nm"),
        ),
        ("hello_unicode", hello(PROTOCOL_VERSION, "Zoë ☃ 🎮")),
        (
            "hello_control_chars",
            hello(PROTOCOL_VERSION, "a\u{7}\n\tb\u{0}"),
        ),
        (
            "hello_max_budget_name",
            hello(PROTOCOL_VERSION, &"x".repeat(1002)),
        ),
        (
            "hello_over_budget_name",
            hello(PROTOCOL_VERSION, &"x".repeat(1003)),
        ),
        ("hello_old_version", hello(0, "old")),
        (
            "hello_named_room_auth_resume",
            ClientMsg::Hello(Hello {
                protocol: PROTOCOL_VERSION,
                name: "bo".into(),
                room: RoomRequest::Named("duel-7".into()),
                auth: Some(shared::protocol::AuthToken(
                    "alice.1700000000.c0ffee".into(),
                )),
                resume: Some(SessionToken([0x33; 16])),
            }),
        ),
        ("leave", ClientMsg::Leave),
        ("open_datagrams", ClientMsg::OpenDatagrams),
        ("ack_0", ClientMsg::Ack(Tick(0))),
        ("ack_250", ClientMsg::Ack(Tick(250))),
        ("ack_251", ClientMsg::Ack(Tick(251))),
        ("ack_65536", ClientMsg::Ack(Tick(65_536))),
        ("ack_max", ClientMsg::Ack(Tick(u32::MAX))),
        ("ping_0", ClientMsg::Ping(0)),
        ("ping_65535", ClientMsg::Ping(65_535)),
        ("ping_2_32", ClientMsg::Ping(1 << 32)),
        ("ping_max", ClientMsg::Ping(u64::MAX)),
        (
            "input_late_match",
            ClientMsg::Input(InputCmd {
                seq: 70_000,
                tick: Tick(5_000_000),
                ack: Tick(4_999_990),
                buttons: buttons::ALL,
                aim: 65_535,
            }),
        ),
        (
            "input_unknown_buttons",
            ClientMsg::Input(InputCmd {
                seq: 1,
                tick: Tick(1),
                ack: Tick(0),
                buttons: 0xff,
                aim: 0,
            }),
        ),
    ] {
        add(name, client_bytes(&msg));
    }
    // Inputs the match was played with: early, mid, and around the leave.
    for i in [0, 1, 2, 40, 87, 150] {
        let cmd = m.inputs[i];
        add(
            &format!("input_match_{i}"),
            client_bytes(&ClientMsg::Input(cmd)),
        );
    }
    // A hello from a future client: a version this server does not speak,
    // and fields it cannot parse (only `peek_hello_version` reads it).
    let mut future = client_bytes(&hello(77, "n"));
    future.extend_from_slice(&[1, 2, 3]);
    add("hello_future_version", future);
    // Not what an encoder writes, but what the decoder accepts or refuses.
    add("ack_non_minimal_varint", vec![2, 0xfb, 5, 0]);
    let mut trailing = client_bytes(&ClientMsg::Ping(9));
    trailing.push(0);
    add("ping_trailing_byte", trailing);
    let input = client_bytes(&ClientMsg::Input(m.inputs[3]));
    add("input_truncated", input[..input.len() - 1].to_vec());
    add("unknown_variant", vec![9]);
    // Datagrams: an id, then inputs and acks, then the tag of the key the
    // target checks with (PROTOCOL.md section 3.7).
    let id = DatagramId(std::array::from_fn(|i| (i * 29 + 3) as u8));
    let mac = DatagramMac::new(&shared_fuzz::DATAGRAM_KEY);
    let msgs: Vec<DatagramMsg> = (0..4)
        .map(|i| DatagramMsg::Input(m.inputs[i]))
        .chain([DatagramMsg::Ack(Tick(77))])
        .collect();
    for (name, take) in [
        ("datagram_one_input", &msgs[..1]),
        ("datagram_four_inputs", &msgs[..4]),
        ("datagram_five_messages", &msgs[..]),
        ("datagram_ack", &msgs[4..]),
        ("datagram_id_only", &msgs[..0]),
    ] {
        let mut bytes = Vec::new();
        codec::encode_datagram(&id, &mac, take, &mut bytes);
        add(name, bytes);
    }
}

fn delta_seeds(m: &Match, seeds: &mut Seeds) {
    let base = &m.states[BASELINE_TICK as usize];
    seeds.insert("baseline.bin".into(), snapshot_bytes(None, base, 0));
    let mut add = |name: String, bytes: Vec<u8>| {
        seeds.insert(format!("delta/{name}"), bytes);
    };
    // Deltas against the fixed baseline, as a client that acked tick 20 and
    // then fell behind would receive them: projectiles fired and expired,
    // hits, deaths, bo leaving at 30, dee joining at 40.
    for age in [1, 2, 3, 5, 8, 13, 21, 34, 40] {
        let t = BASELINE_TICK + age;
        add(
            format!("delta_vs_baseline_age_{age}"),
            snapshot_bytes(Some(base), &m.states[t as usize], t),
        );
    }
    // Deltas between other real states (applied to the fixed baseline only
    // after the target moves it to their tick).
    for (from, to) in [(1, 2), (29, 30), (39, 40), (44, 47), (10, 60)] {
        add(
            format!("delta_{from}_to_{to}"),
            snapshot_bytes(Some(&m.states[from]), &m.states[to], to as u32),
        );
    }
    for t in [0, 1, BASELINE_TICK as usize, 45, MATCH_TICKS as usize] {
        add(format!("full_t{t}"), snapshot_bytes(None, &m.states[t], 0));
    }
    let truncated = snapshot_bytes(Some(base), &m.states[25], 25);
    add(
        "delta_truncated".into(),
        truncated[..truncated.len() / 2].to_vec(),
    );

    let welcome = ServerMsg::Welcome(Welcome {
        protocol: PROTOCOL_VERSION,
        player_id: 0,
        tick_hz: 30,
        snapshot_hz: 30,
        tick: Tick(0),
        room: "public-1".into(),
        session: SessionToken([0x5a; 16]),
        resumed: false,
        input_seq: 0,
        resume_grace_ms: 10_000,
    });
    add("welcome".into(), server_bytes(&welcome));
    add(
        "pong".into(),
        server_bytes(&ServerMsg::Pong {
            nonce: u64::MAX,
            tick: Tick(MATCH_TICKS),
        }),
    );
    // Every reason; `every()`'s VersionMismatch has client 0, this one 77.
    let mismatch = DisconnectReason::VersionMismatch {
        server: PROTOCOL_VERSION,
        client: 77,
    };
    for reason in std::iter::once(mismatch).chain(DisconnectReason::every().into_iter().skip(1)) {
        add(
            format!("disconnect_{}", reason.label()),
            server_bytes(&ServerMsg::Disconnect(reason)),
        );
    }
}

fn generate() -> Seeds {
    let m = play();
    let mut seeds = Seeds::new();
    client_seeds(&m, &mut seeds);
    delta_seeds(&m, &mut seeds);
    seeds
}

/// Every file under `seeds/` that the generator owns (not `regressions/`).
fn committed() -> Seeds {
    let mut out = Seeds::new();
    let dir = seeds_dir();
    let mut visit = |rel: &str| {
        let path = dir.join(rel);
        if path.is_file() {
            out.insert(rel.to_owned(), std::fs::read(&path).expect("readable"));
        }
    };
    visit("baseline.bin");
    for sub in ["client_msg", "delta"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries {
            let name = entry.expect("readable dir").file_name();
            visit(&format!("{sub}/{}", name.to_string_lossy()));
        }
    }
    out
}

#[test]
fn seeds_are_current() {
    let fresh = generate();
    if std::env::var_os("UPDATE_SEEDS").is_some() {
        for (rel, _) in committed() {
            std::fs::remove_file(seeds_dir().join(rel)).expect("removable");
        }
        for (rel, bytes) in &fresh {
            let path = seeds_dir().join(rel);
            std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
            std::fs::write(path, bytes).expect("writable");
        }
        return;
    }
    let old = committed();
    let stale: Vec<_> = fresh
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(v))
        .map(|(k, _)| k)
        .chain(old.keys().filter(|k| !fresh.contains_key(*k)))
        .collect();
    assert!(
        stale.is_empty(),
        "seeds differ from the generator: {stale:?}; rerun with UPDATE_SEEDS=1"
    );
}

#[test]
fn the_deltas_against_the_baseline_apply_to_the_targets_baseline() {
    let m = play();
    assert_eq!(
        shared_fuzz::baseline(),
        &m.states[BASELINE_TICK as usize],
        "stale seeds/baseline.bin"
    );
    let mut applied = 0;
    for (rel, bytes) in committed() {
        if !rel.starts_with("delta/delta_vs_baseline") {
            continue;
        }
        let Ok(ServerMsg::Snapshot(s)) = decode_server(&bytes) else {
            panic!("{rel} is not a snapshot");
        };
        let out = snapshot::apply(Some(shared_fuzz::baseline()), &s).expect(&rel);
        assert_eq!(snapshot::checksum(&out), s.checksum, "{rel}");
        applied += 1;
    }
    assert!(applied >= 9, "only {applied} deltas against the baseline");
}

/// Runs every target body over every committed seed and every saved crash
/// reproducer (`seeds/regressions/<target>/`).
#[test]
fn every_target_accepts_every_seed() {
    let dir = seeds_dir();
    let mut ran = 0;
    for (target, body) in [
        ("client_msg", shared_fuzz::client_msg as fn(&[u8])),
        ("delta", shared_fuzz::delta),
    ] {
        for sub in [dir.join(target), dir.join("regressions").join(target)] {
            let Ok(entries) = std::fs::read_dir(&sub) else {
                continue;
            };
            for entry in entries {
                let bytes = std::fs::read(entry.expect("readable dir").path()).expect("readable");
                body(&bytes);
                ran += 1;
            }
        }
    }
    assert!(ran > 40, "only {ran} seeds");
}

/// A few thousand structured cases from a fixed pseudo-random stream: a smoke
/// test of the `delta_structured` body that runs on stable in seconds.
#[test]
fn structured_cases_from_a_fixed_stream() {
    use arbitrary::{Arbitrary, Unstructured};
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut bytes = vec![0u8; 2048];
    for _ in 0..3000 {
        for b in &mut bytes {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        let len = (state % 2048) as usize;
        let mut u = Unstructured::new(&bytes[..len]);
        if let Ok(case) = shared_fuzz::DeltaCase::arbitrary(&mut u) {
            shared_fuzz::delta_structured(&case);
        }
    }
}
