//! The room's fan-out: after every published tick, each client's delta is
//! encoded (once per distinct baseline, shared) and written to its socket
//! by a few shard tasks, without waking one task per client.
//!
//! A shard serves up to [`SHARD_CLIENTS`] clients of one room: it wakes once
//! per published tick, and for each client picks the baseline from the
//! client's newest ack, writes the frame with a non-blocking write
//! ([`Outbox::offer`]) and goes on. A client whose socket did not take the
//! whole frame is finished by its connection's writer task under the write
//! timeout, and skipped by the shard until then (skip to newest: the next
//! snapshot supersedes the missed one). Shards of one room run in parallel
//! on the runtime's workers.
//!
//! Waking one writer task per client per tick was two thirds of the
//! server's user-space time at 1,000 clients (BENCHMARKS.md section 7).

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fastwebsockets::OpCode;
use shared::protocol::DisconnectReason;
use shared::snapshot::{self, SnapshotMsg};
use shared::{Tick, codec};
use tokio::sync::watch;

use crate::config::Config;
use crate::datagram::Route;
use crate::lock;
use crate::metrics::Metrics;
use crate::outbox::{Offer, Outbox, put_frame, put_head};
use crate::room::{self, NO_ACK, PlayerHandle, Published};

/// Clients per shard task: enough that a tick costs a handful of task
/// wake-ups, few enough that a room's clients spread over every worker.
pub const SHARD_CLIENTS: usize = 32;

/// A client without a usable baseline gets one full snapshot, then nothing
/// until it acknowledges it (or this long passes): sending a full snapshot
/// every tick to a client that is behind would bury it deeper.
const FULL_SNAPSHOT_RESEND: Duration = Duration::from_secs(1);

/// A room's fan-out: its shards, started as clients arrive.
#[derive(Debug)]
pub(crate) struct Fanout {
    snapshots: watch::Receiver<Arc<Published>>,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    /// A std mutex, held to pick a shard.
    shards: Mutex<Vec<Arc<Shard>>>,
}

/// What a shard's task shares with the connections that join it.
#[derive(Debug, Default)]
struct Shard {
    /// Clients handed over since the shard's last tick, and whether the
    /// shard's task ended (its room stopped).
    inbox: Mutex<Inbox>,
}

#[derive(Debug, Default)]
struct Inbox {
    arrivals: Vec<Subscriber>,
    /// Clients served plus arrivals.
    members: usize,
    ended: bool,
}

impl Fanout {
    pub(crate) fn new(
        snapshots: watch::Receiver<Arc<Published>>,
        config: Arc<Config>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            snapshots,
            config,
            metrics,
            shards: Mutex::new(Vec::new()),
        }
    }

    /// Hands a seated client to a shard with room, starting one if none has.
    /// Its snapshots start with the next published tick.
    pub(crate) fn subscribe(&self, client: Subscriber) {
        let mut shards = lock(&self.shards);
        for shard in shards.iter() {
            let mut inbox = lock(&shard.inbox);
            if !inbox.ended && inbox.members < SHARD_CLIENTS {
                inbox.members += 1;
                inbox.arrivals.push(client);
                return;
            }
        }
        shards.retain(|shard| !lock(&shard.inbox).ended);
        let shard = Arc::new(Shard::default());
        {
            let mut inbox = lock(&shard.inbox);
            inbox.members = 1;
            inbox.arrivals.push(client);
        }
        shards.push(Arc::clone(&shard));
        tokio::spawn(run_shard(
            shard,
            self.snapshots.clone(),
            Arc::clone(&self.config),
            Arc::clone(&self.metrics),
        ));
    }
}

/// Per-shard buffers, reused for every client of every tick.
#[derive(Default)]
struct Scratch {
    /// A delta no other client has needed yet.
    delta: SnapshotMsg,
    /// The frame's body: the shared delta with the client's input ack.
    body: Vec<u8>,
    /// A ping frame when one is due, then the snapshot frame's header.
    head: Vec<u8>,
}

async fn run_shard(
    shard: Arc<Shard>,
    mut snapshots: watch::Receiver<Arc<Published>>,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
) {
    let mut served = Served {
        shard,
        clients: Vec::with_capacity(SHARD_CLIENTS),
    };
    let mut scratch = Scratch::default();
    // An error: the room stopped. `served` ends the shard as it goes.
    while snapshots.changed().await.is_ok() {
        // The fault tests' `fanout-shard` (the `failpoints` feature): a bug
        // in a shard's task.
        #[cfg(feature = "failpoints")]
        fail::fail_point!("fanout-shard");
        let clients = &mut served.clients;
        clients.append(&mut lock(&served.shard.inbox).arrivals);
        let published = Arc::clone(&snapshots.borrow_and_update());
        let now = Instant::now();
        let before = clients.len();
        clients.retain_mut(|client| {
            client.on_publish(&published, now, &mut scratch, &config, &metrics)
        });
        if clients.len() < before {
            lock(&served.shard.inbox).members -= before - clients.len();
        }
    }
}

/// A shard's clients, as its task serves them. However the task ends (its
/// room stopped, or a panic), dropping this marks the shard ended, so no
/// client is handed to it any more, and closes every client it had or was
/// about to get: none is left with a connection that no one serves (the
/// shard also runs their idle and ack timeouts).
struct Served {
    shard: Arc<Shard>,
    clients: Vec<Subscriber>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let mut inbox = lock(&self.shard.inbox);
        inbox.ended = true;
        self.clients.append(&mut inbox.arrivals);
        drop(inbox);
        // Its room stopped with players in it, or this task panicked: a
        // fault of the room's, not the server's. (A room stops with players
        // in it for a shutdown too, but then each connection's writer sees
        // the shutdown first and says so: `connection::write_loop`.)
        for client in &self.clients {
            client.out.request_close(DisconnectReason::RoomClosed);
        }
    }
}

/// One seated client, as its shard serves it.
#[derive(Debug)]
pub(crate) struct Subscriber {
    out: Arc<Outbox>,
    player: PlayerHandle,
    /// The newest tick the client acknowledged (its reader stores it).
    acked: Arc<AtomicU64>,
    /// When the reader last heard from the client.
    heard: Arc<crate::connection::Heard>,
    /// Its datagram route, when the server offers datagrams: snapshots
    /// that fit in a datagram ([`Route::fits`]) go there while the client
    /// sends datagrams, the rest (and pings) over the WebSocket.
    route: Option<Arc<Route>>,
    view: ClientView,
    next_ping: Instant,
    /// The last ack value seen, and when it changed.
    last_ack: (u64, Instant),
    last_sent: Option<Tick>,
}

impl Subscriber {
    pub(crate) fn new(
        out: Arc<Outbox>,
        player: PlayerHandle,
        acked: Arc<AtomicU64>,
        heard: Arc<crate::connection::Heard>,
        baseline: Option<Arc<Published>>,
        joined: Tick,
        config: &Config,
    ) -> Self {
        let now = Instant::now();
        let last_baseline = baseline
            .as_ref()
            .map_or(NO_ACK, |p| u64::from(p.state.tick.0));
        let mut history = VecDeque::with_capacity(config.snapshot_history);
        history.extend(baseline);
        Self {
            out,
            player,
            acked,
            heard,
            route: None,
            view: ClientView {
                history,
                full_sent: None,
                last_baseline,
                joined,
            },
            next_ping: now + config.ping_interval,
            last_ack: (NO_ACK, now),
            last_sent: None,
        }
    }

    /// Sends this client's snapshots that fit in a datagram by `route`
    /// while the client sends datagrams.
    pub(crate) fn with_route(mut self, route: Option<Arc<Route>>) -> Self {
        self.route = route;
        self
    }

    /// Sends this client the published tick, as a delta against its newest
    /// acknowledged snapshot. Returns whether the shard keeps serving it.
    fn on_publish(
        &mut self,
        published: &Arc<Published>,
        now: Instant,
        scratch: &mut Scratch,
        config: &Config,
        metrics: &Metrics,
    ) -> bool {
        if self.heard.silence(now) > config.idle_timeout {
            self.out.request_close(DisconnectReason::IdleTimeout);
            return false;
        }
        let tick = published.state.tick;
        if tick.since(self.view.joined) <= 0 {
            // Published before the tick that seated this player: it would
            // show a world without them.
            return true;
        }
        let ack = self.acked.load(Relaxed);
        if ack != self.last_ack.0 {
            self.last_ack = (ack, now);
        } else {
            let stalled = now.saturating_duration_since(self.last_ack.1);
            if stalled > config.ack_timeout {
                // Too slow: heard from since its acks stopped (inputs,
                // pings, a browser's pongs while its page is frozen), yet
                // acknowledging nothing. Heard from not at all since: gone
                // (its network, its process), which is idle. Both were
                // `TooSlow`, and with the defaults (10 s against the idle
                // timeout's 15 s) every player who vanished was counted as
                // a slow client, whose alert the README recommends.
                let reason = if self.heard.silence(now) < stalled {
                    DisconnectReason::TooSlow
                } else {
                    DisconnectReason::IdleTimeout
                };
                self.out.request_close(reason);
                return false;
            }
        }
        let baseline = self.view.baseline(ack).cloned();
        if baseline.is_none()
            && self
                .view
                .full_sent
                .is_some_and(|at| now.saturating_duration_since(at) < FULL_SNAPSHOT_RESEND)
        {
            // Skipped: counted with the rest at the next snapshot written
            // (`last_sent`), not here as well.
            return true;
        }
        // The route and where it leads, while the client sends datagrams.
        let datagram_to = self
            .route
            .as_ref()
            .and_then(|route| route.to(now).map(|to| (route, to)));
        match self.out.precheck() {
            Offer::Closed => return false,
            // Still writing an earlier frame: skipped before the encode,
            // which it would waste (counted at the next snapshot written),
            // unless the snapshot may go by datagram.
            Offer::Busy if datagram_to.is_none() => return true,
            Offer::Busy | Offer::Sent => {}
        }
        let started = Instant::now();
        let delta = &mut scratch.delta;
        let base_tick = baseline.as_ref().map(|p| p.state.tick);
        // The baseline's age in snapshots, for the shared deltas and the
        // metrics.
        let base_age = base_tick.map(|base| config.snapshots_between(base, tick));
        let recent = base_age.is_some_and(|age| age <= room::RECENT_SNAPSHOTS);
        let (against, shared) = published.shared_delta(base_tick, recent, |against| {
            snapshot::diff_into_with_checksum(
                baseline
                    .as_ref()
                    .filter(|_| against.is_some())
                    .map(|p| &p.state),
                &published.state,
                published.checksum,
                0,
                delta,
            );
            codec::SharedSnapshot::new(delta)
        });
        // `against` is `None` when the tick's shared deltas for older
        // baselines were all taken by others: this client gets the full
        // snapshot.
        shared.write_for(published.input_ack(self.player), &mut scratch.body);
        metrics
            .encode_seconds
            .observe(started.elapsed().as_secs_f64());
        scratch.head.clear();
        let ping = now >= self.next_ping;
        if ping {
            put_frame(&mut scratch.head, OpCode::Ping, &[]);
        }
        let datagram = datagram_to.filter(|_| Route::fits(scratch.body.len()));
        if let Some((route, to)) = datagram {
            // The ping still goes over the WebSocket: it keeps the
            // connection's own liveness, which the datagrams do not prove.
            if ping && self.out.offer(&[IoSlice::new(&scratch.head)]) == Offer::Sent {
                self.next_ping = now + config.ping_interval;
            }
            if route.send(to, &mut scratch.body).is_err() {
                metrics.datagram_send_failures.inc();
                return true;
            }
            metrics.datagram_snapshots.inc();
        } else {
            let mut head = [0; 10];
            let len = put_head(&mut head, OpCode::Binary, &scratch.body);
            scratch.head.extend_from_slice(&head[..len]);
            let frames = [IoSlice::new(&scratch.head), IoSlice::new(&scratch.body)];
            match self.out.offer(&frames) {
                Offer::Closed => return false,
                // The socket has not taken the last frame yet: skip this one.
                Offer::Busy => return true,
                Offer::Sent => {}
            }
            if ping {
                self.next_ping = now + config.ping_interval;
            }
        }
        // Snapshots published between the last one written and this one
        // were skipped for this client.
        let skipped = self.last_sent.map_or(0, |prev| {
            config.snapshots_between(prev, tick).saturating_sub(1)
        });
        metrics.snapshot_written(scratch.body.len() as u64, skipped);
        self.last_sent = Some(tick);
        let history = &mut self.view.history;
        match against.zip(base_age) {
            Some((base, age)) => {
                self.view.full_sent = None;
                // Baselines older than the one the client acknowledged are
                // never needed again (acks only move forward).
                metrics.observe_baseline_age(tick.since(base), age);
                while history.front().is_some_and(|p| p.state.tick != base) {
                    history.pop_front();
                }
            }
            None => {
                self.view.full_sent = Some(now);
                metrics.snapshots_full.inc();
                metrics.observe_baseline_age(0, 0);
            }
        }
        if history.len() == config.snapshot_history {
            history.pop_front();
        }
        history.push_back(Arc::clone(published));
        true
    }
}

/// What the fan-out knows about what one client holds.
#[derive(Debug)]
struct ClientView {
    /// Snapshots this client may hold, oldest first: the candidates for its
    /// next baseline. Shared with every other client (Arc), so the cost per
    /// client is a pointer each.
    history: VecDeque<Arc<Published>>,
    /// When the last full snapshot went out, while none has been acked since.
    full_sent: Option<Instant>,
    /// The baseline of the last delta sent. An ack of a tick never sent to
    /// this connection (the welcome's tick before the first snapshot, or
    /// after a resume a snapshot of the previous connection newer than the
    /// last ack it read) names no baseline; the client still holds this one.
    last_baseline: u64,
    /// The welcome's tick. No snapshot carries it, so a client acknowledging
    /// it says it holds nothing (it has not received a snapshot yet, or it
    /// resumed without its states, like a reloaded page).
    joined: Tick,
}

impl ClientView {
    /// The baseline of the next delta for a client whose newest ack is
    /// `ack`: that snapshot if this client was sent it, else the last
    /// baseline used (which the client still holds), else none (a full
    /// snapshot).
    fn baseline(&mut self, ack: u64) -> Option<&Arc<Published>> {
        if ack == u64::from(self.joined.0) {
            self.last_baseline = NO_ACK;
            return None;
        }
        if ack != self.last_baseline && room::acked_snapshot(&self.history, ack).is_some() {
            self.last_baseline = ack;
        }
        room::acked_snapshot(&self.history, self.last_baseline)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use shared::protocol::ServerMsg;

    use super::*;
    use crate::alloc_count;
    use crate::connection::Heard;
    use crate::game::{World, WorldConfig};

    /// A world of `npcs` NPCs and nothing else.
    fn world_of_npcs(npcs: usize) -> World {
        let mut world = World::new(WorldConfig::default());
        for _ in 0..npcs {
            world.spawn_npc();
        }
        world
    }

    /// `n` subscribers on real loopback sockets, seated at the world's
    /// tick, with the ack each acknowledges through and the tasks that read
    /// everything written to them (between ticks), as players do.
    async fn players(
        n: usize,
        world: &World,
        config: &Config,
    ) -> (
        Vec<Subscriber>,
        Vec<Arc<AtomicU64>>,
        Vec<tokio::task::JoinHandle<()>>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let (mut clients, mut acks, mut drains) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let mut far = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (near, _) = listener.accept().await.expect("accept");
            let (_, write) = near.into_split();
            drains.push(tokio::spawn(async move {
                let mut buf = vec![0; 1 << 16];
                while let Ok(1..) = far.read(&mut buf).await {}
            }));
            let acked = Arc::new(AtomicU64::new(NO_ACK));
            clients.push(Subscriber::new(
                Arc::new(Outbox::new(write)),
                PlayerHandle::for_test(i as u32),
                Arc::clone(&acked),
                Arc::new(Heard::new()),
                None,
                world.tick(),
                config,
            ));
            acks.push(acked);
        }
        (clients, acks, drains)
    }

    /// A shard's task that ends, here by a panic, leaves no client behind:
    /// those it served and those handed to it since its last tick are told
    /// to close, and no one is handed to it any more.
    #[tokio::test]
    async fn a_shard_that_panics_closes_its_clients_and_takes_no_more() {
        let config = Config::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        /// A subscriber on a real socket (its far end returned, to keep
        /// open), and its outbox.
        async fn subscriber(
            listener: &tokio::net::TcpListener,
            config: &Config,
            i: u32,
        ) -> (Subscriber, Arc<Outbox>, tokio::net::TcpStream) {
            let addr = listener.local_addr().expect("address");
            let far = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (near, _) = listener.accept().await.expect("accept");
            let (_, write) = near.into_split();
            let out = Arc::new(Outbox::new(write));
            let client = Subscriber::new(
                Arc::clone(&out),
                PlayerHandle::for_test(i),
                Arc::new(AtomicU64::new(NO_ACK)),
                Arc::new(Heard::new()),
                None,
                shared::Tick(0),
                config,
            );
            (client, out, far)
        }
        let (served_client, served_out, _far0) = subscriber(&listener, &config, 0).await;
        let (arriving_client, arriving_out, _far1) = subscriber(&listener, &config, 1).await;
        let shard = Arc::new(Shard::default());
        lock(&shard.inbox).arrivals.push(arriving_client);
        let served = Served {
            shard: Arc::clone(&shard),
            clients: vec![served_client],
        };
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _served = served;
            panic!("a bug in the fan-out");
        }));
        assert!(unwound.is_err());
        assert!(lock(&shard.inbox).ended, "the shard still takes clients");
        for out in [served_out, arriving_out] {
            assert_eq!(out.take_close_request(), Some(DisconnectReason::RoomClosed));
        }
    }

    /// A client whose socket has not taken its last frame is skipped before
    /// its snapshot is encoded: a slow client costs no diff + encode, and
    /// the encode histogram counts only snapshots written.
    #[tokio::test]
    async fn a_client_still_writing_costs_no_encode() {
        let config = Config::default();
        let metrics = Metrics::new();
        let mut world = world_of_npcs(2_000);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        // A player that reads nothing, behind small socket buffers: the
        // first (full) snapshot does not fit, and no writer task finishes it.
        let far = tokio::net::TcpSocket::new_v4().expect("socket");
        far.set_recv_buffer_size(4096).expect("receive buffer");
        let _far = far
            .connect(listener.local_addr().expect("address"))
            .await
            .expect("connect");
        let (near, _) = listener.accept().await.expect("accept");
        socket2::SockRef::from(&near)
            .set_send_buffer_size(4096)
            .expect("send buffer");
        let (_, write) = near.into_split();
        let acked = Arc::new(AtomicU64::new(NO_ACK));
        let mut client = Subscriber::new(
            Arc::new(Outbox::new(write)),
            PlayerHandle::for_test(0),
            Arc::clone(&acked),
            Arc::new(Heard::new()),
            None,
            world.tick(),
            &config,
        );
        let mut scratch = Scratch::default();
        for _ in 0..20 {
            world.step();
            let published = Arc::new(Published::new(world.snapshot(), vec![0]));
            assert!(client.on_publish(&published, Instant::now(), &mut scratch, &config, &metrics));
            // Acknowledged as if read: every later snapshot has a baseline.
            acked.store(u64::from(published.state.tick.0), Relaxed);
        }
        assert_eq!(metrics.snapshots_sent.get(), 1, "the full snapshot only");
        let encodes = metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix("arena_snapshot_encode_seconds_count "))
            .map(str::to_owned);
        assert_eq!(
            encodes.as_deref(),
            Some("1"),
            "one encode, for the snapshot written"
        );
    }

    /// Clients holding more different old baselines than a tick shares
    /// deltas for (a hostile swarm can arrange it): those turned away get
    /// the full snapshot, encoded once, instead of a delta encoded for each
    /// of them; clients that keep up still get their deltas, even when the
    /// old baselines came first; and a client turned away gets deltas again
    /// once it acknowledges a snapshot it holds.
    #[tokio::test]
    async fn clients_beyond_the_shared_deltas_get_the_full_snapshot() {
        const TURNED_AWAY: usize = 4;
        const RECENT: usize = room::RECENT_SNAPSHOTS as usize;
        const CLIENTS: usize = room::SHARED_DELTAS + TURNED_AWAY + RECENT;
        let config = Config::default();
        let metrics = Metrics::new();
        let mut world = world_of_npcs(200);
        let (mut clients, acks, drains) = players(CLIENTS, &world, &config).await;
        // Client i acknowledges the snapshot published `lag(i)` ticks
        // before the newest: the most lagging clients are served first, and
        // the last three keep up.
        let lag = |i: usize| CLIENTS - i;
        let mut scratch = Scratch::default();
        let mut published_ticks = Vec::new();
        // A client is skipped while its first (full) snapshot is not
        // acknowledged, for its lag, then acknowledges ticks it was sent
        // from twice its lag on.
        let warm_up = 2 * CLIENTS + 2;
        let measured = 5;
        for tick in 0..=warm_up + measured {
            world.step();
            let published = Arc::new(Published::new(world.snapshot(), vec![0; CLIENTS]));
            published_ticks.push(published.state.tick);
            let fulls = metrics.snapshots_full.get();
            for (i, client) in clients.iter_mut().enumerate() {
                let sent = metrics.snapshots_sent.get();
                assert!(client.on_publish(
                    &published,
                    Instant::now(),
                    &mut scratch,
                    &config,
                    &metrics
                ));
                if tick < warm_up {
                    continue;
                }
                assert_eq!(
                    metrics.snapshots_sent.get(),
                    sent + 1,
                    "client {i} was skipped"
                );
                let Ok(ServerMsg::Snapshot(msg)) = codec::decode_server(&scratch.body) else {
                    panic!("client {i} was not written a snapshot");
                };
                let expected = if tick == warm_up + measured {
                    // Everyone acknowledged the newest snapshot it holds.
                    1
                } else if i < room::SHARED_DELTAS || lag(i) <= RECENT {
                    lag(i) as u32
                } else {
                    0
                };
                assert_eq!(msg.base_age, expected, "client {i}, tick {tick}");
            }
            if (warm_up..warm_up + measured).contains(&tick) {
                assert_eq!(metrics.snapshots_full.get() - fulls, TURNED_AWAY as u64);
            }
            for (i, acked) in acks.iter().enumerate() {
                // At the last tick but one, every client acknowledges the
                // snapshot just sent: a full one for those turned away.
                let lag = if tick + 1 == warm_up + measured {
                    1
                } else {
                    lag(i)
                };
                if let Some(t) = published_ticks.len().checked_sub(lag) {
                    acked.store(u64::from(published_ticks[t].0), Relaxed);
                }
            }
            tokio::task::yield_now().await;
        }
        for drain in drains {
            drain.abort();
        }
    }

    /// The server's own per-client path allocates nothing per tick: what a
    /// shard does for each client once the tick's delta against that
    /// client's baseline exists (the baseline bookkeeping, the copy with the
    /// client's input ack, the frame, the socket write, the accounting).
    /// The codec's part is proven in the `snapshot` bench; this is the rest,
    /// counted by the test build's per-thread counting allocator. Eight
    /// clients on real loopback sockets, acknowledging every tick, as
    /// players do: the first to need each tick's delta encodes it (that
    /// allocates its bytes, once per baseline per tick, whatever the number
    /// of clients), and the other seven must allocate nothing after a
    /// warm-up. Not covered: a socket that takes a frame only in part (the
    /// pending buffer, which is given back when it grew past 64 KiB), the
    /// ping every 5 s, and baselines older than the tick before.
    #[tokio::test]
    async fn a_client_costs_no_allocation_per_tick_in_steady_state() {
        const CLIENTS: usize = 8;
        const TICKS: u32 = 200;
        let config = Config::default();
        // Well past anything a first tick or two might grow.
        let warm_up = config.snapshot_history as u32 + 10;
        let metrics = Metrics::new();
        let mut world = world_of_npcs(200);
        let (mut clients, acks, drains) = players(CLIENTS, &world, &config).await;
        let mut scratch = Scratch::default();
        let mut allocations = 0;
        for tick in 0..TICKS {
            world.step();
            let published = Arc::new(Published::new(world.snapshot(), vec![tick; CLIENTS]));
            let now = Instant::now();
            for (i, client) in clients.iter_mut().enumerate() {
                let before = alloc_count::on_this_thread();
                assert!(client.on_publish(&published, now, &mut scratch, &config, &metrics));
                if i > 0 && tick >= warm_up {
                    allocations += alloc_count::on_this_thread() - before;
                }
            }
            for acked in &acks {
                acked.store(u64::from(published.state.tick.0), Relaxed);
            }
            // The players read what was written.
            tokio::task::yield_now().await;
        }
        let measured = (CLIENTS as u64 - 1) * u64::from(TICKS - warm_up);
        println!("fan-out: {allocations} allocations in {measured} client ticks");
        assert_eq!(allocations, 0, "over {measured} client ticks");
        // They were deltas against the tick before, written, not skipped:
        // one full snapshot per client, then a delta every tick.
        assert_eq!(metrics.snapshots_full.get(), CLIENTS as u64);
        assert_eq!(
            metrics.snapshots_sent.get(),
            CLIENTS as u64 * u64::from(TICKS)
        );
        assert_eq!(
            metrics.snapshots_age_1.get(),
            CLIENTS as u64 * u64::from(TICKS - 1)
        );
        for drain in drains {
            drain.abort();
        }
    }
}
