//! The room registry: which rooms exist, where a join goes, and when an
//! empty room may go away.
//!
//! Connection tasks consult it once per hello, under one short `std` mutex
//! (never held across `.await`, never touched by a tick). Seats are
//! *reserved* here, under that lock, before the join reaches the room, so
//! matchmaking never overfills a room and a room is never disposed while a
//! join is on its way to it.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use shared::protocol::{DisconnectReason, RoomRequest, SessionToken, is_valid_room_name};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::Config;
use crate::guard::{IpPermit, PerIpLimiter};
use crate::metrics::Metrics;
use crate::room::{self, ReplacedTokens, RoomCmd, RoomHandle, RoomSetup, RoomStatus};
use crate::throttle::LogEvery;
use crate::users::Users;

/// How long a room must have been empty before a new room may take its
/// place at the room limit ([`Registry::eviction_victim`]).
pub(crate) const EVICTABLE_AFTER: Duration = Duration::from_secs(2);

/// Every room of the server.
#[derive(Debug)]
pub(crate) struct Registry {
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    /// Every room's tick deadlines are counted from this instant, shifted to
    /// the room's phase, so rooms tick together, in at most
    /// `config.tick_phases` groups ([`RoomSetup::grid_epoch`]); a new room
    /// takes the phase whose rooms hold the fewest seats
    /// ([`room::least_loaded_phase`]).
    grid_epoch: tokio::time::Instant,
    /// Sessions awaiting a resume, per address of their last connection
    /// (at most `max_clients_per_ip`, loopback exempt as configured).
    parked: Arc<PerIpLimiter>,
    /// Each user's one session (`crate::users`).
    users: Arc<Users>,
    /// The replaced sessions of rooms that have gone ([`RoomStatus::replaced`],
    /// taken over as each room is unlisted): the room of such a session may
    /// empty and go within its resume grace (its user joined elsewhere).
    replaced: ReplacedTokens,
    inner: Mutex<Inner>,
}

/// How the `place`th configured room (from 1) is shown to anyone but an
/// operator, and logged: its name is the key to join it.
fn persistent_label(place: usize) -> String {
    format!("persistent#{place}")
}

/// Replaced sessions of rooms that have gone, remembered at most: each
/// room's own bound, for as many rooms as typically go within a grace.
const GONE_ROOMS_REPLACED: usize = 1024;

#[derive(Debug)]
struct Inner {
    /// By name; a `BTreeMap` so listings come out sorted.
    rooms: BTreeMap<String, RoomHandle>,
    /// Room name by serial, to route resumes.
    serials: HashMap<u32, String>,
    next_serial: u32,
    /// Each room thread holds a clone; shutdown waits until all are gone.
    /// `None` once the registry is closed: no room may start after that.
    alive: Option<mpsc::Sender<()>>,
    /// The room limit's warning: a client can ask for new rooms as fast as
    /// it can connect, and each refusal is counted
    /// (`arena_kicks_total{reason="server_full"}`), so the log says it once
    /// every 10 s, with the refusals since.
    limit_log: LogEvery,
}

impl Inner {
    /// `ServerShutdown` once the registry is closed.
    fn open(&self) -> Result<(), DisconnectReason> {
        match self.alive {
            Some(_) => Ok(()),
            None => Err(DisconnectReason::ServerShutdown),
        }
    }
}

impl Registry {
    /// An empty registry; `alive` is cloned into every room thread.
    pub(crate) fn new(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
        alive: mpsc::Sender<()>,
    ) -> Arc<Self> {
        Arc::new(Self {
            parked: PerIpLimiter::new(config.max_clients_per_ip, config.per_ip_exempt_loopback),
            users: Users::new(),
            replaced: ReplacedTokens::new(GONE_ROOMS_REPLACED),
            config,
            metrics,
            shutdown,
            grid_epoch: tokio::time::Instant::now(),
            inner: Mutex::new(Inner {
                rooms: BTreeMap::new(),
                serials: HashMap::new(),
                // Tokens carry the serial: a random start makes a token from
                // before a restart unlikely to name a live room.
                next_serial: fastrand::u32(1..),
                alive: Some(alive),
                limit_log: LogEvery::new(std::time::Duration::from_secs(10)),
            }),
        })
    }

    /// A place for a session of `ip` awaiting a resume, held by the room
    /// while it waits; `None` when its address has as many as it may.
    pub(crate) fn park_permit(&self, ip: IpAddr) -> Option<IpPermit> {
        self.parked.try_acquire(ip)
    }

    /// Each user's one session, for joins with a user (`crate::users`).
    pub(crate) fn users(&self) -> &Arc<Users> {
        &self.users
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        crate::lock(&self.inner)
    }

    /// Opens the configured persistent rooms.
    pub(crate) fn open_persistent(self: &Arc<Self>) -> Result<(), DisconnectReason> {
        let mut inner = self.lock();
        for (i, spec) in self.config.persistent_rooms.iter().enumerate() {
            self.create(&mut inner, spec.name.clone(), false, Some(i + 1), spec.npcs)?;
        }
        Ok(())
    }

    /// Starts a room; the caller holds the lock. `persistent` is the room's
    /// place (from 1) among the configured persistent rooms, if it is one.
    fn create(
        self: &Arc<Self>,
        inner: &mut Inner,
        name: String,
        public: bool,
        persistent: Option<usize>,
        npcs: u32,
    ) -> Result<RoomHandle, DisconnectReason> {
        let Some(alive) = inner.alive.clone() else {
            return Err(DisconnectReason::ServerShutdown);
        };
        // At the limit, an empty room makes way, once the new one runs.
        let victim = if inner.rooms.len() >= self.config.max_rooms {
            let Some(victim) = Self::eviction_victim(inner) else {
                if let Some(refused) = inner.limit_log.due(std::time::Instant::now()) {
                    warn!(
                        rooms = inner.rooms.len(),
                        refused, "room limit reached: new rooms refused"
                    );
                }
                return Err(DisconnectReason::ServerFull);
            };
            Some(victim)
        } else {
            None
        };
        let serial = inner.next_serial;
        inner.next_serial = inner.next_serial.wrapping_add(1).max(1);
        let tick_phase = room::least_loaded_phase(
            inner.rooms.values().map(|h| {
                let seats = h.status.occupancy.load(Ordering::Acquire);
                (h.status.tick_phase, seats)
            }),
            self.config.tick_phases,
        );
        // How anyone but an operator sees the room, the logs included: a
        // private room's name is the key to join it. A persistent room by
        // its place in the configuration, the same after every restart for
        // dashboards and alerts. (`#` is in no room name.)
        let label = match (public, persistent) {
            (true, _) => name.clone(),
            (false, Some(place)) => persistent_label(place),
            (false, None) => format!("private#{serial}"),
        };
        let setup = RoomSetup {
            grid_epoch: self.grid_epoch,
            tick_phase,
            name: name.clone(),
            label: label.clone(),
            serial,
            public,
            persistent: persistent.is_some(),
            npcs,
        };
        let handle = room::spawn(
            setup,
            &self.config,
            Arc::clone(&self.metrics),
            Arc::clone(self),
            self.shutdown.clone(),
            alive,
        )
        .map_err(|e| {
            warn!(error = %e, "could not start a room thread");
            DisconnectReason::ServerFull
        })?;
        if let Some(victim) = victim {
            self.evict(inner, &victim);
        }
        info!(room = %label, serial, public, persistent = persistent.is_some(), tick_phase, "room created");
        self.metrics.rooms_created.inc();
        self.metrics.rooms.inc();
        inner.serials.insert(serial, name.clone());
        inner.rooms.insert(name, handle.clone());
        Ok(handle)
    }

    /// Takes a seat for a new player, in the room the hello asked for
    /// (created if needed). The seat counts against the room's capacity
    /// until the room frees it (or [`Self::unreserve`] if the join never
    /// reached the room).
    ///
    /// `replacing` is the room of the session this join ends once welcomed
    /// (the user's one session, `crate::users`). Its seat is the user's
    /// own: a user who joins again a full room they are in (playing, or
    /// their seat held for a resume after a reload that lost the session
    /// token) takes one seat over the capacity for the moment until the
    /// old one goes, rather than being told the room is full of
    /// themselves. One at most: of several joins of one user at once, the
    /// others are refused as any other join would be.
    pub(crate) fn reserve(
        self: &Arc<Self>,
        request: &RoomRequest,
        replacing: Option<&mpsc::Sender<RoomCmd>>,
    ) -> Result<RoomHandle, DisconnectReason> {
        let capacity = self.config.room_capacity;
        let mut inner = self.lock();
        inner.open()?;
        let handle = match request {
            RoomRequest::Named(name) => {
                if !is_valid_room_name(name) {
                    return Err(DisconnectReason::InvalidRoomName);
                }
                match inner.rooms.get(name) {
                    Some(handle) => {
                        let own_seat = replacing.is_some_and(|r| r.same_channel(&handle.cmds));
                        let limit = capacity + usize::from(own_seat);
                        if handle.status.occupancy.load(Ordering::Acquire) >= limit {
                            return Err(DisconnectReason::RoomFull);
                        }
                        handle.clone()
                    }
                    None => {
                        // A configured room is listed from the start and
                        // never disposed, so it is missing only if its
                        // thread ended unasked (a panic: `Listing`). It
                        // comes back as configured, with its NPCs and its
                        // label, not as a room made by name that goes
                        // when empty. On a join, not as soon as it ends: a
                        // room that fails at every start then costs a
                        // thread per join, not a loop of them.
                        let configured = self
                            .config
                            .persistent_rooms
                            .iter()
                            .position(|spec| spec.name == *name);
                        let (place, npcs) = match configured {
                            Some(i) => {
                                warn!(
                                    room = %persistent_label(i + 1),
                                    "reopening a configured room whose thread ended"
                                );
                                (Some(i + 1), self.config.persistent_rooms[i].npcs)
                            }
                            None => (None, self.config.npcs),
                        };
                        self.create(&mut inner, name.clone(), false, place, npcs)?
                    }
                }
            }
            RoomRequest::Matchmake => {
                // The fullest public room with a free seat: players meet
                // players, and near-empty rooms drain away.
                let best = inner
                    .rooms
                    .values()
                    .filter(|h| h.status.public)
                    .map(|h| (h.status.occupancy.load(Ordering::Acquire), h))
                    .filter(|(n, _)| *n < capacity)
                    .max_by_key(|(n, _)| *n)
                    .map(|(_, h)| h.clone());
                match best {
                    Some(handle) => handle,
                    None => {
                        let name = (1..)
                            .map(|n| format!("public-{n}"))
                            .find(|name| !inner.rooms.contains_key(name))
                            .unwrap_or_else(|| unreachable!("names are unbounded"));
                        let npcs = self.config.npcs;
                        self.create(&mut inner, name, true, None, npcs)?
                    }
                }
            }
        };
        handle.status.reserve_seat();
        Ok(handle)
    }

    /// Gives back a seat whose join never reached the room.
    pub(crate) fn unreserve(&self, handle: &RoomHandle) {
        handle.status.release_seat();
    }

    /// The room a session token names (by the serial it carries), if that
    /// room still exists. Whether the token is one of its sessions, and
    /// the room the hello named is this one, the room says
    /// ([`RoomCmd::Resume`](crate::room::RoomCmd::Resume)): answered here,
    /// a forged token with a private room's serial told a guessed name
    /// right (`SessionExpired`) from wrong (`SessionWrongRoom`), a quiet
    /// test of private room names at hundreds a second.
    pub(crate) fn find_session(
        &self,
        token: &SessionToken,
    ) -> Result<RoomHandle, DisconnectReason> {
        let inner = self.lock();
        inner.open()?;
        let room = inner
            .serials
            .get(&room::token_serial(token))
            .and_then(|name| inner.rooms.get(name));
        match room {
            Some(room) => Ok(room.clone()),
            // Under the lock: a room's replaced sessions move here as it is
            // unlisted, so one or the other has them.
            None if self.replaced.contains(token, tokio::time::Instant::now()) => {
                Err(DisconnectReason::SessionReplaced)
            }
            None => Err(DisconnectReason::SessionExpired),
        }
    }

    /// Called by a room that has been empty for its grace period: removes it
    /// if no seat was reserved meanwhile. `true`: the room must stop.
    pub(crate) fn dispose_if_empty(&self, serial: u32) -> bool {
        let mut inner = self.lock();
        let Some(name) = inner.serials.get(&serial).cloned() else {
            return true;
        };
        let empty = inner
            .rooms
            .get(&name)
            .is_none_or(|h| h.status.occupancy.load(Ordering::Acquire) == 0);
        if empty {
            self.unlist(&mut inner, serial);
        }
        empty
    }

    /// The room to close, at the room limit, to make way for a new one: of
    /// the rooms that have been empty for at least [`EVICTABLE_AFTER`],
    /// the one empty longest. `None` if every room has a player, a parked
    /// session or a reserved seat, is persistent, or was emptied just now.
    ///
    /// Without eviction, rooms that clients create by name and leave at
    /// once would hold the limit for their whole grace period
    /// ([`Config::empty_room_grace`]), refusing every new room meanwhile: a
    /// few connections cycling through names could keep the server full.
    /// An empty room holds nothing to lose: no player, and no session
    /// waiting for a resume (those keep their seats). The minimum keeps
    /// a room its players just left for a moment, and bounds how fast
    /// such cycling can start room threads: `max_rooms` per
    /// [`EVICTABLE_AFTER`].
    fn eviction_victim(inner: &Inner) -> Option<Arc<RoomStatus>> {
        inner
            .rooms
            .values()
            .filter_map(|h| Some((h.status.idle_for()?, h)))
            .filter(|(idle, _)| *idle >= EVICTABLE_AFTER)
            .max_by_key(|(idle, _)| *idle)
            .map(|(_, h)| Arc::clone(&h.status))
    }

    /// Unlists a room and tells it to stop (at its next tick).
    fn evict(&self, inner: &mut Inner, room: &RoomStatus) {
        room.evicted.store(true, Ordering::Release);
        self.unlist(inner, room.serial);
        info!(room = %room.label, "room limit reached: evicted an empty room");
        self.metrics.rooms_evicted.inc();
    }

    /// Removes a room whose thread ended (see [`Listing`]).
    fn forget(&self, serial: u32) {
        let mut inner = self.lock();
        self.unlist(&mut inner, serial);
    }

    fn unlist(&self, inner: &mut Inner, serial: u32) {
        if let Some(name) = inner.serials.remove(&serial) {
            if let Some(room) = inner.rooms.remove(&name) {
                self.metrics.remove_room(&room.status.label);
                let now = tokio::time::Instant::now();
                self.replaced.expire(now);
                self.replaced.absorb(room.status.replaced.take());
            }
            self.metrics.rooms.dec();
        }
    }

    /// Every room now, sorted by name.
    pub(crate) fn rooms(&self) -> Vec<RoomHandle> {
        self.lock().rooms.values().cloned().collect()
    }

    /// Refuses every further join and room; rooms stop on the shutdown
    /// signal and drop their `alive` senders as their threads end.
    pub(crate) fn close(&self) {
        self.lock().alive = None;
    }

    /// Why a join or a resume is refused when its room stopped without
    /// answering it: the server is shutting down (the registry is closed
    /// before any room is told to stop), or else `otherwise`. For a join
    /// that is `ServerFull` (the room could not run: its thread could not
    /// build its runtime; `PROTOCOL.md` section 1: try again later); for a
    /// resume, `SessionExpired` (the room and its sessions are gone).
    pub(crate) fn room_gone_reason(&self, otherwise: DisconnectReason) -> DisconnectReason {
        match self.lock().open() {
            Err(closed) => closed,
            Ok(()) => otherwise,
        }
    }
}

/// A room's place in the registry, held by the room's thread: dropped when
/// the thread ends, however it ends, it unlists the room. A room that
/// stopped as it should (disposed, evicted, shut down) was unlisted already,
/// and then this does nothing. One whose runtime could not start, or whose
/// code panicked, would otherwise stay listed with no thread behind it:
/// matchmaking would keep choosing it and every join there would be
/// refused, and it would count against `--max-rooms` for good, never empty
/// enough to evict. (Its players' connections end as the room's snapshot
/// channel closes with it.)
pub(crate) struct Listing {
    registry: Arc<Registry>,
    serial: u32,
}

impl Listing {
    pub(crate) fn new(registry: Arc<Registry>, serial: u32) -> Self {
        Self { registry, serial }
    }
}

impl Drop for Listing {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(serial = self.serial, "room thread panicked; room unlisted");
        }
        self.registry.forget(self.serial);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry with the default config, its shutdown signal (send
    /// `true` to stop its rooms) and its rooms' `alive` receiver.
    fn registry() -> (watch::Sender<bool>, mpsc::Receiver<()>, Arc<Registry>) {
        registry_with(Config::default())
    }

    fn registry_with(config: Config) -> (watch::Sender<bool>, mpsc::Receiver<()>, Arc<Registry>) {
        let (stop, shutdown) = watch::channel(false);
        let (alive, rooms_done) = mpsc::channel(1);
        let registry = Registry::new(Arc::new(config), Arc::new(Metrics::new()), shutdown, alive);
        (stop, rooms_done, registry)
    }

    #[test]
    fn a_room_whose_thread_panics_is_unlisted() {
        let (stop, _rooms_done, registry) = registry();
        let room = registry
            .reserve(&RoomRequest::Named("doomed".into()), None)
            .expect("a room");
        assert_eq!(registry.rooms().len(), 1);
        // What the room's thread holds, dropped by a panic's unwinding.
        let listing = Listing::new(Arc::clone(&registry), room.status.serial);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _listing = listing;
            panic!("a bug in the room");
        }));
        assert!(unwound.is_err());
        assert!(registry.rooms().is_empty(), "still listed");
        // A new room may take the name.
        assert!(
            registry
                .reserve(&RoomRequest::Named("doomed".into()), None)
                .is_ok()
        );
        let _ = stop.send(true);
    }

    /// A configured room whose thread ended (a panic) comes back on the
    /// next join by its name as it was configured: kept when empty, its
    /// own NPC count, its configured label; not as a room made by name
    /// with the default NPCs, disposed once empty, shown as private.
    #[test]
    fn a_configured_room_whose_thread_ended_reopens_as_configured() {
        let (stop, _rooms_done, registry) = registry_with(Config {
            persistent_rooms: vec![
                "lobby:0".parse().expect("a spec"),
                "arena:7".parse().expect("a spec"),
            ],
            ..Config::default()
        });
        registry.open_persistent().expect("rooms open");
        let serial = |name: &str| {
            let rooms = registry.rooms();
            rooms
                .iter()
                .find(|h| h.status.name == name)
                .map(|h| h.status.serial)
        };
        let first = serial("arena").expect("the configured room");
        // What a panic of the room's thread does (`Listing`).
        registry.forget(first);
        assert_eq!(serial("arena"), None);
        let again = registry
            .reserve(&RoomRequest::Named("arena".into()), None)
            .expect("a seat");
        assert_ne!(again.status.serial, first, "a new room");
        assert!(again.status.persistent, "kept when empty");
        assert_eq!(again.status.label, "persistent#2");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while again.status.entities.get() != 7 {
            assert!(
                std::time::Instant::now() < deadline,
                "the room has {} entities, not its 7 NPCs",
                again.status.entities.get()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        registry.unreserve(&again);
        let _ = stop.send(true);
    }

    #[test]
    fn a_room_that_stops_unasked_refuses_as_told_and_a_shutdown_as_shutdown() {
        let (_stop, _rooms_done, registry) = registry();
        for otherwise in [
            DisconnectReason::ServerFull,
            DisconnectReason::SessionExpired,
        ] {
            assert_eq!(registry.room_gone_reason(otherwise.clone()), otherwise);
        }
        registry.close();
        for otherwise in [
            DisconnectReason::ServerFull,
            DisconnectReason::SessionExpired,
        ] {
            assert_eq!(
                registry.room_gone_reason(otherwise),
                DisconnectReason::ServerShutdown
            );
        }
    }
}
