//! What the server writes to its logs, read back as an operator's log
//! collector would. In a test binary of its own: the subscriber is the
//! whole process's (rooms log from threads of their own).

mod common;

use common::{Captured, Client, TestServer};
use server::Config;

/// A private room's name is the key to join it, and logs travel further
/// than the operator endpoints (collectors, dashboards, support tickets):
/// every event and span names a room as `/status.json` shows it to the
/// public, from the room's creation to its players' leaving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_logs_never_name_a_private_room() {
    const HIDDEN: &str = "hidden-den-5";
    const CONFIGURED: &str = "lobby-behind-the-bar";
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let server = TestServer::start(Config {
        persistent_rooms: vec![CONFIGURED.parse().expect("room spec")],
        ..Config::default()
    })
    .await;
    let (mut host, welcome) = Client::join_room(server.addr, "host", HIDDEN).await;
    assert_eq!(welcome.room, HIDDEN, "the player is told the name");
    let (guest, _) = Client::join_room(server.addr, "guest", HIDDEN).await;
    let (regular, _) = Client::join_room(server.addr, "regular", CONFIGURED).await;
    let (mut public, matched) = Client::join(server.addr, "public").await;
    host.plays_on(5).await;
    public.plays_on(5).await;
    drop(guest);
    drop(regular);
    drop(host);
    drop(public);
    server.stop().await;

    let logs = captured.text();
    for line in logs.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("{e}: not a JSON event: {line}"));
    }
    assert!(
        logs.contains("\"room created\""),
        "the test saw the rooms made: {logs}"
    );
    assert!(
        logs.contains("private#") && logs.contains("persistent#1"),
        "the rooms are logged by their labels: {logs}"
    );
    assert!(
        logs.contains(&matched.room),
        "a public room by its name: {logs}"
    );
    for secret in [HIDDEN, CONFIGURED] {
        assert!(!logs.contains(secret), "{secret} in the logs: {logs}");
    }
}
