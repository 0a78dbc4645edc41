//! Real clients on loopback: joining, snapshot rate, delta correctness, inputs.

mod common;

use std::time::Duration;

use common::{Client, Event, Replica, TestServer, play_for};
use glam::IVec2;
use server::Config;
use shared::Tick;
use shared::protocol::{ClientMsg, InputCmd, ServerMsg};
use shared::rules::{self, TickRules, buttons};
use shared::snapshot::EntityKind;

fn config() -> Config {
    Config {
        npcs: 30,
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_receive_snapshots_at_the_tick_rate_and_rebuild_the_exact_state() {
    let server = TestServer::start(config()).await;
    let mut tasks = Vec::new();
    for i in 0..6 {
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let (mut c, welcome) = Client::join(addr, &format!("p{i}")).await;
            assert_eq!(welcome.tick_hz, 30);
            let mut replica = Replica::default();
            // Warm up, then measure over a 3 s window.
            play_for(&mut c, &mut replica, Duration::from_millis(500)).await;
            let received = play_for(&mut c, &mut replica, Duration::from_secs(3)).await;
            let me = replica
                .latest()
                .entities
                .iter()
                .find(|e| e.id == welcome.player_id)
                .copied();
            (
                received,
                replica.desyncs,
                replica.deltas,
                replica.applied,
                me,
            )
        }));
    }
    for t in tasks {
        let (received, desyncs, deltas, applied, me) = t.await.expect("client task");
        // 30 Hz for 3 s = 90 snapshots; allow 10% for scheduling noise.
        assert!(received >= 81, "only {received} snapshots in 3 s");
        assert_eq!(desyncs, 0, "rebuilt state differs from the server's");
        assert!(
            deltas + 1 >= applied,
            "after the first, every snapshot is a delta"
        );
        assert_eq!(me.map(|e| e.kind), Some(EntityKind::Player));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_moves_the_player_as_the_shared_rules_say() {
    let server = TestServer::start(Config {
        npcs: 0,
        ..Config::default()
    })
    .await;
    let (mut c, welcome) = Client::join(server.addr, "mover").await;
    let rules = TickRules::new(u32::from(welcome.tick_hz));
    let mut replica = Replica::default();
    let tick = replica.apply(&c.next_snapshot().await);
    c.send(&ClientMsg::Ack(tick)).await;
    let me = |r: &Replica| {
        let e = r
            .latest()
            .entities
            .iter()
            .find(|e| e.id == welcome.player_id)
            .copied()
            .expect("own entity");
        IVec2::new(e.x, e.y)
    };
    let start = me(&replica);
    let moves = [
        buttons::RIGHT,
        buttons::RIGHT,
        buttons::DOWN | buttons::LEFT,
        buttons::UP,
        buttons::UP | buttons::RIGHT,
    ];
    for (i, b) in moves.iter().enumerate() {
        c.send(&ClientMsg::Input(InputCmd {
            seq: i as u32 + 1,
            tick: Tick(0),
            ack: Tick(0),
            buttons: *b,
            aim: 0,
        }))
        .await;
    }
    let expected = moves
        .iter()
        .fold(start, |pos, b| rules::move_player(pos, *b, &rules));
    // Wait for the snapshot that acknowledges the last input.
    let mut acked = 0;
    while acked < moves.len() as u32 {
        let s = c.next_snapshot().await;
        acked = s.input_ack;
        let tick = replica.apply(&s);
        c.send(&ClientMsg::Ack(tick)).await;
    }
    assert_eq!(me(&replica), expected);
    assert_eq!(replica.desyncs, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_are_answered_and_http_routes_work() {
    let server = TestServer::start(Config {
        ping_interval: Duration::from_millis(100),
        ..config()
    })
    .await;
    let (mut c, _) = Client::join(server.addr, "pinger").await;
    // The server's WebSocket pings (they ride the snapshot wake-ups).
    let mut replica = Replica::default();
    play_for(&mut c, &mut replica, Duration::from_millis(550)).await;
    assert!((3..=7).contains(&c.pings), "{} pings in 0.55 s", c.pings);
    c.send(&ClientMsg::Ping(0xfeed)).await;
    loop {
        match c.recv().await {
            Event::Msg(ServerMsg::Pong { nonce, .. }) => {
                assert_eq!(nonce, 0xfeed);
                break;
            }
            Event::Msg(_) => continue,
            Event::Closed { code, reason } => panic!("closed {code} {reason}"),
        }
    }
    assert_eq!(common::http_get(server.addr, "/healthz").await.0, 200);
    let (status, page) = common::http_get(server.addr, "/").await;
    assert_eq!(status, 200);
    assert!(
        String::from_utf8_lossy(&page).contains("<"),
        "index.html served"
    );
    assert_eq!(common::http_get(server.addr, "/nope").await.0, 404);
    assert_eq!(common::http_get(server.addr, "/ws").await.0, 426);
    let status = server.status().await;
    assert_eq!(status["rooms"][0]["players"], 1);
    assert_eq!(status["tick_hz"], 30);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_refuses_before_upgrading() {
    let server = TestServer::start(Config {
        max_clients: 2,
        ..config()
    })
    .await;
    let _a = Client::join(server.addr, "a").await;
    let _b = Client::join(server.addr, "b").await;
    let refused = common::try_connect(server.addr).await;
    assert!(
        refused.as_ref().err().is_some_and(|e| e.contains("503")),
        "third client: {:?}",
        refused.err()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_acks_gets_one_full_snapshot_per_second_not_one_per_tick() {
    let server = TestServer::start(config()).await;
    let (mut c, _) = Client::join(server.addr, "silent").await;
    let end = tokio::time::Instant::now() + Duration::from_millis(2500);
    let mut fulls = 0;
    let mut last = None;
    while let Ok(event) = tokio::time::timeout_at(end, c.next_event()).await {
        match event {
            Event::Msg(ServerMsg::Snapshot(s)) => {
                assert!(s.is_full(), "no ack, so no baseline: only full snapshots");
                fulls += 1;
                last = Some(s);
            }
            Event::Msg(_) => {}
            Event::Closed { code, reason } => panic!("closed {code}: {reason}"),
        }
    }
    // 2.5 s at 30 Hz would be 75 full snapshots; one per second is 3.
    assert!((2..=4).contains(&fulls), "{fulls} full snapshots in 2.5 s");
    // Acknowledging the one it holds turns the stream back into deltas at
    // the tick rate.
    let mut replica = Replica::default();
    let tick = replica.apply(&last.expect("a full snapshot"));
    c.send(&ClientMsg::Ack(tick)).await;
    let n = play_for(&mut c, &mut replica, Duration::from_secs(1)).await;
    assert!(n >= 25, "{n} snapshots in the second after acking");
    assert!(replica.deltas + 1 >= replica.applied);
    server.stop().await;
}

/// The one-message-per-tick client of PROTOCOL.md: it never sends `Ack`, only
/// inputs whose `ack` names the newest snapshot it holds. It gets deltas,
/// and an input carrying an older ack (as one resent after a resume does)
/// never moves its baseline back: the client may have dropped older states.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_carried_by_inputs_move_the_baseline_forward_only() {
    let server = TestServer::start(config()).await;
    let (mut c, welcome) = Client::join(server.addr, "acks-in-inputs").await;
    let mut replica = Replica::default();
    let mut held = Vec::new();
    let mut newest_baseline = None;
    // The welcome's tick is what a client that holds nothing acknowledges.
    let input = |seq, ack| {
        ClientMsg::Input(InputCmd {
            seq,
            tick: ack,
            ack,
            buttons: buttons::RIGHT,
            aim: 0,
        })
    };
    c.send(&input(1, welcome.tick)).await;
    let mut seq = 1;
    let end = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(event) = tokio::time::timeout_at(end, c.next_event()).await {
        let s = match event {
            Event::Msg(ServerMsg::Snapshot(s)) => s,
            Event::Msg(_) => continue,
            Event::Closed { code, reason } => panic!("closed {code}: {reason}"),
        };
        if !s.is_full() {
            let baseline = s.tick.advanced(s.base_age.wrapping_neg());
            if let Some(newest) = newest_baseline {
                assert!(
                    baseline.since(newest) >= 0,
                    "baseline went back from {newest} to {baseline}"
                );
            }
            newest_baseline = Some(baseline);
        }
        held.push(replica.apply(&s));
        seq += 1;
        // Every fourth input acknowledges a snapshot 3 back instead.
        let back = if seq % 4 == 0 { 4 } else { 1 };
        let ack = held[held.len().saturating_sub(back)];
        c.send(&input(seq, ack)).await;
    }
    assert_eq!(replica.desyncs, 0);
    assert!(
        replica.applied >= 40,
        "{} snapshots in 2 s",
        replica.applied
    );
    assert!(
        replica.deltas + 1 >= replica.applied,
        "{} of {} snapshots were deltas: the inputs' acks were not taken",
        replica.deltas,
        replica.applied
    );
    server.stop().await;
}

/// A client that sends its hello in the same write as the upgrade request
/// (RFC 6455 asks clients to wait for the 101, but bytes hyper read past the
/// request must not be lost): it is welcomed like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_sent_with_the_upgrade_request_is_read() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start(config()).await;
    let mut s = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connects");
    s.write_all(&common::upgrade_with_hello(server.addr, "eager"))
        .await
        .expect("writes");
    let welcome = common::read_upgrade_answer(&mut s).await;
    assert!(matches!(welcome, ServerMsg::Welcome(_)), "got {welcome:?}");
    server.stop().await;
}
