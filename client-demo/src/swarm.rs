//! The swarm: starts bots at a steady ramp, lets them play at full load for
//! the configured duration, tells them all to leave, and turns what they
//! measured into a [`Report`].
//!
//! Time budget of a run: `ramp` (`(clients - 1) / ramp_per_sec`), then
//! `duration` at full load, then at most the close timeout plus a few seconds
//! for the close handshakes. Every wait is bounded, so a run always ends.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shared::protocol::{AuthToken, RoomRequest, is_valid_room_name};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::bot::{self, BotConfig, BotOutcome};
use crate::conditioner::LinkConfig;
use crate::connection::{Endpoint, UrlError};
use crate::metrics::{Metrics, Window};
use crate::report::{Counts, Report, RunFacts};

/// Settings of a swarm run.
#[derive(Clone, Debug)]
pub struct SwarmConfig {
    /// WebSocket URL of the server, `ws://` or `wss://`. Default:
    /// `ws://127.0.0.1:8080/ws`.
    pub url: String,
    /// PEM certificates a `wss://` server's certificate may be vouched for
    /// by, besides the system's store (a private CA, or a self-signed
    /// certificate). Default: `None`.
    pub ca_file: Option<std::path::PathBuf>,
    /// Bots to start. Default: 100.
    pub clients: u32,
    /// Time at full load, after the last bot started. Default: 20 s.
    pub duration: Duration,
    /// Bots started per second during the ramp. Default: 100.
    pub ramp_per_sec: f64,
    /// Delay added to each direction of every bot's link. Default: none.
    pub link: LinkConfig,
    /// Bot names are this prefix followed by the bot's number. Default:
    /// `bot-`.
    pub name_prefix: String,
    /// Seed of all bots' choices and jitter: the same seed against the same
    /// server build replays the same inputs. Default: `0x5eed`.
    pub seed: u64,
    /// Draw a live progress line on stderr (hidden when stderr is not a
    /// terminal). Default: false, so library callers and tests stay quiet.
    pub progress: bool,
    /// The private room every bot joins (created by the first one); `None`
    /// lets the server matchmake each bot into a public room. Default:
    /// `None`.
    pub room: Option<String>,
    /// Secret of the server's join tokens (its `--auth-secret`). When set,
    /// each bot mints its own token for user `bot-<run>-<n>`, valid for
    /// [`TOKEN_LIFETIME`]: `<run>` is random per swarm, since the server
    /// lets a user play one game at a time, and two swarms against one
    /// server must not take each other's places. Default: `None` (no token
    /// sent).
    pub auth_secret: Option<AuthSecret>,
    /// Per-bot timeouts and ping rate; `name`, `seed`, `link`, `room` and
    /// `auth` are filled in per bot.
    pub bot: BotConfig,
}

/// The secret join tokens are signed with. Its `Debug` output is redacted,
/// so printing a config never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthSecret(pub Vec<u8>);

impl std::fmt::Debug for AuthSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthSecret(<redacted>)")
    }
}

/// How long a bot's join token stays valid: 1 h, longer than any run.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Mints the join token of bot `n` of swarm `run` (user `bot-<run>-<n>`,
/// `run` in hex), valid until [`TOKEN_LIFETIME`] after `now_unix` (Unix
/// seconds).
fn bot_token(secret: &AuthSecret, run: u32, n: u32, now_unix: u64) -> Option<AuthToken> {
    let user = format!("bot-{run:08x}-{n}");
    shared::auth::mint(&secret.0, &user, now_unix + TOKEN_LIFETIME.as_secs()).map(AuthToken)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Default for SwarmConfig {
    fn default() -> Self {
        Self {
            url: "ws://127.0.0.1:8080/ws".into(),
            ca_file: None,
            clients: 100,
            duration: Duration::from_secs(20),
            ramp_per_sec: 100.0,
            link: LinkConfig::default(),
            name_prefix: "bot-".into(),
            seed: 0x5eed,
            progress: false,
            room: None,
            auth_secret: None,
            bot: BotConfig::default(),
        }
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    /// The URL is unusable.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// A setting is out of range.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
}

/// How often the progress line is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// Extra time, beyond the bots' close timeout, that the swarm waits for
/// bots to finish before aborting them.
const DRAIN_MARGIN: Duration = Duration::from_secs(5);

/// Runs a swarm to completion and reports what it measured.
pub async fn run(config: SwarmConfig) -> Result<Report, SwarmError> {
    let endpoint = Arc::new(Endpoint::parse_trusting(
        &config.url,
        config.ca_file.as_deref(),
    )?);
    if config.clients == 0 {
        return Err(SwarmError::Config("clients must be at least 1"));
    }
    if !(config.ramp_per_sec.is_finite() && config.ramp_per_sec > 0.0) {
        return Err(SwarmError::Config("ramp_per_sec must be a positive number"));
    }
    if config.duration.is_zero() {
        return Err(SwarmError::Config("duration must be positive"));
    }
    let chance = config.bot.resume_chance;
    if !(0.0..=1.0).contains(&chance) {
        return Err(SwarmError::Config(
            "resume_chance must be a probability between 0 and 1",
        ));
    }
    if config
        .room
        .as_deref()
        .is_some_and(|r| !is_valid_room_name(r))
    {
        return Err(SwarmError::Config(
            "room names are 1 to 32 ASCII letters, digits, '-' or '_'",
        ));
    }
    let room = config
        .room
        .clone()
        .map_or(RoomRequest::Matchmake, RoomRequest::Named);

    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let cpu_at_start = process_cpu_time();
    let start = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / config.ramp_per_sec);
    let ramp = gap * (config.clients - 1);
    let full_load_at = start + ramp;
    let stop_at = full_load_at + config.duration;
    let window = Window {
        from: full_load_at,
        until: stop_at,
    };
    let mut progress = Progress::new(config.progress, ramp + config.duration, config.clients);

    let mut bots = JoinSet::new();
    let mut tally = Tally::default();
    let mut launched: u32 = 0;
    let mut progress_tick = tokio::time::interval(PROGRESS_EVERY);
    // The process's CPU time and the bots' counters when the ramp ends: the
    // saturation verdict and the rates are about full load, which the whole
    // run's averages (ramp and drain included) understate.
    let mut at_full_load: Option<(Option<Duration>, Counts)> = None;
    // Names this swarm's users apart from another's (see `auth_secret`).
    let run = fastrand::u32(..);
    loop {
        let next_launch = start + gap * launched;
        tokio::select! {
            biased;
            () = tokio::time::sleep_until(stop_at) => break,
            () = tokio::time::sleep_until(full_load_at), if at_full_load.is_none() => {
                at_full_load = Some((process_cpu_time(), Counts::read(&metrics)));
            }
            () = tokio::time::sleep_until(next_launch), if launched < config.clients => {
                let n = launched + 1;
                let bot_config = BotConfig {
                    name: format!("{}{n}", config.name_prefix),
                    seed: config.seed.wrapping_add(u64::from(launched)),
                    link: config.link,
                    room: room.clone(),
                    auth: config
                        .auth_secret
                        .as_ref()
                        .and_then(|secret| bot_token(secret, run, n, unix_now())),
                    window: Some(window),
                    ..config.bot.clone()
                };
                bots.spawn(bot::run(
                    bot_config,
                    Arc::clone(&endpoint),
                    Arc::clone(&metrics),
                    stop_rx.clone(),
                ));
                launched += 1;
            }
            Some(done) = bots.join_next() => tally.add(done, &metrics),
            _ = progress_tick.tick() => progress.update(&metrics, start),
        }
        if launched == config.clients && bots.is_empty() {
            // Every bot already ended (typically: the server is not there).
            break;
        }
    }
    let play_end = Instant::now();
    let cpu_at_play_end = process_cpu_time();
    let counts_at_play_end = Counts::read(&metrics);
    // Nobody may be waiting any more: a send error just means no bot is left.
    let _ = stop_tx.send(true);

    let drain_deadline = Instant::now() + config.bot.close_timeout + DRAIN_MARGIN;
    while !bots.is_empty() {
        tokio::select! {
            biased;
            Some(done) = bots.join_next() => tally.add(done, &metrics),
            () = tokio::time::sleep_until(drain_deadline) => {
                let stuck = bots.len() as u64;
                tracing::warn!("{stuck} bots did not finish closing in time; aborting them");
                metrics.bots_aborted.add(stuck);
                bots.abort_all();
                while bots.join_next().await.is_some() {}
            }
            _ = progress_tick.tick() => progress.update(&metrics, start),
        }
    }
    let end = Instant::now();
    progress.finish();

    let facts = RunFacts {
        clients_requested: u64::from(config.clients),
        url: config.url.clone(),
        seed: config.seed,
        ramp_per_sec: config.ramp_per_sec,
        ramp,
        play: play_end.saturating_duration_since(full_load_at),
        wall: end - start,
        link_latency: config.link.latency,
        link_jitter: config.link.jitter,
        connect_failures: tally.connect_failures,
        disconnects: tally.disconnects,
        cpu_time: cpu_at_start
            .zip(process_cpu_time())
            .map(|(a, b)| b.saturating_sub(a)),
        full_load_cpu_time: at_full_load
            .and_then(|(cpu, _)| cpu)
            .zip(cpu_at_play_end)
            .map(|(a, b)| b.saturating_sub(a)),
        // Nothing counted at full load if every bot ended before it began.
        full_load_counts: at_full_load.map_or_else(Counts::default, |(_, counts)| {
            counts_at_play_end.since(counts)
        }),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        resume_chance: config.bot.resume_chance,
        light: config.bot.light,
    };
    Ok(Report::build(&facts, &metrics))
}

/// Outcomes of the bots that ended.
#[derive(Debug, Default)]
struct Tally {
    connect_failures: u64,
    disconnects: u64,
}

impl Tally {
    fn add(&mut self, done: Result<BotOutcome, tokio::task::JoinError>, metrics: &Metrics) {
        match done {
            Ok(BotOutcome::Finished) => {}
            Ok(BotOutcome::ConnectFailed(e)) => {
                self.connect_failures += 1;
                tracing::debug!("connect failed: {e}");
                Metrics::count_reason(&metrics.connect_failure_reasons, &e.label());
            }
            Ok(BotOutcome::Disconnected(e)) => {
                self.disconnects += 1;
                tracing::debug!("disconnected: {e}");
                Metrics::count_reason(&metrics.disconnect_reasons, &e.label());
            }
            // Aborted at the drain deadline: counted as such.
            Err(e) if e.is_cancelled() => {}
            Err(e) => {
                self.disconnects += 1;
                tracing::error!("bot task failed: {e}");
                Metrics::count_reason(&metrics.disconnect_reasons, "bot_task_panicked");
            }
        }
    }
}

/// The live progress line: connected bots, snapshots/s, kB/s and p99
/// latency so far.
struct Progress {
    bar: ProgressBar,
    clients: u32,
    /// Counter values and time at the previous refresh, for rates.
    last: (Counts, Instant),
}

impl Progress {
    fn new(enabled: bool, total: Duration, clients: u32) -> Self {
        let target = if enabled {
            ProgressDrawTarget::stderr_with_hz(4)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total.as_millis() as u64), target);
        let style =
            ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:16.cyan/blue}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        Self {
            bar,
            clients,
            last: (Counts::default(), Instant::now()),
        }
    }

    fn update(&mut self, metrics: &Metrics, start: Instant) {
        if self.bar.is_hidden() {
            return;
        }
        let now = Instant::now();
        let counts = Counts::read(metrics);
        let (last, last_at) = self.last;
        let new = counts.since(last);
        let dt = (now - last_at).as_secs_f64().max(1e-3);
        let snaps_per_s = new.snapshots as f64 / dt;
        let kb_per_s = new.bytes_received as f64 / dt / 1000.0;
        self.last = (counts, now);
        let p99 = metrics
            .latency_p99_ms()
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms"));
        self.bar.set_position((now - start).as_millis() as u64);
        self.bar.set_message(format!(
            "{}/{} bots | {:.0} snap/s | {:.0} kB/s down | p99 input→ack {} | {} desyncs",
            metrics.connected_now.get(),
            self.clients,
            snaps_per_s,
            kb_per_s,
            p99,
            metrics.desyncs.get(),
        ));
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// CPU time (user + system) used by this process so far. Linux only: read
/// from `/proc/self/stat`, whose times are in `USER_HZ` ticks, which the
/// kernel fixes at 100 per second for userspace on every architecture.
fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_time(&stat)
}

fn parse_cpu_time(stat: &str) -> Option<Duration> {
    const USER_HZ: u64 = 100;
    // The command name (field 2) may contain spaces and parentheses; the
    // fields after the last ')' are plain. utime and stime are fields 14
    // and 15, i.e. the 12th and 13th after the name.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_cpu_times() {
        let stat = "1234 (bots (x) y) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(parse_cpu_time(stat), Some(Duration::from_secs(3)));
        assert_eq!(parse_cpu_time("garbage"), None);
    }

    #[test]
    fn each_bot_mints_its_own_token_and_the_secret_stays_hidden() {
        let secret = AuthSecret(b"s3cret-value".to_vec());
        let now = 1_700_000_000;
        let token = bot_token(&secret, 0xabc, 7, now)
            .map(|t| t.0)
            .unwrap_or_default();
        let claims = shared::auth::verify(&secret.0, &token, now + 3599);
        assert_eq!(
            claims.map(|c| (c.user, c.expires)),
            Ok(("bot-00000abc-7".to_owned(), now + 3600))
        );
        assert_eq!(
            shared::auth::verify(&secret.0, &token, now + 3600),
            Err(shared::auth::TokenError::Expired)
        );
        let config = SwarmConfig {
            auth_secret: Some(secret),
            ..SwarmConfig::default()
        };
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[tokio::test]
    async fn rejects_bad_configs() {
        let bad = [
            SwarmConfig {
                clients: 0,
                ..SwarmConfig::default()
            },
            SwarmConfig {
                ramp_per_sec: 0.0,
                ..SwarmConfig::default()
            },
            SwarmConfig {
                duration: Duration::ZERO,
                ..SwarmConfig::default()
            },
            SwarmConfig {
                url: "http://127.0.0.1/ws".into(),
                ..SwarmConfig::default()
            },
            SwarmConfig {
                ca_file: Some("ca.pem".into()),
                ..SwarmConfig::default()
            },
            SwarmConfig {
                room: Some("no spaces".into()),
                ..SwarmConfig::default()
            },
            SwarmConfig {
                bot: BotConfig {
                    resume_chance: 1.5,
                    ..BotConfig::default()
                },
                ..SwarmConfig::default()
            },
        ];
        for config in bad {
            assert!(run(config).await.is_err());
        }
    }

    #[tokio::test]
    async fn absent_server_is_an_unhealthy_run_that_ends_quickly() {
        let port = {
            let Ok(l) = tokio::net::TcpListener::bind("127.0.0.1:0").await else {
                return;
            };
            l.local_addr().map(|a| a.port()).unwrap_or(1)
        };
        let config = SwarmConfig {
            url: format!("ws://127.0.0.1:{port}/ws"),
            clients: 5,
            ramp_per_sec: 1000.0,
            duration: Duration::from_secs(30),
            ..SwarmConfig::default()
        };
        let started = Instant::now();
        let report = run(config).await;
        let Ok(report) = report else {
            panic!("run failed to start: {report:?}");
        };
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "did not stop early"
        );
        assert!(!report.healthy);
        assert_eq!(report.connect_failures, 5);
        assert_eq!(report.clients_connected, 0);
        assert_eq!(report.connect_failure_reasons.get("tcp_refused"), Some(&5));
    }
}
