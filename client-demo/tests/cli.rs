//! The `bots` binary as a command line tool, on 127.0.0.1 only.

use std::process::{Command, Stdio};

/// A report piped to a reader that stopped reading (`bots … | head`) is no
/// crash: the run's verdict is still the exit status (here 1: no server to
/// connect to), with no panic on standard error.
#[test]
fn bots_whose_report_is_not_read_still_exit_with_their_verdict() {
    // A port nobody listens on: every connection is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bots"))
        .args(["--url", &format!("ws://127.0.0.1:{port}/ws")])
        .args(["--clients", "1", "--duration", "1", "--no-progress"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the bots");
    // The reader goes away before the report is written.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("the bots end");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
}
