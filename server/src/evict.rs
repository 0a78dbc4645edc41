//! Making room when every connection slot is taken: the oldest connection
//! that is not yet a player is closed.
//!
//! Timeouts bound how long one connection may take to send its request head
//! or its hello (5 s each by default), and per-address caps bound how many
//! one address holds, but together they still let a few dozen addresses
//! hold every slot of `max_connections` for good, reopening each
//! connection as its deadline closes it (slowloris). When the accept loop
//! finds no free slot it closes the connection that has gone longest
//! without becoming a player: a plain HTTP connection (request head,
//! answer), or a WebSocket before its hello. Players are never closed this
//! way, and there is always one to close: `max_connections` is above
//! `max_clients` (`Config::validate`).
//!
//! A real client is in that state for about one round trip, an attacker's
//! connection for as long as the deadlines allow, so the attacker's go
//! first. To close a real one, an attacker has to open every spare slot's
//! worth of connections within that round trip, again and again (at the
//! defaults 256 per round trip, thousands a second): a flood, where a
//! trickle from a few addresses sufficed before.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

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
}

/// One connection's eviction: a flag, and a wake-up for whoever waits on it.
#[derive(Debug, Default)]
struct Eviction {
    evicted: AtomicBool,
    notify: Notify,
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
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a connection, the newest.
    pub(crate) fn register(self: &Arc<Self>) -> Ticket {
        let eviction = Arc::new(Eviction::default());
        let mut inner = self.lock();
        let order = inner.next;
        inner.next += 1;
        inner.open.insert(order, Arc::clone(&eviction));
        Ticket {
            list: Arc::clone(self),
            order,
            eviction,
        }
    }

    /// Tells the oldest connection that is not a player to close. `false`
    /// when there is none.
    pub(crate) fn evict_oldest(&self) -> bool {
        let Some((_, eviction)) = self.lock().open.pop_first() else {
            return false;
        };
        eviction.evicted.store(true, Ordering::Release);
        eviction.notify.notify_waiters();
        true
    }

    /// How many connections are not players yet.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().open.len()
    }
}

impl Ticket {
    /// The connection became a player: it is never evicted from now on.
    /// `false` if it was evicted first (then it must close).
    pub(crate) fn prove(&self) -> bool {
        self.list.lock().open.remove(&self.order).is_some()
    }

    /// Completes once the connection is evicted; never after it is proven.
    pub(crate) async fn evicted(&self) {
        loop {
            // Created before the flag is read: an eviction between the two
            // still wakes it (`notify_waiters` wakes every `Notified` that
            // exists).
            let woken = self.eviction.notify.notified();
            if self.eviction.evicted.load(Ordering::Acquire) {
                return;
            }
            woken.await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.list.lock().open.remove(&self.order);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Whether `ticket.evicted()` completes within a short wait.
    async fn is_evicted(ticket: &Ticket) -> bool {
        tokio::time::timeout(Duration::from_millis(50), ticket.evicted())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn the_oldest_connection_that_is_not_a_player_goes_first() {
        let list = Unproven::new();
        let first = list.register();
        let second = list.register();
        let third = list.register();
        // The oldest became a player: the next oldest goes.
        assert!(first.prove());
        assert!(list.evict_oldest());
        assert!(!is_evicted(&first).await, "a player is never evicted");
        assert!(is_evicted(&second).await);
        assert!(!is_evicted(&third).await);
        // An evicted connection cannot become a player.
        assert!(!second.prove());
        // A connection that closed by itself leaves nothing to evict.
        drop(third);
        assert_eq!(list.len(), 0);
        assert!(!list.evict_oldest());
    }

    #[tokio::test]
    async fn a_connection_waiting_for_its_eviction_is_woken() {
        let list = Unproven::new();
        let ticket = list.register();
        let waiter = tokio::spawn(async move { ticket.evicted().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(list.evict_oldest());
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiting connection was not woken")
            .expect("task");
    }
}
