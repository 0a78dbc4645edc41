//! One game per user: with join tokens, a user who joins again ends the
//! session they had (`Config::one_session_per_user`).
//!
//! Join tokens are stateless (`HmacTokens`): one token, or one leaked,
//! would otherwise seat as many players as connections are allowed, for
//! as long as it is valid. Each authenticated join carries a *claim* to
//! its room, which keeps it with the seat for the session's whole life
//! (playing or awaiting a resume) and drops it with the seat. Once the join
//! is welcomed, its claim becomes the user's session here
//! ([`ClaimKey::seated`]), and the session it replaces, if any, is ended
//! where it is: its connection told `SessionReplaced`, its token answered
//! the same for a while (`room`). A join that fails ends nothing, and of two
//! joins of one user at once, the one welcomed last stays.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use crate::room::{PlayerHandle, RoomCmd};

/// Where a user's session is seated: its room's commands and its seat.
pub(crate) type SeatRoute = (mpsc::Sender<RoomCmd>, PlayerHandle);

/// Each user's session.
#[derive(Debug, Default)]
pub(crate) struct Users {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The generation of the next claim.
    next: u64,
    /// The claim of each user's session, and where it is seated.
    by_user: HashMap<String, (u64, SeatRoute)>,
}

/// A join's claim to its user's one session; gives the session up when
/// dropped (with the seat), unless a newer one has replaced it.
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
        crate::lock(&self.inner)
    }

    /// A claim for a new join of `user`; nothing changes until it is
    /// seated.
    pub(crate) fn claim(self: &Arc<Self>, user: &str) -> UserClaim {
        let mut inner = self.lock();
        let generation = inner.next;
        inner.next += 1;
        UserClaim(ClaimKey {
            users: Arc::clone(self),
            user: user.to_owned(),
            generation,
        })
    }

    /// Users with a session.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().by_user.len()
    }
}

impl UserClaim {
    pub(crate) fn key(&self) -> ClaimKey {
        self.0.clone()
    }

    /// The room of the session this claim would replace, if the user has
    /// one: its seat is the user's own, and goes once this join is
    /// welcomed (`Registry::reserve`).
    pub(crate) fn replaces_in(&self) -> Option<mpsc::Sender<RoomCmd>> {
        let key = &self.0;
        let inner = key.users.lock();
        let (generation, (room, _)) = inner.by_user.get(&key.user)?;
        (*generation != key.generation).then(|| room.clone())
    }
}

impl ClaimKey {
    /// The join was welcomed at `seat`: it is the user's session now, and
    /// the session it replaces, if there is one, is returned, to be ended.
    pub(crate) fn seated(&self, seat: SeatRoute) -> Option<SeatRoute> {
        let mut inner = self.users.lock();
        let old = inner
            .by_user
            .insert(self.user.clone(), (self.generation, seat))?;
        (old.0 != self.generation).then_some(old.1)
    }
}

impl Drop for UserClaim {
    fn drop(&mut self) {
        let key = &self.0;
        let mut inner = key.users.lock();
        if inner
            .by_user
            .get(&key.user)
            .is_some_and(|(generation, _)| *generation == key.generation)
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
    fn a_users_welcomed_join_replaces_the_session_they_had() {
        let users = Users::new();
        let first = users.claim("alice");
        let (seat, _room) = route(3);
        assert!(first.key().seated(seat).is_none());
        let bob = users.claim("bob");
        let (seat, _room) = route(4);
        assert!(
            bob.key().seated(seat).is_none(),
            "another user replaces nothing"
        );
        let second = users.claim("alice");
        let (seat, _room) = route(5);
        let (_, player) = second.key().seated(seat).expect("the first session's seat");
        assert_eq!(player, PlayerHandle::for_test(3));
        // The replaced session's seat goes; the new claim stays.
        drop(first);
        assert_eq!(users.len(), 2);
        drop(second);
        assert_eq!(users.len(), 1, "bob's");
    }

    #[test]
    fn a_claim_knows_the_room_of_the_session_it_would_replace() {
        let users = Users::new();
        let first = users.claim("alice");
        assert!(first.replaces_in().is_none(), "no session yet");
        let (seat, _room) = route(1);
        let room = seat.0.clone();
        assert!(first.key().seated(seat).is_none());
        assert!(
            first.replaces_in().is_none(),
            "a session does not replace itself"
        );
        let second = users.claim("alice");
        assert!(
            second.replaces_in().is_some_and(|r| r.same_channel(&room)),
            "the first session's room"
        );
        assert!(users.claim("bob").replaces_in().is_none(), "bob has none");
        drop(first);
        assert!(second.replaces_in().is_none(), "the session ended");
    }

    #[test]
    fn a_join_that_fails_ends_nothing_and_the_last_welcomed_stays() {
        let users = Users::new();
        let first = users.claim("alice");
        let (seat, _room) = route(1);
        assert!(first.key().seated(seat).is_none());
        // A second join that is never welcomed (refused, or its connection
        // lost): the first session is untouched.
        drop(users.claim("alice"));
        assert_eq!(users.len(), 1);
        // Two joins at once: the one welcomed last replaces the other.
        let (a, b) = (users.claim("alice"), users.claim("alice"));
        let (seat, _room) = route(2);
        assert_eq!(
            b.key().seated(seat).map(|(_, p)| p),
            Some(PlayerHandle::for_test(1))
        );
        let (seat, _room) = route(3);
        assert_eq!(
            a.key().seated(seat).map(|(_, p)| p),
            Some(PlayerHandle::for_test(2))
        );
        drop((first, b));
        assert_eq!(users.len(), 1, "a's");
        drop(a);
        assert_eq!(users.len(), 0, "nothing left behind");
    }
}
