//! `/metrics` and `/status.json` on a server with players: the key series
//! exist and move.

mod common;

use std::time::Duration;

use common::{Client, Replica, TestServer, http_get, play_for};
use server::Config;
use shared::Tick;
use shared::protocol::{ClientMsg, InputCmd};

/// The value of the first sample line starting with `series`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

async fn scrape(server: &TestServer) -> String {
    let (status, body) = server.get("/metrics").await;
    assert_eq!(status, 200);
    String::from_utf8(body).expect("utf-8 exposition")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_status_move_while_clients_play() {
    let server = TestServer::start(Config {
        npcs: 20,
        ..Config::default()
    })
    .await;
    let before = scrape(&server).await;
    let (mut c, welcome) = Client::join(server.addr, "watcher").await;
    let mut replica = Replica::default();
    for seq in 1..=10 {
        c.send(&ClientMsg::Input(InputCmd {
            seq,
            tick: Tick(0),
            ack: Tick(0),
            buttons: 8,
            aim: 0,
        }))
        .await;
    }
    play_for(&mut c, &mut replica, Duration::from_millis(1500)).await;
    let after = scrape(&server).await;

    for series in [
        "arena_tick_duration_seconds_count{phase=\"Total\"}",
        "arena_tick_duration_seconds_count{phase=\"Simulate\"}",
        "arena_snapshots_sent_total",
        "arena_sent_bytes_total",
        "arena_received_bytes_total",
        "arena_inputs_received_total",
        "arena_inputs_applied_total",
        "arena_joins_total",
        "arena_snapshot_encode_seconds_count",
        "arena_tick_start_lateness_seconds_count",
    ] {
        assert!(
            sample(&after, series) > sample(&before, series),
            "{series} did not move"
        );
    }
    assert_eq!(sample(&after, "arena_connections"), 1.0);
    // The only room's tick p99 (refreshed each second of ticks), as the
    // worst room's, in seconds.
    let worst = sample(&after, "arena_worst_room_tick_p99_seconds");
    assert!(worst > 0.0 && worst < 1.0, "worst room tick p99 {worst} s");
    let room = &welcome.room;
    assert_eq!(
        sample(&after, &format!("arena_room_players{{room=\"{room}\"}}")),
        1.0
    );
    assert!(sample(&after, &format!("arena_room_entities{{room=\"{room}\"}}")) >= 21.0);
    assert_eq!(sample(&after, "arena_rooms "), 1.0);
    assert_eq!(sample(&after, "arena_rooms_created_total"), 1.0);
    assert!(after.contains("arena_kicks_total{reason=\"too_slow\"}"));
    assert!(after.contains("arena_inputs_dropped_total{reason=\"QueueFull\"}"));
    assert!(after.contains("# EOF"));

    let status = server.status().await;
    let room = &status["rooms"][0];
    assert_eq!(room["players"], 1);
    assert_eq!(room["name"], welcome.room.as_str());
    assert_eq!(status["worst_room"], welcome.room.as_str());
    let ticks = &room["tick_us"];
    assert!(ticks["ticks"].as_u64() >= Some(30), "{status}");
    assert!(ticks["p99_us"].as_f64() > Some(0.0));
    assert!(ticks["p99_us"].as_f64() < ticks["budget_us"].as_f64());
    // The one-minute chart is the worst room's, at the top level; the
    // rooms' entries leave theirs out (3 KB each, for a page that shows one).
    assert!(
        !status["tick_us"]["per_second"]
            .as_array()
            .expect("chart")
            .is_empty()
    );
    assert_eq!(ticks["per_second"].as_array().map(Vec::len), Some(0));
    assert_eq!(status["tick_us"]["p99_us"], ticks["p99_us"]);
    assert!(status["totals"]["snapshots_sent"].as_u64() >= Some(40));
    assert!(status["process"]["rss_bytes"].as_u64() > Some(0));

    // A dropped connection resumed: the resume counter moves.
    let resumes = sample(&after, "arena_resumes_total");
    c.kill();
    let (mut c, resumed) = Client::resume(server.addr, &welcome).await.expect("resume");
    assert!(resumed.resumed);
    play_for(&mut c, &mut replica, Duration::from_millis(200)).await;
    assert_eq!(
        sample(&scrape(&server).await, "arena_resumes_total"),
        resumes + 1.0
    );

    // Every snapshot written has its baseline's age counted: full ones at
    // 0, and this client, which acknowledges every snapshot at once, gets
    // deltas against the tick before. Scraped once the connection is gone
    // and nothing more is written, so the counts cannot race a write.
    c.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let done = scrape(&server).await;
    let age = |le: &str| {
        sample(
            &done,
            &format!("arena_snapshot_baseline_age_ticks_bucket{{le=\"{le}\"}}"),
        )
    };
    assert_eq!(
        sample(&done, "arena_snapshot_baseline_age_ticks_count"),
        sample(&done, "arena_snapshots_sent_total")
    );
    assert_eq!(age("0.0"), sample(&done, "arena_snapshots_full_total"));
    assert!(age("0.0") >= 1.0, "the first snapshot is full");
    assert!(age("1.0") > age("0.0"), "no delta at age 1 in\n{done}");
    // `/status.json` has the two ends of the histogram as totals.
    let totals = &server.status().await["totals"];
    assert_eq!(
        totals["snapshots_age_1"].as_f64(),
        Some(age("1.0") - age("0.0"))
    );
    assert_eq!(
        totals["snapshots_older_than_3"].as_f64(),
        Some(sample(&done, "arena_snapshot_baseline_age_ticks_count") - age("3.0"))
    );

    let (code, page) = http_get(server.addr, "/status").await;
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&page).contains("/status.json"));
    server.stop().await;
}

/// With fewer snapshots than ticks (60 Hz ticks, 15 Hz snapshots: 4 ticks
/// apart), a client that acknowledges every snapshot is counted on
/// `/status.json` against the snapshot before, not as "older than 3" (its
/// baselines are 4 ticks old), and the histogram keeps the ticks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_ages_on_the_status_page_count_snapshots_not_ticks() {
    let server = TestServer::start(Config {
        tick_hz: 60,
        snapshot_hz: 15,
        ..Config::default()
    })
    .await;
    let (mut c, _) = Client::join(server.addr, "steady").await;
    let mut replica = Replica::default();
    let n = play_for(&mut c, &mut replica, Duration::from_secs(2)).await;
    assert!(n >= 20, "only {n} snapshots in 2 s");
    c.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let done = scrape(&server).await;
    let totals = &server.status().await["totals"];
    let (sent, full) = (
        totals["snapshots_sent"].as_u64().expect("sent"),
        totals["snapshots_full"].as_u64().expect("full"),
    );
    let (age_1, old) = (
        totals["snapshots_age_1"].as_u64().expect("age 1"),
        totals["snapshots_older_than_3"].as_u64().expect("older"),
    );
    // Acks answer within a few ms of each snapshot, 67 ms apart: nearly
    // every delta is against the snapshot before.
    assert!(
        age_1 * 10 >= (sent - full) * 9,
        "{age_1} of {} deltas against the snapshot before",
        sent - full
    );
    assert_eq!(old, 0, "no baseline is 4 snapshots old");
    let bucket = |le: &str| {
        sample(
            &done,
            &format!("arena_snapshot_baseline_age_ticks_bucket{{le=\"{le}\"}}"),
        )
    };
    assert_eq!(bucket("3.0"), bucket("0.0"), "no delta 1 to 3 ticks old");
    assert!(bucket("4.0") - bucket("3.0") >= age_1 as f64);
    // The snapshot phase of the tick is timed on the ticks that publish
    // one, a quarter of them (give or take ticks run while the scrape
    // was being rendered).
    let phase = |p: &str| {
        sample(
            &done,
            &format!("arena_tick_duration_seconds_count{{phase=\"{p}\"}}"),
        )
    };
    let (ticks, publishing) = (phase("Total"), phase("Snapshot"));
    assert!(
        (publishing * 4.0 - ticks).abs() <= 8.0,
        "{publishing} snapshot phases in {ticks} ticks"
    );
    server.stop().await;
}

/// A client that never acknowledges gets a full snapshot, nothing for a
/// second, then the full snapshot again: each published snapshot between
/// the two is counted once as skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_a_client_did_not_get_are_counted_once() {
    let server = TestServer::start(Config::default()).await;
    let (mut c, _) = Client::join(server.addr, "mute").await;
    let first = c.next_snapshot().await;
    let second = c.next_snapshot().await;
    assert!(first.is_full() && second.is_full(), "no ack, no baseline");
    let between = second.tick.since(first.tick);
    assert!(
        between >= 25,
        "the full snapshot was resent after {between} ticks"
    );
    // Read before the third full snapshot, a second later.
    let text = scrape(&server).await;
    assert_eq!(
        sample(&text, "arena_snapshots_skipped_total"),
        f64::from(between - 1)
    );
    assert_eq!(sample(&text, "arena_snapshots_full_total"), 2.0);
    server.stop().await;
}
