//! `bots`: the headless bot swarm. Parses flags, runs the swarm, prints the
//! report, writes it as JSON if asked, and exits non-zero when the run was
//! unhealthy, so CI and pre-launch scripts can gate on it.
//!
//! Exit codes: 0 healthy, 1 unhealthy run, 2 the run could not start or the
//! report could not be written.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use client_demo::conditioner::LinkConfig;
use client_demo::swarm::{self, AuthSecret, SwarmConfig};

/// Headless load clients that verify the netcode and report what players
/// would feel. Only point it at servers you run.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// WebSocket URL of the server: ws:// or, through a TLS proxy, wss://.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// PEM certificates to trust for a wss:// URL besides the system's
    /// (a staging CA, or the proxy's self-signed certificate).
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// Number of bots.
    #[arg(long, default_value_t = 100)]
    clients: u32,
    /// Seconds of play at full load, after the ramp.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Bots started per second.
    #[arg(long, default_value_t = 100.0)]
    ramp_per_sec: f64,
    /// Link conditioner: one-way latency added to everything each bot sends
    /// and receives, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Link conditioner: uniform jitter (±) around the latency, in
    /// milliseconds. Order is preserved, as on TCP.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Bot names are this prefix plus a number.
    #[arg(long, default_value = "bot-")]
    name_prefix: String,
    /// Seed of the bots' choices and jitter.
    #[arg(long, default_value_t = 0x5eed)]
    seed: u64,
    /// Seconds between two pings per bot (0: no pings).
    #[arg(long, default_value_t = 2.0)]
    ping_interval: f64,
    /// Do not draw the live progress line.
    #[arg(long)]
    no_progress: bool,
    /// Put every bot in this private room (created by the first bot)
    /// instead of letting the server matchmake them into public rooms.
    #[arg(long)]
    room: Option<String>,
    /// Secret of the server's join tokens (the server's --auth-secret):
    /// each bot mints its own token, user `bot-<run>-<n>` (`<run>` random
    /// per swarm: a user plays one game at a time), valid for an hour.
    /// Tokens are never printed.
    #[arg(long, env = "ARENA_AUTH_SECRET", hide_env_values = true, value_parser = secret)]
    auth_secret: Option<AuthSecret>,
    /// Probability per bot per second of dropping its connection on purpose
    /// (no leave, no close frame) and resuming the session on a new one;
    /// every resume is verified and reported. 0 never drops.
    #[arg(long, default_value_t = 0.0)]
    resume_chance: f64,
    /// Light bots for load tests: read only each snapshot's header, ack it,
    /// send inputs and pings as usual, and measure bandwidth and latency,
    /// with no replica and no prediction. Desyncs are NOT checked.
    #[arg(long)]
    light: bool,
    /// With --light on a ws:// URL and no latency or jitter: carry inputs,
    /// acks and snapshots as UDP datagrams (the server's datagram channel),
    /// as a native game client would; the WebSocket keeps the rest.
    #[arg(long, requires = "light")]
    datagrams: bool,
}

/// Parses the auth secret into a type whose `Debug` output is redacted, so
/// not even a debug print of the arguments shows it.
fn secret(s: &str) -> Result<AuthSecret, String> {
    if s.is_empty() {
        return Err("the secret must not be empty".into());
    }
    Ok(AuthSecret(s.as_bytes().to_vec()))
}

fn seconds(what: &str, s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s)
        .with_context(|| format!("--{what} must be a non-negative number of seconds"))
}

fn config(args: &Args) -> anyhow::Result<SwarmConfig> {
    let defaults = SwarmConfig::default();
    let ping = seconds("ping-interval", args.ping_interval)?;
    if args.datagrams && (args.latency_ms > 0 || args.jitter_ms > 0 || args.url.starts_with("wss:"))
    {
        anyhow::bail!(
            "--datagrams needs a ws:// URL and no --latency-ms or --jitter-ms: the bots read \
             their datagrams themselves, past the link conditioner and any TLS proxy"
        );
    }
    Ok(SwarmConfig {
        url: args.url.clone(),
        ca_file: args.ca_file.clone(),
        clients: args.clients,
        duration: seconds("duration", args.duration)?,
        ramp_per_sec: args.ramp_per_sec,
        link: LinkConfig {
            latency: Duration::from_millis(args.latency_ms),
            jitter: Duration::from_millis(args.jitter_ms),
        },
        name_prefix: args.name_prefix.clone(),
        seed: args.seed,
        progress: !args.no_progress,
        room: args.room.clone(),
        auth_secret: args.auth_secret.clone(),
        bot: client_demo::bot::BotConfig {
            ping_interval: (!ping.is_zero()).then_some(ping),
            resume_chance: args.resume_chance,
            light: args.light,
            datagrams: args.datagrams,
            ..defaults.bot
        },
    })
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let config = config(&args)?;
    let report = swarm::run(config).await?;
    let mut out = std::io::stdout().lock();
    let printed = write!(out, "{report}").and_then(|()| out.flush());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("writing the report to {}", path.display()))?;
        unless_unread(writeln!(out, "report written to {}", path.display()))?;
    }
    unless_unread(printed)?;
    Ok(report.healthy)
}

/// A write to standard output, whose reader may have stopped reading (the
/// report piped to `head`): that is not an error of the run, and the
/// run's verdict stands; any other failure to write is.
fn unless_unread(written: std::io::Result<()>) -> std::io::Result<()> {
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    // On one core (the load test pins the bots to one), a multi-threaded
    // runtime only adds cost: its single worker hands every wake-up through
    // the machinery meant for stealing work between threads, and the swarm
    // loop runs on another thread that competes for the same core. A
    // current-thread runtime runs every bot and the swarm on this thread,
    // about a tenth fewer instructions per message for light bots.
    let one_core = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_core {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
