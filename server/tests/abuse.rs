//! Hostile and broken clients get the right close code and typed reason, and
//! never disturb the players around them.

mod common;

use std::time::Duration;

use common::{Client, Replica, STEP, TestServer, play_for};
use fastwebsockets::{Frame, OpCode, Payload};
use server::Config;
use shared::codec;
use shared::protocol::{ClientMsg, DisconnectReason, Hello, InputCmd, PROTOCOL_VERSION};
use tokio::time::{Instant, sleep, timeout};

fn hello_bytes(protocol: u32) -> Vec<u8> {
    codec::client_bytes(&ClientMsg::Hello(Hello {
        protocol,
        ..Hello::new("x")
    }))
}

/// A frame to send: fin bit, opcode, payload.
type RawFrame = (bool, OpCode, Vec<u8>);
/// Name, join first?, frames, expected reason, expected close code.
type Case = (&'static str, bool, Vec<RawFrame>, DisconnectReason, u16);

/// Connects, optionally joins, sends the frames, and returns how the server
/// closed the connection.
async fn close_after(
    addr: std::net::SocketAddr,
    join_first: bool,
    frames: Vec<RawFrame>,
) -> (Option<DisconnectReason>, u16) {
    let mut c = if join_first {
        Client::join(addr, "victim").await.0
    } else {
        Client::connect(addr).await
    };
    for (fin, opcode, payload) in &frames {
        c.send_frame(Frame::new(*fin, *opcode, None, Payload::Borrowed(payload)))
            .await;
    }
    c.expect_close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_get_the_right_close_code_and_others_keep_playing() {
    let server = TestServer::start(Config {
        npcs: 10,
        ..Config::default()
    })
    .await;
    let addr = server.addr;
    // A bystander plays throughout.
    let bystander = tokio::spawn(async move {
        let (mut c, _) = Client::join(addr, "bystander").await;
        let mut replica = Replica::default();
        let n = play_for(&mut c, &mut replica, Duration::from_secs(3)).await;
        (n, replica.desyncs)
    });

    let big = vec![0u8; codec::MAX_CLIENT_MESSAGE + 1];
    let part = vec![0u8; 400];
    let cases: Vec<Case> = vec![
        (
            "oversized frame",
            true,
            vec![(true, OpCode::Binary, big.clone())],
            DisconnectReason::MessageTooLarge,
            1009,
        ),
        (
            "oversized fragmented message",
            true,
            vec![
                (false, OpCode::Binary, part.clone()),
                (false, OpCode::Continuation, part.clone()),
                (true, OpCode::Continuation, part.clone()),
            ],
            DisconnectReason::MessageTooLarge,
            1009,
        ),
        (
            "malformed payload after joining",
            true,
            vec![(true, OpCode::Binary, vec![1, 0xff, 0xff, 0xff])],
            DisconnectReason::MalformedMessage,
            1002,
        ),
        (
            "binary garbage instead of hello",
            false,
            vec![(true, OpCode::Binary, vec![0xde, 0xad, 0xbe, 0xef, 0x00])],
            DisconnectReason::MalformedMessage,
            1002,
        ),
        (
            "wrong protocol version",
            false,
            vec![(true, OpCode::Binary, hello_bytes(PROTOCOL_VERSION + 98))],
            DisconnectReason::VersionMismatch {
                server: PROTOCOL_VERSION,
                client: PROTOCOL_VERSION + 98,
            },
            1002,
        ),
        (
            "text frame",
            true,
            vec![(true, OpCode::Text, b"hello".to_vec())],
            DisconnectReason::UnexpectedMessage,
            1002,
        ),
        (
            "input before hello",
            false,
            vec![(
                true,
                OpCode::Binary,
                codec::client_bytes(&ClientMsg::Input(InputCmd::default())),
            )],
            DisconnectReason::UnexpectedMessage,
            1002,
        ),
        (
            "second hello",
            true,
            vec![(true, OpCode::Binary, hello_bytes(PROTOCOL_VERSION))],
            DisconnectReason::UnexpectedMessage,
            1002,
        ),
        (
            "continuation without a start",
            true,
            vec![(true, OpCode::Continuation, vec![2, 1])],
            DisconnectReason::MalformedMessage,
            1002,
        ),
    ];
    for (name, join, frames, reason, code) in cases {
        let got = close_after(addr, join, frames).await;
        assert_eq!(got, (Some(reason), code), "{name}");
    }
    // RFC 6455 5.1: a client frame without a mask closes the connection with
    // a protocol error, however valid its payload.
    let mut c = Client::join(addr, "unmasked").await.0;
    c.ws.set_auto_apply_mask(false);
    c.send(&ClientMsg::Input(InputCmd::default())).await;
    assert_eq!(
        c.expect_close().await,
        (Some(DisconnectReason::MalformedMessage), 1002),
        "unmasked frame"
    );

    let (snapshots, desyncs) = bystander.await.expect("bystander");
    assert!(
        snapshots >= 81,
        "bystander got only {snapshots} snapshots in 3 s"
    );
    assert_eq!(desyncs, 0);
    // The server is still healthy and counted what it did.
    let status = server.status().await;
    assert_eq!(status["totals"]["kicks"]["message_too_large"], 2);
    assert_eq!(status["totals"]["kicks"]["version_mismatch"], 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_at_the_hello_deadline() {
    let server = TestServer::start(Config {
        hello_timeout: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    let mut c = Client::connect(server.addr).await;
    let started = Instant::now();
    assert_eq!(
        c.expect_close().await,
        (Some(DisconnectReason::HelloTimeout), 1008)
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    server.stop().await;
}

/// A client that closes before its hello gets its close echoed, as in
/// play: a browser that gives up before the welcome sees a clean close with
/// its own code, not 1006.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_before_the_hello_is_echoed() {
    let server = TestServer::start(Config::default()).await;
    let mut c = Client::connect(server.addr).await;
    c.ws.write_frame(fastwebsockets::Frame::close(4000, b"no welcome"))
        .await
        .expect("close frame");
    assert_eq!(c.expect_close().await, (None, 4000));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_slow_the_others() {
    let server = TestServer::start(Config {
        // A busy world, so the stalled client's socket buffers fill fast.
        npcs: 2000,
        ack_timeout: Duration::from_secs(2),
        write_timeout: Duration::from_secs(1),
        ..Config::default()
    })
    .await;
    let addr = server.addr;
    // The stalled client joins, then never reads or acks again.
    let (stalled, _) = Client::join(addr, "stalled").await;
    let mut players = Vec::new();
    for i in 0..4 {
        players.push(tokio::spawn(async move {
            let (mut c, _) = Client::join(addr, &format!("p{i}")).await;
            let mut replica = Replica::default();
            play_for(&mut c, &mut replica, Duration::from_millis(500)).await;
            let n = play_for(&mut c, &mut replica, Duration::from_secs(3)).await;
            (n, replica.desyncs)
        }));
    }
    for p in players {
        let (n, desyncs) = p.await.expect("player");
        assert!(n >= 81, "a reading client got only {n} snapshots in 3 s");
        assert_eq!(desyncs, 0);
    }
    // The stalled client is dropped within a bounded time: as idle, since
    // it sends nothing either (one that went on sending would be too slow).
    let deadline = Instant::now() + STEP;
    loop {
        let status = server.status().await;
        if status["totals"]["kicks"]["idle_timeout"].as_u64() >= Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stalled client never dropped: {status}"
        );
        sleep(Duration::from_millis(100)).await;
    }
    drop(stalled);
    let status = server.status().await;
    assert_eq!(
        status["rooms"][0]["tick_us"]["overruns"], 0,
        "the tick never fell behind"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_every_client_and_returns_in_time() {
    let server = TestServer::start(Config {
        shutdown_grace: Duration::from_secs(2),
        ..Config::default()
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..5 {
        let (mut c, _) = Client::join(server.addr, &format!("p{i}")).await;
        c.next_snapshot().await;
        clients.push(c);
    }
    // Upgraded, and not yet said hello (fetching an auth token, say): it
    // is told as well, not left to its hello deadline.
    clients.push(Client::connect(server.addr).await);
    let waiters: Vec<_> = clients
        .into_iter()
        .map(|mut c| tokio::spawn(async move { timeout(STEP, c.expect_close()).await }))
        .collect();
    let took = server.stop().await;
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    for w in waiters {
        let closed = w.await.expect("waiter").expect("close arrived in time");
        assert_eq!(closed, (Some(DisconnectReason::ServerShutdown), 1001));
    }
}

/// An upgrade request that breaks RFC 6455 4.1 gets HTTP 400 (405 for a
/// method other than GET) and no WebSocket (`PROTOCOL.md` section 1, "Refused upgrades"); a browser's
/// key is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_upgrade_request_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(Config::default()).await;
    let request = |method: &'static str, key: Option<&'static str>, version: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("connect");
        let key = key.map_or(String::new(), |k| format!("Sec-WebSocket-Key: {k}\r\n"));
        let request = format!(
            "{method} /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             {key}Sec-WebSocket-Version: {version}\r\n\r\n",
            server.addr
        );
        s.write_all(request.as_bytes()).await.expect("write");
        let mut head = [0u8; 12];
        timeout(STEP, s.read_exact(&mut head))
            .await
            .expect("an answer in time")
            .expect("a status line");
        String::from_utf8_lossy(&head[9..12]).into_owned()
    };
    let status = |key: Option<&'static str>, version: &'static str| request("GET", key, version);
    for (key, version) in [
        (None, "13"),
        (Some("x"), "13"),
        (Some("!!!!notbase64!!!!!!!!!=="), "13"),
        // 15 bytes, and 17.
        (Some("AAAAAAAAAAAAAAAAAAAA"), "13"),
        (Some("AAAAAAAAAAAAAAAAAAAAAAA="), "13"),
        // Bits past the 16 bytes.
        (Some("dGhlIHNhbXBsZSBub25jZR=="), "13"),
        (Some("dGhlIHNhbXBsZSBub25jZQ=="), "12"),
    ] {
        assert_eq!(status(key, version).await, "400", "{key:?} {version}");
    }
    // RFC 6455's own example key, and one as browsers make them.
    for key in ["dGhlIHNhbXBsZSBub25jZQ==", "x3JJHMbDL1EzLkh9GBhXDw=="] {
        assert_eq!(status(Some(key), "13").await, "101", "{key}");
    }
    // RFC 6455 4.1: the handshake is a GET (a HEAD was upgraded).
    let key = Some("dGhlIHNhbXBsZSBub25jZQ==");
    assert_eq!(request("HEAD", key, "13").await, "405");
    server.stop().await;
}

/// RFC 6455 5.5.1: a close frame's body is empty or starts with a two-byte
/// code; one of a single byte is a protocol error (1002), not a close to
/// echo with 1000. (Raw bytes: the test client refuses to read a reason
/// after it sent a close.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_frame_of_one_byte_is_a_protocol_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(Config::default()).await;
    let mut socket = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    socket
        .write_all(&common::upgrade_with_hello(server.addr, "closer"))
        .await
        .expect("upgrade and hello");
    assert!(matches!(
        common::read_upgrade_answer(&mut socket).await,
        shared::protocol::ServerMsg::Welcome(_)
    ));
    let mask = [9, 8, 7, 6];
    let mut close = vec![0x88, 0x80 | 1];
    close.extend(mask);
    close.push(0x03 ^ mask[0]);
    socket.write_all(&close).await.expect("close frame");
    let mut got = Vec::new();
    let _ = timeout(STEP, socket.read_to_end(&mut got)).await;
    // The close frame the server sent: 0x88, a length, then the code.
    let code = got
        .windows(4)
        .rev()
        .find(|w| w[0] == 0x88 && w[1] >= 2 && w[1] < 126)
        .map(|w| u16::from_be_bytes([w[2], w[3]]));
    assert_eq!(code, Some(1002), "{got:02x?}");
    server.stop().await;
}
