//! `cargo run --release -p server`: parses flags, sets up logging, serves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use server::{Config, MAX_TICK_PHASES, RoomSpec};
use tracing_subscriber::EnvFilter;

/// Authoritative arena game server. Open http://ADDR/ to play.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to listen on.
    #[arg(long, env = "ARENA_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Connections the kernel may complete before the server accepts them
    /// (capped by net.core.somaxconn): a full queue makes a joining client
    /// wait a second for its SYN to be retried.
    #[arg(long, env = "ARENA_LISTEN_BACKLOG", default_value_t = server::LISTEN_BACKLOG, value_parser = clap::value_parser!(u32).range(1..))]
    listen_backlog: u32,
    /// Simulation ticks per second (1..=128).
    #[arg(long, env = "ARENA_TICK_HZ", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=128))]
    tick_hz: u32,
    /// Snapshots per second (1..=tick rate). Default: the tick rate.
    #[arg(long, env = "ARENA_SNAPSHOT_HZ")]
    snapshot_hz: Option<u32>,
    /// Server-driven wandering NPCs per room (at most 100,000).
    #[arg(long, env = "ARENA_NPCS", default_value_t = Config::default().npcs)]
    npcs: u32,
    /// Players per room, counting those whose session awaits a resume.
    #[arg(long, env = "ARENA_ROOM_CAPACITY", default_value_t = Config::default().room_capacity)]
    room_capacity: usize,
    /// Most rooms at once (each runs on its own thread).
    #[arg(long, env = "ARENA_MAX_ROOMS", default_value_t = Config::default().max_rooms)]
    max_rooms: usize,
    /// Phases of the tick period the rooms are spread over: 1 ticks every
    /// room at once (fewest wake-ups), more make smaller fan-out bursts.
    #[arg(long, env = "ARENA_TICK_PHASES", default_value_t = Config::default().tick_phases, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_TICK_PHASES)))]
    tick_phases: u32,
    /// Seconds a dropped player's entity waits for its session to resume.
    #[arg(long, env = "ARENA_RESUME_GRACE_SECS", default_value_t = Config::default().resume_grace.as_secs())]
    resume_grace_secs: u64,
    /// Seconds an empty room stays open before it is disposed.
    #[arg(long, env = "ARENA_EMPTY_ROOM_GRACE_SECS", default_value_t = Config::default().empty_room_grace.as_secs())]
    empty_room_grace_secs: u64,
    /// A room to open at start and keep open, as NAME or NAME:NPCS.
    /// Repeat the flag for more (env: comma-separated).
    #[arg(long = "room", env = "ARENA_ROOMS", value_delimiter = ',')]
    rooms: Vec<RoomSpec>,
    /// Require joins to carry a token signed with this secret (HMAC-SHA256,
    /// see `server mint-token`). Prefer the environment variable: command
    /// lines are visible to every user of the machine.
    #[arg(long, env = "ARENA_AUTH_SECRET", hide_env_values = true)]
    auth_secret: Option<String>,
    /// Let only requests with `Authorization: Bearer TOKEN` read
    /// /status.json and /metrics, and name private rooms to them on
    /// /status.json and /rooms (open the status page as
    /// /status#token=TOKEN). Without it those endpoints are public and
    /// never name a private room. Prefer the environment variable.
    #[arg(long, env = "ARENA_OPERATOR_TOKEN", hide_env_values = true)]
    operator_token: Option<String>,
    /// Most players connected at once, counting WebSockets before hello;
    /// past it the oldest of those makes room, or with none, HTTP 503.
    #[arg(long, env = "ARENA_MAX_CLIENTS", default_value_t = Config::default().max_clients)]
    max_clients: usize,
    /// Most players (WebSocket sessions) from one IP address, or one IPv6
    /// /64 (0: unlimited); more get HTTP 429. As many more may await a
    /// resume; past that a dropped session is given up. Loopback peers are
    /// exempt unless --limit-loopback is given. --max-connections-per-ip
    /// caps TCP connections of any kind.
    #[arg(long, env = "ARENA_MAX_CLIENTS_PER_IP", default_value_t = Config::default().max_clients_per_ip)]
    max_clients_per_ip: u32,
    /// Most TCP connections of any kind from one IP address, idle HTTP
    /// ones included; more are closed at accept (0: unlimited). Default:
    /// --max-clients-per-ip + 48 (64), unlimited when that is. Loopback
    /// peers are exempt unless --limit-loopback is given.
    #[arg(long, env = "ARENA_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<u32>,
    /// Apply --max-clients-per-ip and --max-connections-per-ip to loopback
    /// peers too. (The variable takes 1/0, true/false, yes/no or on/off.)
    #[arg(long, env = "ARENA_LIMIT_LOOPBACK", value_parser = clap::builder::BoolishValueParser::new())]
    limit_loopback: bool,
    /// Web origins allowed to open the game's WebSocket, comma-separated
    /// (`https://play.example.com`). The page's own host and localhost are
    /// always allowed; `*` allows every origin.
    #[arg(long, env = "ARENA_ALLOWED_ORIGINS", default_value = "")]
    allowed_origins: String,
    /// Seconds to wait for clients to close on shutdown.
    #[arg(long, env = "ARENA_SHUTDOWN_GRACE_SECS", default_value_t = 5)]
    shutdown_grace_secs: u64,
    /// Seconds a client has to send its whole HTTP request head (1..=86400).
    #[arg(long, env = "ARENA_HEADER_TIMEOUT_SECS", default_value_t = Config::default().header_read_timeout.as_secs(), value_parser = timeout_secs())]
    header_timeout_secs: u64,
    /// Seconds from the WebSocket upgrade to the hello (1..=86400).
    #[arg(long, env = "ARENA_HELLO_TIMEOUT_SECS", default_value_t = Config::default().hello_timeout.as_secs(), value_parser = timeout_secs())]
    hello_timeout_secs: u64,
    /// Seconds without a message before a connection is closed as idle
    /// (1..=86400); clients send an input every tick and answer pings.
    #[arg(long, env = "ARENA_IDLE_TIMEOUT_SECS", default_value_t = Config::default().idle_timeout.as_secs(), value_parser = timeout_secs())]
    idle_timeout_secs: u64,
    /// Seconds a player may go without acknowledging a snapshot before it
    /// is closed, as too slow, or as idle if it sent nothing (1..=86400).
    #[arg(long, env = "ARENA_ACK_TIMEOUT_SECS", default_value_t = Config::default().ack_timeout.as_secs(), value_parser = timeout_secs())]
    ack_timeout_secs: u64,
    /// Seconds a socket may take nothing before its write fails and the
    /// client is dropped (1..=86400).
    #[arg(long, env = "ARENA_WRITE_TIMEOUT_SECS", default_value_t = Config::default().write_timeout.as_secs(), value_parser = timeout_secs())]
    write_timeout_secs: u64,
    /// UDP port of the datagram channel for native clients, on the --addr
    /// address (0: any free port; clients are told which). Open it in the
    /// firewall with a fixed port, or turn it off with --no-datagrams.
    #[arg(long, env = "ARENA_DATAGRAM_PORT", default_value_t = 0)]
    datagram_port: u16,
    /// Offer no datagram channel: every client on its WebSocket alone.
    /// (The variable takes 1/0, true/false, yes/no or on/off.)
    #[arg(long, env = "ARENA_NO_DATAGRAMS", value_parser = clap::builder::BoolishValueParser::new())]
    no_datagrams: bool,
    /// Log format.
    #[arg(long, env = "ARENA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// The subcommands alone. `Args` reads every serving flag from its
/// `ARENA_*` variable whatever the command line says, so a bad variable
/// unrelated to minting (`ARENA_TICK_HZ=fast`) would refuse `mint-token`;
/// a command line that starts with a subcommand is parsed with this.
#[derive(Parser, Debug)]
#[command(name = "server", version)]
struct SubcommandOnly {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Print a join token for --auth-secret (what a game backend issues
    /// after login), then exit.
    MintToken {
        /// The account id the token names: 1 to 64 of A-Z a-z 0-9 - _.
        #[arg(long)]
        user: String,
        /// Seconds until the token expires, at least 1 (a token of 0 would
        /// be expired when printed).
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
        ttl_secs: u64,
        /// The server's secret.
        #[arg(long, env = "ARENA_AUTH_SECRET", hide_env_values = true)]
        auth_secret: String,
    },
}

/// A timeout in whole seconds: at least one (a zero would close every
/// connection at once), at most `Config::validate`'s bound, a day.
fn timeout_secs() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(1..=server::config::MAX_DURATION.as_secs())
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Text,
    Json,
}

/// Completes at the first SIGINT (Ctrl-C) or SIGTERM after the call.
///
/// The handlers are installed here, not when the future is first polled:
/// the server is polled only once it serves, after the `listening on` line
/// that scripts and tests wait for, and a signal sent in between was lost
/// (SIGINT, which a shell ignores for its background jobs) or killed the
/// process with its default action instead of a clean stop (SIGTERM).
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let listening = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        match listening {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The join-token secret, refused when it is empty or blank: an HMAC key
/// of nothing is one anyone can sign with, and a deploy that sets
/// `ARENA_AUTH_SECRET=` from a missing secret would run with joins that
/// look protected and are not. Kept as given otherwise (tokens minted with
/// it stay valid).
fn usable_secret(secret: &str) -> anyhow::Result<&str> {
    anyhow::ensure!(
        !secret.trim().is_empty(),
        "the auth secret (--auth-secret, ARENA_AUTH_SECRET) is empty: anyone could sign \
         join tokens with it"
    );
    Ok(secret)
}

/// Runs a subcommand.
fn run(command: Command) -> anyhow::Result<()> {
    let Command::MintToken {
        user,
        ttl_secs,
        auth_secret,
    } = command;
    let auth_secret = usable_secret(&auth_secret)?;
    let expires = server::auth::unix_now().saturating_add(ttl_secs);
    let token = shared::auth::mint(auth_secret.as_bytes(), &user, expires)
        .context("the user id must be 1 to 64 of A-Z a-z 0-9 - _")?;
    println!("{token}");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let subcommand = std::env::args_os().nth(1).is_some_and(|first| {
        <Command as clap::Subcommand>::has_subcommand(&first.to_string_lossy())
    });
    if subcommand {
        return run(SubcommandOnly::parse().command);
    }
    let args = Args::parse();
    // A subcommand after serving flags (`server --log-format json
    // mint-token …`): run it rather than serve.
    if let Some(command) = args.command {
        return run(command);
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr (colour only on a terminal); stdout carries just the
    // `listening on` line that scripts parse.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    server::log_panics();
    let defaults = Config::default();
    let config = Config {
        tick_hz: args.tick_hz,
        snapshot_hz: args.snapshot_hz.unwrap_or(args.tick_hz),
        npcs: args.npcs,
        room_capacity: args.room_capacity,
        max_rooms: args.max_rooms,
        tick_phases: args.tick_phases,
        resume_grace: Duration::from_secs(args.resume_grace_secs),
        empty_room_grace: Duration::from_secs(args.empty_room_grace_secs),
        persistent_rooms: args.rooms.clone(),
        auth: match args.auth_secret.as_deref() {
            None => None,
            Some(secret) => Some(Arc::new(server::auth::HmacTokens::new(
                usable_secret(secret)?.as_bytes(),
            )) as Arc<dyn server::auth::Authenticator>),
        },
        operator_token: match args.operator_token.as_deref() {
            None => None,
            Some(token) => Some(
                server::guard::OperatorToken::new(token)
                    .context("--operator-token must be visible ASCII: no spaces within")?,
            ),
        },
        max_clients: args.max_clients,
        max_connections: args
            .max_clients
            .saturating_add(defaults.max_connections - defaults.max_clients),
        shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
        header_read_timeout: Duration::from_secs(args.header_timeout_secs),
        hello_timeout: Duration::from_secs(args.hello_timeout_secs),
        idle_timeout: Duration::from_secs(args.idle_timeout_secs),
        ack_timeout: Duration::from_secs(args.ack_timeout_secs),
        write_timeout: Duration::from_secs(args.write_timeout_secs),
        max_clients_per_ip: args.max_clients_per_ip,
        max_connections_per_ip: args.max_connections_per_ip.unwrap_or(
            match args.max_clients_per_ip {
                0 => 0,
                players => players
                    .saturating_add(defaults.max_connections_per_ip - defaults.max_clients_per_ip),
            },
        ),
        per_ip_exempt_loopback: !args.limit_loopback,
        allowed_origins: server::guard::OriginPolicy::parse(&args.allowed_origins),
        datagram_port: (!args.no_datagrams).then_some(args.datagram_port),
        ..defaults
    };
    config.validate()?;
    let shutdown = shutdown_signal();
    let listener = server::listen(args.addr, args.listen_backlog)
        .with_context(|| format!("binding {}", args.addr))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to find the port when --addr ends in :0.
    println!("listening on http://{addr}");
    server::serve(listener, config, shutdown).await
}
