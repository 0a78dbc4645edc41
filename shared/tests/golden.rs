//! Golden vectors for the browser's port of the protocol and the rules.
//!
//! The browser client (`client-demo/web/js/`) reimplements the codec, the
//! delta `apply`, the checksum and `move_player` in JavaScript. This test
//! builds a representative set of messages, deltas and movement steps with
//! the real Rust code and writes them to `client-demo/js-test/golden.json`;
//! the Node tests in `client-demo/js-test/` decode, re-encode, apply and
//! replay every vector and must match byte for byte. So neither side can
//! drift without a red test:
//!
//! * change the Rust side and this test fails until the file is regenerated
//!   (`UPDATE_GOLDEN=1 cargo test -p shared --test golden`), and then the
//!   Node test fails until the JavaScript follows;
//! * change the JavaScript side and the Node test fails.
//!
//! The file holds one vector per line so that a regeneration diffs readably.

use std::path::PathBuf;

use glam::IVec2;
use serde::Serialize;
use serde_json::{Value, json};
use shared::Tick;
use shared::codec::{
    self, MAX_CLIENT_MESSAGE, MAX_SERVER_MESSAGE, client_bytes, decode_client, decode_server,
    server_bytes,
};
use shared::protocol::{
    AuthToken, ClientMsg, DatagramChannel, DatagramId, DatagramKey, DisconnectReason, Hello,
    InputCmd, PROTOCOL_VERSION, RoomRequest, ServerMsg, SessionToken, Welcome,
};
use shared::rules::{self, TickRules, buttons, move_player};
use shared::snapshot::{
    self, DeltaError, EntityCreate, EntityKind, MAX_NET_ID, NetEntity, PlayerInfo, ScoreDelta,
    SnapshotMsg, WorldState, fields,
};

/// Where the vectors live, relative to this crate.
fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../client-demo/js-test/golden.json")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// JavaScript numbers are exact only up to 2^53 - 1; larger integers (the
/// u64 ping nonces) are written as decimal strings so that `JSON.parse`
/// cannot round them. The Node test applies the same rule.
fn js_safe(v: Value) -> Value {
    const MAX_SAFE: u64 = (1 << 53) - 1;
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(u) if u > MAX_SAFE => Value::String(u.to_string()),
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(js_safe).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, js_safe(v))).collect()),
        other => other,
    }
}

/// The serde (externally tagged) JSON form of a value, made JS-safe.
fn serde_value<T: Serialize>(v: &T) -> Value {
    js_safe(serde_json::to_value(v).expect("protocol types serialize to JSON"))
}

fn kind_name(kind: EntityKind) -> Value {
    serde_value(&kind)
}

/// `WorldState` is not `Serialize` (it never goes on the wire as such), so its
/// JSON form is spelled out here; field names follow the Rust struct.
fn state_json(s: &WorldState) -> Value {
    json!({
        "tick": s.tick.0,
        "entities": s.entities.iter().map(|e| json!({
            "id": e.id,
            "kind": kind_name(e.kind),
            "x": e.x,
            "y": e.y,
            "vx": e.vx,
            "vy": e.vy,
            "angle": e.angle,
            "hp": e.hp,
        })).collect::<Vec<_>>(),
        "players": s.players.iter().map(serde_value).collect::<Vec<_>>(),
    })
}

fn rules_json(r: &TickRules) -> Value {
    json!({
        "tick_hz": r.tick_hz,
        "player_step": r.player_step,
        "player_step_diag": r.player_step_diag,
        "npc_step": r.npc_step,
        "projectile_step": r.projectile_step,
        "projectile_ticks": r.projectile_ticks,
        "fire_cooldown_ticks": r.fire_cooldown_ticks,
        "respawn_ticks": r.respawn_ticks,
    })
}

/// The variant name of a delta error, which the JavaScript `DeltaError.kind`
/// must equal.
fn delta_error_name(e: &DeltaError) -> &'static str {
    match e {
        DeltaError::BaselineMismatch { .. } => "BaselineMismatch",
        DeltaError::IdOverflow => "IdOverflow",
        DeltaError::UnknownEntity(_) => "UnknownEntity",
        DeltaError::DuplicateEntity(_) => "DuplicateEntity",
        DeltaError::ValueCount => "ValueCount",
        DeltaError::Players => "Players",
    }
}

/// An entity; `motion` is `[x, y, vx, vy]` in quanta.
fn ent(id: u32, kind: EntityKind, motion: [i32; 4], angle: u8, hp: u8) -> NetEntity {
    let [x, y, vx, vy] = motion;
    NetEntity {
        id,
        kind,
        x,
        y,
        vx,
        vy,
        angle,
        hp,
        vel_age: 0,
    }
}

fn info(id: u32, name: &str, score: u32, deaths: u32) -> PlayerInfo {
    PlayerInfo {
        id,
        name: name.into(),
        score,
        deaths,
    }
}

/// Every reason, with `VersionMismatch` at two widths of its fields.
fn every_disconnect_reason() -> Vec<DisconnectReason> {
    let mismatches = [
        DisconnectReason::VersionMismatch {
            server: PROTOCOL_VERSION,
            client: 7,
        },
        DisconnectReason::VersionMismatch {
            server: 70_000,
            client: u32::MAX,
        },
    ];
    // `every()` starts with its own VersionMismatch; the two above replace it.
    mismatches
        .into_iter()
        .chain(DisconnectReason::every().into_iter().skip(1))
        .collect()
}

fn client_messages() -> Vec<(&'static str, ClientMsg)> {
    let hello = |name: &str, protocol| {
        ClientMsg::Hello(Hello {
            protocol,
            name: name.into(),
            room: RoomRequest::Matchmake,
            auth: None,
            resume: None,
        })
    };
    let input = |seq, tick, ack, buttons, aim| {
        ClientMsg::Input(InputCmd {
            seq,
            tick: Tick(tick),
            ack: Tick(ack),
            buttons,
            aim,
        })
    };
    vec![
        ("hello", hello("ana", PROTOCOL_VERSION)),
        ("hello empty name", hello("", PROTOCOL_VERSION)),
        ("hello future protocol", hello("x", 70_000)),
        ("hello unicode name", hello("Zoë 🦊 名前", PROTOCOL_VERSION)),
        // A leading byte-order mark is part of the name, not a marker.
        ("hello name starting with BOM", hello("\u{feff}bom", 1)),
        ("hello 250 byte name", hello(&"n".repeat(250), 1)),
        ("hello 251 byte name", hello(&"m".repeat(251), 1)),
        (
            "hello named room with auth",
            ClientMsg::Hello(Hello {
                protocol: PROTOCOL_VERSION,
                name: "bo".into(),
                room: RoomRequest::Named("duel-7".into()),
                auth: Some(AuthToken("alice.1700000000.c0ffee".into())),
                resume: None,
            }),
        ),
        (
            "hello resume",
            ClientMsg::Hello(Hello {
                protocol: PROTOCOL_VERSION,
                name: String::new(),
                room: RoomRequest::Named("public-1".into()),
                auth: None,
                resume: Some(SessionToken(std::array::from_fn(|i| (i * 17) as u8))),
            }),
        ),
        ("leave", ClientMsg::Leave),
        ("open datagrams", ClientMsg::OpenDatagrams),
        ("input zero", input(0, 0, 0, 0, 0)),
        (
            "input typical",
            input(1, 1234, 1232, buttons::UP | buttons::FIRE, 40_000),
        ),
        ("input all buttons", input(250, 250, 249, buttons::ALL, 250)),
        (
            "input varint thresholds",
            input(251, 65_535, 65_536, 0xff, 251),
        ),
        (
            "input u32 varint",
            input(65_536, u32::MAX, u32::MAX - 1, 0x80, u16::MAX),
        ),
        ("ack small", ClientMsg::Ack(Tick(5))),
        ("ack 250", ClientMsg::Ack(Tick(250))),
        ("ack 251", ClientMsg::Ack(Tick(251))),
        ("ack max", ClientMsg::Ack(Tick(u32::MAX))),
        ("ping zero", ClientMsg::Ping(0)),
        ("ping 2^32", ClientMsg::Ping(1 << 32)),
        ("ping 2^53-1", ClientMsg::Ping((1 << 53) - 1)),
        ("ping 2^53+1", ClientMsg::Ping((1 << 53) + 1)),
        ("ping max", ClientMsg::Ping(u64::MAX)),
    ]
}

fn server_messages() -> Vec<(String, ServerMsg)> {
    let mut out = vec![
        (
            "welcome".to_string(),
            ServerMsg::Welcome(Welcome {
                protocol: PROTOCOL_VERSION,
                player_id: 3,
                tick_hz: 30,
                snapshot_hz: 30,
                tick: Tick(99),
                room: "public-1".into(),
                session: SessionToken(std::array::from_fn(|i| (255 - i) as u8)),
                resumed: false,
                input_seq: 0,
                resume_grace_ms: 10_000,
            }),
        ),
        (
            "welcome big values".to_string(),
            ServerMsg::Welcome(Welcome {
                protocol: 300,
                player_id: MAX_NET_ID,
                tick_hz: u16::MAX,
                snapshot_hz: 251,
                tick: Tick(u32::MAX),
                room: "Team_Blue-42".into(),
                session: SessionToken([0xff; 16]),
                resumed: true,
                input_seq: u32::MAX,
                resume_grace_ms: u32::MAX,
            }),
        ),
        (
            "pong".to_string(),
            ServerMsg::Pong {
                nonce: 42,
                tick: Tick(7),
            },
        ),
        (
            "pong max".to_string(),
            ServerMsg::Pong {
                nonce: u64::MAX,
                tick: Tick(u32::MAX),
            },
        ),
    ];
    out.push((
        "datagram channel".to_string(),
        ServerMsg::DatagramChannel(DatagramChannel {
            port: 8080,
            id: DatagramId([0xd1, 0x7e, 0x55, 0x01, 0x9a, 0x2b, 0xc4, 0x30]),
            key: DatagramKey(std::array::from_fn(|i| (i * 13 + 7) as u8)),
        }),
    ));
    out.push((
        "datagram channel refused".to_string(),
        ServerMsg::DatagramChannel(DatagramChannel {
            port: 0,
            id: DatagramId([0; 8]),
            key: DatagramKey([0; 16]),
        }),
    ));
    for reason in every_disconnect_reason() {
        out.push((
            format!("disconnect {}", reason.label()),
            ServerMsg::Disconnect(reason),
        ));
    }
    out
}

/// A world with every kind of entity and a scoreboard with multi-byte names.
fn world0() -> WorldState {
    let mut entities = vec![
        ent(0, EntityKind::Player, [4800, 3200, 0, 0], 0, 100),
        ent(1, EntityKind::Player, [64, 64, -23, -23], 160, 75),
        ent(2, EntityKind::Npc, [1000, 2000, 19, 0], 0, 100),
        ent(5, EntityKind::Npc, [9536, 6336, 0, -19], 192, 25),
        ent(6, EntityKind::Projectile, [5000, 3000, 96, 0], 0, 1),
        ent(7, EntityKind::Projectile, [100, 200, -68, 68], 96, 1),
        ent(9, EntityKind::Npc, [300, 300, 0, 0], 64, 0),
    ];
    // Fifteen NPCs that the next tick changes in every combination of field
    // groups (ids 20..=34, so mask m belongs to id 19 + m).
    for m in 1..=15u32 {
        let id = 19 + m;
        entities.push(ent(
            id,
            EntityKind::Npc,
            [2000 + 40 * id as i32, 1000, 19, -19],
            10,
            100,
        ));
    }
    WorldState {
        tick: Tick(1000),
        entities,
        players: vec![
            info(0, "ana", 3, 1),
            info(1, "Zoë 🦊", 0, 2),
            info(4, "gone soon", 1, 0),
        ]
        .into(),
    }
}

/// `world0` one tick later: moves, turns, hits, deaths, a kind change, a
/// removal, creations and every combination of changed field groups.
fn world1() -> WorldState {
    let w0 = world0();
    let mut entities = Vec::new();
    for e in &w0.entities {
        let mut e = *e;
        // Everybody first moves on with their velocity: no residual.
        e.x += e.vx;
        e.y += e.vy;
        match e.id {
            0 => {
                // Started moving right.
                e.x += 32;
                e.vx = 32;
            }
            1 => {
                // Clamped at the corner: residual and velocity change.
                e.x = 64;
                e.y = 64;
                e.vx = 0;
                e.vy = 0;
                e.angle = 250;
            }
            2 => e.hp = 75,
            5 => {
                // Killed: hp to zero, angle wraps backwards.
                e.hp = 0;
                e.angle = 200;
            }
            6 => continue, // the projectile hit something
            7 => {
                // Same id now a player (kind change: remove + create).
                e = ent(7, EntityKind::Player, [2222, 3333, 0, 0], 1, 100);
            }
            9 => {
                // Respawned far away with full hp.
                e.x = 7000;
                e.y = 100;
                e.hp = 100;
            }
            id @ 20..=34 => {
                let mask = id - 19;
                if mask & fields::POS != 0 {
                    e.x -= 5;
                    e.y += 300;
                }
                if mask & fields::VEL != 0 {
                    // Turned during the tick: the move just made was at
                    // the new velocity (a turn age of 1, no residual).
                    let (old_vx, old_vy) = (e.vx, e.vy);
                    e.vx = -e.vx;
                    e.vy = 0;
                    e.x += e.vx - old_vx;
                    e.y += e.vy - old_vy;
                }
                if mask & fields::ANGLE != 0 {
                    e.angle = e.angle.wrapping_sub(20);
                }
                if mask & fields::HP != 0 {
                    e.hp -= 25;
                }
            }
            _ => {}
        }
        entities.push(e);
    }
    entities.push(ent(8, EntityKind::Projectile, [4850, 3200, 96, 0], 0, 1));
    entities.push(ent(40, EntityKind::Player, [1, -1, 0, 0], 255, 100));
    entities.push(ent(41, EntityKind::Projectile, [64, 64, 0, 96], 64, 1));
    entities.sort_by_key(|e| e.id);
    WorldState {
        tick: Tick(1001),
        entities,
        players: vec![
            info(0, "ana", 4, 1),
            info(1, "Zoë 🦊", 0, 2),
            info(2, "newcomer", 0, 0),
            info(7, "名前", 0, 0),
            info(40, "", 0, 0),
        ]
        .into(),
    }
}

/// Extreme values: ids near the top of the id space, positions near the i32
/// limits (dead reckoning wraps), big velocities and residuals.
fn extreme_base() -> WorldState {
    WorldState {
        tick: Tick(u32::MAX - 1),
        entities: vec![
            ent(
                3,
                EntityKind::Npc,
                [i32::MAX - 10, i32::MIN + 10, 100_000, -100_000],
                255,
                255,
            ),
            ent(70_000, EntityKind::Player, [-5, 5, -1, 1], 128, 1),
            ent(
                MAX_NET_ID - 1,
                EntityKind::Projectile,
                [0, 0, i32::MAX, i32::MIN],
                0,
                1,
            ),
            ent(
                MAX_NET_ID,
                EntityKind::Npc,
                [i32::MIN, i32::MAX, 0, 0],
                127,
                200,
            ),
        ],
        players: vec![info(70_000, "big", u32::MAX, u32::MAX - 1)].into(),
    }
}

fn extreme_current() -> WorldState {
    let mut current = extreme_base();
    // Four ticks later, across the u32 wrap of the tick counter.
    current.tick = Tick(2);
    let age = 4i32;
    for e in &mut current.entities {
        e.x = e.x.wrapping_add(e.vx.wrapping_mul(age));
        e.y = e.y.wrapping_add(e.vy.wrapping_mul(age));
    }
    current.entities[0].x = i32::MIN;
    current.entities[0].vx = i32::MIN;
    current.entities[0].hp = 0;
    current.entities[0].angle = 0;
    current.entities[1].y = 1 << 30;
    current.entities[1].angle = 127;
    current.entities[3].x = i32::MAX;
    current.entities[3].angle = 128;
    current.entities[3].hp = 255;
    current
        .entities
        .push(ent(MAX_NET_ID - 2, EntityKind::Npc, [-1, -2, -3, -4], 5, 6));
    current.entities.sort_by_key(|e| e.id);
    current.players = vec![
        info(3, "x", 0, 0),
        info(70_000, "big", u32::MAX, u32::MAX),
        info(MAX_NET_ID, &"long name ".repeat(30), 1 << 20, 70_000),
    ]
    .into();
    current
}

/// Snapshot vectors: (name, baseline, current state). The message is
/// `diff(baseline, current)`, except where noted.
fn snapshot_cases() -> Vec<(&'static str, Option<WorldState>, WorldState, u32)> {
    let w0 = world0();
    let w1 = world1();
    let mut w3 = w0.clone();
    w3.tick = Tick(1003);
    for e in &mut w3.entities {
        e.x += 3 * e.vx;
        e.y += 3 * e.vy;
    }
    w3.entities[2].vx = 0; // one NPC stopped a tick ago: velocity change and turn age
    w3.entities[2].x -= 19;
    w3.entities[1].vy = -w3.entities[1].vy; // one turned, and was pushed: residual too
    w3.entities[1].x += 5;
    // A kill: score and deaths changes, names not resent.
    let players = std::sync::Arc::make_mut(&mut w3.players);
    players[0].score += 2;
    if let Some(last) = players.last_mut() {
        last.deaths += 1;
    }
    let mut w1_same = w1.clone();
    w1_same.tick = Tick(1002);
    for e in &mut w1_same.entities {
        e.x += e.vx;
        e.y += e.vy;
    }
    let empty = WorldState {
        tick: Tick(0),
        ..WorldState::default()
    };
    vec![
        ("full snapshot of the empty world", None, empty, 0),
        ("full snapshot", None, w0.clone(), 0),
        (
            "delta: every change kind and field mask",
            Some(w0.clone()),
            w1.clone(),
            17,
        ),
        ("delta against an older baseline (age 3)", Some(w0), w3, 18),
        (
            "delta with nothing changed but dead reckoning",
            Some(w1.clone()),
            w1_same,
            19,
        ),
        ("full snapshot of the second world", None, w1, 20),
        (
            "full snapshot with extreme values",
            None,
            extreme_current(),
            u32::MAX,
        ),
        (
            "delta with extreme values across tick wrap",
            Some(extreme_base()),
            extreme_current(),
            u32::MAX,
        ),
    ]
}

/// Deltas no `diff` produces but `apply` accepts, with values that only wrap
/// (u8 hp and angle, i32 positions): the browser must wrap the same way.
fn handmade_deltas() -> Vec<(&'static str, WorldState, SnapshotMsg)> {
    let base = WorldState {
        tick: Tick(50),
        entities: vec![
            ent(1, EntityKind::Npc, [i32::MAX, i32::MIN, 7, -7], 200, 200),
            ent(2, EntityKind::Player, [0, 0, 0, 0], 0, 0),
        ],
        players: vec![info(1, "a", 1, 1)].into(),
    };
    let mut msg = SnapshotMsg {
        tick: Tick(52),
        base_age: 2,
        input_ack: 1,
        changed: vec![
            1 << 4 | fields::POS | fields::ANGLE | fields::HP,
            fields::VEL | fields::HP,
        ],
        // Column by column: POS (id 1), VEL (id 2), ANGLE (id 1), HP (ids
        // 1 and 2).
        values: vec![
            i32::MAX,
            i32::MIN,
            i32::MIN,
            i32::MAX,
            i32::MAX, // the turn age: any value applies, wrapping
            1000,
            300,
            -1_000_000,
        ],
        // Score changes wrap too: 1 - 2 and 1 + u32::MAX.
        players_scored: vec![ScoreDelta {
            gap: 1,
            score: -2,
            deaths: -1,
        }],
        ..SnapshotMsg::default()
    };
    msg.checksum = snapshot::checksum(&snapshot::apply(Some(&base), &msg).expect("applies"));
    vec![("handmade delta whose values wrap", base, msg)]
}

/// Deltas that a correct client must refuse: (name, baseline, message).
fn bad_deltas() -> Vec<(&'static str, WorldState, SnapshotMsg)> {
    let base = WorldState {
        tick: Tick(10),
        entities: vec![
            ent(2, EntityKind::Npc, [0, 0, 1, 1], 0, 100),
            ent(4, EntityKind::Npc, [9, 9, 0, 0], 0, 100),
        ],
        players: vec![info(2, "p", 0, 0), info(4, "q", 1, 1)].into(),
    };
    let good = SnapshotMsg {
        tick: Tick(11),
        base_age: 1,
        ..SnapshotMsg::default()
    };
    let create = |gap| EntityCreate {
        gap,
        kind: EntityKind::Npc,
        x: 0,
        y: 0,
        vx: 0,
        vy: 0,
        angle: 0,
        hp: 1,
    };
    let score = |gap| ScoreDelta {
        gap,
        score: 1,
        deaths: 0,
    };
    let with = |f: &dyn Fn(&mut SnapshotMsg)| {
        let mut m = good.clone();
        f(&mut m);
        m
    };
    vec![
        (
            "wrong baseline tick",
            base.clone(),
            with(&|m| m.base_age = 2),
        ),
        (
            "remove unknown id",
            base.clone(),
            with(&|m| m.removed = vec![3]),
        ),
        (
            "remove unknown id after the last",
            base.clone(),
            with(&|m| m.removed = vec![5]),
        ),
        (
            "remove same id twice",
            base.clone(),
            with(&|m| m.removed = vec![2, 0xffff_ffff]),
        ),
        (
            "change unknown id",
            base.clone(),
            with(&|m| {
                m.changed = vec![3 << 4 | fields::HP];
                m.values = vec![1];
            }),
        ),
        (
            "change a removed id",
            base.clone(),
            with(&|m| {
                m.removed = vec![2];
                m.changed = vec![2 << 4 | fields::HP];
                m.values = vec![1];
            }),
        ),
        (
            "change unknown id after the last",
            base.clone(),
            with(&|m| {
                m.changed = vec![9 << 4 | fields::HP];
                m.values = vec![1];
            }),
        ),
        (
            "too few values",
            base.clone(),
            with(&|m| {
                m.changed = vec![2 << 4 | fields::POS];
                m.values = vec![1];
            }),
        ),
        (
            "too many values",
            base.clone(),
            with(&|m| {
                m.changed = vec![2 << 4 | fields::HP];
                m.values = vec![1, 2];
            }),
        ),
        (
            "values without heads",
            base.clone(),
            with(&|m| m.values = vec![1]),
        ),
        (
            "create an existing id",
            base.clone(),
            with(&|m| m.created = vec![create(4)]),
        ),
        (
            "created id above MAX_NET_ID",
            base.clone(),
            with(&|m| {
                m.created = vec![create(MAX_NET_ID + 1)];
            }),
        ),
        (
            "created id gap overflows",
            base.clone(),
            with(&|m| {
                m.created = vec![create(5), create(u32::MAX)];
            }),
        ),
        (
            "removed id above MAX_NET_ID",
            base.clone(),
            with(&|m| m.removed = vec![MAX_NET_ID + 1]),
        ),
        (
            "scoreboard removes unknown id",
            base.clone(),
            with(&|m| m.players_removed = vec![3]),
        ),
        (
            "scoreboard removes unknown id after the last",
            base.clone(),
            with(&|m| {
                m.players_removed = vec![9];
            }),
        ),
        (
            "scoreboard removal not increasing",
            base.clone(),
            with(&|m| {
                m.players_removed = vec![4, 2];
            }),
        ),
        (
            "scoreboard upserts not increasing",
            base.clone(),
            with(&|m| {
                m.players_upserted = vec![info(9, "a", 0, 0), info(1, "b", 0, 0)];
            }),
        ),
        (
            "scoreboard removes and upserts one id",
            base.clone(),
            with(&|m| {
                m.players_removed = vec![2];
                m.players_upserted = vec![info(2, "again", 0, 0)];
            }),
        ),
        (
            "score change of an id not in the baseline",
            base.clone(),
            with(&|m| m.players_scored = vec![score(3)]),
        ),
        (
            "score change after the last baseline entry",
            base.clone(),
            with(&|m| m.players_scored = vec![score(2), score(2)]),
        ),
        (
            "score change of a removed entry",
            base.clone(),
            with(&|m| {
                m.players_removed = vec![2];
                m.players_scored = vec![score(2)];
            }),
        ),
        (
            "score change of an upserted entry",
            base.clone(),
            with(&|m| {
                m.players_upserted = vec![info(4, "q", 5, 1)];
                m.players_scored = vec![score(4)];
            }),
        ),
        (
            "score change id overflows",
            base.clone(),
            with(&|m| m.players_scored = vec![score(2), score(u32::MAX)]),
        ),
        (
            "velocity change without its turn age (age 2)",
            base,
            SnapshotMsg {
                tick: Tick(12),
                base_age: 2,
                changed: vec![2 << 4 | fields::VEL],
                values: vec![1, 1],
                ..SnapshotMsg::default()
            },
        ),
    ]
}

/// Bytes that are not one valid message: (name, bytes). Both decoders must
/// refuse them (checked here for Rust, in Node for the browser).
fn malformed_client() -> Vec<(&'static str, Vec<u8>)> {
    let mut trailing = client_bytes(&ClientMsg::Ping(1));
    trailing.push(0);
    let mut forged_len = vec![0, 1, 0xfd];
    forged_len.extend_from_slice(&u64::MAX.to_le_bytes());
    let mut too_large = vec![0, 1, 0xfb];
    too_large.extend_from_slice(&2000u16.to_le_bytes());
    let mut oversized = client_bytes(&ClientMsg::Hello(Hello {
        protocol: 1,
        name: "o".repeat(MAX_CLIENT_MESSAGE),
        room: RoomRequest::Matchmake,
        auth: None,
        resume: None,
    }));
    oversized.truncate(MAX_CLIENT_MESSAGE + 1);
    vec![
        ("empty", vec![]),
        ("unknown variant", vec![6]),
        (
            "variant index as u64 varint",
            vec![0xfd, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        ("trailing byte", trailing),
        ("truncated input", vec![1, 1, 1, 0]),
        ("truncated u16 varint", vec![2, 0xfb, 1]),
        (
            "u64 varint where u32 expected",
            vec![2, 0xfd, 1, 0, 0, 0, 0, 0, 0, 0],
        ),
        (
            "u32 varint where u16 expected",
            vec![1, 1, 1, 0, 0xfc, 1, 0, 0, 0],
        ),
        ("reserved varint byte", vec![2, 0xff]),
        ("u128 varint byte", vec![3, 0xfe]),
        ("invalid utf-8 in name", vec![0, 1, 2, 0xc3, 0x28]),
        ("utf-8 surrogate in name", vec![0, 1, 3, 0xed, 0xa0, 0x80]),
        ("forged name length", forged_len),
        ("name length over the limit", too_large),
        ("message over the size limit", oversized),
    ]
}

fn malformed_server() -> Vec<(&'static str, Vec<u8>)> {
    let mut trailing = server_bytes(&ServerMsg::Pong {
        nonce: 1,
        tick: Tick(1),
    });
    trailing.push(7);
    let mut forged_vec = vec![1, 1, 0, 0, 0, 0xfd];
    forged_vec.extend_from_slice(&(1u64 << 40).to_le_bytes());
    let full = server_bytes(&ServerMsg::Snapshot(snapshot::diff(None, &world0(), 0)));
    let mut truncated = full.clone();
    truncated.truncate(full.len() - 1);
    let mut bad_name = server_bytes(&ServerMsg::Snapshot(SnapshotMsg {
        players_upserted: vec![info(1, "ab", 0, 0)],
        ..SnapshotMsg::default()
    }));
    let at = bad_name
        .windows(2)
        .position(|w| w == b"ab")
        .expect("name bytes present");
    bad_name[at] = 0xff;
    let mut bad_kind = server_bytes(&ServerMsg::Snapshot(SnapshotMsg {
        created: vec![EntityCreate {
            gap: 0,
            kind: EntityKind::Npc,
            x: 0,
            y: 0,
            vx: 0,
            vy: 0,
            angle: 0,
            hp: 0,
        }],
        ..SnapshotMsg::default()
    }));
    // Header (variant, 4 u32 fields, removed len) = 6 bytes, the entity
    // section's length, then its bits: the created count (1: `10001`), the
    // gap (0: `100`), and the kind in the top two bits of byte 8.
    assert_eq!(bad_kind[8] >> 6, 1, "layout of the bad-kind vector");
    bad_kind[8] |= 0xc0;
    // An entity section and the rest of an empty snapshot's bytes.
    let with_section = |section: &[u8]| {
        let mut b = vec![1, 1, 0, 0, 0, 0, section.len() as u8];
        b.extend_from_slice(section);
        b.extend_from_slice(&[0, 0, 0]);
        b
    };
    // An empty section: three counts of 0, `10000` each.
    let empty = [0b1000_0100, 0b0010_0000];
    assert!(
        decode_server(&with_section(&empty)).is_ok(),
        "empty section"
    );
    // The bad-kind snapshot (before its kind was spoilt), one byte short.
    let mut short_section = bad_kind.clone();
    short_section[8] &= 0x7f;
    short_section[6] -= 1;
    short_section.remove(6 + usize::from(short_section[6]));
    vec![
        ("empty", vec![]),
        ("unknown variant", vec![5]),
        ("unknown disconnect reason", vec![3, 20]),
        ("version mismatch truncated", vec![3, 0, 1]),
        ("trailing byte", trailing),
        ("truncated snapshot", truncated),
        ("forged vector length", forged_vec),
        ("invalid utf-8 in player name", bad_name),
        ("unknown entity kind", bad_kind),
        (
            "u32 varint where u16 expected",
            vec![0, 1, 1, 0xfc, 30, 0, 0, 0, 30, 1],
        ),
        (
            "u64 varint where u32 expected",
            vec![2, 0, 0xfd, 1, 0, 0, 0, 0, 0, 0, 0],
        ),
        ("reserved varint byte in i32", {
            let mut b = server_bytes(&ServerMsg::Snapshot(SnapshotMsg {
                players_scored: vec![ScoreDelta::default()],
                ..SnapshotMsg::default()
            }));
            let deaths = b.len() - 1;
            b[deaths] = 0xff;
            b
        }),
        (
            "entity section: a count that is not there",
            with_section(&[0b1000_1000]),
        ),
        (
            "entity section: trailing byte",
            with_section(&[empty[0], empty[1], 0]),
        ),
        (
            "entity section: nonzero padding",
            with_section(&[empty[0], empty[1] | 1]),
        ),
        (
            "entity section: 40 zeros, an overlong count",
            with_section(&[0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff]),
        ),
        (
            "entity section: a count above u32::MAX",
            // 28 zeros, then ones: the count's x is its next 33 bits,
            // 2^33 - 1, so u = x - 16.
            with_section(&[0, 0, 0, 0x0f, 0xff, 0xff, 0xff, 0xff, 0xf8]),
        ),
        ("entity section: truncated", short_section),
    ]
}

/// Non-canonical encodings bincode accepts: (name, bytes, the message).
fn noncanonical() -> Vec<(&'static str, Vec<u8>, Value)> {
    vec![
        (
            "ack 5 as u16 varint",
            vec![2, 0xfb, 5, 0],
            serde_value(&ClientMsg::Ack(Tick(5))),
        ),
        (
            "ping 1 as u64 varint",
            vec![3, 0xfd, 1, 0, 0, 0, 0, 0, 0, 0],
            serde_value(&ClientMsg::Ping(1)),
        ),
        (
            "variant index as u32 varint",
            vec![0xfc, 2, 0, 0, 0, 9],
            serde_value(&ClientMsg::Ack(Tick(9))),
        ),
    ]
}

/// Every button byte the movement vectors use: all 32 combinations of the
/// defined bits and a few with undefined bits set.
fn button_values() -> Vec<u8> {
    let mut v: Vec<u8> = (0..32).collect();
    v.extend([0x20, 0x2f, 0xf0, 0xff]);
    v
}

fn movement_positions() -> Vec<IVec2> {
    let r = rules::PLAYER_RADIUS;
    let (w, h) = (rules::ARENA_WIDTH, rules::ARENA_HEIGHT);
    vec![
        IVec2::new(w / 2, h / 2),
        IVec2::new(r, r),
        IVec2::new(w - r, h - r),
        IVec2::new(r + 5, h / 3),
        IVec2::new(w - r - 5, 1000),
        IVec2::new(3000, r + 7),
        IVec2::new(3001, h - r - 1),
        IVec2::new(0, 0),
        IVec2::new(-100, 99_999),
        IVec2::new(w + 1, h / 2 + 1),
    ]
}

const TICK_RATES: [u32; 9] = [0, 1, 7, 20, 30, 60, 100, 128, 1000];

/// A deterministic pseudo-random sequence (64-bit LCG), so the replay
/// vectors need no dependency.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as u32
    }
}

/// Builds the whole document, section by section, in a fixed order.
fn golden_document() -> Vec<(&'static str, Value)> {
    let mut doc: Vec<(&'static str, Value)> = Vec::new();
    doc.push((
        "about",
        json!(
            "Golden vectors written by shared/tests/golden.rs \
               (regenerate: UPDATE_GOLDEN=1 cargo test -p shared --test golden); \
               checked by client-demo/js-test/golden.test.mjs. Do not edit by hand."
        ),
    ));
    doc.push((
        "constants",
        json!({
            "PROTOCOL_VERSION": PROTOCOL_VERSION,
            "MAX_CLIENT_MESSAGE": MAX_CLIENT_MESSAGE,
            "MAX_SERVER_MESSAGE": MAX_SERVER_MESSAGE,
            "MAX_NET_ID": MAX_NET_ID,
            "QUANTA_PER_UNIT": rules::QUANTA_PER_UNIT,
            "ARENA_WIDTH": rules::ARENA_WIDTH,
            "ARENA_HEIGHT": rules::ARENA_HEIGHT,
            "PLAYER_RADIUS": rules::PLAYER_RADIUS,
            "PROJECTILE_RADIUS": rules::PROJECTILE_RADIUS,
            "PLAYER_SPEED": rules::PLAYER_SPEED,
            "NPC_SPEED": rules::NPC_SPEED,
            "PROJECTILE_SPEED": rules::PROJECTILE_SPEED,
            "PROJECTILE_LIFETIME_MS": rules::PROJECTILE_LIFETIME_MS,
            "FIRE_COOLDOWN_MS": rules::FIRE_COOLDOWN_MS,
            "RESPAWN_MS": rules::RESPAWN_MS,
            "MAX_HP": rules::MAX_HP,
            "PROJECTILE_DAMAGE": rules::PROJECTILE_DAMAGE,
            "MAX_NAME_CHARS": rules::MAX_NAME_CHARS,
            "SESSION_TOKEN_BYTES": shared::protocol::SESSION_TOKEN_BYTES,
            "MAX_ROOM_NAME_BYTES": shared::protocol::MAX_ROOM_NAME_BYTES,
            "MAX_AUTH_TOKEN_BYTES": shared::protocol::MAX_AUTH_TOKEN_BYTES,
            "BUTTON_UP": buttons::UP,
            "BUTTON_DOWN": buttons::DOWN,
            "BUTTON_LEFT": buttons::LEFT,
            "BUTTON_RIGHT": buttons::RIGHT,
            "BUTTON_FIRE": buttons::FIRE,
            "FIELD_POS": fields::POS,
            "FIELD_VEL": fields::VEL,
            "FIELD_ANGLE": fields::ANGLE,
            "FIELD_HP": fields::HP,
        }),
    ));

    let mut client = Vec::new();
    for (name, msg) in client_messages() {
        let bytes = client_bytes(&msg);
        assert_eq!(decode_client(&bytes).as_ref(), Ok(&msg), "{name}");
        client.push(json!({"name": name, "hex": hex(&bytes), "value": serde_value(&msg)}));
    }
    doc.push(("client_messages", Value::Array(client)));

    let mut server = Vec::new();
    for (name, msg) in server_messages() {
        let bytes = server_bytes(&msg);
        assert_eq!(decode_server(&bytes).as_ref(), Ok(&msg), "{name}");
        server.push(json!({"name": name, "hex": hex(&bytes), "value": serde_value(&msg)}));
    }
    doc.push(("server_messages", Value::Array(server)));

    let mut noncanon = Vec::new();
    for (name, bytes, value) in noncanonical() {
        let decoded = decode_client(&bytes).expect("non-canonical varints decode");
        assert_eq!(serde_value(&decoded), value, "{name}");
        assert_ne!(client_bytes(&decoded), bytes, "{name} is not canonical");
        noncanon.push(json!({"name": name, "hex": hex(&bytes), "value": value}));
    }
    doc.push(("noncanonical_client_messages", Value::Array(noncanon)));

    let reasons = every_disconnect_reason()
        .into_iter()
        .map(|r| {
            json!({
                "value": serde_value(&r),
                "text": r.to_string(),
                "label": r.label(),
                "close_code": r.close_code(),
                "session_kept": r.session_kept(),
            })
        })
        .collect();
    doc.push(("disconnect_reasons", Value::Array(reasons)));

    let mut snaps = Vec::new();
    let mut cases = Vec::new();
    for (name, baseline, current, input_ack) in snapshot_cases() {
        let msg = snapshot::diff(baseline.as_ref(), &current, input_ack);
        let applied = snapshot::apply(baseline.as_ref(), &msg).expect("a correct delta applies");
        assert_eq!(applied, current, "{name}");
        cases.push((name, baseline, msg));
    }
    cases.extend(
        handmade_deltas()
            .into_iter()
            .map(|(n, b, m)| (n, Some(b), m)),
    );
    for (name, baseline, msg) in cases {
        let mut bytes = Vec::new();
        codec::encode_snapshot(&msg, &mut bytes);
        let decoded = match decode_server(&bytes) {
            Ok(ServerMsg::Snapshot(s)) => s,
            other => panic!("{name}: not a snapshot: {other:?}"),
        };
        assert_eq!(decoded, msg, "{name}");
        let applied = snapshot::apply(baseline.as_ref(), &decoded).expect("the delta applies");
        assert_eq!(snapshot::checksum(&applied), msg.checksum, "{name}");
        snaps.push(json!({
            "name": name,
            "baseline": baseline.as_ref().map(state_json),
            "hex": hex(&bytes),
            "value": serde_value(&ServerMsg::Snapshot(msg)),
            "state": state_json(&applied),
            "checksum": snapshot::checksum(&applied),
        }));
    }
    doc.push(("snapshots", Value::Array(snaps)));

    let mut bad = Vec::new();
    for (name, baseline, msg) in bad_deltas() {
        let err = snapshot::apply(Some(&baseline), &msg).expect_err("a bad delta is refused");
        bad.push(json!({
            "name": name,
            "baseline": state_json(&baseline),
            "hex": hex(&server_bytes(&ServerMsg::Snapshot(msg))),
            "error": delta_error_name(&err),
        }));
    }
    doc.push(("bad_deltas", Value::Array(bad)));

    let mut malformed = Vec::new();
    for (name, bytes) in malformed_client() {
        assert!(
            decode_client(&bytes).is_err(),
            "client {name} must be refused"
        );
        malformed.push(json!({"name": name, "side": "client", "hex": hex(&bytes)}));
    }
    for (name, bytes) in malformed_server() {
        assert!(
            decode_server(&bytes).is_err(),
            "server {name} must be refused"
        );
        malformed.push(json!({"name": name, "side": "server", "hex": hex(&bytes)}));
    }
    doc.push(("malformed", Value::Array(malformed)));

    let tick_rules = TICK_RATES
        .iter()
        .map(|&hz| json!({"tick_hz_in": hz, "rules": rules_json(&TickRules::new(hz))}))
        .collect();
    doc.push(("tick_rules", Value::Array(tick_rules)));

    // [tick_hz, x, y, buttons, expected x, expected y]
    let mut movement = Vec::new();
    for hz in TICK_RATES {
        let r = TickRules::new(hz);
        for pos in movement_positions() {
            for b in button_values() {
                let next = move_player(pos, b, &r);
                movement.push(json!([hz, pos.x, pos.y, b, next.x, next.y]));
            }
        }
    }
    doc.push(("movement", Value::Array(movement)));

    // Prediction replays: a start position and a run of inputs, with the
    // position after every step, as the client replays them on reconcile.
    let mut replays = Vec::new();
    for (hz, seed) in [(30u32, 1u64), (60, 2), (20, 3), (128, 4)] {
        let r = TickRules::new(hz);
        let mut lcg = Lcg(seed);
        let mut pos = IVec2::new(
            rules::PLAYER_RADIUS + (lcg.next() % 2000) as i32,
            rules::PLAYER_RADIUS + (lcg.next() % 2000) as i32,
        );
        let start = pos;
        let mut inputs = Vec::new();
        let mut path = Vec::new();
        let mut held = 0u8;
        for _ in 0..300 {
            // Hold buttons for a while, like a person does.
            if lcg.next().is_multiple_of(8) {
                held = (lcg.next() % 32) as u8;
            }
            pos = move_player(pos, held, &r);
            inputs.push(held);
            path.push(json!([pos.x, pos.y]));
        }
        replays.push(json!({
            "tick_hz": hz,
            "start": [start.x, start.y],
            "buttons": inputs,
            "positions": path,
        }));
    }
    doc.push(("replays", Value::Array(replays)));
    doc
}

/// Writes the document with one vector per line: readable diffs, and small
/// enough to review.
fn render(doc: &[(&'static str, Value)]) -> String {
    let mut out = String::from("{\n");
    for (i, (key, value)) in doc.iter().enumerate() {
        out.push_str(&format!("  {}: ", Value::String((*key).into())));
        match value {
            Value::Array(items) => {
                out.push_str("[\n");
                for (j, item) in items.iter().enumerate() {
                    out.push_str("    ");
                    out.push_str(&item.to_string());
                    if j + 1 < items.len() {
                        out.push(',');
                    }
                    out.push('\n');
                }
                out.push_str("  ]");
            }
            other => out.push_str(&other.to_string()),
        }
        if i + 1 < doc.len() {
            out.push(',');
        }
        out.push('\n');
    }
    out.push_str("}\n");
    out
}

#[test]
fn golden_vectors_are_up_to_date() {
    let text = render(&golden_document());
    // The output must itself be valid JSON.
    let _: Value = serde_json::from_str(&text).expect("rendered golden file is JSON");
    let path = golden_path();
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, &text).expect("write golden.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; generate it with UPDATE_GOLDEN=1 cargo test -p shared --test golden",
            path.display()
        )
    });
    assert!(
        committed == text,
        "{} is out of date with the shared crate: regenerate it with \
         UPDATE_GOLDEN=1 cargo test -p shared --test golden, then make the \
         JavaScript in client-demo/web/js pass `npm test` again",
        path.display()
    );
}
