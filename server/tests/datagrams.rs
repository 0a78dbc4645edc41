//! The datagram channel (`PROTOCOL.md` section 3.7) on real sockets: a
//! client that opens it plays with its inputs, acks and snapshots as UDP
//! datagrams, signed both ways; datagrams with an unknown id, from a wrong
//! address or without the key's tag are not used, and malformed ones close
//! the connection; a snapshot too large for a datagram and everything but
//! inputs, acks and snapshots stay on the WebSocket.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Client, Event, Replica, STEP, TestServer};
use server::Config;
use shared::codec::{self, DatagramMac, DatagramMsg};
use shared::protocol::{
    ClientMsg, DatagramChannel, DatagramKey, DisconnectReason, InputCmd, MAX_SNAPSHOT_DATAGRAM,
    ServerMsg, Welcome,
};
use shared::snapshot::SnapshotMsg;
use shared::{Tick, rules};
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout};

/// Asks for the channel over the WebSocket and returns the answer.
async fn open(client: &mut Client) -> DatagramChannel {
    client.send(&ClientMsg::OpenDatagrams).await;
    loop {
        match client.recv().await {
            Event::Msg(ServerMsg::DatagramChannel(channel)) => return channel,
            Event::Msg(_) => {}
            Event::Closed { code, reason } => panic!("closed {code}: {reason}"),
        }
    }
}

/// A UDP socket on `ip`, connected to the server's datagram port.
async fn udp_from(ip: [u8; 4], server: &TestServer, channel: DatagramChannel) -> UdpSocket {
    let socket = UdpSocket::bind(SocketAddr::from((ip, 0)))
        .await
        .expect("bind udp");
    socket
        .connect(SocketAddr::new(server.addr.ip(), channel.port))
        .await
        .expect("connect udp");
    socket
}

/// What most tests start from: a server with `config`, a player joined as
/// `name` with its datagram channel open, and a UDP socket from the
/// player's own address.
struct Opened {
    server: TestServer,
    client: Client,
    welcome: Welcome,
    channel: DatagramChannel,
    udp: UdpSocket,
}

async fn opened(config: Config, name: &str) -> Opened {
    let server = TestServer::start(config).await;
    let (mut client, welcome) = Client::join(server.addr, name).await;
    let channel = open(&mut client).await;
    let udp = udp_from([127, 0, 0, 1], &server, channel).await;
    Opened {
        server,
        client,
        welcome,
        channel,
        udp,
    }
}

/// A hello inside a datagram of the channel (only inputs and acks travel
/// there), signed with `key`.
fn hello_datagram(channel: DatagramChannel, key: DatagramKey) -> Vec<u8> {
    let mut bytes = channel.id.0.to_vec();
    bytes.extend(codec::client_bytes(&ClientMsg::Hello(
        shared::protocol::Hello::new("x"),
    )));
    DatagramMac::new(&key).seal_client(&mut bytes);
    bytes
}

/// Sends `msgs` as one datagram of the channel, signed with `key` (the
/// channel's own, or another to forge one).
async fn send_signed(
    socket: &UdpSocket,
    channel: DatagramChannel,
    key: DatagramKey,
    msgs: &[DatagramMsg],
) {
    let mut bytes = Vec::new();
    codec::encode_datagram(&channel.id, &DatagramMac::new(&key), msgs, &mut bytes);
    socket.send(&bytes).await.expect("send datagram");
}

async fn send(socket: &UdpSocket, channel: DatagramChannel, msgs: &[DatagramMsg]) {
    send_signed(socket, channel, channel.key, msgs).await;
}

/// Sends `msgs` signed with `key`, about 2,000 datagrams a second, for
/// `length`: far past the 70 messages a second a client may send.
async fn flood(
    socket: &UdpSocket,
    channel: DatagramChannel,
    key: DatagramKey,
    msgs: &[DatagramMsg],
    length: Duration,
) {
    let until = Instant::now() + length;
    while Instant::now() < until {
        for _ in 0..20 {
            send_signed(socket, channel, key, msgs).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The snapshot a server datagram carries, whose tag must verify with the
/// channel's key.
fn snapshot_of(channel: DatagramChannel, datagram: &[u8]) -> SnapshotMsg {
    let bytes = DatagramMac::new(&channel.key)
        .open_snapshot(datagram)
        .expect("a server datagram signed with the channel's key");
    match codec::decode_server(bytes).expect("a datagram decodes") {
        ServerMsg::Snapshot(snapshot) => snapshot,
        other => panic!("a datagram that is not a snapshot: {other:?}"),
    }
}

/// Where a snapshot came from.
#[derive(Debug, PartialEq)]
enum Path {
    Datagram,
    WebSocket,
}

/// The next snapshot by either path; the WebSocket's other messages are
/// passed over (its pings are answered by the client library).
async fn next_snapshot(
    client: &mut Client,
    udp: &UdpSocket,
    channel: DatagramChannel,
) -> (Path, SnapshotMsg, usize) {
    let mut buf = vec![0; 64 * 1024];
    timeout(STEP, async {
        loop {
            tokio::select! {
                got = udp.recv(&mut buf) => {
                    let len = got.expect("udp recv");
                    return (Path::Datagram, snapshot_of(channel, &buf[..len]), len);
                }
                event = client.next_event() => match event {
                    Event::Msg(ServerMsg::Snapshot(s)) => {
                        let len = codec::server_bytes(&ServerMsg::Snapshot(s.clone())).len();
                        return (Path::WebSocket, s, len);
                    }
                    Event::Msg(_) => {}
                    Event::Closed { code, reason } => panic!("closed {code}: {reason}"),
                },
            }
        }
    })
    .await
    .expect("a snapshot in time")
}

/// Plays `ticks` inputs over datagrams, each datagram carrying the newest
/// input and the three before it, acknowledging every snapshot applied.
/// Returns the replica and how many snapshots came by each path.
async fn play_by_datagrams(
    client: &mut Client,
    udp: &UdpSocket,
    channel: DatagramChannel,
    welcome: &Welcome,
    inputs: u32,
) -> (Replica, u32, u32) {
    let mut replica = Replica::default();
    let mut newest: Option<Tick> = None;
    let (mut by_datagram, mut by_websocket) = (0, 0);
    let mut sent: Vec<InputCmd> = Vec::new();
    for seq in 1..=inputs {
        let ack = newest.unwrap_or(welcome.tick);
        sent.push(InputCmd {
            seq,
            tick: ack,
            ack,
            buttons: rules::buttons::RIGHT,
            aim: 0,
        });
        let redundant: Vec<DatagramMsg> = sent
            .iter()
            .rev()
            .take(4)
            .rev()
            .map(|cmd| DatagramMsg::Input(*cmd))
            .collect();
        send(udp, channel, &redundant).await;
        let (path, snapshot, len) = next_snapshot(client, udp, channel).await;
        match path {
            Path::Datagram => {
                by_datagram += 1;
                assert!(len <= MAX_SNAPSHOT_DATAGRAM, "a datagram of {len} bytes");
            }
            Path::WebSocket => by_websocket += 1,
        }
        // Datagrams may arrive out of order: an older tick is dropped.
        if newest.is_none_or(|n| snapshot.tick.since(n) > 0) {
            newest = Some(replica.apply(&snapshot));
        }
    }
    (replica, by_datagram, by_websocket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_plays_with_its_inputs_and_snapshots_as_datagrams() {
    let server = TestServer::start(Config::default()).await;
    let (mut client, welcome) = Client::join(server.addr, "udp").await;
    let channel = open(&mut client).await;
    assert_ne!(channel.port, 0, "the server offers datagrams by default");
    let udp = udp_from([127, 0, 0, 1], &server, channel).await;

    let (replica, by_datagram, by_websocket) =
        play_by_datagrams(&mut client, &udp, channel, &welcome, 90).await;
    assert_eq!(replica.desyncs, 0);
    // Every snapshot after the first datagram comes as one: at most the
    // one or two written before the server heard from the client did not.
    assert!(
        by_datagram >= 85,
        "{by_datagram} by datagram, {by_websocket} by WebSocket"
    );
    assert!(by_websocket <= 3, "{by_websocket} by WebSocket");
    // The acks inside the datagrams' inputs were read: deltas, not full
    // snapshots over and over.
    assert!(replica.deltas >= 85, "{} deltas", replica.deltas);
    // And the inputs were applied, each once (the copies were not).
    let (_, last, _) = next_snapshot(&mut client, &udp, channel).await;
    assert!(last.input_ack >= 85, "input ack {}", last.input_ack);
    let applied = server.metric("arena_inputs_applied_total").await;
    assert!(
        applied <= 90.0,
        "{applied} inputs applied of 90 sent, 4 copies each"
    );
    assert!(server.metric("arena_datagrams_received_total").await >= 85.0);
    assert!(server.metric("arena_datagram_snapshots_total").await >= 85.0);
    // The operator's view says so too.
    let status = server.status().await;
    assert_eq!(status["datagram_port"], u64::from(channel.port));
    assert!(status["totals"]["datagram_snapshots"].as_u64() >= Some(85));
    assert!(status["totals"]["datagrams_received"].as_u64() >= Some(85));
    assert_eq!(status["totals"]["datagrams_refused"], 0);

    // A second ask gets the same id and key: the channel is the
    // connection's.
    let again = open(&mut client).await;
    assert_eq!(again, channel);

    // Gone with its connection: the id names nothing once it leaves.
    let unknown = r#"arena_datagrams_refused_total{reason="UnknownId"}"#;
    let before = server.metric(unknown).await;
    client.send(&ClientMsg::Leave).await;
    assert_eq!(client.expect_close().await.0, Some(DisconnectReason::Left));
    send(&udp, channel, &[DatagramMsg::Ack(Tick(1))]).await;
    wait_for_metric(&server, unknown, before + 1.0).await;
}

/// Waits until the `/metrics` series reaches `at_least`.
async fn wait_for_metric(server: &TestServer, series: &str, at_least: f64) {
    let deadline = Instant::now() + STEP;
    while server.metric(series).await < at_least {
        assert!(
            Instant::now() < deadline,
            "{series} never reached {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_with_an_unknown_id_a_wrong_tag_or_from_another_address_are_not_used() {
    let server = TestServer::start(Config::default()).await;
    let (mut client, welcome) = Client::join(server.addr, "victim").await;
    let channel = open(&mut client).await;
    let input = DatagramMsg::Input(InputCmd {
        seq: 1,
        tick: welcome.tick,
        ack: welcome.tick,
        buttons: rules::buttons::FIRE,
        aim: 0,
    });

    // A valid datagram from another address (the WebSocket came from
    // 127.0.0.1): one who copied it cannot play the player, nor have its
    // snapshots sent to itself (or to a victim it spoofs).
    let elsewhere = udp_from([127, 0, 0, 2], &server, channel).await;
    send(&elsewhere, channel, &[input]).await;
    wait_for_metric(
        &server,
        r#"arena_datagrams_refused_total{reason="WrongAddress"}"#,
        1.0,
    )
    .await;
    // An unknown id, and a datagram too short to hold an id and a tag,
    // from the right address.
    let udp = udp_from([127, 0, 0, 1], &server, channel).await;
    let mut unknown = channel;
    unknown.id.0[0] ^= 1;
    send(&udp, unknown, &[input]).await;
    udp.send(&channel.id.0).await.expect("send");
    wait_for_metric(
        &server,
        r#"arena_datagrams_refused_total{reason="UnknownId"}"#,
        2.0,
    )
    .await;
    // The right id from the right address, signed with another key: what
    // one who saw the id go by could forge. Whatever it holds, even what
    // would be malformed from the client, it is dropped, and the client
    // pays nothing for it (no close).
    let forged = DatagramKey([0x5a; 16]);
    send_signed(&udp, channel, forged, &[input]).await;
    udp.send(&hello_datagram(channel, forged))
        .await
        .expect("send");
    wait_for_metric(
        &server,
        r#"arena_datagrams_refused_total{reason="BadTag"}"#,
        2.0,
    )
    .await;

    // None of them was used: the input is not applied, no snapshot goes
    // to either socket, and the WebSocket plays on.
    let mut buf = [0; 2048];
    let mut replica = Replica::default();
    for _ in 0..10 {
        let snapshot = client.next_snapshot().await;
        assert_eq!(snapshot.input_ack, 0, "an input from a refused datagram");
        let tick = replica.apply(&snapshot);
        client.send(&ClientMsg::Ack(tick)).await;
    }
    for socket in [&elsewhere, &udp] {
        assert!(
            timeout(Duration::from_millis(100), socket.recv(&mut buf))
                .await
                .is_err(),
            "a snapshot sent where no valid datagram came from"
        );
    }
    assert_eq!(server.metric("arena_datagrams_received_total").await, 0.0);

    // The right id and tag from the right address are used, and the
    // snapshot that comes back is signed with the channel's key.
    send(&udp, channel, &[input]).await;
    let len = timeout(STEP, udp.recv(&mut buf))
        .await
        .expect("a snapshot by datagram")
        .expect("recv");
    assert!(snapshot_of(channel, &buf[..len]).tick.since(welcome.tick) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_datagram_signed_by_the_client_closes_the_connection() {
    let Opened {
        server,
        mut client,
        channel,
        udp,
        ..
    } = opened(Config::default(), "broken").await;
    udp.send(&hello_datagram(channel, channel.key))
        .await
        .expect("send");
    assert_eq!(
        client.expect_close().await,
        (Some(DisconnectReason::MalformedMessage), 1002)
    );
    assert_eq!(
        server
            .metric(r#"arena_datagrams_refused_total{reason="Malformed"}"#)
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_datagrams_is_rate_limited_and_then_closed() {
    let Opened {
        server,
        mut client,
        welcome,
        channel,
        udp,
    } = opened(Config::default(), "flood").await;
    let ack = [DatagramMsg::Ack(welcome.tick)];
    // 70 messages a second are allowed (30 inputs, 30 acks, 10 more); the
    // server gives up on the client after three seconds of flood with the
    // defaults (bounded here at 8).
    let closed = tokio::select! {
        () = flood(&udp, channel, channel.key, &ack, Duration::from_secs(8)) => {
            panic!("not closed within 8 s")
        }
        closed = client.expect_close() => closed,
    };
    assert_eq!(closed, (Some(DisconnectReason::RateLimited), 1008));
    assert!(
        server
            .metric(r#"arena_datagrams_refused_total{reason="RateLimited"}"#)
            .await
            > 100.0
    );
}

/// The id is no secret: one who saw it go by can send datagrams that name
/// the connection, from its address even (a shared NAT). Without the key's
/// tag they are dropped before the client's rate limit, so a flood of them
/// cannot get the client closed either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forged_datagrams_costs_the_client_nothing() {
    let Opened {
        server,
        mut client,
        welcome,
        channel,
        udp,
    } = opened(Config::default(), "framed").await;
    let forged = DatagramKey([0x5a; 16]);
    let ack = [DatagramMsg::Ack(welcome.tick)];
    // 4 s: past the 3 s of flood after which a client's own datagrams get
    // it closed (the test above).
    tokio::select! {
        () = flood(&udp, channel, forged, &ack, Duration::from_secs(4)) => {}
        closed = client.expect_close() => panic!("closed by a forged flood: {closed:?}"),
    }
    client.plays_on(5).await;
    assert!(
        server
            .metric(r#"arena_datagrams_refused_total{reason="BadTag"}"#)
            .await
            > 1000.0
    );
    for reason in ["RateLimited", "Malformed"] {
        let series = format!(r#"arena_datagrams_refused_total{{reason="{reason}"}}"#);
        assert_eq!(server.metric(&series).await, 0.0, "{reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_too_large_for_a_datagram_goes_over_the_websocket() {
    // 400 NPCs: a full snapshot is several KB.
    let Opened {
        server,
        mut client,
        welcome,
        channel,
        udp,
    } = opened(
        Config {
            npcs: 400,
            ..Config::default()
        },
        "big",
    )
    .await;
    // Acknowledging the welcome's tick says "I hold nothing": the server
    // sends full snapshots (one a second while none is acknowledged), now
    // with a datagram route known.
    let deadline = Instant::now() + STEP;
    loop {
        send(&udp, channel, &[DatagramMsg::Ack(welcome.tick)]).await;
        let (path, snapshot, len) = next_snapshot(&mut client, &udp, channel).await;
        if path == Path::Datagram {
            assert!(len <= MAX_SNAPSHOT_DATAGRAM, "a datagram of {len} bytes");
        }
        let routed = server.metric("arena_datagrams_received_total").await >= 1.0;
        if routed && snapshot.is_full() && path == Path::WebSocket {
            assert!(
                len > MAX_SNAPSHOT_DATAGRAM,
                "a full snapshot of {len} bytes"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no full snapshot over the WebSocket"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_datagrams_says_so_and_plays_on() {
    let server = TestServer::start(Config {
        datagram_port: None,
        ..Config::default()
    })
    .await;
    let (mut client, _) = Client::join(server.addr, "tcp").await;
    let channel = open(&mut client).await;
    assert_eq!(channel.port, 0);
    client.plays_on(5).await;
    assert!(server.status().await["datagram_port"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_come_back_to_the_websocket_when_datagrams_stop() {
    let Opened {
        server: _server,
        mut client,
        welcome,
        channel,
        udp,
    } = opened(Config::default(), "firewalled").await;
    // Play over datagrams until snapshots come that way.
    let mut replica = Replica::default();
    let mut newest = welcome.tick;
    loop {
        send(&udp, channel, &[DatagramMsg::Ack(newest)]).await;
        let (path, snapshot, _) = next_snapshot(&mut client, &udp, channel).await;
        if snapshot.tick.since(newest) > 0 {
            newest = replica.apply(&snapshot);
        }
        if path == Path::Datagram {
            break;
        }
    }
    // The datagrams stop (a firewall closed, say); the client goes on
    // acknowledging over its WebSocket. Within the route's 2 s the
    // snapshots come back there, and stay.
    let stopped = Instant::now();
    let mut by_websocket = 0;
    while by_websocket < 30 {
        let (path, snapshot, _) = next_snapshot(&mut client, &udp, channel).await;
        match path {
            Path::WebSocket => by_websocket += 1,
            Path::Datagram => {
                assert!(
                    by_websocket == 0,
                    "a datagram after the WebSocket took over"
                );
                assert!(
                    stopped.elapsed() < Duration::from_millis(2500),
                    "snapshots by datagram {:?} after the last datagram",
                    stopped.elapsed()
                );
            }
        }
        if snapshot.tick.since(newest) > 0 {
            newest = replica.apply(&snapshot);
            client.send(&ClientMsg::Ack(newest)).await;
        }
    }
    assert_eq!(replica.desyncs, 0);
    assert!(
        stopped.elapsed() < Duration::from_secs(4),
        "the WebSocket took over only after {:?}",
        stopped.elapsed()
    );
}
