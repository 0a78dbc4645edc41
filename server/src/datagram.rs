//! The datagram channel (`PROTOCOL.md` section 3.7): a native client's inputs
//! and acks, and its snapshots, as UDP datagrams beside its WebSocket.
//!
//! Over TCP the kernel alone charges 4.6-5.9 µs per client per snapshot on
//! the benchmark machine, a datagram 3.2-4.1 (`BENCHMARKS.md` section 6,
//! "The transport floor"): the server's largest cost is the transport, and this
//! is the cheaper one. The WebSocket stays the connection: the join, the
//! session, pings, the close and any snapshot too large for one datagram
//! go over it, and a client that never asks for datagrams (every browser)
//! sees no difference.
//!
//! **Who may send.** A client asks over its WebSocket
//! ([`ClientMsg::OpenDatagrams`](shared::protocol::ClientMsg)) and is given
//! an id of 8 random bytes and a key of 16. A datagram is used only if it
//! starts with the id of a connection in play, comes from that WebSocket's
//! IP address *and* ends with the tag of the connection's key (8 bytes of
//! HMAC-SHA256, [`DatagramMac`]). The id is no secret, but the key never
//! crosses the network outside the WebSocket (TLS, behind `wss://`), so
//! one who sees the datagrams go by can neither feed a player inputs nor,
//! with the server's datagrams signed the same way, feed the client
//! snapshots; a replayed datagram repeats inputs and acks the server
//! already has, and a replayed snapshot is older than the client's. The
//! server sends snapshots to the address of the newest valid datagram (a
//! NAT may change the port), never to an address that did not send one: it
//! cannot be pointed at a third party. It answers no datagram with one of
//! its own; a snapshot goes out once per tick whatever arrives, so nothing
//! is amplified.
//!
//! **Reading without a wake-up per datagram.** Every player sends a
//! datagram a tick; read as they come, each would wake a thread (the
//! runtime's, from `epoll_wait`: a tenth of the server's time when a
//! tokio task read them). So one thread of its own reads them: it waits on an epoll of its own
//! while none come, and once they flow it reads what arrived every
//! [`DRAIN_PERIOD`] (1 ms) and sleeps between: a thousand wake-ups a
//! second at most, whatever the number of players, for at most a
//! millisecond more on an input's way (the room applies it at its next
//! tick, up to 33 ms away, anyway). Against the same thread reading each
//! datagram as it came, that cost 7-24% less CPU per client in every
//! round measured (`BENCHMARKS.md` section 6, "Over datagrams").
//!
//! **Budgets.** One socket and one receiving thread for the whole server.
//! Datagrams of a connection count against its own rate limit (a second
//! [`RateGuard`] with the WebSocket's rate: a client moves its inputs from
//! one to the other), and a sustained flood closes its WebSocket with
//! `RateLimited`; datagrams with no valid id, from the wrong address or
//! without the key's tag cost a map lookup (and an HMAC) each and are
//! counted, never answered, nor charged to the connection (its id is no
//! secret); the thread reads at most [`MAX_PER_DRAIN`] a millisecond, so a
//! flood of them costs a bounded share of the core. A malformed datagram
//! with the client's tag is the client's fault: its WebSocket is closed
//! with `MalformedMessage`, as a malformed message on the WebSocket would
//! be.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use shared::codec::{self, DatagramError, DatagramMac, DatagramMsg};
use shared::protocol::{
    DATAGRAM_TAG_BYTES, DatagramChannel, DatagramId, DatagramKey, DisconnectReason, InputCmd,
    MAX_CLIENT_DATAGRAM, MAX_SNAPSHOT_DATAGRAM,
};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::config::Config;
use crate::connection::{AckCell, Heard};
use crate::guard::{Admit, RateGuard};
use crate::lock;
use crate::metrics::{DatagramRefusal, Metrics};
use crate::outbox::Outbox;
use crate::room::{self, PlayerHandle};

/// The receive buffer asked of the kernel for the datagram socket: 4 MiB.
/// Every player sends a datagram a tick, and while the server's core is
/// busy with a fan-out they wait in this buffer, each small datagram
/// charged about a kilobyte of it. The kernel's default (208 KiB) held
/// about 200, and at 1,000 players in one room the load test lost inputs
/// (`UdpRcvbufErrors`); 4 MiB holds a tick of several thousand players.
const RECV_BUFFER: usize = 4 << 20;

/// While datagrams flow, the receiving thread reads what arrived this
/// often, and sleeps between.
const DRAIN_PERIOD: Duration = Duration::from_millis(1);

/// Most datagrams read in one period: 1,024, a million a second, thirty
/// times what 1,000 players send. It bounds what a flood (with keys or
/// without) costs the server's core; beyond it the socket's buffer fills
/// and the kernel drops what comes, a volumetric flood being for the
/// network in front to stop.
const MAX_PER_DRAIN: usize = 1024;

/// While none flow, how often the receiving thread looks whether the
/// server is stopping.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// The server's datagram socket and the connections that may use it.
#[derive(Debug)]
pub(crate) struct Datagrams {
    socket: Arc<UdpSocket>,
    port: u16,
    /// A std mutex, held for one lookup, insert or removal: never across an
    /// `.await`. One entry per connection that asked, removed when it ends.
    peers: Mutex<HashMap<DatagramId, Arc<Peer>>>,
    metrics: Arc<Metrics>,
}

/// Where a connection's snapshots go as datagrams, once it has sent one.
/// Shared by the connection's peer entry (which sets it) and its fan-out
/// subscriber (which reads it every snapshot).
#[derive(Debug)]
pub(crate) struct Route {
    socket: Arc<UdpSocket>,
    /// The connection's key and signer, from when it asks for the channel
    /// ([`Datagrams::register`]): its datagrams are checked with it, its
    /// snapshots signed. A connection that never asks (every browser)
    /// never pays for a key.
    key: OnceLock<(DatagramKey, DatagramMac)>,
    /// The address of the newest valid datagram, and when it came.
    to: Mutex<Option<(SocketAddr, Instant)>>,
}

/// How long a route lasts without a valid datagram: 2 s, sixty ticks of a
/// client that sends one a tick. Past it the client's snapshots go over
/// the WebSocket again, so one whose datagrams stopped getting through (a
/// firewall, a network change) falls back without a word, and one that
/// stops sending them on purpose gets its snapshots where it reads.
pub(crate) const ROUTE_IDLE: Duration = Duration::from_secs(2);

impl Route {
    /// The client's datagram address at `now`, if a valid datagram came
    /// from it within [`ROUTE_IDLE`].
    pub(crate) fn to(&self, now: Instant) -> Option<SocketAddr> {
        lock(&self.to)
            .filter(|(_, at)| now.saturating_duration_since(*at) <= ROUTE_IDLE)
            .map(|(to, _)| to)
    }

    /// Whether a snapshot of `len` bytes fits in a datagram with its tag.
    pub(crate) fn fits(len: usize) -> bool {
        len + DATAGRAM_TAG_BYTES <= MAX_SNAPSHOT_DATAGRAM
    }

    /// Signs one snapshot (which [`Route::fits`]) in place, its tag appended
    /// to `body`, and sends it without waiting (the socket is
    /// non-blocking): a full socket buffer is an error, and the snapshot is
    /// skipped like one a busy WebSocket could not take.
    pub(crate) fn send(&self, to: SocketAddr, body: &mut Vec<u8>) -> io::Result<()> {
        debug_assert!(Self::fits(body.len()));
        // Set before any datagram could give the route an address.
        let (_, mac) = self
            .key
            .get()
            .ok_or_else(|| io::Error::other("a route without a key"))?;
        mac.seal_snapshot(body);
        self.socket.send_to(body, to).map(|_| ())
    }
}

/// What the receiving thread needs of one connection in play.
#[derive(Debug)]
struct Peer {
    parts: PeerParts,
    state: Mutex<PeerState>,
}

#[derive(Debug)]
struct PeerState {
    guard: RateGuard,
    /// The newest input sequence number passed to the room: a client
    /// repeats each input in several datagrams, and only the first copy
    /// needs the room's queue.
    last_seq: u32,
}

/// A connection's entry in the map, removed when dropped (the connection
/// ended).
#[derive(Debug)]
pub(crate) struct Registration {
    datagrams: Arc<Datagrams>,
    id: DatagramId,
    key: DatagramKey,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.datagrams.peers).remove(&self.id);
    }
}

impl Registration {
    /// What the client is told.
    pub(crate) fn channel(&self) -> DatagramChannel {
        DatagramChannel {
            port: self.datagrams.port,
            id: self.id,
            key: self.key,
        }
    }
}

/// What the receiving thread needs of a connection, given at
/// [`Datagrams::register`].
#[derive(Debug)]
pub(crate) struct PeerParts {
    /// The WebSocket's IP address: the only source accepted.
    pub(crate) ip: IpAddr,
    pub(crate) player: PlayerHandle,
    pub(crate) route: Arc<Route>,
    /// Shared with the connection's reader: acks arrive by both ways.
    pub(crate) acks: Arc<Mutex<AckCell>>,
    pub(crate) heard: Arc<Heard>,
    pub(crate) inputs: mpsc::Sender<(PlayerHandle, InputCmd)>,
    /// To close the connection (malformed datagrams, a flood).
    pub(crate) out: Arc<Outbox>,
}

impl Datagrams {
    /// Binds the datagram socket on `ip` (the HTTP listener's address) at
    /// `port` (0: any free port; the clients are told which).
    pub(crate) fn bind(ip: IpAddr, port: u16, metrics: Arc<Metrics>) -> io::Result<Self> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, port))?;
        let sock = socket2::SockRef::from(&socket);
        // Best effort: the kernel caps it at `net.core.rmem_max`.
        let _ = sock.set_recv_buffer_size(RECV_BUFFER);
        let buffer = sock.recv_buffer_size().unwrap_or(0);
        if buffer < RECV_BUFFER {
            warn!(
                asked = RECV_BUFFER,
                got = buffer,
                "the datagram socket's receive buffer is smaller than asked: with \
                 hundreds of players some of their inputs may be lost while the \
                 server is busy; raise net.core.rmem_max"
            );
        }
        let port = socket.local_addr()?.port();
        Ok(Self {
            socket: Arc::new(socket),
            port,
            peers: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// The port clients are told to send to.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// A route for a new connection: no key and no address until it asks
    /// for the channel and then sends a datagram.
    pub(crate) fn route(&self) -> Arc<Route> {
        Arc::new(Route {
            socket: Arc::clone(&self.socket),
            key: OnceLock::new(),
            to: Mutex::new(None),
        })
    }

    /// Gives a connection an id, and its route a key. Its datagrams are
    /// read from now on, until the registration is dropped.
    pub(crate) fn register(
        self: &Arc<Self>,
        mut parts: PeerParts,
        config: &Config,
    ) -> Registration {
        let (key, _) = *parts.route.key.get_or_init(|| {
            let mut key = DatagramKey::default();
            crate::fill_random(&mut key.0, "datagram key");
            (key, DatagramMac::new(&key))
        });
        let (rate, burst) = config.message_rate();
        let now = Instant::now();
        parts.ip = parts.ip.to_canonical();
        let peer = Arc::new(Peer {
            parts,
            state: Mutex::new(PeerState {
                guard: RateGuard::new(rate, burst, config.rate_limit_kick_secs, now),
                last_seq: 0,
            }),
        });
        let mut peers = lock(&self.peers);
        loop {
            let mut id = DatagramId::default();
            crate::fill_random(&mut id.0, "datagram id");
            if let Entry::Vacant(slot) = peers.entry(id) {
                slot.insert(peer);
                return Registration {
                    datagrams: Arc::clone(self),
                    id,
                    key,
                };
            }
        }
    }

    /// Reads datagrams until `stop` says so, or its sender is gone: the
    /// body of the server's one receiving thread (see the module docs).
    pub(crate) fn run(&self, stop: &watch::Receiver<bool>) {
        let mut poll = match Poll::new() {
            Ok(poll) => poll,
            Err(e) => return warn!(error = %e, "no epoll for the datagram socket; datagrams stop"),
        };
        let fd = std::os::fd::AsRawFd::as_raw_fd(&*self.socket);
        let mut source = mio::unix::SourceFd(&fd);
        if let Err(e) = poll
            .registry()
            .register(&mut source, Token(0), Interest::READABLE)
        {
            return warn!(error = %e, "cannot watch the datagram socket; datagrams stop");
        }
        let mut events = Events::with_capacity(4);
        let mut buf = [0u8; MAX_CLIENT_DATAGRAM + 1];
        let stopping = || stop.has_changed().is_err() || *stop.borrow();
        while !stopping() {
            // Idle: sleep until a datagram comes (the registration is
            // edge-triggered; one that came since the last read is an
            // event already).
            if let Err(e) = poll.poll(&mut events, Some(STOP_CHECK))
                && e.kind() != io::ErrorKind::Interrupted
            {
                return warn!(error = %e, "waiting on the datagram socket failed; datagrams stop");
            }
            // Flowing: read what came, a period at a time, until a period
            // brings nothing.
            while self.drain(&mut buf) > 0 && !stopping() {
                std::thread::sleep(DRAIN_PERIOD);
            }
        }
    }

    /// Reads and handles the datagrams waiting, at most
    /// [`MAX_PER_DRAIN`]; returns how many.
    fn drain(&self, buf: &mut [u8]) -> usize {
        let mut read = 0;
        while read < MAX_PER_DRAIN {
            match self.socket.recv_from(buf) {
                Ok((len, from)) => {
                    read += 1;
                    self.receive(&buf[..len], from, Instant::now());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // An ICMP error for an earlier send (a client's port
                // closed) surfaces here on some systems: not fatal.
                Err(e) => {
                    debug!(error = %e, "datagram receive failed");
                    return read.max(1);
                }
            }
        }
        read
    }

    /// Handles one datagram from `from`.
    fn receive(&self, bytes: &[u8], from: SocketAddr, now: Instant) {
        let metrics = &self.metrics;
        let Some(id) = codec::datagram_id(bytes) else {
            return metrics.count_datagram_refusal(DatagramRefusal::UnknownId);
        };
        let Some(peer) = lock(&self.peers).get(&id).cloned() else {
            return metrics.count_datagram_refusal(DatagramRefusal::UnknownId);
        };
        let Peer { parts: peer, state } = &*peer;
        if from.ip().to_canonical() != peer.ip {
            return metrics.count_datagram_refusal(DatagramRefusal::WrongAddress);
        }
        // The tag before anything else the datagram could cost its
        // connection: the id is no secret.
        let Some((_, mac)) = peer.route.key.get() else {
            return metrics.count_datagram_refusal(DatagramRefusal::BadTag);
        };
        let datagram = match codec::decode_datagram(bytes, mac) {
            Err(DatagramError::Unauthentic) => {
                return metrics.count_datagram_refusal(DatagramRefusal::BadTag);
            }
            decoded => decoded,
        };
        let mut state = lock(state);
        match state.guard.admit(now) {
            Admit::Pass => {}
            Admit::Drop => return metrics.count_datagram_refusal(DatagramRefusal::RateLimited),
            Admit::Kick => {
                metrics.count_datagram_refusal(DatagramRefusal::RateLimited);
                return peer.out.request_close(DisconnectReason::RateLimited);
            }
        }
        let datagram = match datagram {
            Ok(datagram) => datagram,
            Err(_) => {
                metrics.count_datagram_refusal(DatagramRefusal::Malformed);
                return peer.out.request_close(DisconnectReason::MalformedMessage);
            }
        };
        metrics.datagrams_received.inc();
        metrics.bytes_in.inc_by(bytes.len() as u64);
        peer.heard.hear(now);
        *lock(&peer.route.to) = Some((from, now));
        let mut acks = lock(&peer.acks);
        for msg in datagram.messages() {
            match *msg {
                DatagramMsg::Input(cmd) => {
                    acks.offer(cmd.ack);
                    // Each input once: the copies repeated for loss are
                    // older than the newest passed on.
                    if cmd.seq <= state.last_seq {
                        continue;
                    }
                    state.last_seq = cmd.seq;
                    room::pass_input(&peer.inputs, peer.player, cmd, metrics);
                }
                DatagramMsg::Ack(tick) => acks.offer(tick),
            }
        }
    }
}
