//! One WebSocket connection: a reader (this task) and a writer (its own task).
//!
//! The reader decodes client messages and forwards them: inputs to the room's
//! bounded input queue, acks into an atomic the room's fan-out reads, pings
//! and close replies to the writer's small control queue. The fan-out
//! ([`crate::fanout`]) writes the snapshots: for every published tick, this
//! client's delta against the newest snapshot it acknowledged. The writer
//! task sends the welcome, pongs and the close, and finishes any snapshot
//! the socket did not take at once, with a deadline. Neither task ever
//! touches the world, and the room never waits for either.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fastwebsockets::{Frame, OpCode, Role, WebSocket, WebSocketError, WebSocketRead};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use shared::Tick;
use shared::codec::{self, MAX_CLIENT_MESSAGE};
use shared::protocol::{
    ClientMsg, DatagramChannel, DatagramId, DatagramKey, DisconnectReason, Hello,
    MAX_AUTH_TOKEN_BYTES, PROTOCOL_VERSION, RoomRequest, ServerMsg, Welcome,
};
use shared::rules::MAX_NAME_CHARS;
use std::pin::Pin;
use std::task::Poll;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{timeout, timeout_at};
use tracing::{Instrument, debug, info, info_span};

use crate::config::Config;
use crate::datagram::{Datagrams, PeerParts, Registration};
use crate::deadline::WriteDeadline;
use crate::evict::Ticket;
use crate::fanout::Subscriber;
use crate::guard::{Admit, RateGuard};
use crate::lock;
use crate::metrics::Metrics;
use crate::outbox::{Outbox, WriteFailed, put_frame};
use crate::registry::Registry;
use crate::room::{NO_ACK, Published, RoomCmd, RoomHandle, Seat, pass_input};
use crate::users::{ClaimKey, UserClaim};

/// What the HTTP server upgrades: hyper's type-erased stream over the TCP
/// stream it was given.
type Upgrade = TokioIo<Upgraded>;

/// The read side of a connection: the TCP stream's own half, after the bytes
/// hyper read past the upgrade request (none from a client that waits for
/// the 101, as RFC 6455 section 4.1 asks).
///
/// The connection runs on the `TcpStream` itself rather than on hyper's
/// `Upgraded`, split into owned halves: no mutex taken by every read and
/// write (`tokio::io::split`), no boxed stream, no adapter between hyper's
/// and tokio's I/O traits on each call.
struct ReadSide {
    early: bytes::Bytes,
    half: OwnedReadHalf,
}

impl AsyncRead for ReadSide {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.early.is_empty() {
            let n = self.early.len().min(buf.remaining());
            buf.put_slice(&self.early.split_to(n));
            if self.early.is_empty() {
                // An empty slice still holds hyper's read buffer.
                self.early = bytes::Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.half).poll_read(cx, buf)
    }
}

/// Takes the TCP stream back from hyper: the WebSocket's read side,
/// configured, and the write side, which the server frames itself (see
/// [`crate::outbox`]). `None` if the upgraded stream is not the
/// `TcpStream` (in its [`WriteDeadline`]) the server serves.
fn into_tcp(ws: WebSocket<Upgrade>) -> Option<(WebSocketRead<ReadSide>, Outbox)> {
    let upgraded = ws.into_inner().into_inner();
    let parts = upgraded
        .downcast::<TokioIo<WriteDeadline<TcpStream>>>()
        .ok()?;
    // The outbox has deadlines of its own: the socket leaves the wrapper.
    let (half, write) = parts.io.into_inner().into_inner().into_split();
    // Even empty, the leftover is a slice of hyper's read buffer (up to
    // 16 KiB): keep it only while it has bytes to give.
    let early = if parts.read_buf.is_empty() {
        bytes::Bytes::new()
    } else {
        parts.read_buf
    };
    let read = ReadSide { early, half };
    // Only the read side is fastwebsockets': with automatic pongs and closes
    // off it never writes, so its write half is a sink.
    let (mut read, _) =
        fastwebsockets::after_handshake_split(read, tokio::io::sink(), Role::Server);
    read.set_auto_close(false);
    read.set_auto_pong(false);
    // fastwebsockets refuses frames of `max` bytes or more.
    read.set_max_message_size(MAX_CLIENT_MESSAGE + 1);
    Some((read, Outbox::new(write)))
}

/// Messages the reader (or shutdown) hands to the writer. The queue is small
/// (16): a client that floods pings beyond it simply loses the extra pongs.
#[derive(Debug)]
enum Control {
    /// Answer to an application ping.
    Pong(u64),
    /// Answer to a WebSocket ping frame (payload at most 125 bytes).
    WsPong(Vec<u8>),
    /// The client sent a close frame: echo it and stop.
    CloseReply(u16),
    /// Close with a reason and stop.
    Disconnect(DisconnectReason),
    /// Answer to `OpenDatagrams`.
    Datagrams(DatagramChannel),
}
const CONTROL_QUEUE: usize = 16;

/// Everything a connection needs from the server.
#[derive(Clone, Debug)]
pub(crate) struct ConnContext {
    pub(crate) config: Arc<Config>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// The datagram channel, unless the server offers none.
    pub(crate) datagrams: Option<Arc<Datagrams>>,
}

/// Why a read ended.
enum ReadEnd {
    /// The peer went away (EOF, reset) or closed without a reason to give.
    Gone,
    /// The peer broke a rule; tell it why.
    Reason(DisconnectReason),
}

enum Inbound<'a> {
    Binary(&'a [u8]),
    Ping(Vec<u8>),
    Pong,
    Close(u16),
}

/// Frame reader that reassembles fragmented messages under the same size cap
/// as single frames (fastwebsockets only caps each frame), and the
/// connection's rate limit.
///
/// Every frame the client sends is charged to the rate limit, not only
/// complete messages: ping and pong frames, and each fragment of a
/// message, are as cheap to send as a message and cost the server as much
/// to read, so a flood of them must meet the same fate. Over the limit, a
/// ping frame goes unanswered, a pong is ignored, and a message is dropped
/// whole if any of its fragments was (all counted in
/// `arena_messages_rate_limited_total`, a message at its first dropped
/// fragment); sustained, the connection is
/// closed with `RateLimited`. A close frame is always read.
///
/// After a dropped frame the reader waits for the bucket to refill before
/// it reads another: a flooder's frames then wait in its own socket (TCP
/// holds it back), not in the server's CPU. Reading and dropping them as
/// fast as they came cost a core per flooding connection (6 million tiny
/// frames a second) for the seconds before the kick, and a flooder that
/// reconnects never stops.
struct Reader {
    ws: WebSocketRead<ReadSide>,
    message: Vec<u8>,
    in_fragment: bool,
    /// A fragment of the message being reassembled was over the rate: the
    /// message is dropped when it ends.
    dropping: bool,
    guard: RateGuard,
    /// Set while lingering after the close: frames over the rate are still
    /// dropped and waited for, but never kicked (a kick would end the read
    /// at once, and close the socket on unread bytes).
    lingering: bool,
    metrics: Arc<Metrics>,
}

impl Reader {
    fn new(ws: WebSocketRead<ReadSide>, config: &Config, metrics: Arc<Metrics>) -> Self {
        let (rate, burst) = config.message_rate();
        Self {
            ws,
            message: Vec::with_capacity(64),
            in_fragment: false,
            dropping: false,
            guard: RateGuard::new(rate, burst, config.rate_limit_kick_secs, Instant::now()),
            lingering: false,
            metrics,
        }
    }

    /// Charges one frame, read at `now`, to `guard`: whether it may be
    /// used. Never a kick while `lingering`.
    fn admit(guard: &mut RateGuard, lingering: bool, now: Instant) -> Result<bool, ReadEnd> {
        match guard.admit(now) {
            Admit::Pass => Ok(true),
            Admit::Drop => Ok(false),
            Admit::Kick if lingering => Ok(false),
            Admit::Kick => Err(ReadEnd::Reason(DisconnectReason::RateLimited)),
        }
    }

    /// The next message or control frame, and when its last frame was read
    /// (one clock read per frame, for the rate limit and the idle clock).
    async fn next(&mut self) -> Result<(Instant, Inbound<'_>), ReadEnd> {
        loop {
            let mut frame = self
                .ws
                .read_frame(&mut |_: Frame<'_>| async { Ok::<(), Infallible>(()) })
                .await
                .map_err(|e| match e {
                    WebSocketError::FrameTooLarge => {
                        ReadEnd::Reason(DisconnectReason::MessageTooLarge)
                    }
                    WebSocketError::UnexpectedEOF
                    | WebSocketError::IoError(_)
                    | WebSocketError::ConnectionClosed => ReadEnd::Gone,
                    _ => ReadEnd::Reason(DisconnectReason::MalformedMessage),
                })?;
            if !is_masked(&mut frame) {
                // RFC 6455 5.1: a server must close the connection on a
                // client frame that is not masked.
                return Err(ReadEnd::Reason(DisconnectReason::MalformedMessage));
            }
            let now = Instant::now();
            let admitted =
                frame.opcode == OpCode::Close || Self::admit(&mut self.guard, self.lingering, now)?;
            match frame.opcode {
                OpCode::Binary | OpCode::Continuation => {
                    let starts = frame.opcode == OpCode::Binary;
                    if starts == self.in_fragment {
                        // A new message inside a fragmented one, or a
                        // continuation of nothing.
                        return Err(ReadEnd::Reason(DisconnectReason::MalformedMessage));
                    }
                    if starts {
                        self.message.clear();
                        self.dropping = false;
                    }
                    if self.message.len() + frame.payload.len() > MAX_CLIENT_MESSAGE {
                        return Err(ReadEnd::Reason(DisconnectReason::MessageTooLarge));
                    }
                    self.message.extend_from_slice(&frame.payload);
                    self.in_fragment = !frame.fin;
                    if !admitted && !self.dropping {
                        // Counted once, when it is known to be dropped: a
                        // message of endless fragments counts too.
                        self.metrics.rate_limited.inc();
                        self.dropping = true;
                    }
                    if frame.fin && !self.dropping {
                        return Ok((now, Inbound::Binary(&self.message)));
                    }
                }
                OpCode::Ping | OpCode::Pong if !admitted => {
                    self.metrics.rate_limited.inc();
                }
                OpCode::Text => return Err(ReadEnd::Reason(DisconnectReason::UnexpectedMessage)),
                OpCode::Close => {
                    // RFC 6455 5.5.1: empty, or a two-byte code first.
                    let code = match *frame.payload {
                        [] => 1000,
                        [_] => return Err(ReadEnd::Reason(DisconnectReason::MalformedMessage)),
                        [high, low, ..] => u16::from_be_bytes([high, low]),
                    };
                    return Ok((now, Inbound::Close(code)));
                }
                OpCode::Ping => return Ok((now, Inbound::Ping(frame.payload.to_vec()))),
                OpCode::Pong => return Ok((now, Inbound::Pong)),
            }
            // A fragment, or a frame dropped: after a drop, the next read
            // waits for the bucket.
            if !admitted {
                tokio::time::sleep(self.guard.refill_wait()).await;
            }
        }
    }
}

/// Whether a frame read from the client carried a masking key (the
/// payload is already unmasked). fastwebsockets keeps the key private and
/// reads unmasked frames as well: its header writer is the one place that
/// shows it, as the mask bit.
fn is_masked(frame: &mut Frame<'_>) -> bool {
    let mut head = [0u8; 16];
    frame.fmt_head(&mut head);
    head[1] & 0x80 != 0
}

/// The connection's own writes (welcome, pongs, the close), each under a
/// deadline, through the outbox it shares with the room's fan-out.
struct Writer {
    out: Arc<Outbox>,
    /// The encoded message.
    buf: Vec<u8>,
    /// The framed bytes.
    frame: Vec<u8>,
    write_timeout: Duration,
    metrics: Arc<Metrics>,
    /// The connection's span, named as the parent of the writer's events.
    span: tracing::Span,
}

impl Writer {
    fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.write_timeout
    }

    async fn frame(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), WriteFailed> {
        self.frame.clear();
        put_frame(&mut self.frame, opcode, payload);
        self.out.send(&self.frame, self.deadline()).await?;
        self.metrics.bytes_out.inc_by(payload.len() as u64);
        Ok(())
    }

    async fn message(&mut self, msg: &ServerMsg) -> Result<(), WriteFailed> {
        codec::encode_server(msg, &mut self.buf);
        let buf = std::mem::take(&mut self.buf);
        let result = self.frame(OpCode::Binary, &buf).await;
        self.buf = buf;
        result
    }

    /// Finishes what the fan-out left for the socket.
    async fn flush(&mut self) -> Result<(), WriteFailed> {
        self.out.flush(self.deadline()).await
    }

    /// Tells the client why and sends the close frame after anything
    /// pending, then shuts the write half (FIN). Best effort: the client
    /// may already be gone.
    async fn close(&mut self, reason: DisconnectReason) {
        debug!(parent: &self.span, reason = reason.label(), "closing connection");
        self.metrics.count_kick(&reason);
        codec::encode_server(&ServerMsg::Disconnect(reason.clone()), &mut self.buf);
        self.frame.clear();
        put_frame(&mut self.frame, OpCode::Binary, &self.buf);
        let text = reason.to_string();
        let close = Frame::close(reason.close_code(), text.as_bytes());
        put_frame(&mut self.frame, OpCode::Close, &close.payload);
        let _ = self.out.close_with(&self.frame, self.deadline()).await;
    }

    /// Echoes the client's close (code `code`), then shuts the write half.
    async fn close_reply(&mut self, code: u16) {
        let code = echo_code(code);
        self.frame.clear();
        put_frame(&mut self.frame, OpCode::Close, &code.to_be_bytes());
        let _ = self.out.close_with(&self.frame, self.deadline()).await;
    }
}

/// The code that answers a client's close with `code`: the same, unless it
/// is one a close frame may not carry (RFC 6455 section 7.4: below 1000,
/// 1004 to 1006 and 1015 are reserved, 1016 to 2999 are unassigned, and
/// 5000 and above do not exist), which is answered with a normal 1000.
fn echo_code(code: u16) -> u16 {
    match code {
        1000..=1003 | 1007..=1014 | 3000..=4999 => code,
        _ => 1000,
    }
}

/// Strips control and format characters, trims, and cuts to the maximum
/// length.
fn sanitize_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .filter(|&c| !c.is_control() && !is_format(c) && !is_blank(c))
        .take(MAX_NAME_CHARS)
        .collect();
    let clean = clean.trim();
    if clean.is_empty() {
        "player".to_owned()
    } else {
        clean.to_owned()
    }
}

/// Whether `c` is a Unicode format character (general category Cf, as of
/// Unicode 15): invisible, and some (the bidirectional overrides, U+202A
/// to U+202E and U+2066 to U+2069) reorder the text around them, so a name
/// holding them can show as another player's (`ana` + U+200B + U+202E
/// looked like `ana` on every scoreboard).
fn is_format(c: char) -> bool {
    matches!(
        u32::from(c),
        0xAD | 0x600..=0x605
            | 0x61C
            | 0x6DD
            | 0x70F
            | 0x890..=0x891
            | 0x8E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

/// Whether `c` shows as nothing, or as blank space, though it is neither a
/// control nor a format character nor white space (which `trim` takes off
/// the ends): the Hangul fillers and the blank Braille pattern, letters
/// and symbols that draw nothing; invisible combining marks (the grapheme
/// joiner, Khmer's inherent vowels, Mongolian's and Unicode's variation
/// selectors); and the line and paragraph separators, which would break a
/// name over two lines. With them a name could look empty, or exactly like
/// another player's. (An emoji loses its variation selector, and may show
/// in its text style.)
fn is_blank(c: char) -> bool {
    matches!(
        u32::from(c),
        0x115F..=0x1160
            | 0x3164
            | 0xFFA0
            | 0x2800
            | 0x34F
            | 0x17B4..=0x17B5
            | 0x180B..=0x180D
            | 0x180F
            | 0x2028..=0x2029
            | 0xFE00..=0xFE0F
            | 0xE0100..=0xE01EF
    )
}

/// Reads the hello and checks it. Pings before the hello are answered.
async fn read_hello(reader: &mut Reader, writer: &mut Writer) -> Result<Hello, ReadEnd> {
    loop {
        let bytes = match reader.next().await?.1 {
            Inbound::Binary(bytes) => bytes,
            Inbound::Ping(payload) => {
                writer
                    .frame(OpCode::Pong, &payload)
                    .await
                    .map_err(|_| ReadEnd::Gone)?;
                continue;
            }
            Inbound::Pong => continue,
            Inbound::Close(code) => {
                // As in play: the client's close is echoed (PROTOCOL.md 1).
                writer.close_reply(code).await;
                return Err(ReadEnd::Gone);
            }
        };
        if let Some(version) = codec::peek_hello_version(bytes)
            && version != PROTOCOL_VERSION
        {
            return Err(ReadEnd::Reason(DisconnectReason::VersionMismatch {
                server: PROTOCOL_VERSION,
                client: version,
            }));
        }
        return match codec::decode_client(bytes) {
            Ok(ClientMsg::Hello(hello)) => Ok(hello),
            Ok(_) => Err(ReadEnd::Reason(DisconnectReason::UnexpectedMessage)),
            Err(codec::CodecError::TooLarge { .. }) => {
                Err(ReadEnd::Reason(DisconnectReason::MessageTooLarge))
            }
            Err(_) => Err(ReadEnd::Reason(DisconnectReason::MalformedMessage)),
        };
    }
}

/// Serves one upgraded WebSocket until it closes.
///
/// The connection's tracing span (peer, room, player) covers the handshake
/// and the events of the play loop, but the play loop is not instrumented:
/// entering and leaving a span on every poll cost 3% of the server's CPU
/// at 1,000 clients (BENCHMARKS.md section 7).
pub(crate) async fn run(
    ws: WebSocket<Upgrade>,
    peer: SocketAddr,
    ctx: ConnContext,
    unproven: &Ticket,
) {
    let Some((read, out)) = into_tcp(ws) else {
        return tracing::error!(%peer, "upgraded stream is not a TcpStream; closing");
    };
    let span = info_span!(
        "conn",
        %peer,
        room = tracing::field::Empty,
        player = tracing::field::Empty,
        user = tracing::field::Empty
    );
    let mut reader = Reader::new(read, &ctx.config, Arc::clone(&ctx.metrics));
    let out = Arc::new(out);
    // However the connection ends (even cancelled), the fan-out stops
    // writing to it and the write half is shut.
    let _finish = Finish(Arc::clone(&out));
    let mut writer = Writer {
        out,
        buf: Vec::with_capacity(256),
        frame: Vec::new(),
        write_timeout: ctx.config.write_timeout,
        metrics: Arc::clone(&ctx.metrics),
        span: span.clone(),
    };
    let Some((room, seat)) = handshake(&mut reader, &mut writer, &ctx, peer.ip(), unproven)
        .instrument(span.clone())
        .await
    else {
        writer.out.finish();
        // An evicted connection lingers no longer than it takes to notice.
        return tokio::select! {
            () = linger(&mut reader) => {}
            () = unproven.evicted() => {}
        };
    };
    let forfeit = play(reader, writer, &room, seat, &ctx, peer.ip(), &span).await;
    info!(parent: &span, forfeit, "connection ended");
}

/// Ends the connection's writes when dropped: see [`Outbox::finish`].
struct Finish(Arc<Outbox>);

impl Drop for Finish {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Reads the hello, seats the player and sends the welcome. `None` when the
/// connection ended (the client was told why, when there was a why).
///
/// Until its hello, and again once its hello is refused, the connection
/// may be evicted to make room for another when every connection slot or
/// player's place is taken (`crate::evict`): it is told that the server is
/// full, if its socket takes that at once. While it is seated (up to a
/// tick) and as a player, it never is.
async fn handshake(
    reader: &mut Reader,
    writer: &mut Writer,
    ctx: &ConnContext,
    ip: IpAddr,
    unproven: &Ticket,
) -> Option<(RoomHandle, Seat)> {
    // A server shutting down tells a client still to say hello why, as it
    // tells its players, instead of letting it wait for the hello deadline.
    let mut shutdown = ctx.shutdown.clone();
    let read = tokio::select! {
        read = timeout(ctx.config.hello_timeout, read_hello(reader, writer)) => read,
        () = crate::stopped(&mut shutdown) => Ok(Err(ReadEnd::Reason(DisconnectReason::ServerShutdown))),
        () = unproven.evicted() => Ok(Err(ReadEnd::Reason(DisconnectReason::ServerFull))),
    };
    let hello = match read {
        // Evicted as the hello arrived: too late.
        Ok(Ok(_)) if !unproven.prove() => Err(DisconnectReason::ServerFull),
        Ok(Ok(hello)) => Ok(hello),
        Ok(Err(ReadEnd::Gone)) => return None,
        Ok(Err(ReadEnd::Reason(reason))) => Err(reason),
        Err(_) => Err(DisconnectReason::HelloTimeout),
    };
    let hello = match hello {
        Ok(hello) => hello,
        Err(reason) => {
            refuse(writer, reason, unproven).await;
            return None;
        }
    };
    let name = sanitize_name(&hello.name);
    let deadline = tokio::time::Instant::now() + ctx.config.hello_timeout;
    let (room, seat, user) = match enter(ctx, hello, &name, ip, deadline).await {
        Ok(entered) => entered,
        Err(reason) => {
            unproven.refused();
            refuse(writer, reason, unproven).await;
            return None;
        }
    };
    let span = tracing::Span::current();
    // The label: a private room's name is the key to join it.
    span.record("room", room.status.label.as_str());
    span.record("player", seat.player_id);
    if seat.resumed {
        info!(
            player_id = seat.player_id,
            input_seq = seat.input_seq,
            "resumed"
        );
    } else {
        info!(player_id = seat.player_id, %name, "joined");
    }
    let welcome = ServerMsg::Welcome(Welcome {
        protocol: PROTOCOL_VERSION,
        player_id: seat.player_id,
        tick_hz: ctx.config.tick_hz as u16,
        snapshot_hz: ctx.config.snapshot_hz as u16,
        tick: seat.tick,
        room: room.status.name.clone(),
        session: seat.session,
        resumed: seat.resumed,
        input_seq: seat.input_seq,
        // At most a day (`Config::validate`): 86.4 million fits.
        resume_grace_ms: u32::try_from(ctx.config.resume_grace.as_millis()).unwrap_or(u32::MAX),
    });
    if writer.message(&welcome).await.is_err() {
        hand_back(&room, &seat).await;
        return None;
    }
    // Welcomed: the user's session from now on; the one it replaces ends.
    if let Some((cmds, player)) = user.and_then(|key| key.seated((room.cmds.clone(), seat.handle)))
    {
        info!("the user joined again: their other session ends");
        // In the background: that room's queue may be full.
        tokio::spawn(async move { cmds.send(RoomCmd::Replaced { player }).await });
    }
    Some((room, seat))
}

/// Gives back a seat whose client never got its welcome, as a lost
/// connection would, but a new player's for good: its client never got the
/// token that would resume it. A resumed session stays resumable.
async fn hand_back(room: &RoomHandle, seat: &Seat) {
    let (player, epoch) = (seat.handle, seat.epoch);
    let _ = room
        .cmds
        .send(RoomCmd::Disconnected {
            player,
            epoch,
            forfeit: !seat.resumed,
        })
        .await;
}

/// Tells a connection that is not a player why it is refused
/// ([`Writer::close`]), unless it is evicted first: its place is wanted
/// now, so the close is written only if its socket takes it at once.
async fn refuse(writer: &mut Writer, reason: DisconnectReason, unproven: &Ticket) {
    tokio::select! {
        biased;
        () = writer.close(reason) => {}
        () = unproven.evicted() => {}
    }
}

/// Authenticates a new player and seats it, or hands a resumed session its
/// seat back, by `deadline`. A new player with a user (join tokens) comes
/// with its claim to the user's one session (`crate::users`).
///
/// A room or an auth hook that has not answered by then means the server is
/// overloaded: `ServerFull` (1013) tells the client to try again later. Giving
/// up never strands what the room holds for this connection: a seat reserved
/// but never asked for is released, and a seat the room hands over just as the
/// deadline passes is handed back (see [`answered`]).
async fn enter(
    ctx: &ConnContext,
    hello: Hello,
    name: &str,
    ip: IpAddr,
    deadline: tokio::time::Instant,
) -> Result<(RoomHandle, Seat, Option<ClaimKey>), DisconnectReason> {
    let (reply, answer) = oneshot::channel();
    if let Some(token) = hello.resume {
        // The session token is the credential: it was issued after auth.
        let room = ctx.registry.find_session(&token)?;
        let gone = || {
            ctx.registry
                .room_gone_reason(DisconnectReason::SessionExpired)
        };
        let named = match hello.room {
            RoomRequest::Named(name) => Some(name),
            RoomRequest::Matchmake => None,
        };
        let resume = RoomCmd::Resume {
            token,
            named,
            ip,
            reply,
        };
        send_by(&room, resume, deadline, gone).await?;
        let seat = answered(&room, answer, deadline, false, gone).await?;
        return Ok((room, seat, None));
    }
    let mut user = None;
    if let Some(auth) = &ctx.config.auth {
        let token = hello.auth.as_ref().map(|t| t.0.as_str());
        if token.is_some_and(|t| t.len() > MAX_AUTH_TOKEN_BYTES) {
            return Err(DisconnectReason::AuthInvalid);
        }
        let identity = timeout_at(deadline, auth.authenticate(token))
            .await
            .map_err(|_| DisconnectReason::ServerFull)?
            .map_err(|refusal| {
                info!(%refusal, "authentication refused");
                DisconnectReason::from(refusal)
            })?;
        tracing::Span::current().record("user", identity.user.as_str());
        user = Some(identity.user);
    }
    // One game per user: once welcomed, this join ends the user's other
    // session (`handshake`), whose seat is theirs to take over.
    let claim = user
        .filter(|_| ctx.config.one_session_per_user)
        .map(|user| ctx.registry.users().claim(&user));
    let replacing = claim.as_ref().and_then(UserClaim::replaces_in);
    let room = ctx.registry.reserve(&hello.room, replacing.as_ref())?;
    let key = claim.as_ref().map(UserClaim::key);
    let join = RoomCmd::Join {
        name: name.to_owned(),
        ip,
        claim,
        reply,
    };
    let gone = || ctx.registry.room_gone_reason(DisconnectReason::ServerFull);
    // Until the room has the join, the reserved seat is this connection's
    // to give back.
    if let Err(reason) = send_by(&room, join, deadline, gone).await {
        ctx.registry.unreserve(&room);
        return Err(reason);
    }
    let seat = answered(&room, answer, deadline, true, gone).await?;
    Ok((room, seat, key))
}

/// Hands `cmd` to the room by `deadline`: `ServerFull` if its queue stays
/// full that long, `gone()` if the room has stopped. `Sender::send` is
/// cancel-safe: a send the deadline cuts did not happen.
async fn send_by(
    room: &RoomHandle,
    cmd: RoomCmd,
    deadline: tokio::time::Instant,
    gone: impl FnOnce() -> DisconnectReason,
) -> Result<(), DisconnectReason> {
    match timeout_at(deadline, room.cmds.send(cmd)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(gone()),
        Err(_) => Err(DisconnectReason::ServerFull),
    }
}

/// The room's answer to a join or a resume, by `deadline`: the seat, the
/// room's refusal, `ServerFull` at the deadline, or `gone()` if the room
/// dropped the request (it stopped).
///
/// A seat that arrives as the deadline passes goes back to the room as a
/// lost connection's would: given up (`forfeit`) for a join, whose client
/// never learns its token, and parked for a resume, which the client may
/// retry. Dropped with the receiver instead, it would leave a player in
/// the world that no connection owns and no timer removes.
async fn answered(
    room: &RoomHandle,
    mut answer: oneshot::Receiver<Result<Seat, DisconnectReason>>,
    deadline: tokio::time::Instant,
    forfeit: bool,
    gone: impl FnOnce() -> DisconnectReason,
) -> Result<Seat, DisconnectReason> {
    match timeout_at(deadline, &mut answer).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err(gone()),
        Err(_) => match give_up(&mut answer) {
            Some(Ok(seat)) => {
                // In the background: the room's queue may be full (this is
                // the overload case), and the client's refusal need not
                // wait for it.
                let cmds = room.cmds.clone();
                tokio::spawn(async move {
                    let _ = cmds
                        .send(RoomCmd::Disconnected {
                            player: seat.handle,
                            epoch: seat.epoch,
                            forfeit,
                        })
                        .await;
                });
                Err(DisconnectReason::ServerFull)
            }
            // The room's own refusal came in time after all: it says more.
            Some(Err(reason)) => Err(reason),
            None => Err(DisconnectReason::ServerFull),
        },
    }
}

/// Stops waiting on `answer`: from now on the sender's `send` fails (and
/// the room undoes what it did for us), and a value it sent before that is
/// returned rather than dropped with the receiver.
fn give_up<T>(answer: &mut oneshot::Receiver<T>) -> Option<T> {
    answer.close();
    answer.try_recv().ok()
}

/// The joined phase: the room's fan-out sends snapshots and the writer task
/// the rest while this task reads. At the end it tells the room, then
/// closes. Returns whether the player gave up the seat (left, or broke a
/// rule) rather than lost the connection, which keeps the session for a
/// resume.
async fn play(
    mut reader: Reader,
    writer: Writer,
    room: &RoomHandle,
    seat: Seat,
    ctx: &ConnContext,
    ip: IpAddr,
    span: &tracing::Span,
) -> bool {
    let Seat {
        handle: player,
        epoch,
        acked,
        kicked,
        baseline,
        tick: joined,
        ..
    } = seat;
    let mut kicked = Some(kicked);
    let acks = AckCell::new(acked, joined);
    let cell = Arc::clone(&acks.cell);
    // Shared with the datagram channel's receiving thread, if the client
    // opens one; uncontended otherwise.
    let acks = Arc::new(Mutex::new(acks));
    let heard = Arc::new(Heard::new());
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    // The datagram socket and this connection's route on it, when the
    // server offers datagrams.
    let route = ctx
        .datagrams
        .as_ref()
        .map(|datagrams| (datagrams, datagrams.route()));
    // The connection's id in the datagram channel, once it asked for one;
    // dropped (its datagrams no longer read) when play ends.
    let mut registration: Option<Registration> = None;
    room.fanout.subscribe(
        Subscriber::new(
            Arc::clone(&writer.out),
            player,
            cell,
            Arc::clone(&heard),
            baseline,
            joined,
            &ctx.config,
        )
        .with_route(route.as_ref().map(|(_, route)| Arc::clone(route))),
    );
    let out = Arc::clone(&writer.out);
    let mut writer_task = tokio::spawn(write_loop(
        writer,
        control_rx,
        room.snapshots.clone(),
        ctx.shutdown.clone(),
    ));
    let end = loop {
        // The read comes first: in steady state it is the only branch
        // polled (the others are polled when it has to wait). Only branches
        // that end the loop may complete: a frame read is not cancel-safe
        // once it has consumed a header.
        let inbound = tokio::select! {
            biased;
            read = reader.next() => read,
            // The writer closed the connection.
            _ = &mut writer_task => break None,
            reason = async {
                if let Some(receiver) = kicked.as_mut() {
                    if let Ok(reason) = receiver.await {
                        return reason;
                    }
                    // The room dropped the sender (it stopped): the
                    // fan-out reports that; stop watching.
                    kicked = None;
                }
                std::future::pending().await
            } => break Some(Control::Disconnect(reason)),
        };
        let inbound = match inbound {
            Err(ReadEnd::Gone) => break Some(Control::CloseReply(1000)),
            Err(ReadEnd::Reason(r)) => break Some(Control::Disconnect(r)),
            Ok((read_at, inbound)) => {
                heard.hear(read_at);
                inbound
            }
        };
        match inbound {
            Inbound::Binary(bytes) => {
                ctx.metrics.bytes_in.inc_by(bytes.len() as u64);
                match codec::decode_client(bytes) {
                    Ok(ClientMsg::Input(cmd)) => {
                        lock(&acks).offer(cmd.ack);
                        pass_input(&room.inputs, player, cmd, &ctx.metrics);
                    }
                    Ok(ClientMsg::Ack(tick)) => lock(&acks).offer(tick),
                    Ok(ClientMsg::OpenDatagrams) => {
                        let channel = match &route {
                            Some((datagrams, route)) => registration
                                .get_or_insert_with(|| {
                                    let parts = PeerParts {
                                        ip,
                                        player,
                                        route: Arc::clone(route),
                                        acks: Arc::clone(&acks),
                                        heard: Arc::clone(&heard),
                                        inputs: room.inputs.clone(),
                                        out: Arc::clone(&out),
                                    };
                                    datagrams.register(parts, &ctx.config)
                                })
                                .channel(),
                            None => DatagramChannel {
                                port: 0,
                                id: DatagramId::default(),
                                key: DatagramKey::default(),
                            },
                        };
                        if control_tx.try_send(Control::Datagrams(channel)).is_err() {
                            ctx.metrics.outbound_drops.inc();
                        }
                    }
                    Ok(ClientMsg::Ping(nonce)) => {
                        if control_tx.try_send(Control::Pong(nonce)).is_err() {
                            ctx.metrics.outbound_drops.inc();
                        }
                    }
                    Ok(ClientMsg::Hello(_)) => {
                        break Some(Control::Disconnect(DisconnectReason::UnexpectedMessage));
                    }
                    Ok(ClientMsg::Leave) => {
                        break Some(Control::Disconnect(DisconnectReason::Left));
                    }
                    Err(codec::CodecError::TooLarge { .. }) => {
                        break Some(Control::Disconnect(DisconnectReason::MessageTooLarge));
                    }
                    Err(_) => break Some(Control::Disconnect(DisconnectReason::MalformedMessage)),
                }
            }
            Inbound::Ping(payload) => {
                if control_tx.try_send(Control::WsPong(payload)).is_err() {
                    ctx.metrics.outbound_drops.inc();
                }
            }
            Inbound::Pong => {}
            Inbound::Close(code) => break Some(Control::CloseReply(code)),
        }
        // A client whose frames are always ready (a flood, until its rate
        // kick) would never let the select poll the branches after the
        // read: look at them here too, once the frame is handled, without
        // waiting (an atomic load each), so a takeover or the writer's end
        // is not put off.
        if writer_task.is_finished() {
            break None;
        }
        if let Some(receiver) = kicked.as_mut() {
            match receiver.try_recv() {
                Ok(reason) => break Some(Control::Disconnect(reason)),
                Err(oneshot::error::TryRecvError::Closed) => kicked = None,
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
        }
    };
    // No more inputs by datagram for a player on its way out.
    drop(registration);
    let forfeit = match &end {
        Some(Control::Disconnect(reason)) => {
            info!(parent: span, reason = reason.label(), "disconnecting client");
            !reason.session_kept()
        }
        _ => false,
    };
    // The room learns of the end before the close and the linger, which a
    // client that neither reads nor answers can stretch to seconds: a
    // session given up is gone from then on, and a resume meanwhile is
    // refused instead of undoing a leave or a kick.
    let _ = room
        .cmds
        .send(RoomCmd::Disconnected {
            player,
            epoch,
            forfeit,
        })
        .await;
    // The control queue may be full of pongs: the close must get through.
    if let Some(end) = end
        && control_tx.send(end).await.is_ok()
    {
        let _ = timeout(ctx.config.write_timeout, &mut writer_task).await;
    }
    // The close frame, if it got out, was followed by the FIN; if the
    // writer could not finish, shut the write half now.
    writer_task.abort();
    out.finish();
    linger(&mut reader).await;
    forfeit
}

/// How long a closed connection keeps reading, for the client's close frame
/// or end of stream.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Reads and discards what the client still sends after the server's close
/// frame and FIN, until its close frame, the end of the stream or
/// [`CLOSE_LINGER`]. Closing a socket with unread bytes makes the kernel
/// answer with a reset, which cuts the client's read of the close frame
/// (the page sees 1006 instead of the reason's code): a game keeps sending
/// inputs until it reads the close. Bounded in time, and in bytes by the
/// read's own limits.
///
/// The rate limit holds meanwhile, without its kick: a game sending its
/// inputs is read in full, while a client kicked for flooding, still
/// flooding, is read at the rate (read at full speed, its backlog cost a
/// second of a core per kick, and a flooder that reconnects is kicked
/// every few seconds) and may see the socket reset after the second. Its
/// close frame was sent first and stays readable: Linux keeps received
/// bytes readable after a reset.
async fn linger(reader: &mut Reader) {
    reader.lingering = true;
    let _ = timeout(CLOSE_LINGER, async {
        while let Ok((_, inbound)) = reader.next().await {
            if let Inbound::Close(_) = inbound {
                break;
            }
        }
    })
    .await;
}

/// The acks this connection read: the reader stores, the fan-out loads.
/// Kept moving forward only: acks come inside every input as well as alone,
/// and an input resent after a resume may carry an older one; a client only
/// keeps states from the baseline of the newest delta on, so a baseline must
/// never move back.
#[derive(Debug)]
pub(crate) struct AckCell {
    /// The newest ack read on this connection, for the fan-out.
    cell: Arc<AtomicU64>,
    /// The session's ack, which a resume takes its baseline from. Only ticks
    /// this connection delivered go there: a tick after `joined` (the
    /// client cannot hold one from anywhere else). An ack of `joined`, the
    /// welcome's tick, which no snapshot carries, says the client holds
    /// nothing, and clears it; an older tick (a snapshot of a previous
    /// connection) leaves it as it is.
    session: Arc<AtomicU64>,
    joined: Tick,
    newest: Option<Tick>,
}

impl AckCell {
    fn new(session: Arc<AtomicU64>, joined: Tick) -> Self {
        Self {
            cell: Arc::new(AtomicU64::new(NO_ACK)),
            session,
            joined,
            newest: None,
        }
    }

    pub(crate) fn offer(&mut self, tick: Tick) {
        if self.newest.is_some_and(|newest| tick.since(newest) <= 0) {
            return;
        }
        self.newest = Some(tick);
        self.cell.store(u64::from(tick.0), Relaxed);
        match tick.since(self.joined) {
            0 => self.session.store(NO_ACK, Relaxed),
            since if since > 0 => self.session.store(u64::from(tick.0), Relaxed),
            _ => {}
        }
    }
}

/// When a connection last received a message, for the idle timeout. The
/// reader stores it (one relaxed store per message) and the fan-out, which
/// serves the client every tick anyway, checks it: a timer per read was 3%
/// of the server's CPU at 1,000 clients (BENCHMARKS.md section 7).
#[derive(Debug)]
pub(crate) struct Heard {
    since: Instant,
    /// Milliseconds after `since`.
    at_ms: AtomicU64,
}

impl Heard {
    pub(crate) fn new() -> Self {
        Self {
            since: Instant::now(),
            at_ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn hear(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.since).as_millis();
        self.at_ms.store(ms as u64, Relaxed);
    }

    /// Time since the last message (or since the seat was taken).
    pub(crate) fn silence(&self, now: Instant) -> Duration {
        let at = self.since + Duration::from_millis(self.at_ms.load(Relaxed));
        now.saturating_duration_since(at)
    }
}

/// The writer task: the welcome is sent; now pongs, the close, and the
/// snapshot bytes the fan-out could not write at once. It wakes only for
/// those: the snapshots themselves need no task wake-up per client.
async fn write_loop(
    mut writer: Writer,
    mut control: mpsc::Receiver<Control>,
    snapshots: watch::Receiver<Arc<Published>>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Read where the fan-out asks for a close: a room stops on the same
    // signal, and its shards then ask to close every client with
    // `RoomClosed`. The stop branch, polled first, usually wins, but a
    // watch can also answer "not yet" when the task has used up its
    // cooperative budget, and then the close request would go out as a
    // fault of the room's.
    let stopping = shutdown.clone();
    let stop = crate::stopped(&mut shutdown);
    tokio::pin!(stop);
    let result: Result<(), WriteFailed> = async {
        loop {
            tokio::select! {
                biased;
                () = &mut stop => {
                    writer.close(DisconnectReason::ServerShutdown).await;
                    return Ok(());
                }
                () = writer.out.woken() => match writer.out.take_close_request() {
                    Some(reason) => {
                        let reason = if *stopping.borrow() {
                            DisconnectReason::ServerShutdown
                        } else {
                            reason
                        };
                        writer.close(reason).await;
                        return Ok(());
                    }
                    None => writer.flush().await?,
                },
                ctrl = control.recv() => match ctrl {
                    Some(Control::Pong(nonce)) => {
                        let tick = snapshots.borrow().state.tick;
                        writer.message(&ServerMsg::Pong { nonce, tick }).await?;
                    }
                    Some(Control::Datagrams(channel)) => {
                        writer.message(&ServerMsg::DatagramChannel(channel)).await?;
                    }
                    Some(Control::WsPong(payload)) => {
                        writer.frame(OpCode::Pong, &payload).await?;
                    }
                    Some(Control::CloseReply(code)) => {
                        writer.close_reply(code).await;
                        return Ok(());
                    }
                    Some(Control::Disconnect(reason)) => {
                        writer.close(reason).await;
                        return Ok(());
                    }
                    None => return Ok(()),
                },
            }
        }
    }
    .await;
    match result {
        Ok(()) => {}
        Err(WriteFailed::TimedOut) => {
            info!(
                parent: &writer.span,
                reason = DisconnectReason::TooSlow.label(),
                "write timed out; dropping client"
            );
            writer.metrics.count_kick(&DisconnectReason::TooSlow);
        }
        // The client is gone (a reset): not a kick, and the reader sees
        // the end of the stream too.
        Err(WriteFailed::Broken) => {
            debug!(parent: &writer.span, "write failed: connection broken");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_is_echoed_with_its_code_unless_no_frame_may_carry_it() {
        for code in [1000, 1001, 1003, 1008, 1011, 1013, 3000, 4000, 4999] {
            assert_eq!(echo_code(code), code);
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX] {
            assert_eq!(echo_code(code), 1000, "{code}");
        }
    }

    #[test]
    fn acks_only_move_forward_across_wraparound() {
        let session = Arc::new(AtomicU64::new(NO_ACK));
        let mut acks = AckCell::new(Arc::clone(&session), Tick(5));
        let cell = Arc::clone(&acks.cell);
        assert_eq!(cell.load(Relaxed), NO_ACK);
        acks.offer(Tick(10));
        acks.offer(Tick(7)); // an input resent after a resume
        assert_eq!(cell.load(Relaxed), 10);
        acks.offer(Tick(11));
        assert_eq!(cell.load(Relaxed), 11);
        acks.offer(Tick(u32::MAX - 1));
        assert_eq!(cell.load(Relaxed), 11, "2^32 - 12 ticks ahead is behind");
        assert_eq!(session.load(Relaxed), 11);
        let session = Arc::new(AtomicU64::new(NO_ACK));
        let mut acks = AckCell::new(Arc::clone(&session), Tick(u32::MAX - 9));
        acks.offer(Tick(u32::MAX - 1));
        acks.offer(Tick(u32::MAX - 5));
        assert_eq!(acks.cell.load(Relaxed), u64::from(u32::MAX - 1));
        acks.offer(Tick(3));
        assert_eq!(acks.cell.load(Relaxed), 3, "ticks wrap");
        assert_eq!(session.load(Relaxed), 3);
    }

    #[test]
    fn the_session_keeps_only_acks_of_ticks_this_connection_delivered() {
        // A resumed seat: the session's baseline is tick 90 of the old
        // connection; this one was welcomed at tick 100.
        let session = Arc::new(AtomicU64::new(90));
        let mut acks = AckCell::new(Arc::clone(&session), Tick(100));
        acks.offer(Tick(95)); // held from the old connection: not sent here
        assert_eq!(session.load(Relaxed), 90);
        assert_eq!(acks.cell.load(Relaxed), 95, "the fan-out falls back itself");
        acks.offer(Tick(103));
        assert_eq!(session.load(Relaxed), 103);
        // A client that holds nothing acknowledges the welcome's tick.
        let session = Arc::new(AtomicU64::new(90));
        let mut acks = AckCell::new(Arc::clone(&session), Tick(100));
        acks.offer(Tick(100));
        assert_eq!(session.load(Relaxed), NO_ACK);
    }

    /// What the hello deadline relies on to never strand a seat: once the
    /// connection gives up, a seat the room already sent comes back to it
    /// (and is handed back to the room), and a later one fails to send (and
    /// the room undoes it itself).
    #[test]
    fn giving_up_on_an_answer_keeps_what_was_sent_and_refuses_the_rest() {
        let (reply, mut answer) = oneshot::channel::<u32>();
        reply.send(7).expect("the receiver is alive");
        assert_eq!(
            give_up(&mut answer),
            Some(7),
            "sent just before: not dropped"
        );
        let (reply, mut answer) = oneshot::channel::<u32>();
        assert_eq!(give_up(&mut answer), None);
        assert_eq!(reply.send(8), Err(8), "sent after: refused to the room");
    }

    #[test]
    fn names_are_cleaned_and_bounded() {
        assert_eq!(sanitize_name("  ana\n\u{7} "), "ana");
        assert_eq!(sanitize_name(""), "player");
        assert_eq!(sanitize_name("\u{0}\u{1}"), "player");
        assert_eq!(sanitize_name(&"x".repeat(100)).chars().count(), 16);
        assert_eq!(sanitize_name("日本語の名前"), "日本語の名前");
        // Invisible and reordering characters: not another player's look.
        assert_eq!(sanitize_name("ana\u{200B}\u{202E}"), "ana");
        assert_eq!(sanitize_name("\u{2066}bo\u{FEFF}b\u{2069}"), "bob");
        assert_eq!(sanitize_name("\u{200B}\u{200D}"), "player");
        // Blank-looking letters and invisible marks: an empty-looking name,
        // or one that looks like another's.
        assert_eq!(sanitize_name("\u{3164}\u{115F}\u{FFA0}\u{2800}"), "player");
        assert_eq!(sanitize_name("an\u{34F}a\u{FE0F}\u{E0100}"), "ana");
        assert_eq!(sanitize_name("a\u{2028}b\u{2029}"), "ab");
        assert_eq!(sanitize_name("ana\u{3164}"), "ana");
        // Letters and marks of every script stay.
        assert_eq!(sanitize_name("Zoë ☃ عمر"), "Zoë ☃ عمر");
    }
}
