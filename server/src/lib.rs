//! The authoritative arena server.
//!
//! Tasks and ownership:
//! * the **room task** ([`room`]) owns the [`game::World`] by `&mut` and runs
//!   the fixed-rate tick;
//! * per connection, a **reader** and a **writer** task (module `connection`)
//!   talk to the room only through bounded queues and a `watch` of the newest
//!   published snapshot;
//! * per room, **fan-out** shard tasks (module `fanout`) write every client's
//!   snapshot after each published tick, one task wake-up per 32 clients
//!   instead of one per client; a client's socket is shared through its outbox
//!   (module `outbox`);
//! * the **accept loop** ([`serve`]) caps open connections (making room by
//!   closing one that is not a player yet, module `evict`) and hands
//!   each to hyper (module `http`), which serves files, status, and the
//!   WebSocket upgrade.
//!
//! [`serve`] is the whole server; `src/bin/server.rs` only parses flags.

#[cfg(test)]
mod alloc_count;
pub mod auth;
pub mod config;
mod connection;
mod datagram;
mod deadline;
mod evict;
mod fanout;
pub mod game;
pub mod guard;
mod http;
pub mod metrics;
mod outbox;
pub mod process;
mod registry;
pub mod room;
mod throttle;
mod users;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tracing::{error, info, warn};

pub use config::{Config, ConfigError, MAX_TICK_PHASES, RoomSpec};
pub use fanout::SHARD_CLIENTS;

use crate::connection::ConnContext;
use crate::http::AppState;
use crate::metrics::Metrics;
use crate::registry::Registry;

/// Sends every panic to the log, as an `ERROR` event with the panic's
/// message, where it happened and the thread's name (rooms run on threads
/// `room-SERIAL`), instead of the standard library's lines on stderr: with
/// `--log-format json` a log collector gets the panic as one JSON event
/// like every other, not as text it cannot parse. The backtrace is added
/// when `RUST_BACKTRACE` asks for one. Call it after the subscriber is set.
///
/// What follows a panic is unchanged: the panicking thread unwinds (a
/// room's players are disconnected and the room unlisted; a configured
/// room reopens on its next join).
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        // What `panic!` carries: a `&str` for a literal, a `String` when
        // formatted.
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(a panic without a message)");
        let location = info.location().map(ToString::to_string);
        let backtrace = std::backtrace::Backtrace::capture();
        let backtrace = (backtrace.status() == std::backtrace::BacktraceStatus::Captured)
            .then(|| backtrace.to_string());
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        if tracing::enabled!(tracing::Level::ERROR) {
            error!(
                panic = message,
                location, thread, backtrace, "a thread panicked"
            );
        } else {
            // Logs filtered down to nothing (`RUST_LOG=off`): a panic is
            // still said, as the standard hook would.
            eprintln!(
                "thread '{thread}' panicked at {}:\n{message}",
                location.as_deref().unwrap_or("an unknown place")
            );
        }
    }));
}

/// Connections the kernel completes for the server before it accepts them,
/// by default: room for a whole fleet reconnecting at once after a restart.
///
/// `TcpListener::bind` asks for 128, as the standard library does. A client
/// whose handshake finds that queue full has its SYN dropped and retries a
/// second later: when 2,000 clients connected within 0.2 s on the 2-core
/// benchmark machine, 2 to 41 of them did in three runs of four, and the
/// last joined after 1.0-1.4 s instead of 0.4-0.5 (`BENCHMARKS.md` section
/// 6, "Joining"). Linux caps the backlog at `net.core.somaxconn` (4,096 by
/// default since 5.4).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listening socket for [`serve`] on `addr`, with room for
/// `backlog` connections not accepted yet (see [`LISTEN_BACKLOG`]). Must
/// be called inside a tokio runtime.
///
/// # Errors
///
/// Creating, binding or listening on the socket failed (the address is in
/// use, or not this machine's).
pub fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted server rebinds at once,
    // whatever its old connections' TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Runs the server on `listener` until `shutdown` completes, then stops
/// accepting, closes every client with [`shared::protocol::DisconnectReason::ServerShutdown`],
/// lets the room finish its tick, and returns within
/// [`Config::shutdown_grace`] (plus one tick).
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate()?;
    // What an operator checks first after a deploy: whether joins need a
    // token and who may read the status, said once (the secrets are not).
    info!(
        tick_hz = config.tick_hz,
        snapshot_hz = config.snapshot_hz,
        join_tokens_required = config.auth.is_some(),
        operator_token = config.operator_token.is_some(),
        max_clients = config.max_clients,
        "serving"
    );
    let config = Arc::new(config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = Arc::new(Metrics::new());
    let datagrams = match config.datagram_port {
        Some(port) => {
            let ip = listener.local_addr()?.ip();
            let datagrams = datagram::Datagrams::bind(ip, port, Arc::clone(&metrics))
                .map_err(|e| anyhow::anyhow!("could not bind the datagram port {port}: {e}"))?;
            let datagrams = Arc::new(datagrams);
            let (reader, stop) = (Arc::clone(&datagrams), stop_rx.clone());
            std::thread::Builder::new()
                .name("datagrams".into())
                .spawn(move || reader.run(&stop))?;
            info!(port = datagrams.port(), "datagram channel open (UDP)");
            Some(datagrams)
        }
        None => None,
    };
    let (rooms_alive, mut rooms_done) = mpsc::channel::<()>(1);
    let registry = Registry::new(
        Arc::clone(&config),
        Arc::clone(&metrics),
        stop_rx.clone(),
        rooms_alive,
    );
    registry
        .open_persistent()
        .map_err(|reason| anyhow::anyhow!("could not open the persistent rooms: {reason}"))?;
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let state = Arc::new(AppState {
        conn: ConnContext {
            config: Arc::clone(&config),
            registry: Arc::clone(&registry),
            metrics,
            shutdown: stop_rx,
            datagrams,
        },
        clients: Arc::new(Semaphore::new(config.max_clients)),
        per_ip: guard::PerIpLimiter::new(config.max_clients_per_ip, config.per_ip_exempt_loopback),
        per_ip_connections: guard::PerIpLimiter::new(
            config.max_connections_per_ip,
            config.per_ip_exempt_loopback,
        ),
        unproven: evict::Unproven::new(),
        done: done_tx,
        started: std::time::Instant::now(),
    });
    let connections = Arc::new(Semaphore::new(config.max_connections));
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(1);
    let mut slots_full_log = throttle::LogEvery::new(Duration::from_secs(10));
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(1);
                // Over its address's share: closed at once, before any
                // byte is read, and no slot taken.
                let Some(ip) = state.per_ip_connections.try_acquire(peer.ip()) else {
                    state.conn.metrics.refused_per_ip.inc();
                    tracing::debug!(%peer, "too many connections from this address; closed");
                    continue;
                };
                let permit = match Arc::clone(&connections).try_acquire_owned() {
                    Ok(permit) => permit,
                    Err(_) => {
                        state.conn.metrics.connection_slots_full.inc();
                        if slots_full_log.due(std::time::Instant::now()).is_some() {
                            warn!(
                                max_connections = config.max_connections,
                                "every connection slot is taken: connections that are not \
                                 players yet are closed to make room, the oldest of the \
                                 address holding the most first"
                            );
                        }
                        tokio::select! {
                            () = &mut shutdown => break,
                            permit = make_slot(&state, &connections) => permit?,
                        }
                    }
                };
                let _ = stream.set_nodelay(true);
                let slots = http::ConnSlots {
                    _any: permit,
                    _ip: ip,
                    _open: http::Open::new(&state.conn.metrics.tcp_connections),
                    unproven: state.unproven.register(peer.ip()),
                };
                tokio::spawn(http::serve_connection(
                    stream,
                    peer,
                    Arc::clone(&state),
                    slots,
                ));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, don't spin.
                warn!(error = %e, ?backoff, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    info!("shutting down: closing connections");
    drop(listener);
    registry.close();
    let _ = stop_tx.send(true);
    drop(state);
    // One grace for the whole shutdown, not one per stage.
    let deadline = tokio::time::Instant::now() + config.shutdown_grace;
    // Every WebSocket task holds a `done` sender; recv() returns None once
    // the last one has finished.
    if tokio::time::timeout_at(deadline, done_rx.recv())
        .await
        .is_err()
    {
        warn!("shutdown grace elapsed with connections still open");
    }
    // Rooms finish the tick in progress (they were told with the
    // connections, so they are normally done by now); each thread drops its
    // `alive` sender as it ends.
    let tick = Duration::from_secs_f64(1.0 / f64::from(config.tick_hz));
    if tokio::time::timeout_at(deadline + tick, rooms_done.recv())
        .await
        .is_err()
    {
        error!("rooms did not stop within the shutdown grace");
    }
    info!("shutdown complete");
    Ok(())
}

/// A connection slot for a connection accepted while every one is taken:
/// connections that are not players yet are closed (`evict`) until one
/// gives its slot back. With none to close (not reachable with a
/// valid config, where `max_connections` is above `max_clients`), it waits
/// for a slot.
async fn make_slot(
    state: &AppState,
    connections: &Arc<Semaphore>,
) -> Result<OwnedSemaphorePermit, AcquireError> {
    let evict = || state.unproven.evict_connection();
    match evict::make_room(connections, evict, &state.conn.metrics.connections_evicted).await {
        Some(permit) => Ok(permit),
        None => Arc::clone(connections).acquire_owned().await,
    }
}

/// Locks a std mutex, taking the data even if a panic poisoned it: every
/// mutex here guards plain bookkeeping that a panicking holder leaves
/// consistent, and a poisoned lock must not take the server down with it.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Fills `bytes` from the OS's random source (session tokens, datagram
/// keys: secrets that must not be guessed). Without one it falls back to
/// fastrand, seeded from the clock and address space, rather than refuse
/// to serve; weaker, so it says so, naming `what` it was for.
pub(crate) fn fill_random(bytes: &mut [u8], what: &str) {
    if getrandom::fill(bytes).is_err() {
        tracing::warn!("OS randomness unavailable; {what} from fastrand");
        for b in bytes {
            *b = fastrand::u8(..);
        }
    }
}

/// Completes once the shutdown flag is set (or its sender is gone). Drops the
/// `watch` guard before returning, so callers may await afterwards.
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
