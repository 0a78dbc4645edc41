//! One game per user: with join tokens, a user who joins again ends the
//! session they had (`Config::one_session_per_user`).
//!
//! Join tokens are stateless (`HmacTokens`): one token, or one leaked,
//! would otherwise seat as many players as connections are allowed, for
//! as long as it is valid. Each authenticated join *claims* its user here
//! before it reaches a room; the room keeps the claim with the seat for the
//! session's whole life (playing or awaiting a resume), and drops it with
//! the seat. A newer claim for the same user replaces the older one, and
//! the older session is ended where it is, its connection told
//! `SessionReplaced` (the same user playing elsewhere, as after a resume
//! elsewhere). A join whose claim was replaced while the room seated it
//! gives its seat back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;

use crate::room::{PlayerHandle, RoomCmd};

/// Where a user's session is seated: its room's commands and its seat.
pub(crate) type SeatRoute = (mpsc::Sender<RoomCmd>, PlayerHandle);

/// The users with a session (or a join on its way to one).
#[derive(Debug, Default)]
pub(crate) struct Users {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The generation of the next claim.
    next: u64,
    by_user: HashMap<String, Entry>,
}

#[derive(Debug)]
struct Entry {
    generation: u64,
    /// `None` until the room has seated the join.
    seat: Option<SeatRoute>,
}

/// A user's claim to their one session; gives it up when dropped, unless a
/// newer claim replaced it. Held by the room's seat.
#[derive(Debug)]
pub(crate) struct UserClaim(ClaimKey);

/// Names a claim, for the join that made it to say where it was seated
/// ([`ClaimKey::seated`]) while the room holds the claim itself.
#[derive(Clone, Debug)]
pub(crate) struct ClaimKey {
    users: Arc<Users>,
    user: String,
    generation: u64,
}

impl Users {
    pub(crate) fn new() -> Arc<Self> {
        Arc::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Held for a map update, never across an await.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims `user`'s session for a new join, and returns where the
    /// session it replaces is seated, if it is (one whose join is still on
    /// its way finds out in [`UserClaim::seated`]).
    pub(crate) fn claim(self: &Arc<Self>, user: &str) -> (UserClaim, Option<SeatRoute>) {
        let mut inner = self.lock();
        let generation = inner.next;
        inner.next += 1;
        let replaced = inner.by_user.insert(
            user.to_owned(),
            Entry {
                generation,
                seat: None,
            },
        );
        let claim = UserClaim(ClaimKey {
            users: Arc::clone(self),
            user: user.to_owned(),
            generation,
        });
        (claim, replaced.and_then(|e| e.seat))
    }

    /// Users with a session, or a join on its way to one.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().by_user.len()
    }
}

impl UserClaim {
    pub(crate) fn key(&self) -> ClaimKey {
        self.0.clone()
    }
}

impl ClaimKey {
    /// The room seated the join at `seat`: a newer join of the same user
    /// ends it there from now on. `false` if one has already replaced this
    /// claim (then the seat must be given back).
    pub(crate) fn seated(&self, seat: SeatRoute) -> bool {
        let mut inner = self.users.lock();
        match inner.by_user.get_mut(&self.user) {
            Some(entry) if entry.generation == self.generation => {
                entry.seat = Some(seat);
                true
            }
            _ => false,
        }
    }
}

impl Drop for UserClaim {
    fn drop(&mut self) {
        let key = &self.0;
        let mut inner = key.users.lock();
        if inner
            .by_user
            .get(&key.user)
            .is_some_and(|e| e.generation == key.generation)
        {
            inner.by_user.remove(&key.user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(slot: u32) -> (SeatRoute, mpsc::Receiver<RoomCmd>) {
        let (tx, rx) = mpsc::channel(1);
        ((tx, PlayerHandle::for_test(slot)), rx)
    }

    #[test]
    fn a_users_new_join_finds_the_session_it_replaces() {
        let users = Users::new();
        let (first, none) = users.claim("alice");
        assert!(none.is_none());
        let (seat, _room) = route(3);
        assert!(first.key().seated(seat));
        let (_bob, none) = users.claim("bob");
        assert!(none.is_none(), "another user replaces nothing");
        let (second, replaced) = users.claim("alice");
        let (_, player) = replaced.expect("the first session's seat");
        assert_eq!(player, PlayerHandle::for_test(3));
        // The replaced session's seat goes; the new claim stays.
        drop(first);
        assert_eq!(users.len(), 2);
        drop(second);
        assert_eq!(users.len(), 1, "bob's");
    }

    #[test]
    fn a_join_replaced_before_it_was_seated_gives_its_seat_back() {
        let users = Users::new();
        let (first, _) = users.claim("alice");
        let key = first.key();
        // A second join while the first is on its way to its room: there is
        // no seat to end yet.
        let (second, replaced) = users.claim("alice");
        assert!(replaced.is_none());
        let (seat, _room) = route(1);
        assert!(!key.seated(seat), "the older join must give its seat back");
        drop(first);
        let (seat, _room) = route(2);
        assert!(second.key().seated(seat));
        drop(second);
        assert_eq!(users.len(), 0, "nothing left behind");
    }
}
