//! The transport: a WebSocket client over a tokio `TcpStream`, using
//! fastwebsockets' client handshake, split into a read half and a write half
//! so that one task can block on reading while another writes on time.
//!
//! Only `ws://` is supported: the swarm targets servers on this machine or a
//! test network, where TLS would only measure the bot's own crypto.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{
    FragmentCollectorRead, Role, WebSocket, WebSocketError, WebSocketWrite, handshake,
};
use http_body_util::Empty;
use hyper::Request;
use hyper::Uri;
use hyper::header::{CONNECTION, HOST, UPGRADE};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, Chain, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The read half of a bot's connection, reassembling fragmented messages.
pub type WsReader = FragmentCollectorRead<ReadHalf<TokioIo<Upgraded>>>;
/// The write half of a bot's connection.
pub type WsWriter = WebSocketWrite<WriteHalf<TokioIo<Upgraded>>>;
/// The read half of a direct connection (see [`connect_direct`]): the TCP
/// stream's own read half, behind whatever bytes the HTTP handshake read
/// past its response.
pub type DirectReader = FragmentCollectorRead<Chain<std::io::Cursor<Bytes>, OwnedReadHalf>>;

/// Why a URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// Not a URI at all.
    #[error("invalid URL {url:?}: {source}")]
    Invalid {
        /// The URL given.
        url: String,
        /// What the parser said.
        source: hyper::http::uri::InvalidUri,
    },
    /// A scheme other than `ws`.
    #[error("unsupported scheme in {0:?}: only ws:// is supported")]
    Scheme(String),
    /// No host in the URL.
    #[error("no host in {0:?}")]
    NoHost(String),
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// TCP connect failed (refused, unreachable, out of ports, ...).
    #[error("tcp connect to {addr}: {source}")]
    Tcp {
        /// The address dialled.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The HTTP upgrade failed or was refused.
    #[error("websocket handshake: {0}")]
    Handshake(#[from] WebSocketError),
    /// The handshake request could not be built.
    #[error("handshake request: {0}")]
    Request(#[from] hyper::http::Error),
    /// The whole connect took longer than allowed.
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    /// The upgraded connection is not the TCP stream that was dialled (a
    /// change in the HTTP client would cause it; the handshake itself
    /// succeeded).
    #[error("the upgraded connection is not a TCP stream")]
    NotTcp,
}

impl ConnectError {
    /// A short stable label for the report's failure breakdown: for an
    /// HTTP refusal its status (`http_429`: too many connections from the
    /// address; `http_503`: the server is full; `http_403`: the origin).
    #[must_use]
    pub fn label(&self) -> std::borrow::Cow<'static, str> {
        if let Self::Handshake(WebSocketError::InvalidStatusCode(status)) = self {
            return format!("http_{status}").into();
        }
        match self {
            Self::Tcp { source, .. } => match source.kind() {
                std::io::ErrorKind::ConnectionRefused => "tcp_refused",
                std::io::ErrorKind::AddrNotAvailable | std::io::ErrorKind::AddrInUse => {
                    "tcp_no_local_port"
                }
                _ => "tcp_error",
            },
            Self::Handshake(_) | Self::Request(_) | Self::NotTcp => "handshake",
            Self::Timeout(_) => "connect_timeout",
        }
        .into()
    }
}

/// Where the bots connect: a parsed `ws://host:port/path` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port`, dialled and sent as the `Host` header.
    pub authority: String,
    /// The request target, e.g. `/ws`.
    pub path: String,
}

impl Endpoint {
    /// Parses a `ws://` URL; the port defaults to 80 and the path to `/`.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let uri: Uri = url.parse().map_err(|source| UrlError::Invalid {
            url: url.to_owned(),
            source,
        })?;
        if uri.scheme_str() != Some("ws") {
            return Err(UrlError::Scheme(url.to_owned()));
        }
        let host = uri.host().ok_or_else(|| UrlError::NoHost(url.to_owned()))?;
        let port = uri.port_u16().unwrap_or(80);
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        Ok(Self {
            authority: format!("{host}:{port}"),
            path: if path.is_empty() { "/".into() } else { path },
        })
    }
}

/// Runs hyper's connection driver on the tokio runtime during the handshake.
struct SpawnExecutor;

impl<Fut> hyper::rt::Executor<Fut> for SpawnExecutor
where
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    fn execute(&self, fut: Fut) {
        tokio::spawn(fut);
    }
}

/// Opens a WebSocket to `endpoint` within `timeout` and splits it.
///
/// `TCP_NODELAY` is set: an input is ten bytes, and Nagle's algorithm would
/// hold it back until the previous one is acknowledged, adding up to a
/// delayed-ACK timeout (40 ms on Linux) to the very latency being measured.
pub async fn connect(
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<(WsReader, WsWriter, SocketAddr), ConnectError> {
    let (ws, local) = with_timeout(timeout, connect_inner(endpoint)).await?;
    let (read, write) = ws.split(tokio::io::split);
    Ok((FragmentCollectorRead::new(read), write, local))
}

/// Like [`connect`], but hands back the TCP stream's own halves instead of
/// the HTTP client's upgraded connection split behind a lock, for a caller
/// that reads and writes from one task (see `crate::direct`): every read
/// and write then goes straight to the socket.
///
/// The reader answers nothing by itself (automatic pongs are off), so the
/// caller sees pings and must answer them; it still echoes a close (see
/// fastwebsockets' `read_frame`). The writer is the raw socket: the caller
/// frames and masks what it writes.
pub async fn connect_direct(
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<(DirectReader, OwnedWriteHalf), ConnectError> {
    let (ws, _local) = with_timeout(timeout, connect_inner(endpoint)).await?;
    let upgraded = ws.into_inner().into_inner();
    let parts = upgraded
        .downcast::<TokioIo<TcpStream>>()
        .map_err(|_| ConnectError::NotTcp)?;
    let (read, write) = parts.io.into_inner().into_split();
    // Bytes the HTTP client read past the 101 response belong to the
    // WebSocket stream: they are read first.
    let read = std::io::Cursor::new(parts.read_buf).chain(read);
    // Only the read half is used: the caller writes frames itself.
    let (mut read, _) =
        fastwebsockets::after_handshake_split(read, tokio::io::sink(), Role::Client);
    read.set_max_message_size(shared::codec::MAX_SERVER_MESSAGE);
    read.set_auto_pong(false);
    Ok((FragmentCollectorRead::new(read), write))
}

async fn with_timeout<T>(
    timeout: Duration,
    connecting: impl Future<Output = Result<T, ConnectError>>,
) -> Result<T, ConnectError> {
    tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| ConnectError::Timeout(timeout))?
}

async fn connect_inner(
    endpoint: &Endpoint,
) -> Result<(WebSocket<TokioIo<Upgraded>>, SocketAddr), ConnectError> {
    let tcp_err = |source| ConnectError::Tcp {
        addr: endpoint.authority.clone(),
        source,
    };
    let stream = TcpStream::connect(&endpoint.authority)
        .await
        .map_err(tcp_err)?;
    stream.set_nodelay(true).map_err(tcp_err)?;
    let local = stream.local_addr().map_err(tcp_err)?;
    let request = Request::builder()
        .method("GET")
        .uri(endpoint.path.as_str())
        .header(HOST, endpoint.authority.as_str())
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "upgrade")
        .header("Sec-WebSocket-Key", handshake::generate_key())
        .header("Sec-WebSocket-Version", "13")
        .body(Empty::<Bytes>::new())?;
    let (mut ws, _response) = handshake::client(&SpawnExecutor, request, stream).await?;
    // The codec refuses anything larger anyway; refusing it at the frame
    // layer keeps a broken server from making a bot buffer 64 MiB.
    ws.set_max_message_size(shared::codec::MAX_SERVER_MESSAGE);
    Ok((ws, local))
}

/// Size of the WebSocket frame header for a payload of `len` bytes, with the
/// 4-byte mask clients must add: what the wire carries beyond the payload.
#[must_use]
pub fn frame_header_len(len: usize, masked: bool) -> usize {
    let base = match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    };
    base + if masked { 4 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ws_urls() {
        assert_eq!(
            Endpoint::parse("ws://127.0.0.1:8080/ws").ok(),
            Some(Endpoint {
                authority: "127.0.0.1:8080".into(),
                path: "/ws".into()
            })
        );
        assert_eq!(
            Endpoint::parse("ws://localhost").ok(),
            Some(Endpoint {
                authority: "localhost:80".into(),
                path: "/".into()
            })
        );
        assert!(matches!(
            Endpoint::parse("wss://example.invalid/ws"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            Endpoint::parse("http://127.0.0.1/ws"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            Endpoint::parse("not a url"),
            Err(UrlError::Invalid { .. })
        ));
    }

    #[test]
    fn frame_headers_follow_rfc6455() {
        assert_eq!(frame_header_len(10, true), 6);
        assert_eq!(frame_header_len(125, false), 2);
        assert_eq!(frame_header_len(126, false), 4);
        assert_eq!(frame_header_len(70_000, false), 10);
    }

    #[tokio::test]
    async fn refused_connection_is_a_labelled_error() {
        // Bind then drop a listener to get a port nobody listens on.
        let port = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await;
            let Ok(l) = l else { return };
            l.local_addr().map(|a| a.port()).unwrap_or(1)
        };
        let endpoint = Endpoint {
            authority: format!("127.0.0.1:{port}"),
            path: "/ws".into(),
        };
        let err = connect(&endpoint, Duration::from_secs(5)).await.err();
        assert_eq!(err.map(|e| e.label()).as_deref(), Some("tcp_refused"));
    }

    #[tokio::test]
    async fn non_websocket_server_fails_the_handshake() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(listener) = tokio::net::TcpListener::bind("127.0.0.1:0").await else {
            return;
        };
        let Ok(addr) = listener.local_addr() else {
            return;
        };
        tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let endpoint = Endpoint {
            authority: addr.to_string(),
            path: "/ws".into(),
        };
        let err = connect(&endpoint, Duration::from_secs(5)).await.err();
        assert_eq!(err.map(|e| e.label()).as_deref(), Some("http_404"));
    }
}
