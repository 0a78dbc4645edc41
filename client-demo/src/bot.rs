//! One bot: connects, says hello, plays, verifies, measures, and leaves with a
//! close frame.
//!
//! A bot is three tokio tasks and no thread:
//!
//! * the *reader* owns the socket's read half. It blocks on the next frame
//!   (fastwebsockets' `read_frame` is not cancel-safe, so it must never sit
//!   in a `select!`), stamps each message with its release time from the
//!   inbound [`LinkConditioner`] and hands it over a bounded channel;
//! * the *writer* owns the write half and writes each outgoing message at its
//!   release time;
//! * the *core* (the task that called [`run`]) owns all the game state: the
//!   [`Replica`], the [`Predictor`], the [`Brain`]. It waits on the tick
//!   timer, the released inbound messages and the stop signal, and never on
//!   a socket, so its tick timer measures the bot process's own lateness.
//!
//! Memory per bot is a few KiB of buffers plus one round trip's worth of
//! world states (see [`crate::replica`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fastwebsockets::{Frame, OpCode, Payload, WebSocketError};
use shared::Tick;
use shared::codec;
use shared::protocol::{
    AuthToken, ClientMsg, DisconnectReason, Hello, InputCmd, RoomRequest, ServerMsg,
};
use shared::snapshot::{NetEntity, SnapshotMsg};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

use crate::brain::Brain;
use crate::conditioner::{Delayed, DelayedRx, LINK_QUEUE, LinkConditioner, LinkConfig};
use crate::connection::{self, ConnectError, Endpoint, WsReader, WsWriter};
use crate::metrics::{Metrics, Samples};
use crate::pacing::Pacer;
use crate::prediction::Predictor;
use crate::replica::Replica;

/// Settings of one bot.
#[derive(Clone, Debug)]
pub struct BotConfig {
    /// Display name sent in the hello.
    pub name: String,
    /// Seed of this bot's choices and link jitter.
    pub seed: u64,
    /// Delay added to each direction of the link.
    pub link: LinkConfig,
    /// Longest TCP connect plus WebSocket handshake. Default: 10 s.
    pub connect_timeout: Duration,
    /// Longest wait for the welcome after the hello. Default: 10 s.
    pub welcome_timeout: Duration,
    /// Longest wait for the server's close frame after ours. Default: 3 s.
    pub close_timeout: Duration,
    /// Time between two pings (`None`: no pings). Pings measure the round
    /// trip without the tick wait, which separates transport latency from
    /// simulation latency. Default: 2 s.
    pub ping_interval: Option<Duration>,
    /// The room asked for in the hello. Default: matchmaking (a public
    /// room the server picks).
    pub room: RoomRequest,
    /// Join token for servers that require one (its `Debug` output is
    /// redacted). Default: none.
    pub auth: Option<AuthToken>,
}

impl Default for BotConfig {
    fn default() -> Self {
        Self {
            name: "bot".into(),
            seed: 0,
            link: LinkConfig::default(),
            connect_timeout: Duration::from_secs(10),
            welcome_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(3),
            ping_interval: Some(Duration::from_secs(2)),
            room: RoomRequest::Matchmake,
            auth: None,
        }
    }
}

/// Why a bot stopped before it was told to.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// The transport could not be opened.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The server refused the hello.
    #[error("rejected by the server: {0}")]
    Rejected(DisconnectReason),
    /// No welcome arrived in time.
    #[error("no welcome within {0:?}")]
    WelcomeTimeout(Duration),
    /// The first message after the hello was not a welcome.
    #[error("expected a welcome, got {0}")]
    NoWelcome(&'static str),
    /// The run ended before the welcome arrived.
    #[error("stopped before the welcome arrived")]
    StoppedBeforeWelcome,
    /// The server said why it is closing the connection.
    #[error("disconnected by the server: {0}")]
    Disconnected(DisconnectReason),
    /// The server closed the connection without saying why first.
    #[error("server closed the connection (code {code:?}): {reason}")]
    Closed {
        /// Close code, if the frame carried one.
        code: Option<u16>,
        /// Close reason text.
        reason: String,
    },
    /// Reading or writing the WebSocket failed.
    #[error("websocket: {0}")]
    WebSocket(String),
    /// The outbound link queue is full: the server stopped reading.
    #[error("outbound queue full ({LINK_QUEUE} messages)")]
    SendQueueFull,
    /// The reader or writer task is gone.
    #[error("link tasks ended")]
    LinkClosed,
}

impl BotError {
    /// A short stable label for the report's breakdown of failures.
    #[must_use]
    pub fn label(&self) -> String {
        match self {
            Self::Connect(e) => e.label().to_owned(),
            Self::Rejected(r) => format!("rejected_{}", r.label()),
            Self::WelcomeTimeout(_) => "welcome_timeout".into(),
            Self::NoWelcome(_) => "no_welcome".into(),
            Self::StoppedBeforeWelcome => "stopped_before_welcome".into(),
            Self::Disconnected(r) => r.label().to_owned(),
            Self::Closed { code, .. } => match code {
                Some(c) => format!("closed_{c}"),
                None => "closed".into(),
            },
            Self::WebSocket(_) => "websocket_error".into(),
            Self::SendQueueFull => "send_queue_full".into(),
            Self::LinkClosed => "link_closed".into(),
        }
    }
}

/// How a bot's run ended.
#[derive(Debug)]
pub enum BotOutcome {
    /// Played until told to stop, then left with a close frame.
    Finished,
    /// Never got a welcome.
    ConnectFailed(BotError),
    /// Was welcomed, then lost the connection before the end of the run.
    Disconnected(BotError),
}

/// A message from the reader to the core.
#[derive(Debug)]
enum Inbound {
    /// A binary message: one server message.
    Binary(Vec<u8>),
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

/// Warnings logged per process before they go to debug level, so a broken
/// server cannot flood the terminal of a 2,000-bot run.
const WARN_BUDGET: u64 = 10;
static WARNINGS: AtomicU64 = AtomicU64::new(0);

fn warn_limited(args: std::fmt::Arguments<'_>) {
    if WARNINGS.fetch_add(1, Ordering::Relaxed) < WARN_BUDGET {
        tracing::warn!("{args}");
    } else {
        tracing::debug!("{args}");
    }
}

/// Runs one bot until `stop` turns true (or its sender is dropped), or the
/// connection ends. Counts everything it sees into `metrics`.
pub async fn run(
    config: BotConfig,
    endpoint: Arc<Endpoint>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> BotOutcome {
    if *stop.borrow() {
        return BotOutcome::ConnectFailed(BotError::StoppedBeforeWelcome);
    }
    let (reader, writer, _local) =
        match connection::connect(&endpoint, config.connect_timeout).await {
            Ok(parts) => parts,
            Err(e) => return BotOutcome::ConnectFailed(e.into()),
        };
    let seeds = Seeds::new(config.seed);
    let (out_tx, out_rx) = mpsc::channel(LINK_QUEUE);
    let (in_tx, in_rx) = mpsc::channel(LINK_QUEUE);
    let writer_task = tokio::spawn(write_loop(writer, out_rx, Arc::clone(&metrics)));
    let reader_task = tokio::spawn(read_loop(
        reader,
        in_tx,
        LinkConditioner::new(config.link, seeds.link_in),
        out_tx.clone(),
        Arc::clone(&metrics),
    ));
    let mut link = Link {
        tx: out_tx,
        conditioner: LinkConditioner::new(config.link, seeds.link_out),
        inbound: DelayedRx::new(in_rx),
    };

    let outcome = match hello(&config, &mut link, &mut stop).await {
        Err(e) => BotOutcome::ConnectFailed(e),
        Ok(welcome) => {
            let mut game = Game::new(welcome, &config, &seeds, Arc::clone(&metrics));
            let result = game.play(&mut link, &mut stop).await;
            game.finish();
            match result {
                Ok(()) => {
                    if !link.close(config.close_timeout).await {
                        metrics.unclean_closes.inc();
                    }
                    BotOutcome::Finished
                }
                Err(e) => BotOutcome::Disconnected(e),
            }
        }
    };
    drop(link);
    // The writer ends after a close frame or when its channel closes; the
    // reader ends at the server's close frame or when the socket does. Give
    // both a moment, then cut them loose so the run always ends.
    let grace = Duration::from_secs(1);
    for task in [writer_task, reader_task] {
        let abort = task.abort_handle();
        if tokio::time::timeout(grace, task).await.is_err() {
            abort.abort();
        }
    }
    outcome
}

/// Independent seeds for one bot's generators.
struct Seeds {
    brain: u64,
    link_in: u64,
    link_out: u64,
    phase: u64,
}

impl Seeds {
    fn new(seed: u64) -> Self {
        // splitmix64: consecutive bot seeds give unrelated streams.
        let mut s = seed;
        let mut next = || {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Self {
            brain: next(),
            link_in: next(),
            link_out: next(),
            phase: next(),
        }
    }
}

/// The core's side of the link.
struct Link {
    tx: mpsc::Sender<Delayed<Outbound>>,
    conditioner: LinkConditioner,
    inbound: DelayedRx<Inbound>,
}

impl Link {
    /// Queues a client message for sending through the conditioner.
    fn send(&mut self, msg: &ClientMsg, now: Instant) -> Result<(), BotError> {
        let bytes = codec::client_bytes(msg);
        let release = self.conditioner.release_at(now);
        self.tx
            .try_send(Delayed {
                release,
                item: Outbound::Binary(bytes),
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => BotError::SendQueueFull,
                mpsc::error::TrySendError::Closed(_) => BotError::LinkClosed,
            })
    }

    /// Sends our close frame and waits for the server's. `true` when the
    /// close handshake completed in time.
    async fn close(&mut self, timeout: Duration) -> bool {
        let release = self.conditioner.release_at(Instant::now());
        let queued = self
            .tx
            .try_send(Delayed {
                release,
                item: Outbound::Close,
            })
            .is_ok();
        if !queued {
            return false;
        }
        let wait = async {
            while let Some(msg) = self.inbound.recv().await {
                match msg.item {
                    Inbound::Closed { .. } => return true,
                    Inbound::Failed(_) => return false,
                    // Snapshots still in flight: no longer played.
                    Inbound::Binary(_) | Inbound::Text => {}
                }
            }
            false
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }
}

/// Sends the hello and waits for the welcome.
async fn hello(
    config: &BotConfig,
    link: &mut Link,
    stop: &mut watch::Receiver<bool>,
) -> Result<shared::protocol::Welcome, BotError> {
    let hello = ClientMsg::Hello(Hello {
        room: config.room.clone(),
        auth: config.auth.clone(),
        ..Hello::new(config.name.as_str())
    });
    link.send(&hello, Instant::now())?;
    let deadline = Instant::now() + config.welcome_timeout;
    let msg = tokio::select! {
        biased;
        _ = stop.changed() => return Err(BotError::StoppedBeforeWelcome),
        () = tokio::time::sleep_until(deadline) => {
            return Err(BotError::WelcomeTimeout(config.welcome_timeout));
        }
        msg = link.inbound.recv() => msg.ok_or(BotError::LinkClosed)?.item,
    };
    // The welcome must be the first message: anything else is a failed join.
    match msg {
        Inbound::Binary(bytes) => match codec::decode_server(&bytes) {
            Ok(ServerMsg::Welcome(w)) => Ok(w),
            Ok(ServerMsg::Disconnect(reason)) => Err(BotError::Rejected(reason)),
            Ok(ServerMsg::Snapshot(_)) => Err(BotError::NoWelcome("a snapshot")),
            Ok(ServerMsg::Pong { .. }) => Err(BotError::NoWelcome("a pong")),
            Err(_) => Err(BotError::NoWelcome("undecodable bytes")),
        },
        Inbound::Text => Err(BotError::NoWelcome("a text frame")),
        Inbound::Closed { code, reason } => Err(BotError::Closed { code, reason }),
        Inbound::Failed(e) => Err(BotError::WebSocket(e)),
    }
}

/// The state of a welcomed bot.
struct Game {
    metrics: Arc<Metrics>,
    player_id: u32,
    period: Duration,
    /// Offset of this bot's input clock within a tick. The welcome is sent
    /// at a server tick, so without it every bot would sample its input just
    /// after the server's tick and wait a whole tick for the next one; real
    /// players' input timing has no relation to the server's tick, and a
    /// random phase reproduces that spread.
    phase: Duration,
    ping_interval: Option<Duration>,
    replica: Replica,
    predictor: Predictor,
    pacer: Pacer,
    brain: Brain,
    samples: Samples,
    /// Sequence number of the last input sent.
    seq: u32,
    /// Newest applied snapshot's tick and the inputs sent since it arrived:
    /// the bot's estimate of the server's tick for [`InputCmd::tick`].
    server_tick: Option<(Tick, u32)>,
    last_snapshot_at: Option<Instant>,
    /// First and newest applied snapshot (tick, arrival): the server's real
    /// tick rate.
    first_snapshot: Option<(Tick, Instant)>,
    newest_snapshot: Option<(Tick, Instant)>,
    /// The ping in flight: nonce and send time.
    ping: Option<(u64, Instant)>,
    next_nonce: u64,
    /// Set by a `Disconnect` message; the close frame follows.
    server_reason: Option<DisconnectReason>,
    welcomed_at: Instant,
}

impl Game {
    fn new(
        welcome: shared::protocol::Welcome,
        config: &BotConfig,
        seeds: &Seeds,
        metrics: Arc<Metrics>,
    ) -> Self {
        let tick_hz = u32::from(welcome.tick_hz).max(1);
        let period = Duration::from_secs_f64(1.0 / f64::from(tick_hz));
        let now = Instant::now();
        metrics.connected_now.inc();
        metrics.connected_total.inc();
        metrics.tick_hz.set(u64::from(tick_hz));
        metrics.snapshot_hz.set(u64::from(welcome.snapshot_hz));
        metrics.saw_room(&welcome.room);
        Self {
            player_id: welcome.player_id,
            period,
            phase: period.mul_f64(fastrand::Rng::with_seed(seeds.phase).f64()),
            ping_interval: config.ping_interval,
            replica: Replica::new(),
            predictor: Predictor::new(tick_hz),
            pacer: Pacer::new(tick_hz),
            brain: Brain::new(welcome.player_id, tick_hz, seeds.brain),
            samples: Samples::new(now),
            seq: 0,
            server_tick: None,
            last_snapshot_at: None,
            first_snapshot: None,
            newest_snapshot: None,
            ping: None,
            next_nonce: 1,
            server_reason: None,
            welcomed_at: now,
            metrics,
        }
    }

    /// Plays until the stop signal (`Ok`) or the end of the connection.
    async fn play(
        &mut self,
        link: &mut Link,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), BotError> {
        let start = Instant::now();
        let mut ticker = tokio::time::interval_at(start + self.phase, self.period);
        // A bot that falls behind skips inputs rather than bursting them:
        // a burst would queue on the server and inflate every later latency
        // sample. The lateness is measured either way.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let far = Duration::from_secs(86_400 * 365);
        // The first ping goes out at once: input pacing needs a round trip.
        let mut next_ping = if self.ping_interval.is_some() {
            start
        } else {
            start + far
        };
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => return Ok(()),
                msg = link.inbound.recv() => {
                    let msg = msg.ok_or(BotError::LinkClosed)?;
                    self.on_message(msg.item, msg.release, link)?;
                }
                scheduled = ticker.tick() => self.on_tick(scheduled, link)?,
                () = tokio::time::sleep_until(next_ping), if self.ping_interval.is_some() => {
                    let now = Instant::now();
                    next_ping = now + self.ping_interval.unwrap_or(far);
                    let nonce = self.next_nonce;
                    self.next_nonce += 1;
                    self.ping = Some((nonce, now));
                    link.send(&ClientMsg::Ping(nonce), now)?;
                }
            }
        }
    }

    /// Handles one server message that the link delivered at `arrived` (its
    /// release time: when a real client's socket would have had it). Timing
    /// samples use that moment rather than the time this task got around to
    /// it, so a busy bot process does not bill its own delays to the server.
    fn on_message(
        &mut self,
        msg: Inbound,
        arrived: Instant,
        link: &mut Link,
    ) -> Result<(), BotError> {
        let now = arrived;
        match msg {
            Inbound::Binary(bytes) => match codec::decode_server(&bytes) {
                Ok(ServerMsg::Snapshot(snapshot)) => self.on_snapshot(&snapshot, now, link)?,
                Ok(ServerMsg::Pong { nonce, .. }) => {
                    if let Some((sent_nonce, sent_at)) = self.ping
                        && sent_nonce == nonce
                    {
                        self.samples.rtt(now - sent_at);
                        self.pacer.on_rtt(now - sent_at);
                        self.ping = None;
                    }
                }
                Ok(ServerMsg::Disconnect(reason)) => self.server_reason = Some(reason),
                Ok(ServerMsg::Welcome(_)) => {
                    self.metrics.protocol_errors.inc();
                    warn_limited(format_args!("player {}: second welcome", self.player_id));
                }
                Err(e) => {
                    self.metrics.decode_errors.inc();
                    warn_limited(format_args!(
                        "player {}: undecodable server message ({} bytes): {e}",
                        self.player_id,
                        bytes.len()
                    ));
                }
            },
            Inbound::Text => self.metrics.protocol_errors.inc(),
            Inbound::Closed { code, reason } => {
                return Err(match self.server_reason.take() {
                    Some(r) => BotError::Disconnected(r),
                    None => BotError::Closed { code, reason },
                });
            }
            Inbound::Failed(e) => {
                return Err(match self.server_reason.take() {
                    Some(r) => BotError::Disconnected(r),
                    None => BotError::WebSocket(e),
                });
            }
        }
        Ok(())
    }

    fn on_snapshot(
        &mut self,
        msg: &SnapshotMsg,
        now: Instant,
        link: &mut Link,
    ) -> Result<(), BotError> {
        let m = &self.metrics;
        m.snapshots.inc();
        if let Some(prev) = self.last_snapshot_at.replace(now) {
            self.samples.snapshot_interval(now - prev);
        }
        let own: Option<NetEntity> = match self.replica.apply(msg) {
            Ok(state) => {
                let own = state
                    .entities
                    .binary_search_by_key(&self.player_id, |e| e.id)
                    .ok()
                    .and_then(|i| state.entities.get(i).copied());
                link.send(&ClientMsg::Ack(msg.tick), Instant::now())?;
                self.server_tick = Some((msg.tick, 0));
                self.first_snapshot.get_or_insert((msg.tick, now));
                self.newest_snapshot = Some((msg.tick, now));
                own
            }
            Err(e) if e.is_desync() => {
                m.desyncs.inc();
                warn_limited(format_args!(
                    "player {}: desync at tick {} (base age {}): {e}",
                    self.player_id, msg.tick, msg.base_age
                ));
                None
            }
            Err(e) => {
                m.protocol_errors.inc();
                warn_limited(format_args!("player {}: {e}", self.player_id));
                None
            }
        };
        let r = self.predictor.on_snapshot(msg.input_ack, own.as_ref(), now);
        m.inputs_acked.add(r.ack_latencies.len() as u64);
        for latency in r.ack_latencies {
            self.samples.input_ack_latency(latency);
            self.pacer.on_ack_latency(latency);
        }
        if let Some(error) = r.error_units {
            m.prediction_samples.inc();
            if error > 0.0 {
                m.mispredictions.inc();
            }
            self.samples.prediction_error(error);
        }
        if r.life_event {
            m.life_event_corrections.inc();
        }
        if r.ack_regressed {
            m.protocol_errors.inc();
            warn_limited(format_args!(
                "player {}: input ack went back to {}",
                self.player_id, msg.input_ack
            ));
        }
        m.inputs_never_acked.add(u64::from(r.dropped_unacked));
        Ok(())
    }

    fn on_tick(&mut self, scheduled: Instant, link: &mut Link) -> Result<(), BotError> {
        let now = Instant::now();
        self.samples
            .input_send_lateness(now.saturating_duration_since(scheduled));
        self.samples.flush_if_due(&self.metrics, now);
        // Nothing to predict from before a snapshot showed the player: a
        // real client shows a loading screen and sends nothing either.
        let (Some(pos), Some(world)) = (self.predictor.predicted(), self.replica.newest()) else {
            return Ok(());
        };
        if self.pacer.take_skip() {
            self.metrics.inputs_paced.inc();
            return Ok(());
        }
        let decision = self.brain.decide(pos, world);
        let tick = match &mut self.server_tick {
            Some((base, since)) => {
                *since += 1;
                base.advanced(*since)
            }
            None => Tick(0),
        };
        self.seq += 1;
        let input = InputCmd {
            seq: self.seq,
            tick,
            buttons: decision.buttons,
            aim: decision.aim,
        };
        link.send(&ClientMsg::Input(input), now)?;
        self.predictor.on_input(self.seq, decision.buttons, now);
        self.metrics.inputs_sent.inc();
        Ok(())
    }

    /// Books the bot's totals; called once, however the game ended.
    fn finish(&mut self) {
        let now = Instant::now();
        let m = &self.metrics;
        m.connected_now.dec();
        m.play_time_us
            .add((now - self.welcomed_at).as_micros() as u64);
        if let (Some((t0, at0)), Some((t1, at1))) = (self.first_snapshot, self.newest_snapshot) {
            let ticks = t1.since(t0);
            if ticks > 0 {
                m.server_ticks.add(ticks as u64);
                m.tick_time_us.add((at1 - at0).as_micros() as u64);
            }
        }
        self.samples.flush(m, now);
    }
}

/// The reader task: socket to core, through the inbound conditioner.
async fn read_loop(
    mut reader: WsReader,
    inbound: mpsc::Sender<Delayed<Inbound>>,
    mut conditioner: LinkConditioner,
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
                    (Inbound::Binary(Vec::from(frame.payload)), false)
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
