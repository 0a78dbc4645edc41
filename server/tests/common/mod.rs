//! Test harness: the real server on 127.0.0.1:0 and a raw WebSocket client.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a different subset"
)]

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, WebSocket};
use http_body_util::Empty;
use hyper::Request;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use server::Config;
use server::guard::OperatorToken;
use shared::Tick;
use shared::codec;
use shared::protocol::{ClientMsg, DisconnectReason, Hello, RoomRequest, ServerMsg, Welcome};
use shared::snapshot::{self, SnapshotMsg, WorldState};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

/// A raw WebSocket upgrade request for `/ws`, with a masked hello frame of
/// player `name` right behind it, to send in one write.
pub fn upgrade_with_hello(addr: SocketAddr, name: &str) -> Vec<u8> {
    let mut hello = Vec::new();
    codec::encode_client(&ClientMsg::Hello(Hello::new(name)), &mut hello);
    let mut request = upgrade_request(addr);
    request.extend(masked_frame(0x2, &hello));
    request
}

/// A raw WebSocket upgrade request for `/ws`, without a hello.
pub fn upgrade_request(addr: SocketAddr) -> Vec<u8> {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// A masked client frame of `opcode` with a 7-bit payload length.
pub fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126, "a 7-bit frame length");
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    frame.extend(mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads the answer to [`upgrade_with_hello`] off `socket`: a 101, then the
/// first server message (an unmasked binary frame with a 7-bit length, as
/// a welcome is), decoded. Within [`STEP`].
pub async fn read_upgrade_answer(socket: &mut TcpStream) -> ServerMsg {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    timeout(STEP, async {
        loop {
            let mut buf = [0u8; 4096];
            let n = socket.read(&mut buf).await.expect("reads");
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
            let Some(head) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            assert!(got.starts_with(b"HTTP/1.1 101"));
            let frame = &got[head + 4..];
            if frame.len() < 2 || frame.len() < 2 + usize::from(frame[1]) {
                continue;
            }
            assert_eq!(frame[0], 0x82);
            let payload = &frame[2..2 + usize::from(frame[1])];
            break codec::decode_server(payload).expect("decodes");
        }
    })
    .await
    .expect("answered in time")
}

/// The server binary, serving on an ephemeral loopback port; killed if
/// the test ends before it exits.
pub struct Binary(pub std::process::Child);

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the server binary with `args` on 127.0.0.1 and an ephemeral
/// port, and waits for its `listening on` line.
pub fn start_binary(args: &[&str]) -> (Binary, SocketAddr) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("server binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let line = BufReader::new(stdout)
        .lines()
        .next()
        .expect("a line")
        .expect("utf-8");
    let addr = line
        .strip_prefix("listening on http://")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    (Binary(child), addr)
}

/// A log writer into a shared buffer, for tests that read what the server
/// logs (with a global subscriber: a test binary of their own).
#[derive(Clone, Default)]
pub struct Captured(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Every wait in these tests is bounded by this.
pub const STEP: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub addr: SocketAddr,
    /// The operator token [`Self::get`] presents, if the server has one.
    operator: Option<&'static str>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// The operator token of servers started by [`TestServer::start`].
pub const OPERATOR_TOKEN: &str = "test-operator-token";

impl TestServer {
    /// Starts the server with `config`, given [`OPERATOR_TOKEN`] unless it
    /// has a token: the tests read the status endpoints as its operator.
    pub async fn start(mut config: Config) -> Self {
        let operator = match config.operator_token {
            Some(_) => None,
            None => {
                config.operator_token = OperatorToken::new(OPERATOR_TOKEN);
                Some(OPERATOR_TOKEN)
            }
        };
        Self {
            operator,
            ..Self::start_public(config).await
        }
    }

    /// Starts the server with `config` as it is: with no operator token
    /// its status endpoints are public.
    pub async fn start_public(config: Config) -> Self {
        // The production socket set-up (its listen backlog included).
        let listener = server::listen(([127, 0, 0, 1], 0).into(), server::LISTEN_BACKLOG)
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, config, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            operator: None,
            stop: Some(stop),
            task,
        }
    }

    /// Waits (up to [`STEP`]) until `GET /rooms` no longer lists `room`
    /// (disposed, evicted or ended), and returns the rooms it lists then.
    pub async fn wait_until_unlisted(&self, room: &str) -> Vec<String> {
        let deadline = Instant::now() + STEP;
        loop {
            let rooms = self.json("/rooms").await;
            let names: Vec<String> = rooms["rooms"]
                .as_array()
                .expect("list")
                .iter()
                .filter_map(|r| r["id"].as_str().map(str::to_owned))
                .collect();
            if !names.iter().any(|name| name == room) {
                return names;
            }
            assert!(
                Instant::now() < deadline,
                "{room} never unlisted: {names:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// GET `path` as the operator: the status and the body.
    pub async fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let auth = self.operator.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| ("Authorization", a))
            .into_iter()
            .collect();
        http_get_with(self.addr, path, &headers).await
    }

    /// Signals shutdown and waits for `serve` to return; gives its duration.
    pub async fn stop(mut self) -> Duration {
        let started = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        timeout(STEP, &mut self.task)
            .await
            .expect("server stops in time")
            .expect("server task")
            .expect("serve returns Ok");
        started.elapsed()
    }

    pub async fn status(&self) -> serde_json::Value {
        self.json("/status.json").await
    }

    pub async fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path).await;
        assert_eq!(
            status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).expect("json body")
    }

    /// The value of the first `/metrics` sample line starting with `series`.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = String::from_utf8(self.get("/metrics").await.1).expect("utf-8");
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
    }
}

struct SpawnExecutor;

impl<F> hyper::rt::Executor<F> for SpawnExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(fut);
    }
}

/// A plain HTTP/1.1 GET; returns the status and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    http_get_with(addr, path, &[]).await
}

/// [`http_get`] with extra request headers.
pub async fn http_get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    timeout(STEP, s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body_at = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(buf.len(), |i| i + 4);
    (status, buf[body_at..].to_vec())
}

/// What a client observed.
#[derive(Debug)]
pub enum Event {
    Msg(ServerMsg),
    Closed { code: u16, reason: String },
}

pub struct Client {
    pub ws: WebSocket<TokioIo<Upgraded>>,
    buf: Vec<u8>,
    /// WebSocket ping frames received (fastwebsockets answers them).
    pub pings: u32,
}

/// Connects to `/ws`; on refusal the error names the HTTP status.
pub async fn try_connect(addr: SocketAddr) -> Result<Client, String> {
    try_connect_with(addr, &[]).await
}

/// [`try_connect`] with extra request headers (e.g. `Origin`).
pub async fn try_connect_with(
    addr: SocketAddr,
    headers: &[(&str, &str)],
) -> Result<Client, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut req = Request::builder();
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req
        .method("GET")
        .uri(format!("http://{addr}/ws"))
        .header("Host", addr.to_string())
        .header(hyper::header::UPGRADE, "websocket")
        .header(hyper::header::CONNECTION, "upgrade")
        .header(
            "Sec-WebSocket-Key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("Sec-WebSocket-Version", "13")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let (ws, _) = timeout(
        STEP,
        fastwebsockets::handshake::client(&SpawnExecutor, req, stream),
    )
    .await
    .map_err(|_| "handshake timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    // Pings reach the test (counted in `pings`); the server needs no pongs.
    let mut ws = ws;
    ws.set_auto_pong(false);
    Ok(Client {
        ws,
        buf: Vec::new(),
        pings: 0,
    })
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        try_connect(addr).await.expect("websocket handshake")
    }

    /// Connects and says hello; returns the welcome.
    pub async fn join(addr: SocketAddr, name: &str) -> (Self, Welcome) {
        Self::hello(addr, Hello::new(name))
            .await
            .unwrap_or_else(|refused| panic!("expected welcome, got {refused:?}"))
    }

    /// Connects and joins the named room.
    pub async fn join_room(addr: SocketAddr, name: &str, room: &str) -> (Self, Welcome) {
        Self::hello(
            addr,
            Hello {
                room: RoomRequest::Named(room.into()),
                ..Hello::new(name)
            },
        )
        .await
        .unwrap_or_else(|refused| panic!("expected welcome, got {refused:?}"))
    }

    /// Connects and sends `hello`: the welcome, or the refusal's typed
    /// reason and close code.
    pub async fn hello(
        addr: SocketAddr,
        hello: Hello,
    ) -> Result<(Self, Welcome), (Option<DisconnectReason>, u16)> {
        let mut c = Self::connect(addr).await;
        c.send(&ClientMsg::Hello(hello)).await;
        match c.recv().await {
            Event::Msg(ServerMsg::Welcome(w)) => Ok((c, w)),
            Event::Msg(ServerMsg::Disconnect(r)) => {
                let (_, code) = c.expect_close().await;
                Err((Some(r), code))
            }
            Event::Closed { code, .. } => Err((None, code)),
            other => panic!("expected welcome or refusal, got {other:?}"),
        }
    }

    /// Resumes the session of `welcome` in its room.
    pub async fn resume(
        addr: SocketAddr,
        welcome: &Welcome,
    ) -> Result<(Self, Welcome), (Option<DisconnectReason>, u16)> {
        Self::hello(
            addr,
            Hello {
                room: RoomRequest::Named(welcome.room.clone()),
                resume: Some(welcome.session),
                ..Hello::new("")
            },
        )
        .await
    }

    /// Drops the TCP connection without a close frame, as a network failure
    /// or a killed process would.
    pub fn kill(self) {
        drop(self);
    }

    pub async fn send(&mut self, msg: &ClientMsg) {
        codec::encode_client(msg, &mut self.buf);
        let buf = std::mem::take(&mut self.buf);
        self.send_frame(Frame::binary(Payload::Borrowed(&buf)))
            .await;
        self.buf = buf;
    }

    pub async fn send_frame(&mut self, frame: Frame<'_>) {
        self.ws.write_frame(frame).await.expect("send");
    }

    /// [`Self::send`] that reports a closed socket instead of panicking.
    pub async fn try_send(
        &mut self,
        msg: &ClientMsg,
    ) -> Result<(), fastwebsockets::WebSocketError> {
        codec::encode_client(msg, &mut self.buf);
        let buf = std::mem::take(&mut self.buf);
        let sent = self
            .ws
            .write_frame(Frame::binary(Payload::Borrowed(&buf)))
            .await;
        self.buf = buf;
        sent
    }

    /// Next message or the close, within [`STEP`].
    pub async fn recv(&mut self) -> Event {
        timeout(STEP, self.next_event())
            .await
            .expect("server answered in time")
    }

    pub async fn next_event(&mut self) -> Event {
        loop {
            let frame = match self.ws.read_frame().await {
                Ok(f) => f,
                Err(e) => {
                    return Event::Closed {
                        code: 1006,
                        reason: e.to_string(),
                    };
                }
            };
            match frame.opcode {
                OpCode::Binary => {
                    return Event::Msg(
                        codec::decode_server(&frame.payload).expect("server bytes decode"),
                    );
                }
                OpCode::Close => {
                    let p = &frame.payload;
                    let code = if p.len() >= 2 {
                        u16::from_be_bytes([p[0], p[1]])
                    } else {
                        1005
                    };
                    let reason =
                        String::from_utf8_lossy(p.get(2..).unwrap_or_default()).into_owned();
                    return Event::Closed { code, reason };
                }
                OpCode::Ping => self.pings += 1,
                _ => continue,
            }
        }
    }

    /// Reads until the server closes; returns the typed reason (if one was
    /// sent) and the close code.
    pub async fn expect_close(&mut self) -> (Option<DisconnectReason>, u16) {
        let mut reason = None;
        loop {
            match self.recv().await {
                Event::Msg(ServerMsg::Disconnect(r)) => reason = Some(r),
                Event::Msg(_) => continue,
                Event::Closed { code, .. } => return (reason, code),
            }
        }
    }

    pub async fn next_snapshot(&mut self) -> SnapshotMsg {
        loop {
            match self.recv().await {
                Event::Msg(ServerMsg::Snapshot(s)) => return s,
                Event::Msg(_) => continue,
                Event::Closed { code, reason } => panic!("closed {code}: {reason}"),
            }
        }
    }

    /// Reads snapshots until one of a tick `ticks` after `from`: the
    /// client still plays then, not only on snapshots buffered before.
    pub async fn snapshots_past(&mut self, from: Tick, ticks: i32) {
        while self.next_snapshot().await.tick.since(from) < ticks {}
    }

    /// Reads snapshots for `ticks` ticks from the next one.
    pub async fn plays_on(&mut self, ticks: i32) {
        let from = self.next_snapshot().await.tick;
        self.snapshots_past(from, ticks).await;
    }
}

/// A client-side copy of the world rebuilt from deltas, as a real client keeps it.
#[derive(Default)]
pub struct Replica {
    states: VecDeque<WorldState>,
    pub desyncs: u32,
    pub applied: u32,
    pub deltas: u32,
}

impl Replica {
    /// Applies a snapshot; returns the tick to acknowledge.
    pub fn apply(&mut self, msg: &SnapshotMsg) -> Tick {
        let base_tick = msg.tick.advanced(msg.base_age.wrapping_neg());
        let base = (!msg.is_full())
            .then(|| self.states.iter().find(|s| s.tick == base_tick))
            .flatten();
        let state = snapshot::apply(base, msg).expect("delta applies to the acked baseline");
        if snapshot::checksum(&state) != msg.checksum {
            self.desyncs += 1;
        }
        self.applied += 1;
        if !msg.is_full() {
            self.deltas += 1;
        }
        if self.states.len() == 64 {
            self.states.pop_front();
        }
        self.states.push_back(state);
        msg.tick
    }

    pub fn latest(&self) -> &WorldState {
        self.states.back().expect("a state")
    }
}

/// Receives snapshots for `window`, applying and acknowledging each.
pub async fn play_for(client: &mut Client, replica: &mut Replica, window: Duration) -> u32 {
    let end = Instant::now() + window;
    let mut n = 0;
    while Instant::now() < end {
        let Ok(event) = timeout(end - Instant::now(), client.next_event()).await else {
            break;
        };
        match event {
            Event::Msg(ServerMsg::Snapshot(s)) => {
                let tick = replica.apply(&s);
                client.send(&ClientMsg::Ack(tick)).await;
                n += 1;
            }
            Event::Msg(_) => {}
            Event::Closed { code, reason } => panic!("closed {code}: {reason}"),
        }
    }
    n
}

pub fn boxed<'a, T>(
    f: impl Future<Output = T> + Send + 'a,
) -> Pin<Box<dyn Future<Output = T> + Send + 'a>> {
    Box::pin(f)
}
