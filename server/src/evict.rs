//! Making room when every connection slot, or every player's place, is
//! taken: a connection that is not yet a player is closed, the oldest of
//! the address that holds the most of them.
//!
//! Timeouts bound how long one connection may take to send its request head
//! or its hello (5 s each by default), and per-address caps bound how many
//! one address holds, but together they still let a few dozen addresses
//! hold every slot of `max_connections`, or every place of `max_clients`
//! with WebSockets that never say hello (or say one that is refused), for
//! good, reopening each connection as its deadline closes it (slowloris).
//! So:
//! * when the accept loop finds no free connection slot, it closes a
//!   connection that is not a player yet: a plain HTTP connection (request
//!   head, answer), or a WebSocket whose hello has not been read, or was
//!   refused. There is always one, as `max_connections` is above
//!   `max_clients` (`Config::validate`);
//! * when an upgrade finds every player's place taken, a WebSocket of those
//!   goes (none: the server is full of players, and the upgrade is
//!   refused).
//!
//! Which one: the oldest of the address (an IPv4 address, an IPv6 /64:
//! `guard::address_key`) that holds the most such connections, and of two
//! addresses holding as many, the one whose oldest is older.
//!
//! A WebSocket whose hello was read is not closed this way while its room
//! seats it, nor as a player. A real client holds one evictable connection
//! for about one round trip; an attacker's addresses hold many (up to the
//! per-address cap, 64 by default), for as long as the deadlines allow, so
//! the attacker's go first, and of them the most crowded address's: a real
//! client goes only once no address holds more evictable connections than
//! its one. To close a real one, an attacker needs as many addresses as
//! there are spare places (at the defaults 256 slots, or the players'
//! places not taken by players), each opening its connection within that
//! round trip, again and again; from fewer addresses, however fast, it
//! only closes its own. Between real clients, the newest wins:
//! at the player cap, a client whose hello is still on its way loses its
//! place to an upgrade that arrives meanwhile, and is told the server is
//! full (it retries, as after a 503).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::guard::address_key;

/// How long a connection told to close has to give its place back before
/// the next one is told too. Its task only has to run: an evicted
/// connection waits on no write.
const PATIENCE: std::time::Duration = std::time::Duration::from_millis(20);

/// A permit of `places` (connection slots, or players' places) once one is
/// free, telling connections to close with `evict`, each counted in
/// `evicted`, until one is. `None` when none is free and there is nothing
/// (left) to evict.
pub(crate) async fn make_room(
    places: &Arc<Semaphore>,
    mut evict: impl FnMut() -> bool,
    evicted: &Counter,
) -> Option<OwnedSemaphorePermit> {
    loop {
        if let Ok(permit) = Arc::clone(places).try_acquire_owned() {
            return Some(permit);
        }
        if !evict() {
            return None;
        }
        evicted.inc();
        if let Ok(Ok(permit)) =
            tokio::time::timeout(PATIENCE, Arc::clone(places).acquire_owned()).await
        {
            return Some(permit);
        }
    }
}

/// The connections that are not players yet, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Unproven {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The order of the next connection registered.
    next: u64,
    /// By order of registration.
    open: BTreeMap<u64, Arc<Eviction>>,
    /// The orders of `open`, by address ([`address_key`]).
    by_address: Orders,
    /// The orders of those of `open` that are WebSockets, each holding a
    /// player's place, by address.
    websockets: Orders,
}

/// Connection orders by address, each address's oldest first.
#[derive(Debug, Default)]
struct Orders(HashMap<IpAddr, BTreeSet<u64>>);

impl Orders {
    fn insert(&mut self, address: IpAddr, order: u64) {
        self.0.entry(address).or_default().insert(order);
    }

    fn remove(&mut self, address: IpAddr, order: u64) {
        if let Some(orders) = self.0.get_mut(&address) {
            orders.remove(&order);
            if orders.is_empty() {
                self.0.remove(&address);
            }
        }
    }

    /// The oldest connection of the address that holds the most, the
    /// address with the oldest connection of those that hold as many.
    /// A scan of the addresses: it runs only when every place is taken.
    fn pick(&self) -> Option<u64> {
        self.0
            .values()
            .filter_map(|orders| Some((orders.len(), *orders.first()?)))
            .max_by(|(n, a), (m, b)| n.cmp(m).then(b.cmp(a)))
            .map(|(_, oldest)| oldest)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.values().map(BTreeSet::len).sum()
    }
}

impl Inner {
    /// Takes `order` out of the lists: `None` if it was not in them.
    fn remove(&mut self, order: u64) -> Option<Arc<Eviction>> {
        let eviction = self.open.remove(&order)?;
        self.by_address.remove(eviction.address, order);
        self.websockets.remove(eviction.address, order);
        Some(eviction)
    }
}

/// One connection's eviction: a flag, and a wake-up for whoever waits on it.
#[derive(Debug)]
struct Eviction {
    evicted: AtomicBool,
    notify: Notify,
    /// Whether it holds a player's place ([`Ticket::upgraded`]).
    websocket: AtomicBool,
    /// Its peer's address ([`address_key`]).
    address: IpAddr,
}

impl Eviction {
    fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// A connection's place among the [`Unproven`]; leaves it when dropped or
/// proven.
#[derive(Debug)]
pub(crate) struct Ticket {
    list: Arc<Unproven>,
    order: u64,
    eviction: Arc<Eviction>,
}

impl Unproven {
    pub(crate) fn new() -> Arc<Self> {
        Arc::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Held for a map update, never across an await; a panic while it is
        // held leaves the map consistent.
        crate::lock(&self.inner)
    }

    /// Adds a connection from `peer`, the newest.
    pub(crate) fn register(self: &Arc<Self>, peer: IpAddr) -> Ticket {
        let eviction = Arc::new(Eviction {
            evicted: AtomicBool::new(false),
            notify: Notify::new(),
            websocket: AtomicBool::new(false),
            address: address_key(peer),
        });
        let mut inner = self.lock();
        let order = inner.next;
        inner.next += 1;
        inner.open.insert(order, Arc::clone(&eviction));
        inner.by_address.insert(eviction.address, order);
        Ticket {
            list: Arc::clone(self),
            order,
            eviction,
        }
    }

    /// Tells a connection that is not a player to close: the oldest of the
    /// address that holds the most such connections. `false` when there is
    /// none.
    pub(crate) fn evict_connection(&self) -> bool {
        self.evict(|inner| inner.by_address.pick())
    }

    /// Tells a WebSocket whose hello has not been read, or was refused, to
    /// close, giving back a player's place: the oldest of the address that
    /// holds the most such WebSockets. `false` when there is none.
    pub(crate) fn evict_websocket(&self) -> bool {
        self.evict(|inner| inner.websockets.pick())
    }

    /// Evicts the connection `pick` names, if any.
    fn evict(&self, pick: impl FnOnce(&Inner) -> Option<u64>) -> bool {
        let eviction = {
            let mut inner = self.lock();
            pick(&inner).and_then(|order| inner.remove(order))
        };
        eviction.map(|e| e.evict()).is_some()
    }

    /// How many connections are not players yet, and how many of them are
    /// WebSockets.
    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        let inner = self.lock();
        assert_eq!(inner.by_address.len(), inner.open.len());
        (inner.open.len(), inner.websockets.len())
    }
}

impl Ticket {
    /// The connection is a WebSocket now, holding a player's place: until
    /// its hello, that place may be taken back
    /// ([`Unproven::evict_websocket`]).
    pub(crate) fn upgraded(&self) {
        self.eviction.websocket.store(true, Ordering::Relaxed);
        let mut inner = self.list.lock();
        if inner.open.contains_key(&self.order) {
            inner.websockets.insert(self.eviction.address, self.order);
        }
    }

    /// The connection said hello: it is not evicted while it is seated,
    /// nor as a player. `false` if it was evicted first (then it must
    /// close).
    pub(crate) fn prove(&self) -> bool {
        self.list.lock().remove(self.order).is_some()
    }

    /// Its hello was refused: while it is told why and lingers, it may be
    /// evicted again, before any other (it keeps its place in the order,
    /// the oldest).
    pub(crate) fn refused(&self) {
        if self.is_evicted() {
            return;
        }
        let mut inner = self.list.lock();
        let address = self.eviction.address;
        inner.open.insert(self.order, Arc::clone(&self.eviction));
        inner.by_address.insert(address, self.order);
        if self.eviction.websocket.load(Ordering::Relaxed) {
            inner.websockets.insert(address, self.order);
        }
    }

    /// Whether the connection was told to close.
    pub(crate) fn is_evicted(&self) -> bool {
        self.eviction.evicted.load(Ordering::Acquire)
    }

    /// Completes once the connection is evicted; never after it is proven.
    pub(crate) async fn evicted(&self) {
        loop {
            // Created before the flag is read: an eviction between the two
            // still wakes it (`notify_waiters` wakes every `Notified` that
            // exists).
            let woken = self.eviction.notify.notified();
            if self.is_evicted() {
                return;
            }
            woken.await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.list.lock().remove(self.order);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// One address, as every test client on loopback is.
    const ONE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, last))
    }

    fn v6(network: u16, host: u16) -> IpAddr {
        IpAddr::V6(std::net::Ipv6Addr::new(
            0x2001, 0xdb8, 0, network, 0, 0, 0, host,
        ))
    }

    /// Whether `ticket.evicted()` completes within a short wait.
    async fn is_evicted(ticket: &Ticket) -> bool {
        tokio::time::timeout(Duration::from_millis(50), ticket.evicted())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn the_oldest_connection_that_is_not_a_player_goes_first() {
        let list = Unproven::new();
        let first = list.register(ONE);
        let second = list.register(ONE);
        let third = list.register(ONE);
        // The oldest became a player: the next oldest goes.
        assert!(first.prove());
        assert!(list.evict_connection());
        assert!(!is_evicted(&first).await, "a player is never evicted");
        assert!(is_evicted(&second).await);
        assert!(!is_evicted(&third).await);
        // An evicted connection cannot become a player.
        assert!(!second.prove());
        // A connection that closed by itself leaves nothing to evict.
        drop(third);
        assert_eq!(list.len(), (0, 0));
        assert!(!list.evict_connection());
    }

    /// A flood from a few addresses (each up to its per-address cap) is
    /// evicted before anyone else: a real client, one connection between
    /// its upgrade and its welcome, goes only once no address holds more
    /// than it does, so closing it takes as many addresses as there are
    /// spare places, not a flood within its round trip.
    #[tokio::test]
    async fn the_address_that_holds_the_most_loses_its_oldest_first() {
        for websockets in [false, true] {
            let list = Unproven::new();
            let evict = || {
                if websockets {
                    list.evict_websocket()
                } else {
                    list.evict_connection()
                }
            };
            // A flood from two addresses, one an IPv6 /64 rotating through
            // its hosts; its first connection is older than the player.
            let mut flood = vec![list.register(v4(9))];
            let player = list.register(v4(1));
            flood.extend((0..2).map(|_| list.register(v4(9))));
            flood.extend((0..4).map(|h| list.register(v6(7, h))));
            for ticket in flood.iter().chain([&player]) {
                ticket.upgraded();
            }
            // An HTTP connection: a WebSocket eviction never takes it.
            let late = list.register(v4(2));
            // The address holding the most goes first, each its oldest
            // first; of two holding as many, the one with the oldest.
            for _ in 0..5 {
                assert!(evict());
            }
            let evicted = [true, true, false, true, true, true, false];
            for (i, (ticket, expected)) in flood.iter().zip(evicted).enumerate() {
                assert_eq!(is_evicted(ticket).await, expected, "flood connection {i}");
            }
            assert!(!is_evicted(&player).await && !is_evicted(&late).await);
            // One each now: the oldest goes first, as from one address.
            assert!(evict());
            assert!(is_evicted(&player).await, "websockets: {websockets}");
            assert!(!is_evicted(&late).await);
        }
    }

    #[tokio::test]
    async fn a_players_place_is_taken_back_from_the_oldest_websocket_without_hello() {
        let list = Unproven::new();
        let http = list.register(ONE);
        let hello = list.register(ONE);
        let silent = list.register(ONE);
        let younger = list.register(ONE);
        for ws in [&hello, &silent, &younger] {
            ws.upgraded();
        }
        assert!(hello.prove());
        // The oldest WebSocket without a hello, not the older HTTP
        // connection, nor the player.
        assert!(list.evict_websocket());
        assert!(is_evicted(&silent).await);
        assert!(!is_evicted(&http).await);
        assert!(!is_evicted(&hello).await);
        // Evicted for the connection cap, a WebSocket is gone from both.
        assert!(list.evict_connection());
        assert!(is_evicted(&http).await);
        assert!(list.evict_connection());
        assert!(is_evicted(&younger).await);
        assert_eq!(list.len(), (0, 0));
        assert!(!list.evict_websocket());
        // An evicted connection marked a WebSocket afterwards is not listed.
        let late = list.register(ONE);
        assert!(list.evict_connection());
        late.upgraded();
        assert_eq!(list.len(), (0, 0));
    }

    #[tokio::test]
    async fn a_refused_hello_makes_the_connection_the_first_to_go() {
        let list = Unproven::new();
        let refused = list.register(ONE);
        refused.upgraded();
        let younger = list.register(ONE);
        younger.upgraded();
        assert!(refused.prove());
        // While its room seats it, a connection that said hello stays.
        assert_eq!(list.len(), (1, 1));
        // Refused: evictable again, before the younger one.
        refused.refused();
        assert_eq!(list.len(), (2, 2));
        assert!(list.evict_websocket());
        assert!(is_evicted(&refused).await);
        assert!(!is_evicted(&younger).await);
        drop(refused);
        assert_eq!(list.len(), (1, 1));
    }

    #[tokio::test]
    async fn room_is_made_past_a_connection_that_does_not_give_its_place_back() {
        let places = Arc::new(Semaphore::new(0));
        let evicted = Counter::default();
        // The first connection told to close keeps its place; the second
        // gives it back.
        let mut told = 0;
        let evict = || {
            told += 1;
            if told == 2 {
                places.add_permits(1);
            }
            true
        };
        let permit =
            tokio::time::timeout(Duration::from_secs(5), make_room(&places, evict, &evicted))
                .await
                .expect("waited on the connection that kept its place");
        assert!(permit.is_some());
        assert_eq!(evicted.get(), 2);
        // Nothing to evict and no place free: no wait, no count.
        let none = make_room(&places, || false, &evicted).await;
        assert!(none.is_none());
        assert_eq!(evicted.get(), 2);
    }

    #[tokio::test]
    async fn a_connection_waiting_for_its_eviction_is_woken() {
        let list = Unproven::new();
        let ticket = list.register(ONE);
        let waiter = tokio::spawn(async move { ticket.evicted().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(list.evict_connection());
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiting connection was not woken")
            .expect("task");
    }
}
