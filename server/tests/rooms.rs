//! Rooms, matchmaking and session resume, over real sockets on loopback.

mod common;

use std::time::Duration;

use common::{Client, Replica, STEP, TestServer, play_for};
use fastwebsockets::{Frame, Payload};
use glam::IVec2;
use server::{Config, RoomSpec};
use shared::Tick;
use shared::protocol::{ClientMsg, DisconnectReason, Hello, InputCmd, RoomRequest};
use shared::rules::{self, TickRules, buttons};
use shared::snapshot::EntityKind;
use tokio::time::{Instant, sleep};

fn ids(replica: &Replica) -> Vec<u32> {
    replica.latest().players.iter().map(|p| p.id).collect()
}

/// Waits (up to `within`) until `GET /rooms` shows `seats` taken in `room`
/// (a room no longer listed has none), polling every 10 ms.
async fn wait_for_seats(server: &TestServer, room: &str, seats: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let rooms = server.json("/rooms").await;
        let taken = rooms["rooms"]
            .as_array()
            .expect("list")
            .iter()
            .find(|r| r["id"] == room)
            .map_or(Some(0), |r| r["seats_taken"].as_u64());
        if taken == Some(seats) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{room} still has {taken:?} seats taken, not {seats}, after {within:?}: {rooms}"
        );
        sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_rooms_are_isolated_from_each_other() {
    let server = TestServer::start(Config {
        npcs: 2,
        ..Config::default()
    })
    .await;
    let (mut a, wa) = Client::join_room(server.addr, "ana", "alpha").await;
    let (mut b, wb) = Client::join_room(server.addr, "bo", "alpha").await;
    let (mut c, wc) = Client::join_room(server.addr, "cy", "beta").await;
    assert_eq!((wa.room.as_str(), wb.room.as_str()), ("alpha", "alpha"));
    assert_eq!(wc.room, "beta");

    let (mut ra, mut rb, mut rc) = (Replica::default(), Replica::default(), Replica::default());
    let window = Duration::from_millis(600);
    let (na, nb, nc) = tokio::join!(
        play_for(&mut a, &mut ra, window),
        play_for(&mut b, &mut rb, window),
        play_for(&mut c, &mut rc, window),
    );
    assert!(
        na > 5 && nb > 5 && nc > 5,
        "each room ticks: {na} {nb} {nc}"
    );
    let (mut alpha, mut beta) = (ids(&ra), ids(&rc));
    alpha.sort_unstable();
    beta.sort_unstable();
    let mut both = vec![wa.player_id, wb.player_id];
    both.sort_unstable();
    assert_eq!(alpha, both, "alpha sees its two players");
    assert_eq!(ids(&rb).len(), 2);
    assert_eq!(beta, vec![wc.player_id], "beta sees only its own player");
    // Each room has its own world: 2 NPCs + its players, no one else's.
    let bodies = |r: &Replica| {
        r.latest()
            .entities
            .iter()
            .filter(|e| e.kind != EntityKind::Projectile)
            .count()
    };
    assert_eq!(bodies(&ra), 4);
    assert_eq!(bodies(&rc), 3);

    let rooms = server.json("/rooms").await;
    let rooms = rooms["rooms"].as_array().expect("room list");
    let find = |id: &str| rooms.iter().find(|r| r["id"] == id).expect("listed");
    assert_eq!(find("alpha")["players"], 2);
    assert_eq!(find("beta")["players"], 1);
    assert_eq!(find("alpha")["public"], false);
    assert_eq!(find("alpha")["capacity"], 16);
    assert_eq!(find("alpha")["tick_hz"], 30);
    assert!(find("beta")["uptime_secs"].as_f64() > Some(0.0));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matchmaking_fills_a_room_to_capacity_then_opens_the_next() {
    let server = TestServer::start(Config {
        room_capacity: 3,
        npcs: 0,
        ..Config::default()
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..4 {
        clients.push(Client::join(server.addr, &format!("p{i}")).await);
    }
    let rooms: Vec<&str> = clients.iter().map(|(_, w)| w.room.as_str()).collect();
    assert_eq!(rooms, ["public-1", "public-1", "public-1", "public-2"]);

    // A named room refuses the player beyond its capacity.
    let mut named = Vec::new();
    for i in 0..3 {
        named.push(Client::join_room(server.addr, &format!("n{i}"), "squad").await);
    }
    let refused = Client::hello(
        server.addr,
        Hello {
            room: RoomRequest::Named("squad".into()),
            ..Hello::new("late")
        },
    )
    .await
    .err();
    assert_eq!(refused, Some((Some(DisconnectReason::RoomFull), 1013)));
    let refused = Client::hello(
        server.addr,
        Hello {
            room: RoomRequest::Named("no spaces!".into()),
            ..Hello::new("x")
        },
    )
    .await
    .err();
    assert_eq!(
        refused,
        Some((Some(DisconnectReason::InvalidRoomName), 1008))
    );

    // A deliberate leave frees the seat at once, and matchmaking refills
    // the fullest room with space first.
    let (mut leaver, _) = clients.remove(0);
    leaver.send(&ClientMsg::Leave).await;
    assert_eq!(
        leaver.expect_close().await,
        (Some(DisconnectReason::Left), 1000)
    );
    wait_for_seats(&server, "public-1", 2, STEP).await;
    let (_c, w) = Client::join(server.addr, "refill").await;
    assert_eq!(w.room, "public-1");
    let status = server.status().await;
    assert_eq!(status["totals"]["rooms_created"], 3);
    server.stop().await;
}

/// An input that moves the player; varied so a lost or repeated input
/// changes where the player ends up.
fn input(seq: u32) -> InputCmd {
    const PATTERN: [u8; 5] = [
        buttons::RIGHT,
        buttons::RIGHT | buttons::DOWN,
        buttons::DOWN,
        buttons::LEFT | buttons::UP,
        buttons::UP,
    ];
    InputCmd {
        seq,
        tick: Tick(0),
        ack: Tick(0),
        buttons: PATTERN[seq as usize % PATTERN.len()],
        aim: 0,
    }
}

/// Sends input `seq`, then applies and acknowledges one snapshot: about one
/// input per tick, as a real client paces them.
async fn step(c: &mut Client, replica: &mut Replica, seq: u32) -> u32 {
    c.send(&ClientMsg::Input(input(seq))).await;
    let snap = c.next_snapshot().await;
    let tick = replica.apply(&snap);
    c.send(&ClientMsg::Ack(tick)).await;
    snap.input_ack
}

fn position(replica: &Replica, id: u32) -> IVec2 {
    replica
        .latest()
        .entities
        .iter()
        .find(|e| e.id == id)
        .map(|e| IVec2::new(e.x, e.y))
        .expect("own entity")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_within_grace_keeps_the_entity_and_applies_every_input_once() {
    let server = TestServer::start(Config {
        npcs: 0,
        ..Config::default()
    })
    .await;
    let (mut c, welcome) = Client::join(server.addr, "runner").await;
    let rules = TickRules::new(u32::from(welcome.tick_hz));
    let mut replica = Replica::default();
    let first = c.next_snapshot().await;
    c.send(&ClientMsg::Ack(replica.apply(&first))).await;
    let start = position(&replica, welcome.player_id);

    // Play 30 inputs, then send 6 more without waiting, and kill the
    // connection with those in flight.
    let mut acked = 0;
    for seq in 1..=30 {
        acked = step(&mut c, &mut replica, seq).await;
    }
    for seq in 31..=36 {
        c.send(&ClientMsg::Input(input(seq))).await;
    }
    c.kill();

    let (mut c, resumed) = Client::resume(server.addr, &welcome)
        .await
        .expect("resume within grace");
    assert!(resumed.resumed);
    assert_eq!(resumed.player_id, welcome.player_id, "same entity");
    assert_eq!(resumed.room, welcome.room);
    assert_eq!(resumed.session, welcome.session);
    assert!(
        (acked..=36).contains(&resumed.input_seq),
        "the server received at least every input it acknowledged ({acked}): {}",
        resumed.input_seq
    );
    // Resend what the server did not receive, and one it did (a client
    // cannot always know): each applies once.
    for seq in resumed.input_seq..=36 {
        c.send(&ClientMsg::Input(input(seq))).await;
    }
    // The first snapshot continues from the baseline acked before the drop.
    let caught_up = c.next_snapshot().await;
    assert!(!caught_up.is_full(), "caught up with a delta");
    c.send(&ClientMsg::Ack(replica.apply(&caught_up))).await;
    for seq in 37..=50 {
        step(&mut c, &mut replica, seq).await;
    }
    let deadline = Instant::now() + STEP;
    loop {
        let snap = c.next_snapshot().await;
        c.send(&ClientMsg::Ack(replica.apply(&snap))).await;
        if snap.input_ack == 50 {
            break;
        }
        assert!(Instant::now() < deadline, "input 50 never acknowledged");
    }
    assert_eq!(replica.desyncs, 0);
    let expected = (1..=50).fold(start, |pos, seq| {
        rules::move_player(pos, input(seq).buttons, &rules)
    });
    assert_eq!(
        position(&replica, welcome.player_id),
        expected,
        "every input applied exactly once, in order"
    );
    assert_eq!(server.metric("arena_inputs_applied_total").await, 50.0);
    assert_eq!(server.metric("arena_resumes_total").await, 1.0);
    assert_eq!(server.metric("arena_joins_total").await, 1.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_after_grace_or_for_another_room_is_refused_with_a_reason() {
    let server = TestServer::start(Config {
        npcs: 0,
        resume_grace: Duration::from_millis(500),
        ..Config::default()
    })
    .await;
    let (mut watcher, _) = Client::join_room(server.addr, "watcher", "arena-1").await;
    let (c, welcome) = Client::join_room(server.addr, "gone", "arena-1").await;
    let (_other, _) = Client::join_room(server.addr, "other", "arena-2").await;

    // Another room's name with this token.
    let wrong = Client::hello(
        server.addr,
        Hello {
            room: RoomRequest::Named("arena-2".into()),
            resume: Some(welcome.session),
            ..Hello::new("")
        },
    )
    .await
    .err();
    assert_eq!(
        wrong,
        Some((Some(DisconnectReason::SessionWrongRoom), 1008))
    );
    // A forged token carrying the room's serial (its first four bytes)
    // learns nothing of the room's name: the same answer for the right
    // name, another room's and one that is nobody's.
    let mut forged = welcome.session;
    forged.0[8] ^= 1;
    for name in ["arena-1", "arena-2", "guess"] {
        let answer = Client::hello(
            server.addr,
            Hello {
                room: RoomRequest::Named(name.into()),
                resume: Some(forged),
                ..Hello::new("")
            },
        )
        .await
        .err();
        assert_eq!(
            answer,
            Some((Some(DisconnectReason::SessionExpired), 1008)),
            "{name}"
        );
    }

    c.kill();
    // The entity waits out the grace period, then goes.
    let mut replica = Replica::default();
    play_for(&mut watcher, &mut replica, Duration::from_millis(200)).await;
    assert!(
        ids(&replica).contains(&welcome.player_id),
        "parked, not gone"
    );
    play_for(&mut watcher, &mut replica, Duration::from_millis(900)).await;
    assert!(
        !ids(&replica).contains(&welcome.player_id),
        "removed after grace"
    );

    let expired = Client::resume(server.addr, &welcome).await.err();
    assert_eq!(
        expired,
        Some((Some(DisconnectReason::SessionExpired), 1008))
    );
    // A forged token for a live room: the same answer, nothing learned.
    let mut forged = welcome.clone();
    forged.session.0[8] ^= 1;
    let forged = Client::resume(server.addr, &forged).await.err();
    assert_eq!(forged, Some((Some(DisconnectReason::SessionExpired), 1008)));
    assert_eq!(server.metric("arena_sessions_expired_total").await, 1.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_connection_takes_over_and_a_leave_ends_the_session() {
    let server = TestServer::start(Config::default()).await;
    let (mut old, welcome) = Client::join(server.addr, "twice").await;
    let (mut new, resumed) = Client::resume(server.addr, &welcome)
        .await
        .expect("resume while the old connection is open");
    assert_eq!(resumed.player_id, welcome.player_id);
    assert_eq!(
        old.expect_close().await,
        (Some(DisconnectReason::SessionReplaced), 1000)
    );
    // The old connection's end must not park or remove the session.
    let mut replica = Replica::default();
    play_for(&mut new, &mut replica, Duration::from_millis(300)).await;
    assert!(ids(&replica).contains(&welcome.player_id));

    new.send(&ClientMsg::Leave).await;
    assert_eq!(
        new.expect_close().await,
        (Some(DisconnectReason::Left), 1000)
    );
    let after_leave = Client::resume(server.addr, &welcome).await.err();
    assert_eq!(
        after_leave,
        Some((Some(DisconnectReason::SessionExpired), 1008))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_room_is_disposed_after_its_grace_but_a_persistent_one_stays() {
    let server = TestServer::start(Config {
        empty_room_grace: Duration::from_millis(300),
        resume_grace: Duration::ZERO,
        persistent_rooms: vec!["lobby".parse::<RoomSpec>().expect("valid")],
        ..Config::default()
    })
    .await;
    let (mut c, w) = Client::join_room(server.addr, "solo", "brief").await;
    assert_eq!(w.room, "brief");
    // A matchmade room too: public rooms have series of their own.
    let (mut m, matched) = Client::join(server.addr, "matched").await;
    assert_eq!(
        room_series(&server).await,
        2,
        "the lobby's and the public room's; none for a room made by name"
    );
    for c in [&mut c, &mut m] {
        c.send(&ClientMsg::Leave).await;
        c.expect_close().await;
    }
    server.wait_until_unlisted(&matched.room).await;
    assert_eq!(server.wait_until_unlisted("brief").await, ["lobby"]);
    assert_eq!(server.metric("arena_rooms ").await, 1.0);
    // The public room's series went with it.
    assert_eq!(room_series(&server).await, 1, "the lobby's");
    // The name can be used again: a new room.
    let (_c, w) = Client::join_room(server.addr, "again", "brief").await;
    assert_eq!(w.room, "brief");
    server.stop().await;
}

/// A client that holds nothing acknowledges its welcome's tick (PROTOCOL.md
/// section 3.2), which no snapshot carries. Whether it never received a
/// snapshot or resumed without its states (a reloaded page), it gets a full
/// snapshot, never a delta against a state it lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_holds_nothing_gets_a_full_snapshot_after_a_resume() {
    let server = TestServer::start(Config::default()).await;
    // Acknowledged only the welcome's tick, then dropped.
    let (mut c, welcome) = Client::join(server.addr, "fresh").await;
    c.send(&ClientMsg::Input(InputCmd {
        ack: welcome.tick,
        ..input(1)
    }))
    .await;
    sleep(Duration::from_millis(200)).await;
    c.kill();
    let (mut c, resumed) = Client::resume(server.addr, &welcome).await.expect("resume");
    assert_eq!(resumed.input_seq, 1);
    let first = c.next_snapshot().await;
    assert!(first.is_full(), "nothing held: nothing to delta against");

    // Played and acknowledged, dropped, and resumed without its states: it
    // says so by acknowledging the new welcome's tick.
    let mut replica = Replica::default();
    let mut seq = 2;
    replica.apply(&first);
    for _ in 0..10 {
        let tick = replica.apply(&c.next_snapshot().await);
        c.send(&ClientMsg::Input(InputCmd {
            ack: tick,
            ..input(seq)
        }))
        .await;
        seq += 1;
    }
    sleep(Duration::from_millis(200)).await;
    c.kill();
    let (mut c, resumed) = Client::resume(server.addr, &welcome).await.expect("resume");
    assert!(
        !c.next_snapshot().await.is_full(),
        "states were acknowledged: the resume starts with a delta"
    );
    c.send(&ClientMsg::Input(InputCmd {
        ack: resumed.tick,
        ..input(seq)
    }))
    .await;
    let mut deltas_after = 0;
    while !c.next_snapshot().await.is_full() {
        deltas_after += 1;
        assert!(
            deltas_after < 10,
            "still deltas after {deltas_after} snapshots"
        );
    }
    server.stop().await;
}

/// A reloaded page keeps one state: the newest it acknowledged. The server
/// may read that ack and lose the connection before writing another
/// snapshot; the resume must still start from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_starts_from_the_last_ack_read_even_if_no_snapshot_followed() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start(Config::default()).await;
    let (mut c, welcome) = Client::join(server.addr, "reloader").await;
    let mut replica = Replica::default();
    let mut held = welcome.tick;
    for seq in 1..=10 {
        c.send(&ClientMsg::Input(InputCmd {
            ack: held,
            ..input(seq)
        }))
        .await;
        held = replica.apply(&c.next_snapshot().await);
    }
    // Acknowledge the newest at once and end the connection (a FIN after the
    // data, so the server reads the ack first), as a page unloading does.
    c.send(&ClientMsg::Input(InputCmd {
        ack: held,
        ..input(11)
    }))
    .await;
    let mut io = c.ws.into_inner();
    io.shutdown().await.expect("shutdown");
    sleep(Duration::from_millis(100)).await;
    let (mut c, _) = Client::resume(server.addr, &welcome).await.expect("resume");
    let first = c.next_snapshot().await;
    assert!(!first.is_full());
    assert_eq!(
        first.tick.advanced(first.base_age.wrapping_neg()),
        held,
        "the delta is against the newest acknowledged state"
    );
    drop(io);
    server.stop().await;
}

/// The phase of each open room, by name, from `/status.json`.
async fn tick_phases(server: &TestServer) -> Vec<(String, u64)> {
    let status = server.json("/status.json").await;
    status["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .map(|r| {
            let name = r["name"].as_str().expect("name").to_owned();
            (name, r["tick_phase"].as_u64().expect("tick_phase"))
        })
        .collect()
}

/// Rooms spread their ticks over the phases of the period, and a room
/// opened after others went away takes the phase they left empty (so the
/// fan-out bursts stay balanced however rooms come and go).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_room_ticks_in_the_phase_with_the_fewest_players() {
    let server = TestServer::start(Config {
        tick_phases: 4,
        empty_room_grace: Duration::from_millis(300),
        resume_grace: Duration::ZERO,
        ..Config::default()
    })
    .await;
    let mut clients = Vec::new();
    for room in ["a", "b", "c", "d"] {
        clients.push(Client::join_room(server.addr, "p", room).await.0);
    }
    let phases = tick_phases(&server).await;
    assert_eq!(
        phases,
        [
            ("a".to_owned(), 0),
            ("b".to_owned(), 1),
            ("c".to_owned(), 2),
            ("d".to_owned(), 3)
        ],
        "one room per phase"
    );
    // The player of "b" leaves; its room goes after the grace.
    let mut b = clients.remove(1);
    b.send(&ClientMsg::Leave).await;
    b.expect_close().await;
    server.wait_until_unlisted("b").await;
    // Phase 1 is empty now: the next room takes it (in order of creation it
    // would have been phase 0 again, beside "a").
    clients.push(Client::join_room(server.addr, "p", "e").await.0);
    let phases = tick_phases(&server).await;
    assert!(phases.contains(&("e".to_owned(), 1)), "{phases:?}");
    server.stop().await;
}

/// A room that cannot answer joins within the hello deadline (an overloaded
/// server): each such join is refused with `ServerFull` (1013, try again
/// later), and none leaves a seat or a player behind once the room catches
/// up with its commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_a_room_cannot_answer_in_time_are_refused_and_hold_no_seat() {
    // At 1 Hz the room reads its commands once a second; the deadline to
    // seat a player after its hello is 600 ms (which also bounds the
    // upgrade and the hello's read: ample on loopback, even on a busy
    // machine).
    let server = TestServer::start(Config {
        tick_hz: 1,
        snapshot_hz: 1,
        npcs: 0,
        hello_timeout: Duration::from_millis(600),
        ..Config::default()
    })
    .await;
    let mut welcomed = Vec::new();
    let mut refused = 0;
    for i in 0..6 {
        let hello = Hello {
            room: RoomRequest::Named("slow".into()),
            ..Hello::new(format!("p{i}"))
        };
        match Client::hello(server.addr, hello).await {
            Ok((client, _)) => welcomed.push(client),
            Err(refusal) => {
                assert_eq!(refusal, (Some(DisconnectReason::ServerFull), 1013));
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "every join was answered within 600 ms at 1 Hz");
    // Two ticks and a half: the room has read every join and undone those
    // whose connection gave up.
    sleep(Duration::from_millis(2500)).await;
    let rooms = server.json("/rooms").await;
    let slow = rooms["rooms"]
        .as_array()
        .expect("room list")
        .iter()
        .find(|r| r["id"] == "slow");
    if let Some(room) = slow {
        assert_eq!(room["players"], welcomed.len(), "{room}");
        assert_eq!(room["seats_taken"], welcomed.len(), "{room}");
    } else {
        assert!(welcomed.is_empty(), "a room with players was disposed");
    }
    // An undone join is a seat taken and freed: the counters still balance.
    let joins = server.metric("arena_joins_total").await;
    let leaves = server.metric("arena_leaves_total").await;
    assert_eq!(
        joins - leaves,
        welcomed.len() as f64,
        "{joins} joins, {leaves} leaves"
    );
    drop(welcomed);
    server.stop().await;
}

/// How many rooms have a players series on `/metrics` (private rooms are
/// labelled by serial, not by name).
async fn room_series(server: &TestServer) -> usize {
    let (_, text) = server.get("/metrics").await;
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| l.starts_with("arena_room_players{"))
        .count()
}

/// Names of this process's room threads (`room-<name>`, as the server names
/// them; Linux keeps 15 bytes of a thread's name).
fn room_threads() -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .filter(|name| name.starts_with("room-"))
        .collect()
}

/// At the room limit, a new room takes the place of an empty one still in
/// its grace period, once it has been empty for a moment: clients that
/// create rooms by name and leave cannot keep the server full. Rooms with a
/// player, or a session waiting for its resume, are never evicted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_room_limit_an_empty_room_makes_way_for_a_new_one() {
    let server = TestServer::start(Config {
        max_rooms: 2,
        npcs: 0,
        // Far longer than the test: only eviction can remove a room.
        empty_room_grace: Duration::from_secs(600),
        resume_grace: Duration::from_secs(600),
        ..Config::default()
    })
    .await;
    let named = |name: &str, room: &str| Hello {
        room: RoomRequest::Named(room.into()),
        ..Hello::new(name)
    };
    // Room "left" is created and left at once; "held" keeps its player.
    let (mut c, _) = Client::join_room(server.addr, "a", "left").await;
    c.send(&ClientMsg::Leave).await;
    c.expect_close().await;
    let (_held, _) = Client::join_room(server.addr, "b", "held").await;
    // The room frees the seat at its next tick.
    wait_for_seats(&server, "left", 0, STEP).await;
    // Room threads are named by serial (a private room's name is its key).
    let status = server.status().await;
    let thread = |name: &str| {
        let rooms = status["rooms"].as_array().expect("rooms");
        let room = rooms.iter().find(|r| r["name"] == name).expect("listed");
        format!("room-{}", room["serial"].as_u64().expect("a serial"))
    };
    let (left_thread, held_thread) = (thread("left"), thread("held"));
    assert!(
        room_threads().contains(&left_thread),
        "{:?}",
        room_threads()
    );
    assert!(
        !room_threads()
            .iter()
            .any(|t| t.contains("left") || t.contains("held")),
        "no thread is named after a room"
    );
    // A third room at the limit of two. "left" was emptied just now: its
    // players may be back in a moment, so it is kept for now.
    let refused = Client::hello(server.addr, named("c", "new")).await.err();
    assert_eq!(refused, Some((Some(DisconnectReason::ServerFull), 1013)));
    // Empty for longer than the server's minimum (2 s), it makes way.
    sleep(Duration::from_millis(2500)).await;
    let (dropped, w) = Client::join_room(server.addr, "c", "new").await;
    assert_eq!(w.room, "new");
    let rooms = server.wait_until_unlisted("left").await;
    assert_eq!(rooms, ["held", "new"]);
    // Its thread ends at its next tick (the server runs in this process).
    let deadline = Instant::now() + STEP;
    while room_threads().contains(&left_thread) {
        assert!(
            Instant::now() < deadline,
            "the evicted room's thread runs on"
        );
        sleep(Duration::from_millis(20)).await;
    }
    assert!(room_threads().contains(&held_thread));
    assert_eq!(server.metric("arena_rooms_evicted_total").await, 1.0);
    assert_eq!(server.metric("arena_rooms ").await, 2.0);
    // Rooms made by name have no series of their own.
    assert_eq!(room_series(&server).await, 0);
    // A connection lost without a leave keeps its session (and its seat)
    // for the resume grace: "new" is not empty, so a fourth room is
    // refused, and so is any while both rooms are held.
    dropped.kill();
    sleep(Duration::from_millis(200)).await;
    let refused = Client::hello(server.addr, named("d", "fourth")).await.err();
    assert_eq!(refused, Some((Some(DisconnectReason::ServerFull), 1013)));
    assert_eq!(server.metric("arena_rooms_evicted_total").await, 1.0);
    server.stop().await;
}

/// A leave, or a kick for breaking a rule, ends the session at once: not
/// only after the server's close is answered, which a client that neither
/// reads nor answers can put off for the whole linger (a second) and the
/// write deadline. A resume with the token meanwhile is refused, where it
/// used to take the seat back, undoing the leave or the kick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_or_a_kick_ends_the_session_before_the_close_is_answered() {
    let server = TestServer::start(Config::default()).await;
    for how in ["leave", "text frame"] {
        let (mut c, welcome) = Client::join(server.addr, "mute").await;
        if how == "leave" {
            c.send(&ClientMsg::Leave).await;
        } else {
            c.send_frame(Frame::text(Payload::Borrowed(b"not binary")))
                .await;
        }
        // `c` reads nothing from here on and so never answers the close,
        // and the server lingers for a second. Its seat must be free well
        // before that (it was freed only after the linger).
        wait_for_seats(&server, &welcome.room, 0, Duration::from_millis(600)).await;
        let resumed = Client::resume(server.addr, &welcome).await.err();
        assert_eq!(
            resumed,
            Some((Some(DisconnectReason::SessionExpired), 1008)),
            "a resume after a {how}"
        );
        drop(c);
    }
    server.stop().await;
}

/// A session awaiting a resume holds a seat, and a room, without a
/// connection: it counts against its address (`--max-clients-per-ip`), or
/// one address joining named rooms and dropping its connections could hold
/// every room of the server with one connection at a time. Past the limit
/// a lost connection's session is given up at once; resumes are not
/// limited by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_awaiting_a_resume_count_against_their_address() {
    let server = TestServer::start(Config {
        max_clients_per_ip: 2,
        per_ip_exempt_loopback: false,
        resume_grace: Duration::from_secs(600),
        empty_room_grace: Duration::from_secs(600),
        ..Config::default()
    })
    .await;
    let mut welcomes = Vec::new();
    for room in ["a", "b", "c"] {
        let (c, welcome) = Client::join_room(server.addr, "p", room).await;
        // Gone without a leave: the session waits for a resume.
        drop(c);
        welcomes.push(welcome);
    }
    wait_for_seats(&server, "a", 1, STEP).await;
    wait_for_seats(&server, "b", 1, STEP).await;
    // The third is over the address's two: its seat went with it.
    wait_for_seats(&server, "c", 0, STEP).await;
    assert_eq!(server.metric("arena_sessions_not_parked_total").await, 1.0);
    assert_eq!(
        Client::resume(server.addr, &welcomes[2]).await.err(),
        Some((Some(DisconnectReason::SessionExpired), 1008))
    );
    // A parked one resumes, and its place is free while it plays.
    let (_a, resumed) = Client::resume(server.addr, &welcomes[0])
        .await
        .expect("resumed");
    assert!(resumed.resumed);
    let (d, _) = Client::join_room(server.addr, "p", "d").await;
    drop(d);
    // Once the room has seen the connection go (no player in it), its
    // seat is still taken: parked, not given up.
    let deadline = Instant::now() + STEP;
    loop {
        let status = server.status().await;
        let rooms = status["rooms"].as_array().expect("rooms").clone();
        let d = rooms.iter().find(|r| r["name"] == "d").expect("listed");
        if d["players"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "d's connection never ended: {d}");
        sleep(Duration::from_millis(10)).await;
    }
    wait_for_seats(&server, "d", 1, Duration::ZERO).await;
    assert_eq!(server.metric("arena_sessions_not_parked_total").await, 1.0);
    server.stop().await;
}
