//! HTTP front door: routes, static files, and the WebSocket upgrade.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use include_dir::{Dir, include_dir};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{Instrument, debug, warn};

use crate::connection::{self, ConnContext};
use crate::room::RoomStats;
use crate::stats::StatsSnapshot;

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
    /// Dropped by each WebSocket task when it ends; shutdown waits for all.
    pub(crate) done: tokio::sync::mpsc::Sender<()>,
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
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
        Some(file) => {
            let mut resp = Response::new(Full::new(Bytes::from_static(file.contents())));
            let headers = resp.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            resp
        }
        None => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// What `/status.json` reports.
#[derive(Serialize)]
struct Status {
    tick_hz: u32,
    snapshot_hz: u32,
    max_clients: usize,
    ticks: u64,
    overruns: u64,
    last_tick_us: f64,
    max_tick_us: f64,
    players: u64,
    entities: u64,
    inputs_applied: u64,
    inputs_dropped: u64,
    server: StatsSnapshot,
}

fn status(state: &AppState) -> Response<Body> {
    let room: &RoomStats = &state.conn.room.stats;
    let status = Status {
        tick_hz: state.conn.config.tick_hz,
        snapshot_hz: state.conn.config.snapshot_hz,
        max_clients: state.conn.config.max_clients,
        ticks: room.ticks.load(Relaxed),
        overruns: room.overruns.load(Relaxed),
        last_tick_us: room.last_tick_ns.load(Relaxed) as f64 / 1e3,
        max_tick_us: room.max_tick_ns.load(Relaxed) as f64 / 1e3,
        players: room.players.load(Relaxed),
        entities: room.entities.load(Relaxed),
        inputs_applied: room.inputs_applied.load(Relaxed),
        inputs_dropped: room.inputs_dropped.load(Relaxed),
        server: state.conn.stats.snapshot(),
    };
    match serde_json::to_vec(&status) {
        Ok(json) => {
            let mut resp = Response::new(Full::new(Bytes::from(json)));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "status unavailable\n"),
    }
}

fn upgrade(mut req: Request<Incoming>, peer: SocketAddr, state: &Arc<AppState>) -> Response<Body> {
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return text(StatusCode::UPGRADE_REQUIRED, "websocket upgrade required\n");
    }
    // Refuse before the upgrade: a full server costs one HTTP response.
    let Ok(permit) = Arc::clone(&state.clients).try_acquire_owned() else {
        state.conn.stats.refused_full.fetch_add(1, Relaxed);
        return text(StatusCode::SERVICE_UNAVAILABLE, "server full\n");
    };
    let (response, fut) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(pair) => pair,
        Err(e) => {
            debug!(%peer, error = %e, "bad upgrade request");
            return text(StatusCode::BAD_REQUEST, "bad websocket upgrade request\n");
        }
    };
    let ctx = state.conn.clone();
    let done = state.done.clone();
    tokio::spawn(
        async move {
            let _permit: OwnedSemaphorePermit = permit;
            let _done = done;
            let ws = match tokio::time::timeout(ctx.config.hello_timeout, fut).await {
                Ok(Ok(ws)) => ws,
                Ok(Err(e)) => return debug!(error = %e, "upgrade failed"),
                Err(_) => return debug!("upgrade timed out"),
            };
            ctx.stats.connections.fetch_add(1, Relaxed);
            connection::run(ws, peer, ctx.clone()).await;
            ctx.stats.connections.fetch_sub(1, Relaxed);
        }
        .in_current_span(),
    );
    response.map(|_| Full::new(Bytes::new()))
}

/// Routes one request.
pub(crate) async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    state: Arc<AppState>,
) -> Result<Response<Body>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"));
    }
    let path = req.uri().path().to_owned();
    Ok(match path.as_str() {
        "/ws" => upgrade(req, peer, &state),
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/status.json" => status(&state),
        _ => static_file(&path),
    })
}

/// Serves one TCP connection's HTTP/1.1 requests, with a deadline on reading
/// each request head. Stops gracefully when the server shuts down.
pub(crate) async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    state: Arc<AppState>,
    _permit: OwnedSemaphorePermit,
) {
    let io = hyper_util::rt::TokioIo::new(stream);
    let mut shutdown = state.conn.shutdown.clone();
    let header_timeout = state.conn.config.header_read_timeout;
    let service = hyper::service::service_fn(move |req| handle(req, peer, Arc::clone(&state)));
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
