//! The transport: a WebSocket client over a tokio `TcpStream`, using
//! fastwebsockets' client handshake, split into a read half and a write half
//! so that one task can block on reading while another writes on time.
//!
//! `ws://` and `wss://`. The second is for a deployment behind a TLS proxy
//! (the server itself speaks plain HTTP): the bots trust the operating
//! system's certificate store and any certificates given with `--ca-file`.
//! On this machine or a test network, `ws://` measures the server without
//! the bots' own cryptography.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, RootCertStore};

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
    /// A scheme other than `ws` and `wss`.
    #[error("unsupported scheme in {0:?}: ws:// or wss://")]
    Scheme(String),
    /// No host in the URL.
    #[error("no host in {0:?}")]
    NoHost(String),
    /// The host of a `wss://` URL is not a name a certificate can carry.
    #[error("{0:?} is not a host name a TLS certificate can carry")]
    TlsName(String),
    /// Certificates to trust were given for a `ws://` URL.
    #[error("a CA file applies to wss:// URLs only, not {0:?}")]
    CaFileWithoutTls(String),
    /// The CA file cannot be read, or holds no PEM certificate.
    #[error("CA file {path:?}: {why}")]
    CaFile {
        /// The file given.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// The TLS library refused its own safe defaults (not expected).
    #[error("tls setup: {0}")]
    TlsSetup(String),
    /// No certificate to trust at all: the system has none, and no CA
    /// file was given.
    #[error("no trusted certificates: the system store is empty and no CA file was given")]
    NoRoots,
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TLS handshake of a `wss://` connection failed (a certificate not
    /// trusted or not for this host, no protocol in common).
    #[error("tls handshake with {addr}: {source}")]
    Tls {
        /// The address dialled.
        addr: String,
        /// The I/O error wrapping rustls's.
        source: std::io::Error,
    },
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
            // A certificate or protocol refused; a connection reset in the
            // middle of the handshake is the network's, as for TCP.
            Self::Tls { source, .. } => {
                if source
                    .get_ref()
                    .is_some_and(|e| e.downcast_ref::<rustls::Error>().is_some())
                {
                    "tls"
                } else {
                    "tcp_error"
                }
            }
            Self::Handshake(_) | Self::Request(_) | Self::NotTcp => "handshake",
            Self::Timeout(_) => "connect_timeout",
        }
        .into()
    }
}

/// Where the bots connect: a parsed `ws://` or `wss://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port`, dialled and sent as the `Host` header.
    pub authority: String,
    /// The request target, e.g. `/ws`.
    pub path: String,
    /// For `wss://`: the certificate's name to check and whom to trust.
    pub tls: Option<Tls>,
}

/// How a `wss://` endpoint's certificate is checked: the name it must carry
/// (the URL's host) and the certificates trusted to vouch for it.
#[derive(Clone)]
pub struct Tls {
    name: ServerName<'static>,
    connector: TlsConnector,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Two endpoints' TLS settings are the same if they check the same name
/// against the same configuration.
impl PartialEq for Tls {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(self.connector.config(), other.connector.config())
    }
}

impl Eq for Tls {}

impl Endpoint {
    /// Parses a `ws://` or `wss://` URL; the port defaults to 80 or 443 and
    /// the path to `/`. A `wss://` endpoint trusts the system's certificate
    /// store.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        Self::parse_trusting(url, None)
    }

    /// Like [`Endpoint::parse`], and a `wss://` endpoint also trusts the PEM
    /// certificates in `ca_file` (a private CA, or a self-signed
    /// certificate).
    pub fn parse_trusting(url: &str, ca_file: Option<&Path>) -> Result<Self, UrlError> {
        let uri: Uri = url.parse().map_err(|source| UrlError::Invalid {
            url: url.to_owned(),
            source,
        })?;
        let secure = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => return Err(UrlError::Scheme(url.to_owned())),
        };
        let host = uri.host().ok_or_else(|| UrlError::NoHost(url.to_owned()))?;
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        let tls = match (secure, ca_file) {
            (false, None) => None,
            (false, Some(_)) => return Err(UrlError::CaFileWithoutTls(url.to_owned())),
            (true, ca_file) => Some(Tls::for_host(host, ca_file)?),
        };
        Ok(Self {
            authority: format!("{host}:{port}"),
            path: if path.is_empty() { "/".into() } else { path },
            tls,
        })
    }

    /// The `Host` header: the authority, without the scheme's default port
    /// (as browsers send it: a proxy that routes by exact host may not
    /// know `example.com:443`).
    #[must_use]
    pub fn host_header(&self) -> &str {
        let default = if self.tls.is_some() { ":443" } else { ":80" };
        self.authority
            .strip_suffix(default)
            .unwrap_or(&self.authority)
    }
}

impl Tls {
    /// The settings for a server named `host` (a DNS name, or an IP
    /// address in brackets or not), trusting the system store and `ca_file`.
    fn for_host(host: &str, ca_file: Option<&Path>) -> Result<Self, UrlError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_owned())
            .map_err(|_| UrlError::TlsName(host.to_owned()))?;
        let mut roots = RootCertStore::empty();
        // Unreadable entries of the store are skipped, as curl does; an
        // empty store is refused below unless a CA file fills it.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if let Some(path) = ca_file {
            let ca_error = |why: String| UrlError::CaFile {
                path: path.to_owned(),
                why,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| ca_error(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ca_error(e.to_string()))?;
            if certs.is_empty() {
                return Err(ca_error("no PEM certificate in it".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
            }
        }
        if roots.is_empty() {
            return Err(UrlError::NoRoots);
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| UrlError::TlsSetup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        // The WebSocket handshake is HTTP/1.1; a proxy that also speaks
        // HTTP/2 must not pick that.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            name,
            connector: TlsConnector::from(Arc::new(config)),
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
    if endpoint.tls.is_some() {
        // The direct path writes to the TCP socket itself.
        return Err(ConnectError::NotTcp);
    }
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
    let request = handshake_request(endpoint)?;
    let (mut ws, _response) = match &endpoint.tls {
        None => handshake::client(&SpawnExecutor, request, stream).await?,
        Some(tls) => {
            let stream = tls
                .connector
                .connect(tls.name.clone(), stream)
                .await
                .map_err(|source| ConnectError::Tls {
                    addr: endpoint.authority.clone(),
                    source,
                })?;
            handshake::client(&SpawnExecutor, request, stream).await?
        }
    };
    // The codec refuses anything larger anyway; refusing it at the frame
    // layer keeps a broken server from making a bot buffer 64 MiB.
    ws.set_max_message_size(shared::codec::MAX_SERVER_MESSAGE);
    Ok((ws, local))
}

/// The HTTP request that asks `endpoint` for a WebSocket.
fn handshake_request(endpoint: &Endpoint) -> Result<Request<Empty<Bytes>>, ConnectError> {
    let request = Request::builder()
        .method("GET")
        .uri(endpoint.path.as_str())
        .header(HOST, endpoint.host_header())
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "upgrade")
        .header("Sec-WebSocket-Key", handshake::generate_key())
        .header("Sec-WebSocket-Version", "13")
        .body(Empty::<Bytes>::new())?;
    Ok(request)
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
                path: "/ws".into(),
                tls: None,
            })
        );
        assert_eq!(
            Endpoint::parse("ws://localhost")
                .map(|e| e.host_header().to_owned())
                .ok(),
            Some("localhost".to_owned())
        );
        assert_eq!(
            Endpoint::parse("ws://localhost").ok(),
            Some(Endpoint {
                authority: "localhost:80".into(),
                path: "/".into(),
                tls: None,
            })
        );
        assert!(matches!(
            Endpoint::parse("http://127.0.0.1/ws"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            Endpoint::parse("not a url"),
            Err(UrlError::Invalid { .. })
        ));
    }

    /// A PEM file of a self-signed certificate for `127.0.0.1`, removed
    /// when dropped.
    struct CaFile(PathBuf);

    impl CaFile {
        fn new(contents: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "bots-ca-{}-{}.pem",
                std::process::id(),
                fastrand::u64(..)
            ));
            std::fs::write(&path, contents).expect("write the CA file");
            Self(path)
        }

        fn self_signed() -> Self {
            let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
                .expect("a self-signed certificate");
            Self::new(&key.cert.pem())
        }
    }

    impl Drop for CaFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn parses_wss_urls_with_the_certificates_to_trust() {
        let ca = CaFile::self_signed();
        let endpoint = Endpoint::parse_trusting("wss://127.0.0.1/ws", Some(&ca.0));
        let endpoint = endpoint.expect("a wss:// endpoint");
        assert_eq!(endpoint.authority, "127.0.0.1:443");
        assert_eq!(endpoint.host_header(), "127.0.0.1");
        assert_eq!(endpoint.path, "/ws");
        assert!(endpoint.tls.is_some());
        let v6 = Endpoint::parse_trusting("wss://[::1]:8443/ws", Some(&ca.0));
        let v6 = v6.expect("an IPv6 wss:// endpoint");
        assert_eq!(v6.authority, "[::1]:8443");
        assert_eq!(v6.host_header(), "[::1]:8443");
        assert_eq!(
            v6.tls.map(|t| t.name),
            Some(ServerName::IpAddress(
                std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST).into()
            ))
        );
        assert!(matches!(
            Endpoint::parse_trusting("ws://127.0.0.1/ws", Some(&ca.0)),
            Err(UrlError::CaFileWithoutTls(_))
        ));
        let missing = ca.0.with_extension("missing");
        assert!(matches!(
            Endpoint::parse_trusting("wss://127.0.0.1/ws", Some(&missing)),
            Err(UrlError::CaFile { .. })
        ));
        let empty = CaFile::new("not a certificate\n");
        assert!(matches!(
            Endpoint::parse_trusting("wss://127.0.0.1/ws", Some(&empty.0)),
            Err(UrlError::CaFile { .. })
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
            tls: None,
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
            tls: None,
        };
        let err = connect(&endpoint, Duration::from_secs(5)).await.err();
        assert_eq!(err.map(|e| e.label()).as_deref(), Some("http_404"));
    }
}
