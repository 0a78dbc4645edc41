//! One connection of a bot: the socket's reader and writer tasks, and the
//! core's handle on them.
//!
//! * the *reader* owns the socket's read half. It blocks on the next frame
//!   (fastwebsockets' `read_frame` is not cancel-safe, so it must never sit
//!   in a `select!`), stamps each message with its release time from the
//!   inbound [`LinkConditioner`] and hands it over a bounded channel;
//! * the *writer* owns the write half and writes each outgoing message at its
//!   release time.
//!
//! A bot that resumes its session opens a new [`Link`] and keeps its game
//! state; the old link is [`cut`](Link::cut): both tasks are aborted, which
//! drops the socket without a close frame, as a lost connection would.

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
use crate::conditioner::{Delayed, DelayedRx, LINK_QUEUE, LinkConditioner, LinkConfig};
use crate::connection::{self, ConnectError, Endpoint, WsReader, WsWriter};
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
/// before aborting them.
const TASK_GRACE: Duration = Duration::from_secs(1);

/// The core's side of one connection.
pub(crate) struct Link {
    tx: mpsc::Sender<Delayed<Outbound>>,
    conditioner: LinkConditioner,
    /// Server messages at their release time.
    pub(crate) inbound: DelayedRx<Inbound>,
    /// The writer and reader tasks.
    tasks: [JoinHandle<()>; 2],
}

impl Link {
    /// Opens a WebSocket to `endpoint` within `timeout` and starts its
    /// reader and writer, each direction delayed by `link` with jitter drawn
    /// from its seed of `seeds` (inbound, outbound). On a `light` link the
    /// reader passes snapshots on as [`Inbound::SnapshotHeader`]: no copy of
    /// the message, no allocation.
    pub(crate) async fn open(
        endpoint: &Endpoint,
        timeout: Duration,
        link: LinkConfig,
        seeds: (u64, u64),
        light: bool,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, ConnectError> {
        let (reader, writer, _local) = connection::connect(endpoint, timeout).await?;
        let (out_tx, out_rx) = mpsc::channel(LINK_QUEUE);
        let (in_tx, in_rx) = mpsc::channel(LINK_QUEUE);
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

    /// Queues a client message for sending through the conditioner.
    pub(crate) fn send(&mut self, msg: &ClientMsg, now: Instant) -> Result<(), BotError> {
        self.push(Outbound::Binary(codec::client_bytes(msg)), now)
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

    /// Leaves for good: sends [`ClientMsg::Leave`], so the server frees the
    /// seat at once instead of keeping the session for its resume grace,
    /// and waits for the server's close frame (the reader echoes it). If none
    /// comes within `timeout`, sends our own close frame. `true` when the
    /// server closed in time.
    pub(crate) async fn leave(&mut self, timeout: Duration) -> bool {
        if self.send(&ClientMsg::Leave, Instant::now()).is_err() {
            return false;
        }
        let wait = async {
            while let Some(msg) = self.inbound.recv().await {
                match msg.item {
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
            let _ = self.push(Outbound::Close, Instant::now());
        }
        closed
    }

    /// Drops the connection at once: both tasks are aborted, which drops
    /// the socket without a close frame. Whatever was still queued in either
    /// direction is lost, as on a real broken connection.
    pub(crate) fn cut(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }

    /// Lets the reader and writer end (the writer after a close frame or
    /// when its channel closes, the reader at the server's close frame or
    /// when the socket does), and aborts them after a moment, so a bot
    /// always ends.
    pub(crate) async fn finish(self) {
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
                OpCode::Binary => {
                    let len = frame.payload.len();
                    metrics
                        .bytes_received
                        .add((len + connection::frame_header_len(len, false)) as u64);
                    let header = if light {
                        codec::peek_snapshot_header(&frame.payload)
                    } else {
                        None
                    };
                    let item = match header {
                        Some((tick, base_age, input_ack)) => Inbound::SnapshotHeader {
                            tick,
                            base_age,
                            input_ack,
                        },
                        None => Inbound::Binary(Vec::from(frame.payload)),
                    };
                    (item, false)
                }
                OpCode::Text => (Inbound::Text, false),
                OpCode::Close => {
                    let p: &[u8] = &frame.payload;
                    let code = p.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                    let reason = String::from_utf8_lossy(p.get(2..).unwrap_or_default()).into();
                    (Inbound::Closed { code, reason }, true)
                }
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

fn describe(e: &WebSocketError) -> String {
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
