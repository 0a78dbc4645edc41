//! One bot: connects, says hello, plays, verifies, measures, resumes its
//! session when its connection is lost, and leaves.
//!
//! A bot is three tokio tasks and no thread: the reader and writer of its
//! current connection (module `link`) and the *core* (the task that
//! called [`run`]), which owns all the game state: the [`Replica`], the
//! [`Predictor`], the [`Brain`]. The core waits on the tick timer and the
//! released inbound messages (the stop signal is checked on each tick), and
//! never on a socket, so its tick timer measures the bot process's own
//! lateness. A light bot on a transparent link is one task: its core reads
//! and writes the socket itself (module `direct`), still without ever
//! waiting on it.
//!
//! **Resume.** When the connection is lost (the server closes it with a
//! reason that keeps the session, or it just breaks), or when the bot drops
//! it on purpose (`resume_chance`), the core keeps its game state, opens a
//! new connection and presents its session token. It then verifies the
//! resume: the same player, an input sequence the server received that is
//! neither ahead of what the bot sent nor behind what was acknowledged. It
//! resends the inputs the server never received, and goes on: the replica
//! keeps its acknowledged states, so the first snapshot (a delta against the
//! last one the server saw acknowledged, or a full one) is checked against
//! the server's checksum like any other.
//!
//! Memory per bot is a few KiB of buffers plus one round trip's worth of
//! world states (see [`crate::replica`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shared::Tick;
use shared::codec;
use shared::protocol::{
    AuthToken, ClientMsg, DisconnectReason, Hello, InputCmd, RoomRequest, ServerMsg, SessionToken,
    Welcome,
};
use shared::snapshot::{NetEntity, SnapshotMsg};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::brain::Brain;
use crate::conditioner::LinkConfig;
use crate::connection::{ConnectError, Endpoint};
use crate::link::{Inbound, Link};
use crate::metrics::{Metrics, Samples, Window};
use crate::pacing::Pacer;
use crate::prediction::{MAX_PENDING_INPUTS, Predictor};
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
    /// Longest wait for the server's close frame after our leave. Default:
    /// 3 s.
    pub close_timeout: Duration,
    /// Time between two pings (`None`: no pings). Pings measure the round
    /// trip without the tick wait, which separates transport latency from
    /// simulation latency. Default: 2 s.
    pub ping_interval: Option<Duration>,
    /// The room asked for in the hello. Default: matchmaking (a public
    /// room the server picks).
    pub room: RoomRequest,
    /// Join token for servers that require one (its `Debug` output is
    /// redacted). Sent in the first hello only: a resume presents the
    /// session token instead. Default: none.
    pub auth: Option<AuthToken>,
    /// Probability, per second of play, that the bot drops its connection
    /// on purpose (the socket is closed with no leave and no close frame)
    /// and resumes its session on a new one. A bot does this only after
    /// its current connection delivered a snapshot, so every resume is
    /// verified by at least one snapshot. Default: 0 (never).
    pub resume_chance: f64,
    /// How long a bot keeps trying to reconnect after losing its connection:
    /// attempts that fail on the transport (refused, timed out) or are
    /// refused with `ServerFull` or `HelloTimeout` are retried with backoff
    /// until then, or until the server's resume grace (from its welcome)
    /// runs out if that comes first; any other refusal ends the attempt at
    /// once. Default: 10 s, the server's default resume grace.
    pub resume_window: Duration,
    /// Light mode, for load tests: the bot reads only each snapshot's header
    /// (tick, base age, input ack), acknowledges it, and sends inputs,
    /// pings and acks as a full bot does, but keeps no replica and does no
    /// prediction, so desyncs and prediction errors are not checked. Its
    /// inputs come from [`Brain::decide_blind`]. Default: false.
    pub light: bool,
    /// The span whose latencies, rates, prediction checks (with their
    /// mispredictions and death corrections) and play time the bot
    /// measures (a swarm's full load: see [`Window`]). Correctness (desyncs,
    /// errors, inputs never acknowledged, resumes and their checks) and
    /// join times count for the whole run. Default: `None`, everything is
    /// measured.
    pub window: Option<Window>,
    /// Light bots on a transparent link only: ask for the server's datagram
    /// channel and carry inputs, acks and snapshots as UDP datagrams
    /// (`PROTOCOL.md` section 3.7), as a native game client would. The
    /// WebSocket keeps the rest. Default: false.
    pub datagrams: bool,
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
            resume_chance: 0.0,
            resume_window: Duration::from_secs(10),
            light: false,
            window: None,
            datagrams: false,
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
    /// The outbound link queue is full ([`crate::conditioner::LINK_QUEUE`]
    /// messages, plus what the link conditioner's delay holds): the server
    /// stopped reading.
    #[error("outbound queue full: the server stopped reading")]
    SendQueueFull,
    /// The reader or writer task is gone.
    #[error("link tasks ended")]
    LinkClosed,
    /// The connection was lost and the session could not be resumed.
    #[error("session resume failed: {0}")]
    ResumeFailed(String),
}

impl BotError {
    /// A short stable label for the report's breakdown of failures.
    #[must_use]
    pub fn label(&self) -> String {
        match self {
            Self::Connect(e) => e.label().into_owned(),
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
            Self::ResumeFailed(reason) => format!("resume_failed_{reason}"),
        }
    }

    /// When the connection ended in a way that leaves the session on the
    /// server, the label of that cause, for the report's resume triggers:
    /// a close whose reason [keeps the session](DisconnectReason::session_kept),
    /// or a connection that just broke. `None` when the session is gone
    /// (rule breaking, shutdown, replaced) or the bot itself is at fault.
    #[must_use]
    pub fn resume_trigger(&self) -> Option<String> {
        match self {
            Self::Disconnected(r) if r.session_kept() => Some(format!("server_{}", r.label())),
            Self::Closed { .. } => Some("closed_without_reason".into()),
            Self::WebSocket(_) | Self::LinkClosed => Some("connection_lost".into()),
            _ => None,
        }
    }
}

/// How a bot's run ended.
#[derive(Debug)]
pub enum BotOutcome {
    /// Played until told to stop, then left.
    Finished,
    /// Never got a welcome.
    ConnectFailed(BotError),
    /// Was welcomed, then lost the connection before the end of the run and
    /// could not resume.
    Disconnected(BotError),
}

/// Label of the deliberate drops of [`BotConfig::resume_chance`] among the
/// resume triggers.
pub const CHAOS_TRIGGER: &str = "chaos";

/// Warnings logged per process before they go to debug level, so a broken
/// server cannot flood the terminal of a 2,000-bot run.
const WARN_BUDGET: u64 = 10;
static WARNINGS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn warn_limited(args: std::fmt::Arguments<'_>) {
    if WARNINGS.fetch_add(1, Ordering::Relaxed) < WARN_BUDGET {
        tracing::warn!("{args}");
    } else {
        tracing::debug!("{args}");
    }
}

/// Runs one bot until `stop` turns true (or its sender is dropped), or its
/// connection ends for good. Counts everything it sees into `metrics`.
pub async fn run(
    config: BotConfig,
    endpoint: Arc<Endpoint>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> BotOutcome {
    if *stop.borrow() {
        return BotOutcome::ConnectFailed(BotError::StoppedBeforeWelcome);
    }
    let seeds = Seeds::new(config.seed);
    let connect_started = Instant::now();
    // Raced with the stop, like the hello: a connect still under way when
    // the run ends is a connection that did not happen in time, not a bot
    // that failed to close.
    let open = Link::open(
        &endpoint,
        config.connect_timeout,
        config.link,
        seeds.link(0),
        config.light,
        config.datagrams,
        &metrics,
    );
    let mut link = tokio::select! {
        biased;
        _ = stop.changed() => return BotOutcome::ConnectFailed(BotError::StoppedBeforeWelcome),
        opened = open => match opened {
            Ok(link) => link,
            Err(e) => return BotOutcome::ConnectFailed(e.into()),
        },
    };
    let hello = Hello {
        room: config.room.clone(),
        auth: config.auth.clone(),
        ..Hello::new(config.name.as_str())
    };
    let welcome = match exchange_hello(hello, config.welcome_timeout, &mut link, &mut stop).await {
        Ok(welcome) => welcome,
        Err(e) => {
            link.finish().await;
            return BotOutcome::ConnectFailed(e);
        }
    };

    let mut game = Game::new(
        welcome,
        &config,
        &seeds,
        connect_started,
        Arc::clone(&metrics),
    );
    let outcome = loop {
        let trigger = match game.play(&mut link, &mut stop).await {
            Ok(PlayEnd::Stopped) => {
                // Booked before the leave: the swarm aborts a bot whose
                // leave outlasts its deadline.
                game.finish();
                if !link.leave(config.close_timeout).await {
                    metrics.unclean_closes.inc();
                }
                break BotOutcome::Finished;
            }
            Ok(PlayEnd::Cut) => CHAOS_TRIGGER.to_owned(),
            Err(e) => match e.resume_trigger() {
                Some(trigger) => {
                    tracing::debug!("player {}: connection lost: {e}", game.player_id);
                    trigger
                }
                None => break BotOutcome::Disconnected(e),
            },
        };
        // On purpose, this is the drop being tested; otherwise the socket is
        // dead already and this only reaps its tasks.
        link.cut();
        game.link_lost(Instant::now());
        match resume(&mut game, &trigger, &config, &endpoint, &seeds, &mut stop).await {
            Ok(new_link) => link = new_link,
            Err(ResumeEnd::Stopped) => break BotOutcome::Finished,
            Err(ResumeEnd::Failed(e)) => break BotOutcome::Disconnected(e),
        }
    };
    game.finish();
    link.finish().await;
    outcome
}

/// Independent seeds for one bot's generators.
struct Seeds {
    brain: u64,
    link_in: u64,
    link_out: u64,
    phase: u64,
    chaos: u64,
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
            chaos: next(),
        }
    }

    /// Jitter seeds (inbound, outbound) of the bot's `n`th connection, so a
    /// reconnection does not replay the first connection's delays.
    fn link(&self, n: u64) -> (u64, u64) {
        let salt = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (self.link_in ^ salt, self.link_out ^ salt)
    }
}

/// Sends `hello` and waits for the welcome.
async fn exchange_hello(
    hello: Hello,
    timeout: Duration,
    link: &mut Link,
    stop: &mut watch::Receiver<bool>,
) -> Result<Welcome, BotError> {
    link.send(&ClientMsg::Hello(hello), Instant::now())?;
    let deadline = Instant::now() + timeout;
    let msg = tokio::select! {
        biased;
        _ = stop.changed() => return Err(BotError::StoppedBeforeWelcome),
        () = tokio::time::sleep_until(deadline) => {
            return Err(BotError::WelcomeTimeout(timeout));
        }
        msg = link.recv() => msg.ok_or(BotError::LinkClosed)?.0,
    };
    // The welcome must be the first message: anything else is a failed join.
    match msg {
        Inbound::Binary(bytes) => match codec::decode_server(&bytes) {
            Ok(ServerMsg::Welcome(w)) => Ok(w),
            Ok(ServerMsg::Disconnect(reason)) => Err(BotError::Rejected(reason)),
            Ok(ServerMsg::Snapshot(_)) => Err(BotError::NoWelcome("a snapshot")),
            Ok(ServerMsg::Pong { .. }) => Err(BotError::NoWelcome("a pong")),
            Ok(ServerMsg::DatagramChannel(_)) => Err(BotError::NoWelcome("a datagram channel")),
            Err(_) => Err(BotError::NoWelcome("undecodable bytes")),
        },
        Inbound::Text => Err(BotError::NoWelcome("a text frame")),
        Inbound::SnapshotHeader { .. } => Err(BotError::NoWelcome("a snapshot")),
        Inbound::Closed { code, reason } => Err(BotError::Closed { code, reason }),
        Inbound::Failed(e) => Err(BotError::WebSocket(e)),
    }
}

/// Why [`resume`] gave up.
enum ResumeEnd {
    /// The run ended first.
    Stopped,
    /// The session is lost.
    Failed(BotError),
}

/// First wait before retrying a reconnection that failed on the transport;
/// it doubles up to [`RESUME_BACKOFF_MAX`].
const RESUME_BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between two reconnection attempts.
const RESUME_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Reconnects and resumes `game`'s session after its connection was lost
/// because of `trigger`, and returns the new connection, with the inputs
/// the server never received sent again.
async fn resume(
    game: &mut Game,
    trigger: &str,
    config: &BotConfig,
    endpoint: &Endpoint,
    seeds: &Seeds,
    stop: &mut watch::Receiver<bool>,
) -> Result<Link, ResumeEnd> {
    let metrics = Arc::clone(&game.metrics);
    metrics.resumes_attempted.inc();
    Metrics::count_reason(&metrics.resume_triggers, trigger);
    let lost_at = Instant::now();
    // Past the server's grace a resume can only be refused.
    let deadline = lost_at + config.resume_window.min(game.resume_grace);
    let player_id = game.player_id;
    let fail = |reason: &str| {
        metrics.resumes_failed.inc();
        Metrics::count_reason(&metrics.resume_failure_reasons, reason);
        warn_limited(format_args!(
            "player {player_id}: resume after {trigger} failed: {reason}"
        ));
        Err(ResumeEnd::Failed(BotError::ResumeFailed(reason.to_owned())))
    };
    let stopped = || {
        metrics.resumes_interrupted.inc();
        Err(ResumeEnd::Stopped)
    };
    let mut backoff = RESUME_BACKOFF_FIRST;
    loop {
        if *stop.borrow() {
            return stopped();
        }
        game.connections += 1;
        let opened = tokio::select! {
            biased;
            _ = stop.changed() => return stopped(),
            opened = Link::open(
                endpoint,
                config.connect_timeout,
                config.link,
                seeds.link(game.connections),
                config.light,
                config.datagrams,
                &metrics,
            ) => opened,
        };
        let attempt = match opened {
            Ok(mut link) => {
                // PROTOCOL.md 3.4: the name is ignored on a resume (send
                // ""), and no auth: the session token is the credential.
                let hello = Hello {
                    room: RoomRequest::Named(game.room.clone()),
                    resume: Some(game.session),
                    ..Hello::new("")
                };
                match exchange_hello(hello, config.welcome_timeout, &mut link, stop).await {
                    Ok(welcome) => Ok((link, welcome)),
                    Err(e) => {
                        link.cut();
                        link.finish().await;
                        Err(e)
                    }
                }
            }
            Err(e) => Err(BotError::Connect(e)),
        };
        match attempt {
            Ok((mut link, welcome)) => {
                if let Err(reason) = game.check_resume(&welcome) {
                    // Whatever the server gave us, it is not our session:
                    // hand it back at once.
                    link.leave(config.close_timeout).await;
                    link.finish().await;
                    return fail(reason);
                }
                let now = Instant::now();
                if let Err(e) = game.resumed(welcome, &mut link, now) {
                    link.cut();
                    link.finish().await;
                    return fail(&e.label());
                }
                metrics.resumes_succeeded.inc();
                metrics.resume_time(now - lost_at);
                return Ok(link);
            }
            Err(BotError::StoppedBeforeWelcome) => return stopped(),
            // A refusal ends the attempt, except the two that PROTOCOL.md
            // 3.4 says to retry as a resume while the grace lasts.
            Err(BotError::Rejected(reason))
                if !matches!(
                    reason,
                    DisconnectReason::ServerFull | DisconnectReason::HelloTimeout
                ) =>
            {
                return fail(reason.label());
            }
            Err(e) => {
                let now = Instant::now();
                if now + backoff >= deadline {
                    return fail(&e.label());
                }
                tracing::debug!("player {player_id}: reconnect failed, retrying: {e}");
                tokio::select! {
                    biased;
                    _ = stop.changed() => return stopped(),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(RESUME_BACKOFF_MAX);
            }
        }
    }
}

/// How [`Game::play`] ended without an error.
enum PlayEnd {
    /// The run is over.
    Stopped,
    /// The bot decided to drop its connection (see
    /// [`BotConfig::resume_chance`]).
    Cut,
}

/// Prediction checks after a resume that are booked as the resume's own
/// (about one second of snapshots at 30 Hz).
const RESUME_CHECKS: u32 = 30;

/// How long an input may go unacknowledged on a working server, link
/// conditioner aside, before the end of a run counts it as never
/// acknowledged: far more than a tick and a loopback round trip.
const ACK_GRACE: Duration = Duration::from_secs(2);

/// Inputs a bot leaves unacknowledged at most before it stops sending more
/// (the page's `MAX_UNACKED`, `client-demo/web/js/pacing.js`): 1.5 s at
/// 30 Hz, far more than a working server ever leaves. A link conditioner's
/// round trip is added on top.
const MAX_UNACKED: usize = 45;

/// The server's per-player input buffer (its `--input-buffer`, default 8):
/// more inputs resent at once after a resume would be dropped as overflow.
const SERVER_INPUT_BUFFER: u32 = 8;

/// How long a ping waits for its pong before another is sent.
const PING_GIVE_UP: Duration = Duration::from_secs(10);

/// The state of a welcomed bot. It outlives its connections: a resume
/// hands it a new [`Link`] and it carries on.
struct Game {
    metrics: Arc<Metrics>,
    player_id: u32,
    /// The room the server placed the bot in, and the session token to take
    /// the player back after a lost connection.
    room: String,
    session: SessionToken,
    /// How long the server holds the session's seat for a resume
    /// (`Welcome::resume_grace_ms`).
    resume_grace: Duration,
    /// Connections opened after the first one.
    connections: u64,
    period: Duration,
    /// Offset of this bot's input clock within a tick. The welcome is sent
    /// at a server tick, so without it every bot would sample its input just
    /// after the server's tick and wait a whole tick for the next one; real
    /// players' input timing has no relation to the server's tick, and a
    /// random phase reproduces that spread.
    phase: Duration,
    ping_interval: Option<Duration>,
    /// The server's announced time between two snapshots.
    snapshot_period: Duration,
    /// How long an input may go unacknowledged on a working server: more
    /// than any round trip through the link conditioner.
    ack_grace: Duration,
    /// Inputs in flight at most ([`MAX_UNACKED`] and the conditioner's
    /// round trip's worth).
    max_unacked: usize,
    replica: Replica,
    predictor: Predictor,
    pacer: Pacer,
    brain: Brain,
    samples: Samples,
    /// Sequence number of the last input sent.
    seq: u32,
    /// The inputs sent and not yet acknowledged, in sequence order: what a
    /// resume sends again when the server never received them. Bounded like
    /// the predictor's list.
    unacked: VecDeque<InputCmd>,
    /// Newest applied snapshot's tick and the inputs sent since it arrived:
    /// the bot's estimate of the server's tick for [`InputCmd::tick`].
    server_tick: Option<(Tick, u32)>,
    /// The newest snapshot tick held, to acknowledge with the next input
    /// (`InputCmd::ack`); before any snapshot, the welcome's tick, which no
    /// snapshot carries.
    ack: Tick,
    /// Whether `ack` is newer than anything sent: on a tick that sends no
    /// input, a standalone `Ack` carries it instead.
    ack_pending: bool,
    last_snapshot_at: Option<Instant>,
    /// Since when the bot has had no snapshot on its connection: the
    /// connection's welcome, then each snapshot's arrival; `None` while
    /// reconnecting. For [`Metrics::snapshot_gap`], which, unlike the
    /// snapshot intervals, also sees the time to a connection's first
    /// snapshot and the ramp.
    gap_from: Option<Instant>,
    /// `input_ack` and tick of the newest snapshot on this connection, for
    /// [`Metrics::inputs_skipped_by_server`].
    last_input_ack: Option<(u32, Tick)>,
    /// The sequence numbers given up at the last resume (first, last), until
    /// the server's acks pass them: skipped by the bot, not the server.
    given_up: Option<(u32, u32)>,
    /// Whether [`Self::finish`] booked the totals already.
    finished: bool,
    /// The tick of the newest snapshot, whose `input_ack` the predictor
    /// holds: for what the server applied since (see [`Game::last_resent`]).
    input_ack_tick: Option<Tick>,
    /// First and newest applied snapshot (tick, arrival): the server's real
    /// tick rate.
    /// The first and the last snapshot inside the measurement window, for
    /// the server's tick rate.
    first_measured: Option<(Tick, Instant)>,
    last_measured: Option<(Tick, Instant)>,
    newest_snapshot: Option<(Tick, Instant)>,
    /// The ping in flight: nonce and send time.
    ping: Option<(u64, Instant)>,
    next_nonce: u64,
    /// Set by a `Disconnect` message; the close frame follows.
    server_reason: Option<DisconnectReason>,
    /// Start of the current connection's play; `None` while reconnecting.
    /// Play time only counts connected time, so per-second rates are per
    /// connected second.
    connected_since: Option<Instant>,
    /// Whether the current connection delivered a snapshot yet.
    snapshot_on_this_link: bool,
    /// When the bot started its first connect, until its first snapshot
    /// (on any connection) records the time it took to join: `Some` at the
    /// end, the bot never got one.
    joining_since: Option<Instant>,
    /// After a resume: whether the first snapshot is still awaited, and how
    /// many prediction checks are still booked as the resume's.
    resume_first_pending: bool,
    resume_checks_left: u32,
    resume_chance: f64,
    chaos: fastrand::Rng,
    /// See [`BotConfig::light`].
    light: bool,
}

impl Game {
    fn new(
        welcome: Welcome,
        config: &BotConfig,
        seeds: &Seeds,
        connect_started: Instant,
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
            room: welcome.room,
            session: welcome.session,
            resume_grace: Duration::from_millis(u64::from(welcome.resume_grace_ms)),
            connections: 0,
            period,
            phase: period.mul_f64(fastrand::Rng::with_seed(seeds.phase).f64()),
            ping_interval: config.ping_interval,
            snapshot_period: Duration::from_secs_f64(
                1.0 / f64::from(welcome.snapshot_hz.clamp(1, welcome.tick_hz.max(1))),
            ),
            ack_grace: ACK_GRACE + 2 * config.link.max_delay(),
            // The round trip in whole ticks (integers: 200 ms at 30 Hz is
            // 6, not 6.000001).
            max_unacked: MAX_UNACKED
                + usize::try_from(
                    (2 * config.link.max_delay().as_millis() * u128::from(tick_hz)).div_ceil(1000),
                )
                .unwrap_or(usize::MAX / 2),
            replica: Replica::new(),
            predictor: Predictor::new(tick_hz),
            pacer: Pacer::new(tick_hz),
            brain: Brain::new(welcome.player_id, tick_hz, seeds.brain),
            samples: Samples::new(now, config.window),
            seq: 0,
            unacked: VecDeque::new(),
            server_tick: None,
            ack: welcome.tick,
            ack_pending: false,
            last_snapshot_at: None,
            gap_from: Some(now),
            last_input_ack: None,
            given_up: None,
            finished: false,
            input_ack_tick: None,
            first_measured: None,
            last_measured: None,
            newest_snapshot: None,
            ping: None,
            next_nonce: 1,
            server_reason: None,
            connected_since: Some(now),
            snapshot_on_this_link: false,
            joining_since: Some(connect_started),
            resume_first_pending: false,
            resume_checks_left: 0,
            resume_chance: config.resume_chance,
            chaos: fastrand::Rng::with_seed(seeds.chaos),
            light: config.light,
            metrics,
        }
    }

    /// Plays on `link` until the stop signal, a deliberate drop, or the end
    /// of the connection.
    async fn play(
        &mut self,
        link: &mut Link,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<PlayEnd, BotError> {
        let start = Instant::now();
        let mut ticker = tokio::time::interval_at(start + self.phase, self.period);
        // A bot that falls behind skips inputs rather than bursting them:
        // a burst would queue on the server and inflate every later latency
        // sample. The lateness is measured either way.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        // Pings and the resume chance are due on the bot's own clock too, so
        // they go out on its ticks (a ping's round trip is timed from when
        // it is sent): a timer of their own would be one more future to
        // poll on every wake-up, for an event every second or two. The
        // first ping goes out on the first tick: input pacing needs a round
        // trip.
        let mut next_ping = start;
        // The resume chance is drawn once a second, at a random phase.
        let second = Duration::from_secs(1);
        let mut next_chaos = start + second.mul_f64(self.chaos.f64());
        loop {
            tokio::select! {
                biased;
                msg = link.recv() => {
                    let (msg, arrived) = msg.ok_or(BotError::LinkClosed)?;
                    self.on_message(msg, arrived)?;
                }
                scheduled = ticker.tick() => {
                    // The stop signal is looked at once a tick (a load, no
                    // lock), not waited on: polling its future on every
                    // wake-up takes the signal's lock, shared by every bot,
                    // for each message. The bot leaves at most a tick later.
                    if stop.has_changed().unwrap_or(true) {
                        return Ok(PlayEnd::Stopped);
                    }
                    self.on_tick(scheduled, link)?;
                    let now = Instant::now();
                    if let Some(interval) = self.ping_interval
                        && now >= next_ping
                    {
                        next_ping = now + interval;
                        if let Some(nonce) = self.ping_due(now) {
                            link.send(&ClientMsg::Ping(nonce), now)?;
                        }
                    }
                    if self.resume_chance > 0.0 && now >= next_chaos {
                        // After a stall, one draw, then a second later.
                        next_chaos += second;
                        if next_chaos <= now {
                            next_chaos = now + second;
                        }
                        // Only once this connection showed a snapshot, so
                        // the previous resume (if any) was verified by one.
                        if self.snapshot_on_this_link && self.chaos.f64() < self.resume_chance {
                            return Ok(PlayEnd::Cut);
                        }
                    }
                }
            }
        }
    }

    /// Handles one server message that the link delivered at `arrived` (its
    /// release time: when a real client's socket would have had it). Timing
    /// samples use that moment rather than the time this task got around to
    /// it, so a busy bot process does not bill its own delays to the server.
    fn on_message(&mut self, msg: Inbound, arrived: Instant) -> Result<(), BotError> {
        let now = arrived;
        match msg {
            // Light links read the header in the reader task.
            Inbound::SnapshotHeader {
                tick,
                base_age,
                input_ack,
            } => self.on_snapshot_header(tick, base_age, input_ack, now),
            Inbound::Binary(bytes) => match codec::decode_server(&bytes) {
                Ok(ServerMsg::Snapshot(snapshot)) => self.on_snapshot(&snapshot, now),
                other => self.on_other(other, bytes.len(), now),
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

    /// The nonce of a ping to send now, if none is in flight: a round trip
    /// longer than the ping interval is measured, not cut short by the next
    /// ping (its pong would no longer match, and the percentiles would only
    /// ever hold the round trips shorter than the interval). A ping
    /// unanswered for [`PING_GIVE_UP`] is given up: the server may drop
    /// pongs (`PROTOCOL.md` 3.3).
    fn ping_due(&mut self, now: Instant) -> Option<u64> {
        if self
            .ping
            .is_some_and(|(_, sent)| now.saturating_duration_since(sent) < PING_GIVE_UP)
        {
            return None;
        }
        let nonce = self.next_nonce;
        self.next_nonce += 1;
        self.ping = Some((nonce, now));
        Some(nonce)
    }

    /// Handles a decoded server message of `len` bytes that is not a
    /// snapshot to play (or that did not decode).
    fn on_other(&mut self, msg: Result<ServerMsg, codec::CodecError>, len: usize, now: Instant) {
        match msg {
            Ok(ServerMsg::Pong { nonce, .. }) => {
                if let Some((sent_nonce, sent_at)) = self.ping
                    && sent_nonce == nonce
                {
                    self.samples.rtt(now, now - sent_at);
                    self.pacer.on_rtt(now - sent_at);
                    self.ping = None;
                }
            }
            Ok(ServerMsg::Disconnect(reason)) => self.server_reason = Some(reason),
            Ok(ServerMsg::Welcome(_)) => {
                self.metrics.protocol_errors.inc();
                warn_limited(format_args!("player {}: second welcome", self.player_id));
            }
            // Callers handle snapshots before this, and a direct link the
            // datagram channel it asked for; nothing to do.
            Ok(ServerMsg::Snapshot(_) | ServerMsg::DatagramChannel(_)) => {}
            Err(e) => {
                self.metrics.decode_errors.inc();
                warn_limited(format_args!(
                    "player {}: undecodable server message ({len} bytes): {e}",
                    self.player_id,
                ));
            }
        }
    }

    /// Bookkeeping shared by full and light snapshots, on arrival.
    fn snapshot_arrived(&mut self, full: bool, now: Instant) {
        let m = &self.metrics;
        m.snapshots.inc();
        if let Some(since) = self.joining_since.take() {
            m.join_time(now.saturating_duration_since(since));
        }
        if let Some(prev) = self.last_snapshot_at.replace(now) {
            self.samples.snapshot_interval(now, now - prev);
        }
        if let Some(from) = self.gap_from.replace(now) {
            m.snapshot_gap(now.saturating_duration_since(from));
        }
        if std::mem::take(&mut self.resume_first_pending) {
            if full {
                m.resume_first_full.inc();
            } else {
                m.resume_first_deltas.inc();
            }
        }
    }

    /// Takes the snapshot of `tick` (held, or in light mode merely seen) as
    /// the newest; the next input acknowledges it, as a browser does, so
    /// that a playing bot sends one message per tick.
    fn accept_snapshot(&mut self, tick: Tick, now: Instant) {
        self.ack = tick;
        self.ack_pending = true;
        self.server_tick = Some((tick, 0));
        if self.samples.measuring(now) {
            self.first_measured.get_or_insert((tick, now));
            self.last_measured = Some((tick, now));
        }
        self.newest_snapshot = Some((tick, now));
        self.snapshot_on_this_link = true;
    }

    /// On a tick that sends no input: acknowledges the newest snapshot on
    /// its own, so the server's baseline keeps moving (and its ack timeout
    /// does not take a dead or paced player for a stuck one).
    fn ack_without_input(&mut self, now: Instant, link: &mut Link) -> Result<(), BotError> {
        if std::mem::take(&mut self.ack_pending) {
            link.send(&ClientMsg::Ack(self.ack), now)?;
        }
        Ok(())
    }

    /// A light bot's snapshot: only the header was read.
    fn on_snapshot_header(&mut self, tick: Tick, base_age: u32, input_ack: u32, now: Instant) {
        self.snapshot_arrived(base_age == 0, now);
        match self.newest_snapshot {
            Some((newest, _)) if tick.since(newest) <= 0 => {
                self.metrics.protocol_errors.inc();
                warn_limited(format_args!(
                    "player {}: snapshot tick {tick} is not after {newest}",
                    self.player_id
                ));
            }
            _ => self.accept_snapshot(tick, now),
        }
        self.input_ack_tick = Some(tick);
        self.count_skipped_inputs(tick, input_ack);
        self.reconcile(input_ack, None, now);
    }

    fn on_snapshot(&mut self, msg: &SnapshotMsg, now: Instant) {
        self.snapshot_arrived(msg.is_full(), now);
        let m = Arc::clone(&self.metrics);
        let own: Option<NetEntity> = match self.replica.apply(msg) {
            Ok(state) => {
                let own = state
                    .entities
                    .binary_search_by_key(&self.player_id, |e| e.id)
                    .ok()
                    .and_then(|i| state.entities.get(i).copied());
                self.accept_snapshot(msg.tick, now);
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
        self.input_ack_tick = Some(msg.tick);
        self.count_skipped_inputs(msg.tick, msg.input_ack);
        self.reconcile(msg.input_ack, own.as_ref(), now);
    }

    /// Counts the inputs the server passed over between the previous
    /// snapshot of this connection and this one, of `tick` acknowledging
    /// input `input_ack`: the server applies at most one input per tick, so
    /// an ack that moved further than the ticks between them skipped the
    /// rest ([`Metrics::inputs_skipped_by_server`]). They were acknowledged
    /// like any other, and `inputs_never_acked` cannot see them.
    fn count_skipped_inputs(&mut self, tick: Tick, input_ack: u32) {
        if let Some((ack, at)) = self.last_input_ack {
            let ticks = tick.since(at);
            if ticks <= 0 {
                // Not newer: a protocol error, counted where it is seen.
                return;
            }
            if let Some(moved) = input_ack.checked_sub(ack) {
                // Those the bot gave up at a resume were never sent again:
                // the server's acks pass over them without a drop.
                let given_up = self.given_up.map_or(0, |(first, last)| {
                    (input_ack.min(last) + 1).saturating_sub(first.max(ack + 1))
                });
                let skipped = moved
                    .saturating_sub(ticks.unsigned_abs())
                    .saturating_sub(given_up);
                self.metrics
                    .inputs_skipped_by_server
                    .add(u64::from(skipped));
            }
        }
        if self.given_up.is_some_and(|(_, last)| input_ack >= last) {
            self.given_up = None;
        }
        self.last_input_ack = Some((input_ack, tick));
    }

    /// Books what a snapshot acknowledging `input_ack` and showing the
    /// player as `own` taught the predictor.
    fn reconcile(&mut self, input_ack: u32, own: Option<&NetEntity>, now: Instant) {
        let m = &self.metrics;
        let r = self.predictor.on_snapshot(input_ack, own, now);
        while self.unacked.front().is_some_and(|i| i.seq <= input_ack) {
            self.unacked.pop_front();
        }
        m.inputs_acked.add(u64::from(r.acked));
        for &latency in &r.ack_latencies {
            self.samples.input_ack_latency(now, latency);
            self.pacer.on_ack_latency(latency);
        }
        if let Some(error) = r.error_units {
            if self.samples.measuring(now) {
                m.prediction_samples.inc();
                if error > 0.0 {
                    m.mispredictions.inc();
                }
            }
            self.samples.prediction_error(now, error);
            if self.resume_checks_left > 0 {
                self.resume_checks_left -= 1;
                m.resume_prediction_checks.inc();
                if error > 0.0 {
                    m.resume_mispredictions.inc();
                }
            }
        }
        // Booked with the prediction checks above, in the window.
        if r.life_event && self.samples.measuring(now) {
            m.life_event_corrections.inc();
        }
        if r.ack_regressed {
            m.protocol_errors.inc();
            warn_limited(format_args!(
                "player {}: input ack went back to {input_ack}",
                self.player_id
            ));
        }
        m.inputs_never_acked.add(u64::from(r.dropped_unacked));
        self.predictor.recycle(r);
    }

    fn on_tick(&mut self, scheduled: Instant, link: &mut Link) -> Result<(), BotError> {
        let now = Instant::now();
        for late in tick_lateness(now.saturating_duration_since(scheduled), self.period) {
            self.samples.input_send_lateness(now, late);
        }
        self.samples.flush_if_due(&self.metrics, now);
        // Nothing to predict from before a snapshot showed the player: a
        // real client shows a loading screen and sends nothing either. A
        // light bot waits for its first snapshot.
        let decision = if self.light {
            if self.server_tick.is_none() {
                return Ok(());
            }
            None
        } else {
            let (Some(pos), Some(world)) = (self.predictor.predicted(), self.replica.newest())
            else {
                return self.ack_without_input(now, link);
            };
            Some((pos, world))
        };
        // A server that takes no input (a stall, a dead link) gets no more
        // than `max_unacked` of them in flight, as from a page: more would
        // only overflow the server's buffer, or be given up at a resume.
        if self.server_takes_no_input() || self.pacer.take_skip() {
            self.metrics.inputs_paced.inc();
            return self.ack_without_input(now, link);
        }
        let decision = match decision {
            Some((pos, world)) => self.brain.decide(pos, world),
            None => self.brain.decide_blind(),
        };
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
            ack: self.ack,
            buttons: decision.buttons,
            aim: decision.aim,
        };
        link.send(&ClientMsg::Input(input), now)?;
        self.ack_pending = false;
        self.predictor.on_input(self.seq, decision.buttons, now);
        if self.unacked.len() == MAX_PENDING_INPUTS {
            self.unacked.pop_front();
        }
        self.unacked.push_back(input);
        self.metrics.inputs_sent.inc();
        Ok(())
    }

    /// The connection is gone; the game state is kept for a resume.
    fn link_lost(&mut self, now: Instant) {
        if let Some(since) = self.connected_since.take() {
            self.metrics.connected_now.dec();
            let played = self.samples.played(since, now);
            self.metrics.play_time_us.add(played.as_micros() as u64);
        }
        self.samples.flush(&self.metrics, now);
        self.server_reason = None;
        self.ping = None;
        // The time to the loss was without a snapshot; what follows is the
        // resume's, not a snapshot interval.
        if let Some(from) = self.gap_from.take() {
            self.metrics
                .snapshot_gap(now.saturating_duration_since(from));
        }
        self.last_snapshot_at = None;
        // Inputs given up at a resume are counted as such, not as skipped.
        self.last_input_ack = None;
        self.snapshot_on_this_link = false;
    }

    /// Whether `welcome` resumes this bot's session consistently: the same
    /// player in the same room under the same session token (it lasts as
    /// long as the session), and an input sequence received by the server
    /// that the bot did send and is not older than what was acknowledged.
    /// The failure's label otherwise.
    fn check_resume(&self, welcome: &Welcome) -> Result<(), &'static str> {
        if !welcome.resumed {
            Err("not_resumed")
        } else if welcome.player_id != self.player_id {
            Err("player_changed")
        } else if welcome.room != self.room {
            Err("room_changed")
        } else if welcome.session != self.session {
            Err("session_changed")
        } else if welcome.input_seq > self.seq {
            Err("input_seq_ahead")
        } else if welcome.input_seq < self.predictor.acked_seq() {
            Err("input_seq_behind")
        } else {
            Ok(())
        }
    }

    /// Whether so many inputs wait for their acknowledgement that the server
    /// takes none: no more are sent until it does.
    fn server_takes_no_input(&self) -> bool {
        self.predictor.unacked() >= self.max_unacked
    }

    /// The newest input to send again after the resume `welcome`: those
    /// after `welcome.input_seq` fit in the server's input buffer
    /// ([`SERVER_INPUT_BUFFER`]) as far as it does not still hold inputs
    /// received and not yet applied: those up to `input_seq`, less the
    /// newest `input_ack` seen and one more applied per tick since.
    fn last_resent(&self, welcome: &Welcome) -> u32 {
        let since = self
            .input_ack_tick
            .map_or(0, |t| u32::try_from(welcome.tick.since(t)).unwrap_or(0));
        let applied = welcome
            .input_seq
            .min(self.predictor.acked_seq().saturating_add(since));
        let held = welcome.input_seq - applied;
        welcome
            .input_seq
            .saturating_add(SERVER_INPUT_BUFFER.saturating_sub(held))
    }

    /// Gives up the inputs the server's buffer cannot take after the resume
    /// `welcome`, as a page does, rather than send them to be dropped while
    /// the prediction counts on them; counted in
    /// [`Metrics::inputs_given_up`].
    fn give_up_beyond_buffer(&mut self, welcome: &Welcome) {
        let last = self.last_resent(welcome);
        let given_up = self.predictor.give_up_after(last);
        self.unacked.retain(|i| i.seq <= last);
        self.metrics.inputs_given_up.add(u64::from(given_up));
        if given_up > 0 {
            self.given_up = Some((last + 1, self.seq));
        }
    }

    /// Carries on after a verified resume on `link`: sends again the inputs
    /// the server never received, under their own sequence numbers.
    fn resumed(&mut self, welcome: Welcome, link: &mut Link, now: Instant) -> Result<(), BotError> {
        self.predictor.forget_send_times();
        if self.newest_snapshot.is_none() {
            // Nothing held: say so with this connection's welcome tick.
            self.ack = welcome.tick;
        }
        self.give_up_beyond_buffer(&welcome);
        let mut resent = 0;
        for input in self.unacked.iter().filter(|i| i.seq > welcome.input_seq) {
            // Acknowledge what is held now, not what was held when the
            // input was first sent.
            let input = InputCmd {
                ack: self.ack,
                ..*input
            };
            link.send(&ClientMsg::Input(input), now)?;
            self.ack_pending = false;
            resent += 1;
        }
        self.metrics.inputs_resent.add(resent);
        self.metrics.connected_now.inc();
        self.connected_since = Some(now);
        self.gap_from = Some(now);
        self.resume_first_pending = true;
        self.resume_checks_left = RESUME_CHECKS;
        Ok(())
    }

    /// Books the bot's totals, however the game ended: at the stop, before
    /// the leave (which the swarm may abort), or when the connection is
    /// lost for good. Only the first call counts.
    fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let now = Instant::now();
        // The stop (the window's end), not now: the leave that follows it
        // may take seconds, and discards the snapshots still on their way.
        let end = self.samples.window_end().map_or(now, |end| end.min(now));
        if let Some(from) = self.gap_from.take() {
            self.metrics
                .snapshot_gap(end.saturating_duration_since(from));
        }
        // Still joining: no snapshot arrived on any connection.
        if self.joining_since.is_some() {
            self.metrics.clients_without_snapshot.inc();
        }
        // A stall that lasts until the stop has no next snapshot to end its
        // interval: it is counted as one at the stop, once it is longer
        // than a usual wait for the next snapshot.
        if let Some(last) = self.last_snapshot_at {
            let open = end.saturating_duration_since(last);
            if open > 2 * self.snapshot_period {
                // Booked at its end, like every interval.
                let at = end.checked_sub(Duration::from_nanos(1)).unwrap_or(end);
                self.samples.snapshot_interval(at, open);
            }
        }
        // Inputs still unacknowledged at the stop long after they were sent
        // never will be; the newest were merely in flight.
        let stale = self
            .predictor
            .unacked_sent_before(end.checked_sub(self.ack_grace));
        self.metrics.inputs_never_acked.add(u64::from(stale));
        self.link_lost(now);
        let m = &self.metrics;
        if let (Some((t0, at0)), Some((t1, at1))) = (self.first_measured, self.last_measured) {
            let ticks = t1.since(t0);
            if ticks > 0 {
                m.server_ticks.add(ticks as u64);
                m.tick_time_us.add((at1 - at0).as_micros() as u64);
            }
        }
    }
}

/// The lateness of every tick a timer that fired `late` covers: its own,
/// and, when it fired a period or more late, each tick the stall swallowed
/// (the ticker skips them rather than bursting inputs), down to the last,
/// so a stall weighs in the percentiles by how many ticks it held up, not
/// as one sample.
fn tick_lateness(late: Duration, period: Duration) -> impl Iterator<Item = Duration> {
    std::iter::successors(Some(late), move |&l| {
        l.checked_sub(period).filter(|_| !period.is_zero())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_counts_once_per_tick_it_held_up() {
        let ms = Duration::from_millis;
        let samples = |late| tick_lateness(late, ms(30)).collect::<Vec<_>>();
        assert_eq!(samples(ms(2)), [ms(2)], "an on-time tick is one sample");
        // Fired 100 ms late: its own tick and the three the ticker skipped
        // (due 30, 60 and 90 ms after it).
        assert_eq!(samples(ms(100)), [ms(100), ms(70), ms(40), ms(10)]);
        assert_eq!(tick_lateness(ms(5), Duration::ZERO).count(), 1);
    }

    fn welcome() -> Welcome {
        Welcome {
            protocol: shared::protocol::PROTOCOL_VERSION,
            player_id: 7,
            tick_hz: 30,
            snapshot_hz: 30,
            tick: Tick(100),
            room: "public-1".into(),
            session: SessionToken([9; 16]),
            resumed: false,
            input_seq: 0,
            resume_grace_ms: 10_000,
        }
    }

    #[tokio::test]
    async fn a_resume_must_continue_the_same_session() {
        let mut game = Game::new(
            welcome(),
            &BotConfig::default(),
            &Seeds::new(1),
            Instant::now(),
            Arc::new(Metrics::default()),
        );
        let t0 = Instant::now();
        for seq in 1..=10 {
            game.predictor.on_input(seq, 0, t0);
        }
        game.seq = 10;
        game.predictor.on_snapshot(6, None, t0);
        let good = Welcome {
            resumed: true,
            input_seq: 8,
            ..welcome()
        };
        assert_eq!(game.check_resume(&good), Ok(()));
        // Everything acknowledged and nothing more is fine too.
        for input_seq in [6, 10] {
            let w = Welcome {
                input_seq,
                ..good.clone()
            };
            assert_eq!(game.check_resume(&w), Ok(()));
        }
        let bad = [
            (
                Welcome {
                    resumed: false,
                    ..good.clone()
                },
                "not_resumed",
            ),
            (
                Welcome {
                    player_id: 8,
                    ..good.clone()
                },
                "player_changed",
            ),
            (
                Welcome {
                    room: "public-2".into(),
                    ..good.clone()
                },
                "room_changed",
            ),
            (
                Welcome {
                    session: SessionToken([8; 16]),
                    ..good.clone()
                },
                "session_changed",
            ),
            (
                Welcome {
                    input_seq: 11,
                    ..good.clone()
                },
                "input_seq_ahead",
            ),
            (
                Welcome {
                    input_seq: 5,
                    ..good.clone()
                },
                "input_seq_behind",
            ),
        ];
        for (w, label) in bad {
            assert_eq!(game.check_resume(&w), Err(label));
        }
    }

    /// A bot's game just welcomed, counting into `metrics`.
    fn game(metrics: &Arc<Metrics>) -> Game {
        Game::new(
            welcome(),
            &BotConfig::default(),
            &Seeds::new(1),
            Instant::now(),
            Arc::clone(metrics),
        )
    }

    #[tokio::test]
    async fn a_ping_in_flight_is_not_replaced_so_long_round_trips_are_measured() {
        let metrics = Arc::new(Metrics::default());
        let mut game = game(&metrics);
        let t0 = Instant::now();
        let first = game.ping_due(t0).expect("a first ping");
        // Interval after interval, the pong is still on its way: no new ping.
        for s in 1..=5 {
            assert_eq!(game.ping_due(t0 + Duration::from_secs(s)), None);
        }
        let pong = ServerMsg::Pong {
            nonce: first,
            tick: Tick(1),
        };
        game.on_other(Ok(pong), 10, t0 + Duration::from_millis(5_500));
        game.samples.flush(&metrics, t0 + Duration::from_secs(6));
        let rtt = metrics.histograms().rtt_us;
        assert_eq!(rtt.len(), 1);
        assert!(rtt.max() >= 5_400_000, "{} µs", rtt.max());
        // Answered: the next is due at once; unanswered, given up in time.
        let second = game.ping_due(t0 + Duration::from_secs(6));
        assert!(second.is_some_and(|n| n != first));
        assert_eq!(game.ping_due(t0 + Duration::from_secs(7)), None);
        assert!(
            game.ping_due(t0 + Duration::from_secs(6) + PING_GIVE_UP)
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_stall_until_the_stop_and_inputs_left_unacknowledged_are_reported() {
        let metrics = Arc::new(Metrics::default());
        let mut game = game(&metrics);
        let now = Instant::now();
        let stalled_at = now - Duration::from_secs(4);
        game.last_snapshot_at = Some(stalled_at);
        for seq in 1..=10 {
            game.predictor.on_input(seq, 0, stalled_at);
        }
        // Sent just now: in flight, not lost.
        game.predictor.on_input(11, 0, now);
        game.finish();
        let gaps = metrics.histograms().snapshot_interval_us;
        assert_eq!(gaps.len(), 1);
        assert!(gaps.max() >= 3_900_000, "{} µs", gaps.max());
        assert_eq!(metrics.inputs_never_acked.get(), 10);
    }

    #[tokio::test]
    async fn a_bot_that_never_gets_a_snapshot_is_counted_and_its_wait_is_a_gap() {
        let metrics = Arc::new(Metrics::default());
        let mut game = game(&metrics);
        // Welcomed 3 s ago; nothing since.
        game.gap_from = Some(Instant::now() - Duration::from_secs(3));
        game.finish();
        game.finish();
        assert_eq!(metrics.clients_without_snapshot.get(), 1, "booked once");
        assert!(metrics.longest_snapshot_gap_us.get() >= 2_900_000);
        // A bot that got one is not counted.
        let metrics = Arc::new(Metrics::default());
        let mut served = self::game(&metrics);
        served.on_snapshot_header(Tick(10), 0, 0, Instant::now());
        served.finish();
        assert_eq!(metrics.clients_without_snapshot.get(), 0);
    }

    #[tokio::test]
    async fn a_stall_cut_short_by_a_lost_connection_is_still_a_gap() {
        let metrics = Arc::new(Metrics::default());
        let mut game = game(&metrics);
        let now = Instant::now();
        game.on_snapshot_header(Tick(10), 0, 0, now - Duration::from_secs(3));
        assert!(metrics.longest_snapshot_gap_us.get() < 1_000_000);
        // Three seconds without a snapshot, then the connection goes (a
        // deliberate drop, say): the stall was real.
        game.link_lost(now);
        assert!(metrics.longest_snapshot_gap_us.get() >= 3_000_000);
        // Reconnecting is the resume's time, not a gap.
        game.finish();
        assert!(metrics.longest_snapshot_gap_us.get() < 3_100_000);
    }

    #[tokio::test]
    async fn inputs_the_server_passed_over_are_counted_but_not_across_a_resume() {
        let metrics = Arc::new(Metrics::default());
        let mut game = game(&metrics);
        let now = Instant::now();
        game.on_snapshot_header(Tick(100), 0, 10, now);
        // Two ticks, one input each at most: 11 and 12 applied, 13 to 15
        // dropped, or the ack could not be 15.
        game.on_snapshot_header(Tick(102), 2, 15, now);
        assert_eq!(metrics.inputs_skipped_by_server.get(), 3);
        // In step with the ticks: nothing skipped.
        game.on_snapshot_header(Tick(105), 3, 18, now);
        assert_eq!(metrics.inputs_skipped_by_server.get(), 3);
        // Inputs given up at a resume are counted there: sent up to 40,
        // the server had 20 and takes 8 more, 29 to 40 are given up. It
        // applies 21 to 28 one per tick, then the next new input, 41.
        game.link_lost(now);
        for seq in 19..=40 {
            game.predictor.on_input(seq, 0, now);
        }
        game.seq = 40;
        game.give_up_beyond_buffer(&Welcome {
            resumed: true,
            input_seq: 20,
            tick: Tick(107),
            ..welcome()
        });
        assert_eq!(metrics.inputs_given_up.get(), 12);
        game.on_snapshot_header(Tick(108), 1, 20, now);
        game.on_snapshot_header(Tick(116), 8, 28, now);
        game.on_snapshot_header(Tick(117), 1, 41, now);
        assert_eq!(metrics.inputs_skipped_by_server.get(), 3);
        // Past them, a jump is the server's again.
        game.on_snapshot_header(Tick(118), 1, 44, now);
        assert_eq!(metrics.inputs_skipped_by_server.get(), 5);
    }

    #[tokio::test]
    async fn inputs_in_flight_at_the_stop_are_not_lost_however_long_the_leave_takes() {
        let metrics = Arc::new(Metrics::default());
        let mut game = game(&metrics);
        let now = Instant::now();
        // The run stopped 3 s ago (its leave took that long); the inputs
        // went out half a second before the stop, and their acks were
        // discarded with the leave.
        let stop = now - Duration::from_secs(3);
        game.samples = Samples::new(
            stop - Duration::from_secs(10),
            Some(Window {
                from: stop - Duration::from_secs(10),
                until: stop,
            }),
        );
        for seq in 1..=3 {
            game.predictor
                .on_input(seq, 0, stop - Duration::from_millis(500));
        }
        game.finish();
        assert_eq!(metrics.inputs_never_acked.get(), 0);
    }

    #[tokio::test]
    async fn a_resume_resends_what_the_server_buffer_still_takes() {
        let metrics = Arc::new(Metrics::default());
        let mut game = game(&metrics);
        let now = Instant::now();
        for seq in 11..=30 {
            game.predictor.on_input(seq, 0, now);
        }
        // The newest snapshot, of tick 100, acknowledged input 10; the server
        // received up to 14.
        let _ = game.predictor.on_snapshot(10, None, now);
        game.input_ack_tick = Some(Tick(100));
        let resumed_at = |tick| Welcome {
            resumed: true,
            input_seq: 14,
            tick: Tick(tick),
            ..welcome()
        };
        // At once: 11 to 14 still wait in its buffer of 8, room for 4 more.
        assert_eq!(game.last_resent(&resumed_at(100)), 18);
        // Ten ticks later they were applied: room for 8.
        assert_eq!(game.last_resent(&resumed_at(110)), 22);
        // What is past that is given up, predicted no more, and counted for
        // the report: 23 to 30.
        game.give_up_beyond_buffer(&resumed_at(110));
        assert_eq!(metrics.inputs_given_up.get(), 8);
        assert_eq!(game.last_resent(&resumed_at(110)), 22);
        game.give_up_beyond_buffer(&resumed_at(110));
        assert_eq!(metrics.inputs_given_up.get(), 8, "nothing more to give up");
    }

    #[tokio::test]
    async fn inputs_stop_when_the_server_takes_none() {
        let metrics = Arc::new(Metrics::default());
        let mut game = game(&metrics);
        let now = Instant::now();
        for seq in 1..MAX_UNACKED as u32 {
            game.predictor.on_input(seq, 0, now);
        }
        assert!(!game.server_takes_no_input());
        game.predictor.on_input(MAX_UNACKED as u32, 0, now);
        assert!(game.server_takes_no_input());
        // Through a link conditioner, its round trip's inputs come on top:
        // 100 ms each way at 30 Hz is 6 more.
        let slow = Game::new(
            welcome(),
            &BotConfig {
                link: LinkConfig {
                    latency: Duration::from_millis(100),
                    jitter: Duration::ZERO,
                },
                ..BotConfig::default()
            },
            &Seeds::new(1),
            now,
            Arc::clone(&metrics),
        );
        assert_eq!(slow.max_unacked, MAX_UNACKED + 6);
    }

    #[test]
    fn only_losses_that_keep_the_session_trigger_a_resume() {
        let kept = BotError::Disconnected(DisconnectReason::IdleTimeout);
        assert_eq!(
            kept.resume_trigger().as_deref(),
            Some("server_idle_timeout")
        );
        assert_eq!(
            BotError::WebSocket("eof".into())
                .resume_trigger()
                .as_deref(),
            Some("connection_lost")
        );
        for gone in [
            BotError::Disconnected(DisconnectReason::RateLimited),
            BotError::Disconnected(DisconnectReason::ServerShutdown),
            BotError::Disconnected(DisconnectReason::SessionReplaced),
            BotError::SendQueueFull,
        ] {
            assert_eq!(gone.resume_trigger(), None, "{gone:?}");
        }
    }
}
