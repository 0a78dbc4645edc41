//! A connection read and written by the bot's own task: no reader task, no
//! writer task, no channel between them and the core.
//!
//! Used by light bots on a transparent link (see [`crate::link::Link`]).
//! There the conditioner's channels delay nothing, yet every snapshot cost
//! a wake-up of the reader, a channel hop and a wake-up of the core, and
//! every input an allocation, a channel hop and a wake-up of the writer:
//! several times the work of the snapshot itself, which kept one core from
//! driving 2,000 light bots at the full snapshot rate.
//!
//! * **Reading.** fastwebsockets' `read_frame` is not cancel-safe: a read
//!   dropped half-way loses the bytes it consumed. So the read in flight is
//!   never dropped: [`Reads`] keeps its future pinned across polls, and when
//!   a frame is complete starts the next read in the same allocation. The
//!   core polls it through [`DirectLink::recv`], which is cancel-safe and may
//!   sit in `select!` next to the tick timer.
//! * **Writing.** A message is framed (masked, as a client must) into one
//!   buffer and written at once with a non-blocking `try_write`, so sending
//!   stays synchronous, like the channel push it replaces, and the input
//!   leaves at its tick rather than when a writer task is next scheduled.
//!   What the socket does not take stays buffered, in order, and
//!   [`DirectLink::recv`] writes it as the socket drains.
//!
//! Protocol obligations: pings are answered with pongs as they are read, and
//! the server's close is echoed (fastwebsockets hands the echo over).
//!
//! **Datagrams** (`PROTOCOL.md` section 3.7), when asked for: the link sends
//! `OpenDatagrams` right after the hello, opens a UDP socket when the
//! server's `DatagramChannel` arrives (handled here, not passed to the
//! core), and from then on sends inputs and acks as datagrams, each input
//! with the three before it, so that a lost datagram loses no input.
//! Snapshots arrive by either path, the datagram socket read first; one
//! that is not newer than the newest delivered (datagrams may be reordered,
//! or overtake a large snapshot on the WebSocket) is dropped and counted,
//! as a real client drops a stale datagram. **Falling back**: if the
//! first input sent by datagram is still unacknowledged after
//! [`PROBE_INPUTS`] more (the server never hears them: UDP blocked on the
//! way out), or [`SILENT_SENDS`] datagrams went out with no snapshot
//! coming by either path (the server sends them to a route that does not
//! reach us), the link closes its datagram socket and goes back to the
//! WebSocket alone, as a native client should; the server's route expires
//! two seconds after the last datagram (`PROTOCOL.md` 3.7), and the
//! fall-back is counted. Both are counted in the bot's own sends, not in
//! time, so a bot starved of CPU (whose snapshots wait unread) does not
//! take itself for cut off. **Trying again**: networks change (a
//! firewall's state expires, a laptop moves to another network), so after
//! [`RETRY_AFTER`] more messages on the WebSocket (ten seconds of ticks)
//! the link opens a new datagram socket with the same id and key, which
//! last as long as the WebSocket, and probes again the same way; each
//! failure since doubles the wait, up to [`MAX_RETRY_AFTER`] (about five
//! minutes). Retries are counted.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io::ErrorKind;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use std::net::{IpAddr, SocketAddr};

use fastwebsockets::{Frame, OpCode, Payload, WebSocketError};
use shared::Tick;
use shared::codec::{self, DatagramMac, DatagramMsg};
use shared::protocol::{
    ClientMsg, DatagramChannel, DatagramId, DatagramKey, InputCmd, MAX_DATAGRAM_MESSAGES, ServerMsg,
};
use tokio::io::{AsyncWrite, ReadBuf};
use tokio::net::UdpSocket;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::time::Instant;

use crate::bot::BotError;
use crate::conditioner::LINK_QUEUE;
use crate::connection::{self, ConnectError, DirectReader, Endpoint};
use crate::link::{Inbound, describe};
use crate::metrics::Metrics;

/// Largest WebSocket frame header: 2 bytes, 8 of length, 4 of mask.
const MAX_FRAME_HEADER: usize = 14;

/// One read: the frame (or why there is none), and the payload of the
/// close frame fastwebsockets obliges us to send in answer, if any (the
/// echo of the server's close, or a protocol-error close).
type FrameRead = (Result<Frame<'static>, WebSocketError>, Option<Vec<u8>>);

/// What one finished read hands back: the reader, for the next read, and
/// the read.
type ReadOut = (DirectReader, FrameRead);

/// Reads one message, collecting fragments. Owns the reader while it runs,
/// so the future is `'static` and can be kept across polls.
async fn read_next(mut reader: DirectReader) -> ReadOut {
    let mut obligation = None;
    let mut oblige = |frame: Frame<'static>| {
        obligation = Some(frame.payload.to_vec());
        std::future::ready(Ok::<(), Infallible>(()))
    };
    let frame = reader.read_frame(&mut oblige).await;
    (reader, (frame, obligation))
}

/// The read in flight, as an object so that [`DirectLink`] can hold it
/// without naming the type of `read_next`'s future.
trait FrameReads: Send {
    /// The next frame and its close obligation, once read.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<FrameRead>;
}

/// One read future after another, in one allocation.
struct Reads<F, M> {
    /// Starts a read (`read_next`).
    next: M,
    in_flight: Pin<Box<F>>,
}

impl<F, M> FrameReads for Reads<F, M>
where
    F: Future<Output = ReadOut> + Send,
    M: Fn(DirectReader) -> F + Send,
{
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<FrameRead> {
        let (reader, read) = ready!(self.in_flight.as_mut().poll(cx));
        // The finished future is replaced in place: no allocation per frame.
        // The new read is not polled before the next call.
        self.in_flight.set((self.next)(reader));
        Poll::Ready(read)
    }
}

/// The core's side of a direct connection.
pub(crate) struct DirectLink {
    reads: Box<dyn FrameReads>,
    writer: OwnedWriteHalf,
    /// Framed bytes not yet taken by the socket, from `written` on.
    out: Vec<u8>,
    written: usize,
    /// Messages in `out`. Full-queue policy as on a conditioned link (see
    /// [`LINK_QUEUE`]): the socket's own buffer takes hundreds of KiB first,
    /// so this many messages waiting means the server stopped reading, and
    /// the bot ends with [`BotError::SendQueueFull`].
    queued: usize,
    /// The encoding of the message being sent, reused so that an input costs
    /// no allocation.
    payload: Vec<u8>,
    /// Read only snapshot headers (see [`crate::bot::BotConfig::light`]).
    light: bool,
    metrics: Arc<Metrics>,
    /// A close or a read error was delivered: nothing more will come.
    read_ended: bool,
    /// A close frame is queued (ours or the echo of the server's): it is
    /// the last thing written.
    closing: bool,
    /// Writing failed: the socket is broken, and reading will say how.
    write_failed: bool,
    datagrams: Datagrams,
    /// The newest snapshot tick delivered, with datagrams: an older one is
    /// dropped.
    newest: Option<Tick>,
    /// The newest input ack read from the headers: whether datagrams work.
    input_ack: u32,
}

/// The link's datagram channel.
enum Datagrams {
    /// Not asked for (or the server offers none).
    Off,
    /// Asked for: `OpenDatagrams` goes out after the hello, and the answer
    /// opens a socket from `local` (the WebSocket's own address: the server
    /// accepts datagrams only from it) to the server's `ip`.
    Wanted {
        local: IpAddr,
        server: IpAddr,
    },
    Open(Box<Udp>),
    /// Given up on, for now: the link tries again after `retry_in` more
    /// messages that would have gone by datagram (see the module docs,
    /// "Trying again").
    Resting {
        channel: Channel,
        retry_in: u32,
        /// The wait after the next failure.
        backoff: u32,
    },
}

/// What opens a datagram socket: the addresses, and the connection's id
/// and key, which last as long as its WebSocket.
#[derive(Clone, Copy)]
struct Channel {
    /// The WebSocket's own address: the server accepts datagrams only from
    /// its IP address.
    local: IpAddr,
    to: SocketAddr,
    id: DatagramId,
    key: DatagramKey,
}

/// Messages sent on the WebSocket alone after datagrams failed for the
/// first time, before the link tries them again: 300, ten seconds of ticks.
const RETRY_AFTER: u32 = 300;

/// The longest wait between two tries: 9,600 messages, about five minutes
/// of ticks (the wait doubles after every failure from [`RETRY_AFTER`]).
const MAX_RETRY_AFTER: u32 = 9_600;

/// Inputs sent by datagram after the first while it stays unacknowledged,
/// before the link gives up on datagrams: 60, two seconds of ticks.
const PROBE_INPUTS: u32 = 60;

/// Datagrams sent with no snapshot arriving by either path meanwhile,
/// before the link gives up on datagrams: 30, a second of ticks.
const SILENT_SENDS: u32 = 30;

struct Udp {
    /// Read through the runtime, written with a plain non-blocking `send`
    /// ([`socket2::SockRef`]): tokio's `try_send` refuses until the
    /// runtime has seen a new socket writable, which lost the first
    /// datagram of a socket opened and written in one go (a retry's).
    socket: UdpSocket,
    channel: Channel,
    /// Signs what the link sends, checks what it receives.
    mac: DatagramMac,
    /// The wait before the next try, should this one fail.
    backoff: u32,
    /// The first input sent by datagram, and how many went after it.
    first_input: Option<(u32, u32)>,
    /// Datagrams sent since the last snapshot arrived.
    sends_since_snapshot: u32,
    /// The inputs sent before the newest, oldest first, repeated in each
    /// datagram.
    recent: Vec<InputCmd>,
    msgs: Vec<DatagramMsg>,
    out: Vec<u8>,
    buf: Box<[u8; 2048]>,
}

impl DirectLink {
    /// Opens a WebSocket to `endpoint` within `timeout`.
    /// With `datagrams`, asks for the datagram channel after the hello.
    pub(crate) async fn open(
        endpoint: &Endpoint,
        timeout: Duration,
        light: bool,
        datagrams: bool,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, ConnectError> {
        let (reader, writer) = connection::connect_direct(endpoint, timeout).await?;
        let datagrams = match (datagrams, writer.local_addr(), writer.peer_addr()) {
            (true, Ok(local), Ok(server)) => Datagrams::Wanted {
                local: local.ip(),
                server: server.ip(),
            },
            _ => Datagrams::Off,
        };
        Ok(Self {
            reads: Box::new(Reads {
                next: read_next,
                in_flight: Box::pin(read_next(reader)),
            }),
            writer,
            out: Vec::new(),
            written: 0,
            queued: 0,
            payload: Vec::new(),
            light,
            metrics: Arc::clone(metrics),
            read_ended: false,
            closing: false,
            write_failed: false,
            datagrams,
            newest: None,
            input_ack: 0,
        })
    }

    /// Sends a client message: written at once if the socket takes it,
    /// else queued behind what it has not taken yet.
    pub(crate) fn send(&mut self, msg: &ClientMsg) -> Result<(), BotError> {
        if self.closing || self.write_failed {
            return Err(BotError::LinkClosed);
        }
        if self.queued >= LINK_QUEUE {
            return Err(BotError::SendQueueFull);
        }
        let by_datagram = match msg {
            ClientMsg::Input(cmd) => Some(DatagramMsg::Input(*cmd)),
            ClientMsg::Ack(tick) => Some(DatagramMsg::Ack(*tick)),
            _ => None,
        };
        if let Some(by_datagram) = by_datagram {
            self.rest_or_retry_datagrams();
            if let Datagrams::Open(udp) = &mut self.datagrams {
                udp.send(by_datagram, &self.metrics);
                return Ok(());
            }
        }
        self.send_frame(msg);
        if matches!(msg, ClientMsg::Hello(_)) && matches!(self.datagrams, Datagrams::Wanted { .. })
        {
            // Read once the server seats the client (PROTOCOL.md section 3.7).
            self.send_frame(&ClientMsg::OpenDatagrams);
        }
        Ok(())
    }

    fn send_frame(&mut self, msg: &ClientMsg) {
        codec::encode_client(msg, &mut self.payload);
        let len = self.payload.len();
        self.metrics
            .bytes_sent
            .add((len + connection::frame_header_len(len, true)) as u64);
        // Out of `self` while the frame borrows it; the buffer is kept.
        let mut payload = std::mem::take(&mut self.payload);
        self.queue(Frame::binary(Payload::BorrowedMut(&mut payload)));
        self.payload = payload;
    }

    /// Opens the datagram socket the server's answer names, if it was
    /// asked for; a server that offers none (port 0), or a socket that
    /// cannot be opened, leaves the link on its WebSocket alone.
    fn open_datagrams(&mut self, channel: DatagramChannel) {
        let Datagrams::Wanted { local, server } = self.datagrams else {
            return;
        };
        self.datagrams = Datagrams::Off;
        if channel.port == 0 {
            return;
        }
        let channel = Channel {
            local,
            to: SocketAddr::new(server, channel.port),
            id: channel.id,
            key: channel.key,
        };
        match Udp::open(channel, RETRY_AFTER) {
            Ok(udp) => self.datagrams = Datagrams::Open(Box::new(udp)),
            Err(e) => {
                crate::bot::warn_limited(format_args!("cannot open the datagram socket: {e}"))
            }
        }
    }

    /// Before a message that may go by datagram: gives the channel up for
    /// a while if it has shown it does not work, or opens it again once
    /// the wait is over (see the module docs, "Falling back" and "Trying
    /// again").
    fn rest_or_retry_datagrams(&mut self) {
        if self.datagrams_fail()
            && let Datagrams::Open(udp) = std::mem::replace(&mut self.datagrams, Datagrams::Off)
        {
            self.datagrams = Datagrams::Resting {
                channel: udp.channel,
                retry_in: udp.backoff,
                backoff: udp.backoff.saturating_mul(2).min(MAX_RETRY_AFTER),
            };
            self.metrics.datagram_fallbacks.inc();
            crate::bot::warn_limited(format_args!(
                "datagrams do not get through: back on the WebSocket alone for now"
            ));
        }
        let Datagrams::Resting {
            channel,
            retry_in,
            backoff,
        } = &mut self.datagrams
        else {
            return;
        };
        if *retry_in > 0 {
            *retry_in -= 1;
            return;
        }
        self.metrics.datagram_retries.inc();
        match Udp::open(*channel, *backoff) {
            Ok(udp) => self.datagrams = Datagrams::Open(Box::new(udp)),
            Err(e) => {
                *retry_in = *backoff;
                *backoff = backoff.saturating_mul(2).min(MAX_RETRY_AFTER);
                crate::bot::warn_limited(format_args!("cannot open the datagram socket: {e}"));
            }
        }
    }

    /// Whether a snapshot of `tick` is newer than every one delivered (and
    /// takes it as the newest). Without datagrams everything is: the
    /// WebSocket keeps the server's order.
    fn newer(&mut self, tick: Tick) -> bool {
        if matches!(self.datagrams, Datagrams::Off) {
            return true;
        }
        if self.newest.is_some_and(|newest| tick.since(newest) <= 0) {
            self.metrics.stale_snapshots_dropped.inc();
            return false;
        }
        self.newest = Some(tick);
        true
    }

    /// Sends our close frame (code 1000), the last thing written.
    pub(crate) fn close(&mut self) {
        self.queue_close(Frame::close(1000, b""));
    }

    fn queue_close(&mut self, frame: Frame<'_>) {
        if self.queue(frame) {
            self.closing = true;
        }
    }

    /// Queues a frame and writes what the socket takes; returns whether
    /// it was queued (nothing is once the link is closing or broken).
    fn queue(&mut self, frame: Frame<'_>) -> bool {
        if self.closing || self.write_failed {
            return false;
        }
        push_frame(&mut self.out, frame);
        self.queued += 1;
        self.write_now();
        true
    }

    /// Writes what the socket takes without waiting.
    fn write_now(&mut self) {
        while self.written < self.out.len() {
            match self.writer.try_write(&self.out[self.written..]) {
                Ok(n) if n > 0 => self.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Ok(_) => return self.write_error("wrote nothing"),
                Err(e) => return self.write_error(&e.to_string()),
            }
        }
        self.wrote_all();
    }

    /// Writes what the socket takes, and asks to be woken when it takes
    /// more.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while self.written < self.out.len() {
            match Pin::new(&mut self.writer).poll_write(cx, &self.out[self.written..]) {
                Poll::Ready(Ok(n)) if n > 0 => self.written += n,
                Poll::Ready(Ok(_)) => {
                    self.write_error("wrote nothing");
                    return Poll::Ready(());
                }
                Poll::Ready(Err(e)) => {
                    self.write_error(&e.to_string());
                    return Poll::Ready(());
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        self.wrote_all();
        Poll::Ready(())
    }

    fn wrote_all(&mut self) {
        self.out.clear();
        self.written = 0;
        self.queued = 0;
    }

    /// As the writer task of a conditioned link does: the broken socket is
    /// reported by the read side; what was queued is lost.
    fn write_error(&mut self, e: &str) {
        tracing::debug!("writer ended: {e}");
        self.write_failed = true;
        self.wrote_all();
    }

    /// The next server message and when it was read; `None` once the
    /// server's close or a read error was delivered. Meanwhile, writes what
    /// the socket did not take yet.
    ///
    /// Cancel-safe: a read in progress stays in flight for the next call.
    pub(crate) async fn recv(&mut self) -> Option<(Inbound, Instant)> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<(Inbound, Instant)>> {
        if self.written < self.out.len() {
            // Pending only means the socket is full: it wakes us when not.
            let _ = self.poll_write_out(cx);
        }
        if self.read_ended {
            return Poll::Ready(None);
        }
        while let Datagrams::Open(udp) = &mut self.datagrams {
            let mut buf = ReadBuf::new(&mut udp.buf[..]);
            match udp.socket.poll_recv(cx, &mut buf) {
                Poll::Ready(Ok(())) => {
                    let now = Instant::now();
                    let datagram = buf.filled();
                    self.metrics.bytes_received.add(datagram.len() as u64);
                    let Some(bytes) = udp.mac.open_snapshot(datagram) else {
                        // Not the server's (forged, or corrupted on the
                        // way): as good as lost.
                        crate::bot::warn_limited(format_args!(
                            "a datagram whose tag does not verify: dropped"
                        ));
                        continue;
                    };
                    self.metrics.snapshots_by_datagram.inc();
                    let item = Inbound::header(bytes, self.light)
                        .unwrap_or_else(|| Inbound::Binary(bytes.to_vec()));
                    if self.delivers(&item) {
                        return Poll::Ready(Some((item, now)));
                    }
                }
                // An ICMP error for an earlier datagram (the server's port
                // closed): the WebSocket says what happened.
                Poll::Ready(Err(e)) => {
                    tracing::debug!("datagram receive failed: {e}");
                    break;
                }
                Poll::Pending => break,
            }
        }
        loop {
            let (frame, obligation) = ready!(self.reads.poll_frame(cx));
            let now = Instant::now();
            if let Some(payload) = obligation {
                self.queue_close(Frame::close_raw(Payload::Owned(payload)));
            }
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    self.read_ended = true;
                    return Poll::Ready(Some((Inbound::Failed(describe(&e)), now)));
                }
            };
            let item = match frame.opcode {
                OpCode::Binary => {
                    if matches!(self.datagrams, Datagrams::Wanted { .. })
                        && let Ok(ServerMsg::DatagramChannel(channel)) =
                            codec::decode_server(&frame.payload)
                    {
                        self.open_datagrams(channel);
                        continue;
                    }
                    let item = Inbound::binary(frame.payload, self.light, &self.metrics);
                    if !self.delivers(&item) {
                        continue;
                    }
                    item
                }
                OpCode::Text => Inbound::Text,
                OpCode::Close => {
                    self.read_ended = true;
                    Inbound::closed(&frame.payload)
                }
                OpCode::Ping => {
                    self.queue(Frame::pong(frame.payload));
                    continue;
                }
                OpCode::Pong | OpCode::Continuation => continue,
            };
            return Poll::Ready(Some((item, now)));
        }
    }

    /// Whether `item` goes to the core: all but a stale snapshot header.
    fn delivers(&mut self, item: &Inbound) -> bool {
        match item {
            Inbound::SnapshotHeader {
                tick, input_ack, ..
            } => {
                if let Datagrams::Open(udp) = &mut self.datagrams {
                    udp.sends_since_snapshot = 0;
                }
                self.input_ack = self.input_ack.max(*input_ack);
                self.newer(*tick)
            }
            _ => true,
        }
    }

    /// Whether the datagram channel, if open, has shown it does not work
    /// (see the module docs, "Falling back").
    fn datagrams_fail(&self) -> bool {
        let Datagrams::Open(udp) = &self.datagrams else {
            return false;
        };
        let unheard = udp
            .first_input
            .is_some_and(|(seq, after)| self.input_ack < seq && after >= PROBE_INPUTS);
        unheard || udp.sends_since_snapshot >= SILENT_SENDS
    }

    /// Writes what is still queued (a close, typically), for at most
    /// `timeout`.
    pub(crate) async fn flush(&mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, poll_fn(|cx| self.poll_write_out(cx))).await;
    }
}

impl Udp {
    /// A new socket from the channel's local address to the server, whose
    /// failure would be followed by a wait of `backoff` messages.
    fn open(channel: Channel, backoff: u32) -> std::io::Result<Self> {
        let socket = std::net::UdpSocket::bind(SocketAddr::new(channel.local, 0))?;
        socket.connect(channel.to)?;
        socket.set_nonblocking(true)?;
        Ok(Self {
            socket: UdpSocket::from_std(socket)?,
            channel,
            mac: DatagramMac::new(&channel.key),
            backoff,
            first_input: None,
            sends_since_snapshot: 0,
            recent: Vec::with_capacity(MAX_DATAGRAM_MESSAGES),
            msgs: Vec::with_capacity(MAX_DATAGRAM_MESSAGES),
            out: Vec::with_capacity(128),
            buf: Box::new([0; 2048]),
        })
    }

    /// Sends `msg` as one datagram, an input with the (up to) three inputs
    /// before it. A datagram the socket does not take is lost, like one
    /// the network drops: the next carries the same inputs again.
    fn send(&mut self, msg: DatagramMsg, metrics: &Metrics) {
        self.msgs.clear();
        self.sends_since_snapshot += 1;
        if let DatagramMsg::Input(cmd) = msg {
            match &mut self.first_input {
                Some((_, after)) => *after += 1,
                None => self.first_input = Some((cmd.seq, 0)),
            }
            self.msgs
                .extend(self.recent.iter().map(|c| DatagramMsg::Input(*c)));
            if self.recent.len() == MAX_DATAGRAM_MESSAGES - 1 {
                self.recent.remove(0);
            }
            self.recent.push(cmd);
        }
        self.msgs.push(msg);
        codec::encode_datagram(&self.channel.id, &self.mac, &self.msgs, &mut self.out);
        metrics.bytes_sent.add(self.out.len() as u64);
        if let Err(e) = socket2::SockRef::from(&self.socket).send(&self.out) {
            metrics.datagrams_unsent.inc();
            tracing::debug!("datagram not sent: {e}");
        }
    }
}

/// Appends `frame`, masked with a fresh key as RFC 6455 requires of a
/// client, to `out`.
fn push_frame(out: &mut Vec<u8>, mut frame: Frame<'_>) {
    frame.mask();
    let mut head = [0; MAX_FRAME_HEADER];
    let len = frame.fmt_head(&mut head);
    out.extend_from_slice(&head[..len]);
    out.extend_from_slice(&frame.payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::Tick;
    use shared::protocol::{DatagramKey, ServerMsg};
    use shared::snapshot::SnapshotMsg;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const WAIT: Duration = Duration::from_secs(5);

    /// An unmasked server frame.
    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126);
        let mut f = vec![0x80 | opcode, payload.len() as u8];
        f.extend_from_slice(payload);
        f
    }

    /// Reads one masked client frame: (opcode, unmasked payload).
    async fn client_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
        let mut head = [0; 2];
        s.read_exact(&mut head).await.expect("frame head");
        assert_eq!(head[1] & 0x80, 0x80, "client frames are masked");
        let len = usize::from(head[1] & 0x7f);
        assert!(len < 126);
        let mut mask = [0; 4];
        s.read_exact(&mut mask).await.expect("mask");
        let mut payload = vec![0; len];
        s.read_exact(&mut payload).await.expect("payload");
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        (head[0] & 0x0f, payload)
    }

    /// Accepts the link's connection and reads its upgrade request; the
    /// caller answers it.
    async fn accept_upgrade(listener: &TcpListener) -> TcpStream {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut request = Vec::new();
        while !request.ends_with(b"\r\n\r\n") {
            let mut b = [0; 1];
            s.read_exact(&mut b).await.expect("request");
            request.push(b[0]);
        }
        s
    }

    async fn recv(link: &mut DirectLink) -> Inbound {
        let got = tokio::time::timeout(WAIT, link.recv()).await;
        got.expect("a message in time").expect("link open").0
    }

    /// A hand-written server: the upgrade, then raw frames, so that every
    /// byte the direct link reads and writes is checked.
    #[tokio::test]
    async fn reads_writes_answers_pings_and_echoes_the_close() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut snapshot = Vec::new();
        codec::encode_server(
            &ServerMsg::Snapshot(SnapshotMsg {
                tick: Tick(42),
                base_age: 3,
                input_ack: 7,
                ..SnapshotMsg::default()
            }),
            &mut snapshot,
        );
        let mut pong = Vec::new();
        codec::encode_server(
            &ServerMsg::Pong {
                nonce: 5,
                tick: Tick(1),
            },
            &mut pong,
        );
        let (snapshot_sent, pong_sent) = (snapshot.clone(), pong.clone());
        let server = tokio::spawn(async move {
            let mut s = accept_upgrade(&listener).await;
            // The first frames in the same write as the 101: the HTTP
            // client may read them with the response.
            let mut out = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                            Connection: Upgrade\r\n\r\n"
                .to_vec();
            out.extend(server_frame(0x9, b"hi"));
            out.extend(server_frame(0x2, &snapshot_sent));
            out.extend(server_frame(0x2, &pong_sent));
            s.write_all(&out).await.expect("write");
            // The ping is answered with its payload.
            assert_eq!(client_frame(&mut s).await, (0xA, b"hi".to_vec()));
            // The client's message, as sent.
            let (opcode, payload) = client_frame(&mut s).await;
            assert_eq!(opcode, 0x2);
            assert_eq!(
                codec::decode_client(&payload).ok(),
                Some(ClientMsg::Ping(9))
            );
            let mut close = 1000u16.to_be_bytes().to_vec();
            close.extend_from_slice(b"bye");
            s.write_all(&server_frame(0x8, &close))
                .await
                .expect("close");
            // The close is echoed.
            assert_eq!(client_frame(&mut s).await, (0x8, close));
        });

        let endpoint = Endpoint {
            authority: addr.to_string(),
            path: "/ws".into(),
            tls: None,
        };
        let metrics = Arc::new(Metrics::default());
        let link = DirectLink::open(&endpoint, WAIT, true, false, &metrics).await;
        let mut link = link.expect("connected");
        match recv(&mut link).await {
            Inbound::SnapshotHeader {
                tick,
                base_age,
                input_ack,
            } => assert_eq!((tick, base_age, input_ack), (Tick(42), 3, 7)),
            other => panic!("expected a snapshot header, got {other:?}"),
        }
        match recv(&mut link).await {
            Inbound::Binary(bytes) => assert_eq!(bytes, pong),
            other => panic!("expected the pong message, got {other:?}"),
        }
        link.send(&ClientMsg::Ping(9)).expect("sent");
        match recv(&mut link).await {
            Inbound::Closed { code, reason } => {
                assert_eq!((code, reason.as_str()), (Some(1000), "bye"));
            }
            other => panic!("expected the close, got {other:?}"),
        }
        let after = tokio::time::timeout(WAIT, link.recv()).await;
        assert!(matches!(after, Ok(None)), "nothing after the close");
        // Nothing goes out after the close.
        assert!(matches!(
            link.send(&ClientMsg::Ping(10)),
            Err(BotError::LinkClosed)
        ));
        link.flush(WAIT).await;
        tokio::time::timeout(WAIT, server)
            .await
            .expect("server done in time")
            .expect("server checks passed");
        let received = (snapshot.len() + 2 + pong.len() + 2) as u64;
        assert_eq!(metrics.bytes_received.get(), received);
    }

    #[test]
    fn frames_are_masked_client_frames() {
        let mut out = Vec::new();
        let mut payload = vec![1, 2, 3];
        push_frame(&mut out, Frame::binary(Payload::BorrowedMut(&mut payload)));
        assert_eq!(out.len(), 2 + 4 + 3);
        // FIN and binary; masked, length 3.
        assert_eq!(out[0], 0x82);
        assert_eq!(out[1], 0x80 | 3);
        let mask = [out[2], out[3], out[4], out[5]];
        let unmasked: Vec<u8> = out[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(unmasked, [1, 2, 3]);
    }

    /// The server's side of a link that asks for datagrams: the upgrade,
    /// the hello and the ask read, and a channel offered whose port is
    /// `hole`'s, a socket nobody answers (UDP lost on the way out). Then
    /// snapshots keep coming on the WebSocket every `period`, acknowledging
    /// no input (the server never heard one), while the returned receiver
    /// yields the sequence number of every input that comes by WebSocket.
    async fn unheard_datagrams(
        listener: TcpListener,
        hole: &tokio::net::UdpSocket,
        period: Duration,
    ) -> tokio::sync::mpsc::UnboundedReceiver<u32> {
        let port = hole.local_addr().expect("udp addr").port();
        let (inputs, by_websocket) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut s = accept_upgrade(&listener).await;
            s.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\n\r\n",
            )
            .await
            .expect("101");
            // The hello, then the ask right behind it.
            let hello = client_frame(&mut s).await.1;
            assert!(matches!(
                codec::decode_client(&hello),
                Ok(ClientMsg::Hello(_))
            ));
            let ask = client_frame(&mut s).await.1;
            assert_eq!(
                codec::decode_client(&ask).ok(),
                Some(ClientMsg::OpenDatagrams)
            );
            s.write_all(&server_frame(
                0x2,
                &codec::server_bytes(&ServerMsg::DatagramChannel(unheard_channel(port))),
            ))
            .await
            .expect("channel");
            let (mut read, mut write) = s.into_split();
            let snapshots = tokio::spawn(async move {
                for tick in 1.. {
                    let snapshot = ServerMsg::Snapshot(SnapshotMsg {
                        tick: Tick(tick),
                        ..SnapshotMsg::default()
                    });
                    let frame = server_frame(0x2, &codec::server_bytes(&snapshot));
                    if write.write_all(&frame).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(period).await;
                }
            });
            // Until the link goes.
            loop {
                let mut head = [0; 2];
                if read.read_exact(&mut head).await.is_err() {
                    break;
                }
                let len = usize::from(head[1] & 0x7f);
                let mut rest = vec![0; 4 + len];
                if read.read_exact(&mut rest).await.is_err() {
                    break;
                }
                let (mask, payload) = rest.split_at_mut(4);
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
                if let Ok(ClientMsg::Input(cmd)) = codec::decode_client(payload)
                    && inputs.send(cmd.seq).is_err()
                {
                    break;
                }
            }
            snapshots.abort();
        });
        by_websocket
    }

    /// A socket for datagrams nobody answers, whose buffer holds every
    /// datagram a test sends it (a hundred or so) until it is read.
    fn hole() -> tokio::net::UdpSocket {
        let hole = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        // Best effort: the kernel caps it at net.core.rmem_max.
        let _ = socket2::SockRef::from(&hole).set_recv_buffer_size(1 << 20);
        hole.set_nonblocking(true).expect("non-blocking");
        tokio::net::UdpSocket::from_std(hole).expect("udp")
    }

    /// The channel [`unheard_datagrams`] offers.
    fn unheard_channel(port: u16) -> DatagramChannel {
        DatagramChannel {
            port,
            id: DatagramId([8; 8]),
            key: DatagramKey([9; 16]),
        }
    }

    /// A link to `addr` that asks for datagrams, said hello.
    async fn datagram_link(addr: SocketAddr, metrics: &Arc<Metrics>) -> DirectLink {
        let endpoint = Endpoint {
            authority: addr.to_string(),
            path: "/ws".into(),
            tls: None,
        };
        let mut link = DirectLink::open(&endpoint, WAIT, true, true, metrics)
            .await
            .expect("connected");
        link.send(&ClientMsg::Hello(shared::protocol::Hello::new("b")))
            .expect("hello");
        link
    }

    /// Reads what came (the channel, snapshots) for up to `wait`, then
    /// sends input `seq`, as the bot's core does each tick.
    async fn tick(link: &mut DirectLink, seq: u32, wait: Duration) {
        let _ = tokio::time::timeout(wait, link.recv()).await;
        link.send(&ClientMsg::Input(InputCmd {
            seq,
            ..InputCmd::default()
        }))
        .expect("input");
    }

    /// The newest input of each datagram that reached `hole` (verified
    /// with the channel's key), and how many sockets they came from.
    async fn datagram_inputs(hole: &tokio::net::UdpSocket) -> (Vec<u32>, usize) {
        let mac = DatagramMac::new(&unheard_channel(0).key);
        let mut buf = [0; 256];
        let (mut seqs, mut sources) = (Vec::new(), Vec::new());
        while let Ok(Ok((len, from))) =
            tokio::time::timeout(Duration::from_millis(50), hole.recv_from(&mut buf)).await
        {
            let datagram = codec::decode_datagram(&buf[..len], &mac).expect("a signed datagram");
            let newest = datagram.messages().iter().rev().find_map(|m| match m {
                DatagramMsg::Input(cmd) => Some(cmd.seq),
                DatagramMsg::Ack(_) => None,
            });
            seqs.extend(newest);
            if !sources.contains(&from) {
                sources.push(from);
            }
        }
        (seqs, sources.len())
    }

    /// A server that offers datagrams whose socket nobody answers (UDP
    /// lost on the way out): the link sends its inputs there, sees none of
    /// them acknowledged, and after [`PROBE_INPUTS`] more goes back to the
    /// WebSocket.
    #[tokio::test]
    async fn a_link_whose_datagrams_go_unheard_falls_back_to_the_websocket() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let hole = hole();
        let addr = listener.local_addr().expect("addr");
        let mut by_websocket = unheard_datagrams(listener, &hole, Duration::from_millis(30)).await;
        let metrics = Arc::new(Metrics::default());
        let mut link = datagram_link(addr, &metrics).await;
        let mut seq = 0;
        let first_by_websocket = loop {
            seq += 1;
            tick(&mut link, seq, Duration::from_millis(30)).await;
            if let Ok(first) = by_websocket.try_recv() {
                break first;
            }
            assert!(seq < 300, "no input ever came by WebSocket");
        };
        // Input 1, then PROBE_INPUTS more, went by datagram, into the hole;
        // the next is the first on the WebSocket (two seconds of a bot's
        // ticks; this loop sends faster).
        assert_eq!(first_by_websocket, PROBE_INPUTS + 2);
        let (by_datagram, _) = datagram_inputs(&hole).await;
        assert_eq!(by_datagram, (1..=PROBE_INPUTS + 1).collect::<Vec<_>>());
        assert_eq!(metrics.datagram_fallbacks.get(), 1);
        assert_eq!(metrics.datagram_retries.get(), 0);
    }

    /// A link that fell back tries datagrams again, from a new socket,
    /// after [`RETRY_AFTER`] messages on the WebSocket alone, and probes
    /// them as it did the first time; when they fail again it waits twice
    /// as long before the next try.
    #[tokio::test]
    async fn a_link_that_fell_back_tries_datagrams_again_after_a_while() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let hole = hole();
        let addr = listener.local_addr().expect("addr");
        // Snapshots come faster than this loop sends: none sees the link
        // silent (SILENT_SENDS), only unacknowledged (PROBE_INPUTS).
        let mut by_websocket = unheard_datagrams(listener, &hole, Duration::from_millis(1)).await;
        let metrics = Arc::new(Metrics::default());
        let mut link = datagram_link(addr, &metrics).await;
        // Input 1 and PROBE_INPUTS more by datagram, the next on the
        // WebSocket; the same from each try.
        let fell_back = PROBE_INPUTS + 2;
        let retried = fell_back + RETRY_AFTER;
        let fell_back_again = retried + PROBE_INPUTS + 1;
        let retried_again = fell_back_again + 2 * RETRY_AFTER;
        let last = retried_again + 10;
        for seq in 1..=last {
            tick(&mut link, seq, Duration::from_millis(30)).await;
        }
        drop(link);
        let mut websocket = Vec::new();
        while let Some(seq) = by_websocket.recv().await {
            websocket.push(seq);
        }
        let expected: Vec<u32> = (fell_back..retried)
            .chain(fell_back_again..retried_again)
            .collect();
        assert_eq!(websocket, expected);
        let (by_datagram, sockets) = datagram_inputs(&hole).await;
        let expected: Vec<u32> = (1..fell_back)
            .chain(retried..fell_back_again)
            .chain(retried_again..=last)
            .collect();
        assert_eq!(by_datagram, expected);
        assert_eq!(sockets, 3, "a new socket for each try");
        assert_eq!(metrics.datagram_fallbacks.get(), 2);
        assert_eq!(metrics.datagram_retries.get(), 2);
    }
}
