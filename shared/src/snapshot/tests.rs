use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::codec;
use crate::protocol::ServerMsg;

fn entity(id: u32, kind: EntityKind, x: i32, y: i32, vx: i32, vy: i32) -> NetEntity {
    NetEntity {
        id,
        kind,
        x,
        y,
        vx,
        vy,
        angle: 0,
        hp: 100,
        vel_age: 0,
    }
}

fn player(id: u32, name: &str, score: u32) -> PlayerInfo {
    PlayerInfo {
        id,
        name: name.into(),
        score,
        deaths: 0,
    }
}

/// Sends a delta through the real codec, as the wire would.
fn over_the_wire(msg: &SnapshotMsg) -> SnapshotMsg {
    let mut bytes = Vec::new();
    codec::encode_snapshot(msg, &mut bytes);
    match codec::decode_server(&bytes) {
        Ok(ServerMsg::Snapshot(s)) => s,
        other => panic!("not a snapshot: {other:?}"),
    }
}

#[test]
fn full_snapshot_rebuilds_the_state() {
    let state = WorldState {
        tick: Tick(5),
        entities: vec![
            entity(0, EntityKind::Player, 10, 20, 1, 1),
            entity(3, EntityKind::Npc, 30, 40, 0, 0),
        ],
        players: Arc::new(vec![player(0, "ana", 1)]),
    };
    let msg = over_the_wire(&diff(None, &state, 4));
    assert!(msg.is_full());
    assert_eq!(msg.input_ack, 4);
    let rebuilt = apply(None, &msg).expect("full snapshot applies");
    assert_eq!(rebuilt, state);
    assert_eq!(checksum(&rebuilt), msg.checksum);
}

#[test]
fn straight_line_movers_cost_nothing() {
    let base = WorldState {
        tick: Tick(10),
        entities: (0..100)
            .map(|i| entity(i, EntityKind::Projectile, 1000, 1000, 96, -5))
            .collect(),
        players: Arc::default(),
    };
    let mut current = base.clone();
    current.tick = Tick(13);
    for e in &mut current.entities {
        e.x += 3 * 96;
        e.y -= 3 * 5;
    }
    let msg = diff(Some(&base), &current, 0);
    assert!(msg.changed.is_empty() && msg.values.is_empty());
    assert_eq!(apply(Some(&base), &msg).expect("applies"), current);
}

#[test]
fn a_turn_costs_a_few_bits_and_consecutive_ids_cost_one() {
    let base = WorldState {
        tick: Tick(1),
        entities: (0..50)
            .map(|i| entity(i, EntityKind::Npc, 500, 500, 19, 0))
            .collect(),
        players: Arc::default(),
    };
    let mut current = base.clone();
    current.tick = Tick(2);
    for e in &mut current.entities {
        // Every NPC turned from +x to +y this tick.
        e.y += 19;
        e.vx = 0;
        e.vy = 19;
    }
    let msg = diff(Some(&base), &current, 0);
    let mut bytes = Vec::new();
    codec::encode_snapshot(&msg, &mut bytes);
    // Per NPC a 5-bit head (mask, gap 0) and the velocity change, 7 bits
    // per axis: 19 bits. At age 1 the new velocity is the last tick's
    // displacement, so the turn leaves no position residual. Plus the
    // section's counts and the fixed header.
    assert!(msg.changed.iter().all(|h| h & FIELD_MASK == fields::VEL));
    assert!(
        bytes.len() <= (50 * 19 + 30) / 8 + 16,
        "{} bytes",
        bytes.len()
    );
    assert_eq!(
        apply(Some(&base), &over_the_wire(&msg)).expect("applies"),
        current
    );
}

/// What a player does most: turn (or stop) once between two acknowledged
/// snapshots. The delta carries the velocity change and when it happened
/// (the turn age `k`), never a position residual, whatever the baseline's
/// age; and the client rebuilds the exact position from them. Whether the
/// state knows the velocity's age (a server's) or not (the diff then fits
/// it).
#[test]
fn a_single_turn_or_stop_costs_no_position_residual_at_any_age() {
    let cases = [1, 2, 3, 5, 10, 30]
        .into_iter()
        .flat_map(|age| (1..=age).map(move |k| (age, k)))
        .flat_map(|(age, k)| [(0, 32), (-23, 23), (0, 0), (-32, 0)].map(|v| (age, k, v)));
    for (age, k, (new_vx, new_vy)) in cases {
        for known in [false, true] {
            let b = entity(4, EntityKind::Player, 4800, 3200, 32, 0);
            let mut c = b;
            c.x += 32 * (age - k) + new_vx * k;
            c.y += new_vy * k;
            (c.vx, c.vy) = (new_vx, new_vy);
            c.vel_age = if known { k as u8 } else { 0 };
            let base = WorldState {
                tick: Tick(100),
                entities: vec![b],
                players: Arc::default(),
            };
            let current = WorldState {
                tick: Tick(100 + age as u32),
                entities: vec![c],
                players: Arc::default(),
            };
            let msg = diff(Some(&base), &current, 0);
            let case = format!("age {age} k {k} to ({new_vx}, {new_vy}), age known {known}");
            assert_eq!(msg.changed, vec![4 << 4 | fields::VEL], "{case}");
            let mut expect = vec![new_vx - 32, new_vy];
            if age > 1 {
                expect.push(k);
            }
            assert_eq!(msg.values, expect, "{case}");
            assert_eq!(
                apply(Some(&base), &over_the_wire(&msg)).expect("applies"),
                current
            );
        }
    }
}

/// A turn the turn age cannot explain alone (two turns, a wall) still
/// rebuilds exactly: the residual covers the rest, and any `k` a decoder
/// reads applies with wrapping arithmetic.
#[test]
fn turn_age_plus_residual_rebuilds_any_motion() {
    let b = entity(1, EntityKind::Npc, 100, 100, 19, 0);
    let base = WorldState {
        tick: Tick(10),
        entities: vec![b],
        players: Arc::default(),
    };
    let mut c = b;
    (c.x, c.y, c.vx, c.vy) = (150, 170, -13, 13);
    let current = WorldState {
        tick: Tick(16),
        entities: vec![c],
        players: Arc::default(),
    };
    let msg = diff(Some(&base), &current, 0);
    assert_eq!(msg.changed, vec![1 << 4 | fields::POS | fields::VEL]);
    assert_eq!(
        apply(Some(&base), &over_the_wire(&msg)).expect("applies"),
        current
    );

    // The same state from a decoder's point of view with another k: the
    // residual is what differs.
    let mut other = msg.clone();
    let k = other.values[4];
    other.values[4] = k + 3;
    other.values[0] -= 3 * (-13 - 19);
    other.values[1] -= 3 * 13;
    assert_eq!(apply(Some(&base), &other).expect("applies"), current);
    other.values[4] = i32::MAX;
    assert!(
        apply(Some(&base), &other).is_ok(),
        "any k applies (wrapping)"
    );
}

/// The velocity's age a server's state knows is the turn age the delta
/// sends, whatever the motion: two turns since the baseline take a
/// residual on top (which the least-squares fit could have made smaller),
/// a wrong or saturated age a bigger one, and every one rebuilds exactly.
#[test]
fn the_velocity_age_is_the_turn_age_sent_and_any_rebuilds_exactly() {
    let b = entity(1, EntityKind::Npc, 1000, 1000, 19, 0);
    let base = WorldState {
        tick: Tick(10),
        entities: vec![b],
        players: Arc::default(),
    };
    // 2 ticks at (19, 0), 3 at (0, 19), the last 3 at (-13, 13).
    let mut c = b;
    (c.x, c.y, c.vx, c.vy) = (1000 + 38 - 39, 1000 + 57 + 39, -13, 13);
    for (vel_age, k) in [(3, 3), (1, 1), (8, 8), (200, 8), (255, 8)] {
        c.vel_age = vel_age;
        let current = WorldState {
            tick: Tick(18),
            entities: vec![c],
            players: Arc::default(),
        };
        let msg = diff(Some(&base), &current, 0);
        assert_eq!(
            msg.changed,
            vec![1 << 4 | fields::POS | fields::VEL],
            "vel_age {vel_age}"
        );
        assert_eq!(msg.values[2..], [-13 - 19, 13, k], "vel_age {vel_age}");
        assert_eq!(
            apply(Some(&base), &over_the_wire(&msg)).expect("applies"),
            current
        );
    }
}

/// A state a client rebuilds has no velocity ages, and equals the server's:
/// equality and hashing see replicated fields only.
#[test]
fn velocity_ages_are_not_part_of_an_entitys_identity() {
    use std::hash::BuildHasher;
    let a = entity(1, EntityKind::Npc, 10, 20, 3, 4);
    let mut b = a;
    b.vel_age = 17;
    assert_eq!(a, b);
    let hasher = std::collections::hash_map::RandomState::new();
    assert_eq!(hasher.hash_one(a), hasher.hash_one(b));
    b.hp -= 1;
    assert_ne!(a, b);
}

/// A kill changes two scoreboard entries every few ticks: they travel as
/// score and death changes, not as whole entries with their names.
#[test]
fn score_changes_travel_without_names() {
    let base = WorldState {
        tick: Tick(1),
        entities: vec![],
        players: Arc::new(vec![
            player(3, "ana", 4),
            player(7, "bo", 0),
            player(300, "cy", 9),
            player(301, "dee", 1),
        ]),
    };
    let mut players = (*base.players).clone();
    players[1].score = 1; // bo killed cy
    players[2].deaths = 1;
    players[3].name = "dee2".into(); // renamed: whole entry
    players[3].score = 2;
    players.push(player(302, "eve", 0)); // new: whole entry
    let current = WorldState {
        tick: Tick(5),
        entities: vec![],
        players: Arc::new(players),
    };
    let msg = diff(Some(&base), &current, 0);
    assert_eq!(
        msg.players_scored,
        vec![
            ScoreDelta {
                gap: 7,
                score: 1,
                deaths: 0
            },
            ScoreDelta {
                gap: 300 - 7 - 1,
                score: 0,
                deaths: 1
            },
        ]
    );
    let ids: Vec<_> = msg.players_upserted.iter().map(|p| p.id).collect();
    assert_eq!(ids, [301, 302]);
    assert!(msg.players_removed.is_empty());
    assert_eq!(
        apply(Some(&base), &over_the_wire(&msg)).expect("applies"),
        current
    );

    // A score that goes down (a server reset) wraps like every delta.
    let mut players = (*base.players).clone();
    players[0].score = 0;
    let reset = WorldState {
        tick: Tick(6),
        entities: vec![],
        players: Arc::new(players),
    };
    let msg = diff(Some(&base), &reset, 0);
    assert_eq!(msg.players_scored[0].score, -4);
    assert_eq!(
        apply(Some(&base), &over_the_wire(&msg)).expect("applies"),
        reset
    );
}

#[test]
fn delta_against_wrong_baseline_is_refused() {
    let base = WorldState {
        tick: Tick(7),
        ..WorldState::default()
    };
    let current = WorldState {
        tick: Tick(9),
        ..WorldState::default()
    };
    let msg = diff(Some(&base), &current, 0);
    let other = WorldState {
        tick: Tick(8),
        ..WorldState::default()
    };
    assert_eq!(
        apply(Some(&other), &msg),
        Err(DeltaError::BaselineMismatch {
            needed: Tick(7),
            have: Some(Tick(8))
        })
    );
    assert!(apply(None, &msg).is_err());
}

#[test]
fn baseline_not_older_than_current_gives_full_snapshot() {
    let state = WorldState {
        tick: Tick(7),
        entities: vec![entity(1, EntityKind::Npc, 1, 1, 0, 0)],
        players: Arc::default(),
    };
    let msg = diff(Some(&state), &state, 0);
    assert!(msg.is_full());
    assert_eq!(msg.created.len(), 1);
}

#[test]
fn kind_change_under_same_id_is_remove_plus_create() {
    let base = WorldState {
        tick: Tick(1),
        entities: vec![entity(4, EntityKind::Npc, 1, 1, 0, 0)],
        players: Arc::default(),
    };
    let current = WorldState {
        tick: Tick(2),
        entities: vec![entity(4, EntityKind::Projectile, 9, 9, 1, 1)],
        players: Arc::default(),
    };
    let msg = diff(Some(&base), &current, 0);
    assert_eq!((msg.removed.len(), msg.created.len()), (1, 1));
    assert_eq!(apply(Some(&base), &msg).expect("applies"), current);
}

#[test]
fn inconsistent_deltas_are_errors() {
    let base = WorldState {
        tick: Tick(1),
        entities: vec![entity(2, EntityKind::Npc, 0, 0, 0, 0)],
        players: Arc::new(vec![player(2, "p", 0)]),
    };
    let good = SnapshotMsg {
        tick: Tick(2),
        base_age: 1,
        ..SnapshotMsg::default()
    };
    assert!(apply(Some(&base), &good).is_ok());

    let mut m = good.clone();
    m.removed = vec![5];
    assert_eq!(apply(Some(&base), &m), Err(DeltaError::UnknownEntity(5)));

    let mut m = good.clone();
    m.changed = vec![2 << 4 | fields::POS];
    m.values = vec![1];
    assert_eq!(apply(Some(&base), &m), Err(DeltaError::ValueCount));

    let mut m = good.clone();
    m.changed = vec![2 << 4 | fields::HP];
    m.values = vec![1, 2];
    assert_eq!(apply(Some(&base), &m), Err(DeltaError::ValueCount));

    let mut m = good.clone();
    m.created = vec![create_record(&base.entities[0], 2)];
    assert_eq!(apply(Some(&base), &m), Err(DeltaError::DuplicateEntity(2)));

    let mut m = good.clone();
    m.removed = vec![MAX_NET_ID + 1];
    assert_eq!(apply(Some(&base), &m), Err(DeltaError::IdOverflow));

    let mut m = good.clone();
    m.players_removed = vec![3];
    assert_eq!(apply(Some(&base), &m), Err(DeltaError::Players));

    let mut m = good.clone();
    m.players_upserted = vec![player(9, "a", 0), player(1, "b", 0)];
    assert_eq!(apply(Some(&base), &m), Err(DeltaError::Players));

    // Score changes must name a baseline entry that stays and is not also
    // sent whole.
    let score = |gap| ScoreDelta {
        gap,
        score: 1,
        deaths: 0,
    };
    let mut m = good.clone();
    m.players_scored = vec![score(2)];
    assert!(apply(Some(&base), &m).is_ok());
    for bad in [vec![score(1)], vec![score(3)], vec![score(2), score(0)]] {
        let mut m = good.clone();
        m.players_scored = bad;
        assert_eq!(apply(Some(&base), &m), Err(DeltaError::Players));
    }
    let mut m = good.clone();
    m.players_scored = vec![score(2)];
    m.players_removed = vec![2];
    assert_eq!(apply(Some(&base), &m), Err(DeltaError::Players));
    let mut m = good.clone();
    m.players_scored = vec![score(2)];
    m.players_upserted = vec![player(2, "p", 5)];
    assert_eq!(apply(Some(&base), &m), Err(DeltaError::Players));
    let mut m = good.clone();
    m.players_scored = vec![score(2), score(u32::MAX)];
    assert_eq!(apply(Some(&base), &m), Err(DeltaError::IdOverflow));

    // At age 1 a velocity change takes two values; from age 2 on, three.
    let mut m = good.clone();
    m.changed = vec![2 << 4 | fields::VEL];
    m.values = vec![1, 1, 1];
    assert_eq!(apply(Some(&base), &m), Err(DeltaError::ValueCount));
    m.values = vec![1, 1];
    assert!(apply(Some(&base), &m).is_ok());
    m.tick = Tick(3);
    m.base_age = 2;
    assert_eq!(apply(Some(&base), &m), Err(DeltaError::ValueCount));
    m.values = vec![1, 1, 1];
    assert!(apply(Some(&base), &m).is_ok());
}

#[test]
fn checksum_sees_every_field() {
    let state = WorldState {
        tick: Tick(1),
        entities: vec![entity(1, EntityKind::Npc, 1, 2, 3, 4)],
        players: Arc::new(vec![player(1, "ab", 0)]),
    };
    let base = checksum(&state);
    let mutations: [fn(&mut WorldState); 10] = [
        |s| s.entities[0].id = 2,
        |s| s.entities[0].kind = EntityKind::Player,
        |s| s.entities[0].x += 1,
        |s| s.entities[0].y += 1,
        |s| s.entities[0].vx += 1,
        |s| s.entities[0].vy += 1,
        |s| s.entities[0].angle += 1,
        |s| s.entities[0].hp += 1,
        |s| Arc::make_mut(&mut s.players)[0].score += 1,
        |s| Arc::make_mut(&mut s.players)[0].name = format!("{}c", s.players[0].name).into(),
    ];
    for mutate in mutations {
        let mut s = state.clone();
        mutate(&mut s);
        assert_ne!(checksum(&s), base, "{s:?}");
    }
    // The tick is carried by the message, not hashed.
    let mut s = state.clone();
    s.tick = Tick(99);
    assert_eq!(checksum(&s), base);
}

fn arb_kind() -> impl Strategy<Value = EntityKind> {
    prop_oneof![
        Just(EntityKind::Player),
        Just(EntityKind::Npc),
        Just(EntityKind::Projectile)
    ]
}

fn arb_entity(id: u32) -> impl Strategy<Value = NetEntity> {
    (
        arb_kind(),
        -20_000..20_000i32,
        -20_000..20_000i32,
        -200..200i32,
        -200..200i32,
        any::<u8>(),
        any::<u8>(),
    )
        .prop_map(move |(kind, x, y, vx, vy, angle, hp)| NetEntity {
            id,
            kind,
            x,
            y,
            vx,
            vy,
            angle,
            hp,
            vel_age: 0,
        })
}

/// A world of up to 60 entities with ids drawn from a small range, so that
/// baseline and current overlap, and a scoreboard likewise.
fn arb_world(tick: u32) -> impl Strategy<Value = WorldState> {
    let ids = proptest::collection::btree_set(0..80u32, 0..60);
    let players = proptest::collection::btree_map(0..20u32, ("[a-z]{0,4}", 0..3u32), 0..8);
    (ids, players)
        .prop_flat_map(|(ids, players)| {
            let entities: Vec<_> = ids.into_iter().map(arb_entity).collect();
            (entities, Just(players))
        })
        .prop_map(move |(entities, players)| WorldState {
            tick: Tick(tick),
            entities,
            players: Arc::new(
                players
                    .into_iter()
                    .map(|(id, (name, score))| player(id, &name, score))
                    .collect(),
            ),
        })
}

/// A current world that mostly evolves from the baseline: some entities move
/// in a straight line, some turn, some vanish, some appear.
fn arb_evolution() -> impl Strategy<Value = (WorldState, WorldState)> {
    (any::<u32>(), 1..12u32).prop_flat_map(|(t, age)| {
        (arb_world(t), arb_world(t.wrapping_add(age)), any::<u64>()).prop_map(
            move |(base, mut fresh, seed)| {
                let mut current = WorldState {
                    tick: Tick(t.wrapping_add(age)),
                    entities: vec![],
                    players: fresh.players.clone(),
                };
                let age = age as i32;
                for (n, b) in base.entities.iter().enumerate() {
                    let roll = seed.rotate_left(n as u32) % 4;
                    let mut e = *b;
                    e.x += e.vx * age;
                    e.y += e.vy * age;
                    match roll {
                        0 => continue,
                        1 => {
                            e.vx = -e.vx;
                            e.angle = e.angle.wrapping_add(77);
                            e.hp = e.hp.wrapping_sub(25);
                        }
                        _ => {}
                    }
                    current.entities.push(e);
                }
                for e in fresh.entities.drain(..) {
                    if current.entities.iter().all(|c| c.id != e.id) {
                        current.entities.push(e);
                    }
                }
                current.entities.sort_by_key(|e| e.id);
                (base, current)
            },
        )
    })
}

proptest! {
    #[test]
    fn apply_of_diff_is_the_target(worlds in arb_evolution()) {
        let (base, current) = worlds;
        let msg = over_the_wire(&diff(Some(&base), &current, 3));
        let rebuilt = apply(Some(&base), &msg).expect("a correct delta applies");
        prop_assert_eq!(checksum(&rebuilt), msg.checksum);
        prop_assert_eq!(rebuilt, current);
    }

    #[test]
    fn apply_of_diff_between_unrelated_worlds_is_the_target(
        base in arb_world(100),
        current in arb_world(103),
    ) {
        let msg = over_the_wire(&diff(Some(&base), &current, 0));
        prop_assert_eq!(apply(Some(&base), &msg).expect("applies"), current.clone());
        let full = over_the_wire(&diff(None, &current, 0));
        prop_assert_eq!(apply(None, &full).expect("applies"), current);
    }

    #[test]
    fn apply_never_panics_on_garbage(
        base in arb_world(10),
        base_age in 0..3u32,
        removed in proptest::collection::vec(0..100u32, 0..6),
        changed in proptest::collection::vec(any::<u32>(), 0..6),
        values in proptest::collection::vec(any::<i32>(), 0..12),
        players_removed in proptest::collection::vec(0..30u32, 0..4),
    ) {
        let msg = SnapshotMsg {
            tick: Tick(10 + base_age),
            base_age,
            removed,
            changed,
            values,
            players_removed,
            ..SnapshotMsg::default()
        };
        let _ = apply(Some(&base), &msg);
    }
}

#[test]
fn apply_into_a_recycled_state_reuses_nothing_stale() {
    // A recycled output whose scoreboard is larger and different, and owned
    // by nobody else: it is rebuilt in place and must end up exact.
    let base = WorldState {
        tick: Tick(1),
        entities: vec![entity(1, EntityKind::Player, 0, 0, 0, 0)],
        players: Arc::new(vec![player(1, "ana", 0), player(4, "bo", 2)]),
    };
    let mut current = base.clone();
    current.tick = Tick(2);
    current.players = Arc::new(vec![player(1, "ana", 1), player(7, "cy", 0)]);
    let mut out = WorldState {
        tick: Tick(99),
        entities: vec![entity(9, EntityKind::Npc, 5, 5, 5, 5); 3],
        players: Arc::new((0..6).map(|i| player(i, "stale-name", 9)).collect()),
    };
    let msg = over_the_wire(&diff(Some(&base), &current, 0));
    apply_into(Some(&base), &msg, &mut out).expect("applies");
    assert_eq!(out, current);
    // Twice more, with shrinking and growing scoreboards.
    let smaller = WorldState {
        tick: Tick(3),
        players: Arc::new(vec![player(7, "cy", 1)]),
        ..current.clone()
    };
    let msg = over_the_wire(&diff(Some(&current), &smaller, 0));
    apply_into(Some(&current), &msg, &mut out).expect("applies");
    assert_eq!(out, smaller);
    let larger = WorldState {
        tick: Tick(4),
        ..base.clone()
    };
    let msg = over_the_wire(&diff(Some(&smaller), &larger, 0));
    apply_into(Some(&smaller), &msg, &mut out).expect("applies");
    assert_eq!(out, larger);
}
