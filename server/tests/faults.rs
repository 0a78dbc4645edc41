//! Faults injected into a running server through its fail points (the
//! `failpoints` feature, the `fail` crate): what `RELIABILITY.md` promises
//! when a bug panics a room's thread or a fan-out shard's task, checked on
//! the real server and real sockets, from the players' side.
//!
//! `cargo test -p server --features failpoints --test faults`. A test
//! binary of its own: fail points are the whole process's, and each test
//! holds them (`FailScenario`) while it runs.

mod common;

use common::{Client, STEP, TestServer};
use server::Config;
use shared::protocol::DisconnectReason;
use tokio::time::{Instant, timeout};

/// The players closed with `room closed`, in `/metrics`.
const ROOM_CLOSED_KICKS: &str = "arena_kicks_total{reason=\"room_closed\"}";

/// The serial of the room named `name` in the operator's `/status.json`,
/// if it is there.
async fn serial_of(server: &TestServer, name: &str) -> Option<u64> {
    let status = server.status().await;
    status["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .find(|room| room["name"] == name)
        .map(|room| room["serial"].as_u64().expect("a serial"))
}

/// A player's connection closed by the server, with its reason and code.
async fn closed(client: &mut Client) -> (Option<DisconnectReason>, u16) {
    timeout(STEP, client.expect_close())
        .await
        .expect("the connection closed in time")
}

/// A bug that panics one room's thread ends that room only: its players are
/// told `room closed` (1011) at once, rather than left on a connection that
/// no one serves, the room leaves the server's list, a player in another
/// room plays on, and the room's name opens a new room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_whose_thread_panics_closes_its_players_and_spares_the_others() {
    let scenario = fail::FailScenario::setup();
    let server = TestServer::start(Config::default()).await;
    let (mut doomed, _) = Client::join_room(server.addr, "ann", "doomed").await;
    let (mut bystander, _) = Client::join_room(server.addr, "bob", "calm").await;
    doomed.plays_on(3).await;
    bystander.plays_on(3).await;
    let first = serial_of(&server, "doomed").await.expect("listed");

    fail::cfg("room-tick", "return(doomed)").expect("a fail point");
    assert_eq!(
        closed(&mut doomed).await,
        (Some(DisconnectReason::RoomClosed), 1011)
    );
    fail::remove("room-tick");
    // What the operator's alert counts (README, "Operating").
    assert_eq!(server.metric(ROOM_CLOSED_KICKS).await, 1.0);

    let deadline = Instant::now() + STEP;
    while serial_of(&server, "doomed").await.is_some() {
        assert!(Instant::now() < deadline, "the dead room is still listed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // A second of play after the other room died.
    bystander.plays_on(30).await;
    let (mut again, _) = Client::join_room(server.addr, "cat", "doomed").await;
    again.plays_on(3).await;
    let second = serial_of(&server, "doomed").await.expect("listed again");
    assert_ne!(first, second, "a new room under the old name");

    server.stop().await;
    scenario.teardown();
}

/// A bug that panics a fan-out shard's task ends that shard only: its
/// clients are told `room closed` (1011), and the room, still running,
/// serves the next player who joins it from a new shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_that_panics_closes_its_clients_and_the_room_serves_new_ones() {
    let scenario = fail::FailScenario::setup();
    let server = TestServer::start(Config::default()).await;
    let (mut ann, _) = Client::join_room(server.addr, "ann", "arena").await;
    let (mut bob, _) = Client::join_room(server.addr, "bob", "arena").await;
    ann.plays_on(3).await;
    bob.plays_on(3).await;
    let room = serial_of(&server, "arena").await.expect("listed");

    // The room's one shard (two players: one shard of up to 32) panics at
    // the next snapshot, once.
    fail::cfg("fanout-shard", "1*panic").expect("a fail point");
    for client in [&mut ann, &mut bob] {
        assert_eq!(
            closed(client).await,
            (Some(DisconnectReason::RoomClosed), 1011)
        );
    }
    fail::remove("fanout-shard");
    assert_eq!(server.metric(ROOM_CLOSED_KICKS).await, 2.0);

    let (mut cat, _) = Client::join_room(server.addr, "cat", "arena").await;
    cat.plays_on(30).await;
    assert_eq!(
        serial_of(&server, "arena").await,
        Some(room),
        "the same room, still running"
    );

    server.stop().await;
    scenario.teardown();
}
