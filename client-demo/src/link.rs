//! One connection of a bot, and the core's handle on it.
//!
//! A light bot on a transparent link (no latency, no jitter: the default,
//! and what load tests use) reads and writes its socket from its own task
//! (see [`crate::direct`]). Every other link has two tasks, so that the
//! conditioner can hold messages back without holding back the core:
//!
//! * the *reader* owns the socket's read half. It blocks on the next frame
//!   (fastwebsockets' `read_frame` is not cancel-safe, so it must never sit
//!   in a `select!`), stamps each message with its release time from the
//!   inbound [`LinkConditioner`] and hands it over a bounded channel;
//! * the *writer* owns the write half and writes each outgoing message at its
//!   release time.
//!
//! A bot that resumes its session opens a new [`Link`] and keeps its game
//! state; the old link is [`cut`](Link::cut): the socket is dropped without
//! a close frame, as a lost connection would be.

use std::sync::Arc;
use std::time::Duration;

use fastwebsockets::{Frame, OpCode, Payload, WebSocketError};
use shared::Tick;
use shared::codec;
use shared::protocol::ClientMsg;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::bot::BotError;
use crate::conditioner::{Delayed, DelayedRx, LinkConditioner, LinkConfig};
use crate::connection::{self, ConnectError, Endpoint, WsReader, WsWriter};
use crate::direct::DirectLink;
use crate::metrics::Metrics;

/// A message from the reader to the core.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A binary message: one server message.
    Binary(Vec<u8>),
    /// The header of a snapshot, read by the reader of a light link (see
    /// [`Link::open`]) instead of handing the whole message over.
    SnapshotHeader {
        tick: Tick,
        base_age: u32,
        input_ack: u32,
    },
    /// A text message: never sent by a correct server.
    Text,
    /// The server's close frame.
    Closed { code: Option<u16>, reason: String },
    /// Reading failed; nothing more will come.
    Failed(String),
}

impl Inbound {
    /// A binary message of `payload`, counted in the received bytes: on a
    /// `light` link a snapshot is passed on as its header.
    pub(crate) fn binary(payload: Payload<'_>, light: bool, metrics: &Metrics) -> Self {
        let len = payload.len();
        metrics
            .bytes_received
            .add((len + connection::frame_header_len(len, false)) as u64);
        Self::header(&payload, light).unwrap_or_else(|| Self::Binary(Vec::from(payload)))
    }

    /// A snapshot's header, on a `light` link: what the link passes on
    /// instead of the message (`None` for any other message, or when not
    /// light).
    pub(crate) fn header(message: &[u8], light: bool) -> Option<Self> {
        if !light {
            return None;
        }
        let (tick, base_age, input_ack) = codec::peek_snapshot_header(message)?;
        Some(Self::SnapshotHeader {
            tick,
            base_age,
            input_ack,
        })
    }

    /// The server's close frame, from its payload (code, then reason).
    pub(crate) fn closed(payload: &[u8]) -> Self {
        let code = payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
        let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into();
        Self::Closed { code, reason }
    }
}

/// A message from the core (or the reader's protocol obligations) to the
/// writer.
#[derive(Debug)]
enum Outbound {
    /// One client message.
    Binary(Vec<u8>),
    /// Answer to a ping frame.
    Pong(Vec<u8>),
    /// Our close frame, code 1000; the last thing written.
    Close,
    /// Echo of the server's close frame; the last thing written.
    CloseEcho(Vec<u8>),
}

/// How long [`Link::finish`] lets the reader and writer end on their own
/// before aborting them (or a direct link write what it still holds).
const TASK_GRACE: Duration = Duration::from_secs(1);

/// The core's side of one connection.
pub(crate) struct Link {
    transport: Transport,
}

enum Transport {
    /// Reader and writer tasks behind the conditioner.
    Tasks(Tasks),
    /// Read and written by the core (see [`crate::direct`]).
    Direct(Box<DirectLink>),
    /// A direct link after [`Link::cut`]: the socket is gone.
    Cut,
}

/// The reader and writer tasks of a conditioned link, and the channels to
/// and from them.
struct Tasks {
    tx: mpsc::Sender<Delayed<Outbound>>,
    conditioner: LinkConditioner,
    /// Server messages at their release time.
    inbound: DelayedRx<Inbound>,
    /// The writer and reader tasks.
    tasks: [JoinHandle<()>; 2],
}

impl Link {
    /// Opens a WebSocket to `endpoint` within `timeout`, each direction
    /// delayed by `link` with jitter drawn from its seed of `seeds`
    /// (inbound, outbound). On a `light` link snapshots are passed on as
    /// [`Inbound::SnapshotHeader`]: no copy of the message, no allocation.
    /// A light link that `link` does not delay is read and written by the
    /// caller's task (see [`crate::direct`]); any other has a reader and a
    /// writer task. With `datagrams`, a direct link asks for the datagram
    /// channel (`PROTOCOL.md` section 3.7); other links ignore it (the swarm
    /// refuses that combination).
    pub(crate) async fn open(
        endpoint: &Endpoint,
        timeout: Duration,
        link: LinkConfig,
        seeds: (u64, u64),
        light: bool,
        datagrams: bool,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, ConnectError> {
        // The direct path writes to the TCP socket itself: not through TLS.
        let transport = if light && link.is_transparent() && endpoint.tls.is_none() {
            let direct = DirectLink::open(endpoint, timeout, light, datagrams, metrics).await?;
            Transport::Direct(Box::new(direct))
        } else {
            Transport::Tasks(Tasks::open(endpoint, timeout, link, seeds, light, metrics).await?)
        };
        Ok(Self { transport })
    }

    /// Sends a client message (through the conditioner, if any).
    pub(crate) fn send(&mut self, msg: &ClientMsg, now: Instant) -> Result<(), BotError> {
        match &mut self.transport {
            Transport::Tasks(tasks) => tasks.push(Outbound::Binary(codec::client_bytes(msg)), now),
            Transport::Direct(direct) => direct.send(msg),
            Transport::Cut => Err(BotError::LinkClosed),
        }
    }

    /// The next server message, with the time it came out of the link
    /// (when a real client's socket would have had it); `None` when nothing
    /// more will come.
    ///
    /// Cancel-safe: may sit in `select!`.
    pub(crate) async fn recv(&mut self) -> Option<(Inbound, Instant)> {
        match &mut self.transport {
            Transport::Tasks(tasks) => tasks.inbound.recv().await.map(|d| (d.item, d.release)),
            Transport::Direct(direct) => direct.recv().await,
            Transport::Cut => None,
        }
    }

    /// Leaves for good: sends [`ClientMsg::Leave`], so the server frees the
    /// seat at once instead of keeping the session for its resume grace,
    /// and waits for the server's close frame (which is echoed). If none
    /// comes within `timeout`, sends our own close frame. `true` when the
    /// server closed in time.
    pub(crate) async fn leave(&mut self, timeout: Duration) -> bool {
        if self.send(&ClientMsg::Leave, Instant::now()).is_err() {
            return false;
        }
        let wait = async {
            while let Some((msg, _)) = self.recv().await {
                match msg {
                    Inbound::Closed { .. } => return true,
                    Inbound::Failed(_) => return false,
                    // Snapshots still in flight and the `Left` reason: no
                    // longer played.
                    Inbound::Binary(_) | Inbound::SnapshotHeader { .. } | Inbound::Text => {}
                }
            }
            false
        };
        let closed = tokio::time::timeout(timeout, wait).await.unwrap_or(false);
        if !closed {
            // Nothing may be listening any more; the close is a courtesy.
            match &mut self.transport {
                Transport::Tasks(tasks) => {
                    let _ = tasks.push(Outbound::Close, Instant::now());
                }
                Transport::Direct(direct) => direct.close(),
                Transport::Cut => {}
            }
        }
        closed
    }

    /// Drops the connection at once, without a close frame. Whatever was
    /// still queued in either direction is lost, as on a real broken
    /// connection.
    pub(crate) fn cut(&mut self) {
        match &mut self.transport {
            // Aborting both tasks drops the socket.
            Transport::Tasks(tasks) => {
                for task in &tasks.tasks {
                    task.abort();
                }
            }
            Transport::Direct(_) => self.transport = Transport::Cut,
            Transport::Cut => {}
        }
    }

    /// Lets what was queued for sending go out (a close, typically) and
    /// ends the connection; bounded in time, so a bot always ends.
    pub(crate) async fn finish(self) {
        match self.transport {
            Transport::Tasks(tasks) => tasks.finish().await,
            Transport::Direct(mut direct) => direct.flush(TASK_GRACE).await,
            Transport::Cut => {}
        }
    }
}

impl Tasks {
    /// Connects and starts the reader and writer (see [`Link::open`]).
    async fn open(
        endpoint: &Endpoint,
        timeout: Duration,
        link: LinkConfig,
        seeds: (u64, u64),
        light: bool,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, ConnectError> {
        let (reader, writer, _local) = connection::connect(endpoint, timeout).await?;
        let (out_tx, out_rx) = mpsc::channel(link.queue_len());
        let (in_tx, in_rx) = mpsc::channel(link.queue_len());
        let writer_task = tokio::spawn(write_loop(writer, out_rx, Arc::clone(metrics)));
        let reader_task = tokio::spawn(read_loop(
            reader,
            in_tx,
            LinkConditioner::new(link, seeds.0),
            light,
            out_tx.clone(),
            Arc::clone(metrics),
        ));
        Ok(Self {
            tx: out_tx,
            conditioner: LinkConditioner::new(link, seeds.1),
            inbound: DelayedRx::new(in_rx),
            tasks: [writer_task, reader_task],
        })
    }

    fn push(&mut self, item: Outbound, now: Instant) -> Result<(), BotError> {
        let release = self.conditioner.release_at(now);
        self.tx
            .try_send(Delayed { release, item })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => BotError::SendQueueFull,
                mpsc::error::TrySendError::Closed(_) => BotError::LinkClosed,
            })
    }

    /// Lets the reader and writer end (the writer after a close frame or
    /// when its channel closes, the reader at the server's close frame or
    /// when the socket does), and aborts them after a moment.
    async fn finish(self) {
        let Self {
            tx, inbound, tasks, ..
        } = self;
        drop(tx);
        drop(inbound);
        for task in tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(TASK_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// The reader task: socket to core, through the inbound conditioner.
async fn read_loop(
    mut reader: WsReader,
    inbound: mpsc::Sender<Delayed<Inbound>>,
    mut conditioner: LinkConditioner,
    light: bool,
    writer: mpsc::Sender<Delayed<Outbound>>,
    metrics: Arc<Metrics>,
) {
    // Control frames the protocol obliges us to answer (pong, close echo) go
    // to the writer. Once our own close is written the writer is gone and
    // the obligation is moot, so a failed send is not an error.
    let mut obligations = |frame: Frame<'_>| {
        let out = match frame.opcode {
            OpCode::Pong => Some(Outbound::Pong(frame.payload.to_vec())),
            OpCode::Close => Some(Outbound::CloseEcho(frame.payload.to_vec())),
            _ => None,
        };
        let writer = writer.clone();
        async move {
            if let Some(item) = out {
                let release = Instant::now();
                let _ = writer.send(Delayed { release, item }).await;
            }
            Ok::<(), std::convert::Infallible>(())
        }
    };
    loop {
        let result = reader.read_frame(&mut obligations).await;
        let now = Instant::now();
        let (item, last) = match result {
            Ok(frame) => match frame.opcode {
                OpCode::Binary => (Inbound::binary(frame.payload, light, &metrics), false),
                OpCode::Text => (Inbound::Text, false),
                OpCode::Close => (Inbound::closed(&frame.payload), true),
                _ => continue,
            },
            Err(e) => (Inbound::Failed(describe(&e)), true),
        };
        let release = conditioner.release_at(now);
        if inbound.send(Delayed { release, item }).await.is_err() || last {
            return;
        }
    }
}

/// A read error, as the report's log shows it.
pub(crate) fn describe(e: &WebSocketError) -> String {
    match e {
        WebSocketError::UnexpectedEOF => "connection closed without a close frame".into(),
        other => other.to_string(),
    }
}

/// The writer task: core to socket, each message at its release time.
///
/// When writing fails the task ends and drops its receiver, so the core's
/// next send fails with [`BotError::LinkClosed`]; the reader sees the broken
/// socket on its side and reports the cause.
async fn write_loop(
    writer: WsWriter,
    rx: mpsc::Receiver<Delayed<Outbound>>,
    metrics: Arc<Metrics>,
) {
    if let Err(e) = write_messages(writer, rx, &metrics).await {
        tracing::debug!("writer ended: {e}");
    }
}

async fn write_messages(
    mut writer: WsWriter,
    rx: mpsc::Receiver<Delayed<Outbound>>,
    metrics: &Metrics,
) -> Result<(), WebSocketError> {
    let mut rx = DelayedRx::new(rx);
    while let Some(msg) = rx.recv().await {
        match msg.item {
            Outbound::Binary(bytes) => {
                let len = bytes.len();
                writer
                    .write_frame(Frame::binary(Payload::from(bytes)))
                    .await?;
                metrics
                    .bytes_sent
                    .add((len + connection::frame_header_len(len, true)) as u64);
            }
            Outbound::Pong(payload) => {
                writer
                    .write_frame(Frame::pong(Payload::from(payload)))
                    .await?;
            }
            Outbound::Close => {
                writer.write_frame(Frame::close(1000, b"")).await?;
                return Ok(());
            }
            Outbound::CloseEcho(payload) => {
                writer
                    .write_frame(Frame::close_raw(Payload::from(payload)))
                    .await?;
                return Ok(());
            }
        }
    }
    Ok(())
}
