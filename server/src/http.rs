//! HTTP front door: routes, static files, and the WebSocket upgrade.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    AUTHORIZATION, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use include_dir::{Dir, include_dir};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use crate::connection::{self, ConnContext};
use crate::deadline::WriteDeadline;
use crate::evict::{self, Ticket, Unproven};
use crate::guard::PerIpLimiter;
use crate::process::{self, ProcessStats};
use crate::room::TickReport;

/// The browser demo, compiled into the binary so a fresh clone runs with
/// cargo alone (`build.rs` makes cargo rebuild when a file changes).
static WEB: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../client-demo/web");

type Body = Full<Bytes>;

/// Shared by every HTTP connection.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) conn: ConnContext,
    /// One permit per connected player; `max_clients` of them.
    pub(crate) clients: Arc<Semaphore>,
    /// WebSockets per peer IP.
    pub(crate) per_ip: Arc<PerIpLimiter>,
    /// TCP connections of any kind per peer IP.
    pub(crate) per_ip_connections: Arc<PerIpLimiter>,
    /// Connections that are not players yet, to close one of when every
    /// slot is taken.
    pub(crate) unproven: Arc<Unproven>,
    /// Dropped by each WebSocket task when it ends; shutdown waits for all.
    pub(crate) done: tokio::sync::mpsc::Sender<()>,
    /// When the server started.
    pub(crate) started: std::time::Instant,
}

/// A response with a body, its content type, and optionally a cache policy.
fn respond(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: &'static str,
    cache: Option<&'static str>,
) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(cache) = cache {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    }
    resp
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    respond(status, body, "text/plain; charset=utf-8", None)
}

/// Who is asking, as far as the status endpoints care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reader {
    /// Presented the operator token: sees everything, private rooms by
    /// name.
    Operator,
    /// No token is configured: the endpoints are public, private rooms
    /// shown by their label only.
    Public,
    /// A token is configured and this request did not present it.
    Refused,
}

fn reader<B>(req: &Request<B>, state: &AppState) -> Reader {
    let Some(token) = &state.conn.config.operator_token else {
        return Reader::Public;
    };
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .is_some_and(|value| token.admits(value.as_bytes()));
    if presented {
        Reader::Operator
    } else {
        Reader::Refused
    }
}

/// 401 for an operator endpoint asked without the token.
fn unauthorized() -> Response<Body> {
    let mut resp = text(
        StatusCode::UNAUTHORIZED,
        "this endpoint needs the operator token (Authorization: Bearer TOKEN)\n",
    );
    resp.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// A room's name as `reader` may see it.
fn shown_name(room: &crate::room::RoomStatus, reader: Reader) -> String {
    if reader == Reader::Operator {
        room.name.clone()
    } else {
        room.label.clone()
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

fn static_file(path: &str) -> Response<Body> {
    let path = path.trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    match WEB.get_file(path) {
        Some(file) => respond(
            StatusCode::OK,
            file.contents(),
            content_type(path),
            Some("no-cache"),
        ),
        None => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// What `/status.json` reports. The `/status` page renders exactly this.
#[derive(Serialize)]
struct Status {
    version: &'static str,
    uptime_s: f64,
    tick_hz: u32,
    snapshot_hz: u32,
    max_clients: usize,
    connections: i64,
    /// The UDP port of the datagram channel, `None` with `--no-datagrams`.
    datagram_port: Option<u16>,
    /// The tick report of the room with the worst p99 (all zeros but the
    /// budget when no room is open): the headline and the chart.
    tick_us: TickReport,
    /// The room `tick_us` belongs to.
    worst_room: Option<String>,
    rooms: Vec<RoomView>,
    /// Totals since start; the page derives rates from two samples.
    totals: Totals,
    process: ProcessStats,
}

#[derive(Serialize)]
struct RoomView {
    name: String,
    /// The room's serial: its thread is `room-SERIAL`, for `top -H` and
    /// the panic log (`private#SERIAL` shows it in the name too).
    serial: u32,
    public: bool,
    /// The phase of the tick period the room ticks in, of `--tick-phases`.
    tick_phase: u32,
    capacity: usize,
    uptime_s: f64,
    players: i64,
    entities: i64,
    tick_us: TickReport,
}

/// One room in `GET /rooms`: what a lobby or a matchmaker needs.
#[derive(Serialize)]
struct RoomSummary {
    id: String,
    /// Whether matchmaking places players here; private rooms are joined
    /// by name.
    public: bool,
    /// Connected players now.
    players: i64,
    /// Seats taken, counting players whose session waits for a resume.
    seats_taken: usize,
    capacity: usize,
    tick_hz: u32,
    uptime_secs: f64,
}

/// Public rooms for everyone; private ones too, by name, for an operator.
fn rooms(state: &AppState, reader: Reader) -> Response<Body> {
    #[derive(Serialize)]
    struct Rooms {
        rooms: Vec<RoomSummary>,
    }
    let rooms = state
        .conn
        .registry
        .rooms()
        .into_iter()
        .filter(|h| h.status.public || reader == Reader::Operator)
        .map(|h| RoomSummary {
            id: h.status.name.clone(),
            public: h.status.public,
            players: h.status.players.get(),
            seats_taken: h
                .status
                .occupancy
                .load(std::sync::atomic::Ordering::Relaxed),
            capacity: state.conn.config.room_capacity,
            tick_hz: state.conn.config.tick_hz,
            uptime_secs: h.status.started.elapsed().as_secs_f64(),
        })
        .collect();
    json_response(&Rooms { rooms })
}

#[derive(Serialize)]
struct Totals {
    joins: u64,
    leaves: u64,
    resumes: u64,
    sessions_expired: u64,
    rooms_created: u64,
    snapshots_sent: u64,
    snapshots_full: u64,
    snapshots_skipped: u64,
    snapshots_age_1: u64,
    snapshots_older_than_3: u64,
    bytes_out: u64,
    bytes_in: u64,
    inputs_received: u64,
    inputs_applied: u64,
    inputs_dropped: u64,
    refused_full: u64,
    refused_origin: u64,
    refused_per_ip: u64,
    rate_limited: u64,
    /// Snapshots sent as datagrams (counted in `snapshots_sent` too).
    datagram_snapshots: u64,
    /// Client datagrams used, and not used (every reason).
    datagrams_received: u64,
    datagrams_refused: u64,
    kicks: std::collections::BTreeMap<&'static str, u64>,
}

fn json_response(value: &impl Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(json) => respond(StatusCode::OK, json, "application/json", Some("no-store")),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "status unavailable\n"),
    }
}

fn status(state: &AppState, reader: Reader) -> Response<Body> {
    let m = &state.conn.metrics;
    let mut handles = state.conn.registry.rooms();
    if reader != Reader::Operator {
        // In the order of what is shown: the registry's order is the real
        // names', which would place each private room among rooms whose
        // names a prober chose, one comparison per room it opens.
        handles.sort_by(|a, b| a.status.label.cmp(&b.status.label));
    }
    let rooms: Vec<RoomView> = handles
        .iter()
        .map(|h| {
            let room = &h.status;
            RoomView {
                name: shown_name(room, reader),
                serial: room.serial,
                public: room.public,
                tick_phase: room.tick_phase,
                capacity: state.conn.config.room_capacity,
                uptime_s: room.started.elapsed().as_secs_f64(),
                players: room.players.get(),
                entities: room.entities.get(),
                // The figures without the one-minute chart: only the worst
                // room's is shown (below), and 60 entries a room made the
                // document grow by some 3 KB per room.
                tick_us: room.tick_report().without_chart(),
            }
        })
        .collect();
    let worst = rooms
        .iter()
        .zip(&handles)
        .max_by(|(a, _), (b, _)| a.tick_us.p99_us.total_cmp(&b.tick_us.p99_us));
    let tick_us = worst.map_or_else(
        || TickReport {
            budget_us: 1e6 / f64::from(state.conn.config.tick_hz),
            ..TickReport::default()
        },
        // The room's figures as listed, with its chart (which the room may
        // have moved on by a second since).
        |(r, h)| TickReport {
            per_second: h.status.tick_report().per_second.clone(),
            ..r.tick_us.clone()
        },
    );
    let worst_room = worst.map(|(r, _)| r.name.clone());
    let status = Status {
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: state.started.elapsed().as_secs_f64(),
        tick_hz: state.conn.config.tick_hz,
        snapshot_hz: state.conn.config.snapshot_hz,
        max_clients: state.conn.config.max_clients,
        datagram_port: state.conn.datagrams.as_ref().map(|d| d.port()),
        connections: m.connections.get(),
        tick_us,
        worst_room,
        rooms,
        totals: Totals {
            joins: m.joins.get(),
            leaves: m.leaves.get(),
            resumes: m.resumes.get(),
            sessions_expired: m.sessions_expired.get(),
            rooms_created: m.rooms_created.get(),
            // Read before the count they are shares of, which a write
            // moves first (`Metrics::snapshot_written`): a snapshot written
            // between the reads adds to the whole, not to a part alone.
            snapshots_age_1: m.snapshots_age_1.get(),
            snapshots_older_than_3: m.snapshots_older_than_3.get(),
            snapshots_sent: m.snapshots_sent.get(),
            snapshots_full: m.snapshots_full.get(),
            snapshots_skipped: m.snapshots_skipped.get(),
            bytes_out: m.bytes_out.get(),
            bytes_in: m.bytes_in.get(),
            inputs_received: m.inputs_received.get(),
            inputs_applied: m.inputs_applied.get(),
            inputs_dropped: m.inputs_dropped(),
            refused_full: m.refused_full.get(),
            refused_origin: m.refused_origin.get(),
            refused_per_ip: m.refused_per_ip.get(),
            rate_limited: m.rate_limited.get(),
            datagram_snapshots: m.datagram_snapshots.get(),
            datagrams_received: m.datagrams_received.get(),
            datagrams_refused: m.datagrams_refused_total(),
            kicks: m.kicks_by_reason().collect(),
        },
        process: process::read(),
    };
    json_response(&status)
}

fn metrics(state: &AppState) -> Response<Body> {
    let worst_us = state
        .conn
        .registry
        .rooms()
        .iter()
        .map(|h| h.status.tick_report().p99_us)
        .fold(0.0, f64::max);
    state.conn.metrics.worst_room_tick_p99.set(worst_us / 1e6);
    respond(
        StatusCode::OK,
        state.conn.metrics.render(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        None,
    )
}

/// The operator's status page: self-contained HTML that polls `/status.json`.
static STATUS_PAGE: &str = include_str!("status.html");

/// What one TCP connection holds while it is open: its slot of
/// `max_connections` and of its IP's `max_connections_per_ip`, and its
/// count in `arena_tcp_connections`. Shared by the HTTP connection and,
/// after an upgrade, by the WebSocket's task, so the slots are given back
/// when the socket closes, not when hyper lets go of it at the upgrade.
/// Until the connection is a player, it may be told to close to make room
/// (`unproven`).
#[derive(Debug)]
pub(crate) struct ConnSlots {
    // Dropped in this order: the gauge first, so that a connection given
    // the slot never counts this one as still open.
    pub(crate) _open: Open,
    pub(crate) unproven: Ticket,
    pub(crate) _ip: crate::guard::IpPermit,
    pub(crate) _any: OwnedSemaphorePermit,
}

/// Whether `key` is a `Sec-WebSocket-Key` as RFC 6455 4.1 has clients
/// make it, and 4.2.1 servers require it: 16 bytes in base64, so 22
/// characters of the alphabet, the last of them one with its low four
/// bits zero (`A`, `Q`, `g` or `w`), and `==`.
fn is_websocket_key(key: &[u8]) -> bool {
    let base64 = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    match key {
        [head @ .., last, b'=', b'='] if head.len() == 21 => {
            head.iter().all(base64) && matches!(last, b'A' | b'Q' | b'g' | b'w')
        }
        _ => false,
    }
}

async fn upgrade(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    state: &Arc<AppState>,
    slots: Arc<ConnSlots>,
) -> Response<Body> {
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return text(StatusCode::UPGRADE_REQUIRED, "websocket upgrade required\n");
    }
    // fastwebsockets checks that a key is there, not what it is.
    if let Some(key) = req.headers().get("sec-websocket-key")
        && !is_websocket_key(key.as_bytes())
    {
        debug!(%peer, "bad upgrade request: Sec-WebSocket-Key is not 16 bytes in base64");
        return text(StatusCode::BAD_REQUEST, "bad websocket upgrade request\n");
    }
    // Refuse before the upgrade: each refusal costs one HTTP response.
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let (origin, host) = (header(hyper::header::ORIGIN), header(hyper::header::HOST));
    if !state.conn.config.allowed_origins.allows(origin, host) {
        state.conn.metrics.refused_origin.inc();
        debug!(%peer, ?origin, "origin not allowed");
        return text(StatusCode::FORBIDDEN, "origin not allowed\n");
    }
    let Some(ip_permit) = state.per_ip.try_acquire(peer.ip()) else {
        state.conn.metrics.refused_per_ip.inc();
        return text(
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections from this address\n",
        );
    };
    // Every player's place taken: a WebSocket before its hello makes room,
    // the oldest of the address holding the most (`crate::evict`); with
    // none, the server is full of players.
    let metrics = &state.conn.metrics;
    let evict = || state.unproven.evict_websocket();
    let Some(permit) = evict::make_room(&state.clients, evict, &metrics.connections_evicted).await
    else {
        metrics.refused_full.inc();
        return text(StatusCode::SERVICE_UNAVAILABLE, "server full\n");
    };
    let (response, fut) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(pair) => pair,
        Err(e) => {
            debug!(%peer, error = %e, "bad upgrade request");
            return text(StatusCode::BAD_REQUEST, "bad websocket upgrade request\n");
        }
    };
    // From now on it holds a player's place, until its hello.
    slots.unproven.upgraded();
    let ctx = state.conn.clone();
    let done = state.done.clone();
    tokio::spawn(async move {
        // Dropped in the reverse order: the player's places before the
        // gauge, so that a scrape that counts no connection finds them free.
        let _done = done;
        let _open = Open::new(&ctx.metrics.connections);
        let _ip_permit = ip_permit;
        let _permit: OwnedSemaphorePermit = permit;
        let upgraded = tokio::select! {
            upgraded = tokio::time::timeout(ctx.config.hello_timeout, fut) => upgraded,
            () = slots.unproven.evicted() => return debug!(%peer, "evicted during the upgrade"),
        };
        let ws = match upgraded {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => return debug!(error = %e, "upgrade failed"),
            Err(_) => return debug!("upgrade timed out"),
        };
        connection::run(ws, peer, ctx.clone(), &slots.unproven).await;
    });
    response.map(|_| Full::new(Bytes::new()))
}

/// One connection counted in a gauge (`arena_connections`,
/// `arena_tcp_connections`) for as long as it lives, however its task
/// ends: a panic, which tokio catches, must not leave the gauge one too
/// high for good.
#[derive(Debug)]
pub(crate) struct Open(prometheus_client::metrics::gauge::Gauge);

impl Open {
    pub(crate) fn new(gauge: &prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Routes one request.
pub(crate) async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    state: Arc<AppState>,
    slots: Arc<ConnSlots>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let mut response = match path.as_str() {
        // GET or HEAD; a WebSocket's opening handshake is a GET (RFC 6455
        // 4.1).
        path if req.method() != Method::GET && (req.method() != Method::HEAD || path == "/ws") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        "/ws" => upgrade(req, peer, &state, slots).await,
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/status.json" => match reader(&req, &state) {
            Reader::Refused => unauthorized(),
            reader => status(&state, reader),
        },
        "/rooms" => rooms(&state, reader(&req, &state)),
        "/status" => respond(
            StatusCode::OK,
            STATUS_PAGE,
            "text/html; charset=utf-8",
            None,
        ),
        "/metrics" => match reader(&req, &state) {
            Reader::Refused => unauthorized(),
            _ => metrics(&state),
        },
        _ => static_file(&path),
    };
    // One request per plain HTTP connection: a keep-alive connection
    // sending a request every few seconds held its slot for good, and a
    // few addresses holding every spare slot that way kept health probes
    // out for as long as they liked. Closed after each answer, no plain
    // connection outlives the header deadline and one answer (and a full
    // server closes one of them for each new connection,
    // `crate::evict`). A page load opens a connection per file, a fraction
    // of a millisecond each on loopback or a LAN. (Not the 101 of an
    // upgrade, whose connection lives on.)
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

/// Serves one TCP connection's HTTP/1.1 requests, with a deadline on reading
/// each request head. Stops gracefully when the server shuts down.
pub(crate) async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    state: Arc<AppState>,
    slots: ConnSlots,
) {
    // Until the upgrade, a client that stops reading is cut at the write
    // deadline instead of holding its slot (see `crate::deadline`).
    let stream = WriteDeadline::new(stream, state.conn.config.write_timeout);
    let io = hyper_util::rt::TokioIo::new(stream);
    let mut shutdown = state.conn.shutdown.clone();
    let header_timeout = state.conn.config.header_read_timeout;
    let slots = Arc::new(slots);
    let service_slots = Arc::clone(&slots);
    let service = hyper::service::service_fn(move |req| {
        handle(req, peer, Arc::clone(&state), Arc::clone(&service_slots))
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(16 * 1024)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                debug!(%peer, error = %e, "http connection ended with an error");
            }
        }
        // Dropping the connection closes it; a WebSocket it upgraded hears
        // of the eviction through the slots it shares.
        () = slots.unproven.evicted() => debug!(%peer, "evicted to make room"),
        () = crate::stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            if let Err(e) = conn.await {
                warn!(%peer, error = %e, "http connection did not shut down cleanly");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_connection_is_uncounted_however_it_ends() {
        let gauge = prometheus_client::metrics::gauge::Gauge::<i64>::default();
        drop(Open::new(&gauge));
        assert_eq!(gauge.get(), 0);
        let unwound = std::panic::catch_unwind(|| {
            let _open = Open::new(&gauge);
            assert_eq!(gauge.get(), 1);
            panic!("a bug in the connection's task");
        });
        assert!(unwound.is_err());
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("a/b.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("x"), "application/octet-stream");
    }

    #[test]
    fn the_demo_page_is_embedded() {
        let resp = static_file("/");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(static_file("/nope.js").status(), StatusCode::NOT_FOUND);
        assert_eq!(
            static_file("/../Cargo.toml").status(),
            StatusCode::NOT_FOUND
        );
    }
}
