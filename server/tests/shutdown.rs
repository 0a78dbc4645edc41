//! Graceful shutdown of the real binary on SIGTERM: every client is told
//! why, and the process exits 0 within its grace period.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Client, Replica, play_for, start_binary as start};
use shared::protocol::DisconnectReason;
use tokio::time::{Instant, sleep};

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_every_client_with_a_reason_and_exits_zero_in_time() {
    const GRACE_SECS: u64 = 3;
    let (mut server, addr) = start(&["--shutdown-grace-secs", &GRACE_SECS.to_string()]);
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(Client::join(addr, &format!("p{i}")).await.0);
    }
    clients.push(Client::join_room(addr, "q", "private-1").await.0);
    for c in &mut clients {
        play_for(c, &mut Replica::default(), Duration::from_millis(100)).await;
    }

    let pid = server.0.id().to_string();
    let signalled = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(kill.success());

    for c in &mut clients {
        assert_eq!(
            c.expect_close().await,
            (Some(DisconnectReason::ServerShutdown), 1001),
            "every client hears why"
        );
    }
    // The listener closed before the clients were told: no one new gets in.
    assert!(
        common::try_connect(addr).await.is_err(),
        "a new connection was accepted during shutdown"
    );

    let deadline = signalled + Duration::from_secs(GRACE_SECS + 2);
    let status = loop {
        if let Some(status) = server.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not exit within its grace period"
        );
        sleep(Duration::from_millis(20)).await;
    };
    println!(
        "SIGTERM with {} clients: exited {status} after {:?}",
        clients.len(),
        signalled.elapsed()
    );
    assert!(status.success(), "exit status {status}");
}
