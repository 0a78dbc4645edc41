//! The bot's own copy of the world: a ring of verified states by tick, rebuilt
//! from the server's deltas with the shared code and checked against the
//! server's checksum on every snapshot.
//!
//! Memory: the server encodes each delta against the newest tick the client
//! acknowledged, and that only moves forward. So once a delta against tick
//! `B` arrives, no later delta can need a state older than `B`, and those are
//! dropped. In steady state the ring holds one round trip's worth of states
//! (a handful), which is what lets one process run thousands of bots;
//! [`RING`] is only the hard cap.

use std::collections::VecDeque;

use shared::Tick;
use shared::snapshot::{self, DeltaError, SnapshotMsg, WorldState};

/// Most states kept. Default: 64 (2 s at 30 Hz), the depth the server
/// contract asks clients to keep.
pub const RING: usize = 64;

/// Spare states kept to reuse their allocations.
const SPARES: usize = 2;

/// Why a snapshot did not produce a verified state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// The delta's baseline is not in the ring: the server used a tick this
    /// client never acknowledged or has already dropped.
    #[error("baseline tick {needed} is not held")]
    MissingBaseline {
        /// The tick the delta was encoded against.
        needed: Tick,
    },
    /// The delta is inconsistent with its baseline.
    #[error("delta does not apply: {0}")]
    Delta(#[from] DeltaError),
    /// The rebuilt state does not hash to the server's checksum: a desync.
    #[error("checksum mismatch at tick {tick}: server {server:#010x}, rebuilt {rebuilt:#010x}")]
    Checksum {
        /// The snapshot's tick.
        tick: Tick,
        /// The server's checksum.
        server: u32,
        /// The checksum of the state this client rebuilt.
        rebuilt: u32,
    },
    /// The snapshot is not newer than the newest state held: TCP does not
    /// reorder, so the server sent it out of order.
    #[error("snapshot tick {tick} is not after {newest}")]
    Stale {
        /// The snapshot's tick.
        tick: Tick,
        /// The newest tick held.
        newest: Tick,
    },
}

impl ReplicaError {
    /// Whether this error means the client's world diverged from the
    /// server's (as opposed to a message arriving out of order).
    #[must_use]
    pub fn is_desync(&self) -> bool {
        !matches!(self, Self::Stale { .. })
    }
}

/// Verified states by increasing tick.
#[derive(Debug, Default)]
pub struct Replica {
    states: VecDeque<WorldState>,
    spare: Vec<WorldState>,
}

impl Replica {
    /// An empty replica.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The newest verified state.
    #[must_use]
    pub fn newest(&self) -> Option<&WorldState> {
        self.states.back()
    }

    /// Number of states held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Whether no state is held yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Rebuilds the state `msg` describes, verifies its checksum and keeps it.
    /// On error nothing is kept and nothing is dropped, so the client can go
    /// on from the baselines it acknowledged.
    pub fn apply(&mut self, msg: &SnapshotMsg) -> Result<&WorldState, ReplicaError> {
        if let Some(newest) = self.states.back()
            && msg.tick.since(newest.tick) <= 0
        {
            return Err(ReplicaError::Stale {
                tick: msg.tick,
                newest: newest.tick,
            });
        }
        let base_at = if msg.is_full() {
            None
        } else {
            let needed = msg.tick.advanced(msg.base_age.wrapping_neg());
            match self.states.iter().position(|s| s.tick == needed) {
                Some(i) => Some(i),
                None => return Err(ReplicaError::MissingBaseline { needed }),
            }
        };
        let mut out = self.spare.pop().unwrap_or_default();
        let base = base_at.and_then(|i| self.states.get(i));
        if let Err(e) = snapshot::apply_into(base, msg, &mut out) {
            self.recycle(out);
            return Err(e.into());
        }
        let rebuilt = snapshot::checksum(&out);
        if rebuilt != msg.checksum {
            self.recycle(out);
            return Err(ReplicaError::Checksum {
                tick: msg.tick,
                server: msg.checksum,
                rebuilt,
            });
        }
        // Later deltas cannot need anything older than this baseline.
        for _ in 0..base_at.unwrap_or(0) {
            if let Some(old) = self.states.pop_front() {
                self.recycle(old);
            }
        }
        if self.states.len() == RING
            && let Some(old) = self.states.pop_front()
        {
            self.recycle(old);
        }
        self.states.push_back(out);
        Ok(self
            .states
            .back()
            .unwrap_or_else(|| unreachable!("just pushed")))
    }

    fn recycle(&mut self, state: WorldState) {
        if self.spare.len() < SPARES {
            self.spare.push(state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::snapshot::{EntityKind, NetEntity, PlayerInfo, diff};

    fn world(tick: u32, n: u32) -> WorldState {
        WorldState {
            tick: Tick(tick),
            entities: (0..n)
                .map(|id| NetEntity {
                    id,
                    kind: if id == 0 {
                        EntityKind::Player
                    } else {
                        EntityKind::Npc
                    },
                    x: (id as i32) * 100 + tick as i32 * 3,
                    y: 500 + (tick as i32 % 7) * (id as i32),
                    vx: 3,
                    vy: (tick % 3) as i32,
                    angle: tick as u8,
                    hp: 100,
                    vel_age: 0,
                })
                .collect(),
            players: std::sync::Arc::new(vec![PlayerInfo {
                id: 0,
                name: "bot".into(),
                score: tick / 10,
                deaths: 0,
            }]),
        }
    }

    #[test]
    fn follows_a_stream_of_deltas_against_acked_baselines() {
        let mut replica = Replica::new();
        let first = world(10, 5 + 10 % 4);
        let got = replica.apply(&diff(None, &first, 0)).cloned();
        assert_eq!(got, Ok(first));
        // The server deltas against a baseline three ticks old, as it would
        // with acks in flight.
        for t in 11..100u32 {
            let base_tick = t.saturating_sub(3).max(10);
            let base = world(base_tick, 5 + (base_tick % 4));
            let current = world(t, 5 + (t % 4));
            let got = replica.apply(&diff(Some(&base), &current, 0)).cloned();
            assert_eq!(got, Ok(current));
            assert!(replica.len() <= 4, "ring holds {}", replica.len());
        }
    }

    #[test]
    fn tampered_delta_is_a_checksum_desync_and_keeps_the_baseline() {
        let mut replica = Replica::new();
        let base = world(1, 3);
        assert!(replica.apply(&diff(None, &base, 0)).is_ok());
        let mut msg = diff(Some(&base), &world(2, 3), 0);
        msg.checksum ^= 1;
        let err = replica.apply(&msg).map(|_| ());
        assert!(matches!(err, Err(ReplicaError::Checksum { .. })));
        assert!(err.is_err_and(|e| e.is_desync()));
        // The baseline survived: the next delta against it still applies.
        let next = world(3, 3);
        assert_eq!(
            replica.apply(&diff(Some(&base), &next, 0)).cloned(),
            Ok(next)
        );
    }

    #[test]
    fn unknown_baseline_is_reported() {
        let mut replica = Replica::new();
        assert!(replica.apply(&diff(None, &world(5, 2), 0)).is_ok());
        let msg = diff(Some(&world(4, 2)), &world(6, 2), 0);
        assert_eq!(
            replica.apply(&msg).map(|_| ()),
            Err(ReplicaError::MissingBaseline { needed: Tick(4) })
        );
        // A delta before any full snapshot has nothing to apply to.
        let mut empty = Replica::new();
        assert!(matches!(
            empty.apply(&msg),
            Err(ReplicaError::MissingBaseline { .. })
        ));
    }

    #[test]
    fn out_of_order_snapshot_is_stale_not_desync() {
        let mut replica = Replica::new();
        assert!(replica.apply(&diff(None, &world(5, 2), 0)).is_ok());
        let err = replica.apply(&diff(None, &world(5, 2), 0)).map(|_| ());
        assert_eq!(
            err,
            Err(ReplicaError::Stale {
                tick: Tick(5),
                newest: Tick(5)
            })
        );
        assert!(err.is_err_and(|e| !e.is_desync()));
    }

    #[test]
    fn inconsistent_delta_is_a_desync() {
        let mut replica = Replica::new();
        let base = world(1, 2);
        assert!(replica.apply(&diff(None, &base, 0)).is_ok());
        let mut msg = diff(Some(&base), &world(2, 2), 0);
        msg.removed.push(99);
        let err = replica.apply(&msg).map(|_| ());
        assert!(matches!(err, Err(ReplicaError::Delta(_))));
    }

    #[test]
    fn ring_is_capped_when_the_server_keeps_an_old_baseline() {
        let mut replica = Replica::new();
        let base = world(1, 2);
        assert!(replica.apply(&diff(None, &base, 0)).is_ok());
        // The full snapshot plus 63 deltas fill the ring; the 64th delta
        // still applies but pushes the baseline out, so the next one cannot.
        let last_ok = RING as u32 + 1;
        for t in 2..=last_ok {
            assert!(
                replica.apply(&diff(Some(&base), &world(t, 2), 0)).is_ok(),
                "tick {t}"
            );
            assert!(replica.len() <= RING);
        }
        assert_eq!(
            replica
                .apply(&diff(Some(&base), &world(last_ok + 1, 2), 0))
                .map(|_| ()),
            Err(ReplicaError::MissingBaseline { needed: Tick(1) })
        );
    }

    #[test]
    fn ticks_wrap_around() {
        let mut replica = Replica::new();
        let mut prev = world(0, 3);
        prev.tick = Tick(u32::MAX - 1);
        assert!(replica.apply(&diff(None, &prev, 0)).is_ok());
        for step in 1..5u32 {
            let mut next = world(step, 3);
            next.tick = Tick(u32::MAX - 1).advanced(step);
            assert_eq!(
                replica.apply(&diff(Some(&prev), &next, 0)).cloned(),
                Ok(next.clone())
            );
            prev = next;
        }
    }
}
