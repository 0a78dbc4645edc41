//! Client-side prediction of the bot's own player, reconciliation against the
//! server's authoritative position, and input-to-acknowledgement latency.
//!
//! The server applies each input as exactly one
//! [`shared::rules::move_player`] step, in sequence order, at most one per
//! tick, and echoes the last applied sequence number in
//! [`shared::snapshot::SnapshotMsg::input_ack`]. So the bot remembers the
//! position it predicted after every input it sent. When a snapshot
//! acknowledging input `s` arrives, the authoritative position should equal
//! the prediction for `s`: the distance between them is the prediction error
//! a player would see as a correction. The bot then re-predicts from the
//! authoritative position by replaying the inputs the server has not applied
//! yet, as a real client does.
//!
//! Deaths and respawns move (or freeze) a player for reasons prediction cannot
//! know; those corrections are counted apart instead of polluting the error
//! histogram with teleports.
//!
//! Pure: time arrives as arguments.

use std::collections::VecDeque;
use std::time::Duration;

use glam::IVec2;
use shared::rules::{self, TickRules};
use shared::snapshot::NetEntity;
use tokio::time::Instant;

/// Most inputs kept waiting for their acknowledgement. Past this the oldest
/// is forgotten and counted in [`Reconciliation::dropped_unacked`]: the
/// server has not applied an input for this long, so the link is broken and
/// keeping more would only grow memory.
///
/// Default: 512 inputs (17 s at 30 Hz).
pub const MAX_PENDING_INPUTS: usize = 512;

/// An input sent and not yet acknowledged.
#[derive(Clone, Copy, Debug)]
struct Pending {
    seq: u32,
    buttons: u8,
    /// When it was sent; `None` once a reconnection made its latency a
    /// measure of the outage rather than of the server (see
    /// [`Predictor::forget_send_times`]).
    sent_at: Option<Instant>,
    /// Predicted position after this input.
    pos_after: IVec2,
}

/// What one snapshot taught the predictor.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reconciliation {
    /// Inputs this snapshot acknowledged for the first time.
    pub acked: u32,
    /// Latency of those of them sent on the current connection: from the
    /// moment each was sent to now.
    pub ack_latencies: Vec<Duration>,
    /// Distance in world units between the authoritative position and the
    /// prediction for the acknowledged input, when it is a fair measure
    /// (the player was alive now and at the previous snapshot).
    pub error_units: Option<f64>,
    /// The position was corrected because of a death or respawn.
    pub life_event: bool,
    /// The acknowledged sequence went backwards: the server broke the
    /// protocol.
    pub ack_regressed: bool,
    /// Inputs forgotten because [`MAX_PENDING_INPUTS`] was exceeded since the
    /// previous snapshot.
    pub dropped_unacked: u32,
}

/// Prediction state of one bot's own player.
#[derive(Debug)]
pub struct Predictor {
    rules: TickRules,
    /// Sent, unacknowledged inputs in sequence order.
    pending: VecDeque<Pending>,
    /// Newest acknowledged sequence (0: none) and the position the client
    /// holds for it: after reconciliation, the authoritative one.
    acked: (u32, Option<IVec2>),
    /// Hit points at the previous snapshot that contained the player.
    last_hp: Option<u8>,
    /// Predicted position after the newest input; `None` before the first
    /// snapshot that contains the player.
    predicted: Option<IVec2>,
    /// Inputs forgotten since the last snapshot.
    dropped: u32,
    /// The buffer of the next [`Reconciliation::ack_latencies`], handed back
    /// by [`Predictor::recycle`], so that a snapshot costs no allocation.
    spare_latencies: Vec<Duration>,
}

impl Predictor {
    /// A predictor for a server ticking at `tick_hz`.
    #[must_use]
    pub fn new(tick_hz: u32) -> Self {
        Self {
            rules: TickRules::new(tick_hz),
            pending: VecDeque::with_capacity(16),
            acked: (0, None),
            last_hp: None,
            predicted: None,
            dropped: 0,
            spare_latencies: Vec::new(),
        }
    }

    /// The predicted position after the newest input, in quanta; `None`
    /// until a snapshot showed the player.
    #[must_use]
    pub fn predicted(&self) -> Option<IVec2> {
        self.predicted
    }

    /// Number of inputs sent and not yet acknowledged.
    #[must_use]
    pub fn unacked(&self) -> usize {
        self.pending.len()
    }

    /// At the end of a run: the inputs that will never be acknowledged, as
    /// [`Reconciliation::dropped_unacked`] would have reported them (those
    /// forgotten since the last snapshot), and those still waiting that were
    /// sent before `cutoff` (`None`: none counts). Inputs sent before a
    /// resume, whose send times were forgotten, are not counted.
    pub fn unacked_sent_before(&mut self, cutoff: Option<Instant>) -> u32 {
        let stale = cutoff.map_or(0, |cutoff| {
            self.pending
                .iter()
                .filter(|p| p.sent_at.is_some_and(|at| at < cutoff))
                .count() as u32
        });
        std::mem::take(&mut self.dropped) + stale
    }

    /// After a resume: the inputs after `last_kept` will never be applied
    /// (the server's buffer cannot take them all), so they are forgotten
    /// and the inputs kept are predicted again without them. Returns how
    /// many were forgotten.
    pub fn give_up_after(&mut self, last_kept: u32) -> u32 {
        let before = self.pending.len();
        self.pending.retain(|p| p.seq <= last_kept);
        let given_up = before - self.pending.len();
        // The inputs kept are the oldest, whose predictions stand: the
        // prediction goes back to the last of them (or to the position held
        // for the acknowledged input, if none is left).
        if given_up > 0 && self.predicted.is_some() {
            self.predicted = self.pending.back().map(|p| p.pos_after).or(self.acked.1);
        }
        given_up as u32
    }

    /// Records an input the bot sends now and predicts its movement step.
    /// Dead players do not move, so neither does the prediction.
    pub fn on_input(&mut self, seq: u32, buttons: u8, sent_at: Instant) {
        let alive = self.last_hp.is_none_or(|hp| hp > 0);
        let pos_after = match self.predicted {
            Some(p) if alive => rules::move_player(p, buttons, &self.rules),
            Some(p) => p,
            None => IVec2::ZERO,
        };
        if self.predicted.is_some() {
            self.predicted = Some(pos_after);
        }
        if self.pending.len() == MAX_PENDING_INPUTS {
            self.pending.pop_front();
            self.dropped += 1;
        }
        self.pending.push_back(Pending {
            seq,
            buttons,
            sent_at: Some(sent_at),
            pos_after,
        });
    }

    /// The newest acknowledged input sequence number (0: none yet).
    #[must_use]
    pub fn acked_seq(&self) -> u32 {
        self.acked.0
    }

    /// Stops timing the inputs sent so far. Called when a session is
    /// resumed on a new connection: their acknowledgement now waits for the
    /// reconnection, which the resume time measures, and counting it as
    /// input latency would bill the outage to the server.
    pub fn forget_send_times(&mut self) {
        for p in &mut self.pending {
            p.sent_at = None;
        }
    }

    /// Takes back a [`Reconciliation`] the caller is done with, to reuse
    /// its buffer for the next snapshot. Optional: without it, each
    /// snapshot that acknowledges an input allocates one.
    pub fn recycle(&mut self, r: Reconciliation) {
        let mut latencies = r.ack_latencies;
        latencies.clear();
        self.spare_latencies = latencies;
    }

    /// Reconciles with a snapshot received at `now` that acknowledges input
    /// `input_ack` and shows the player as `own` (`None` if the player is not
    /// in the snapshot, or the snapshot could not be rebuilt: then only the
    /// acknowledgements are used).
    pub fn on_snapshot(
        &mut self,
        input_ack: u32,
        own: Option<&NetEntity>,
        now: Instant,
    ) -> Reconciliation {
        let mut out = Reconciliation {
            dropped_unacked: std::mem::take(&mut self.dropped),
            ack_latencies: std::mem::take(&mut self.spare_latencies),
            ..Reconciliation::default()
        };
        let (prev_ack, prev_pos) = self.acked;
        if input_ack < prev_ack {
            out.ack_regressed = true;
            return out;
        }

        // The prediction for `input_ack`: from the pending entry, or, when
        // the ack did not move, the position already held for it. An input
        // sent before the first position was known has no prediction.
        let had_position = self.predicted.is_some();
        let mut predicted_for_ack = if input_ack == prev_ack {
            prev_pos
        } else {
            None
        };
        while let Some(p) = self.pending.front().copied() {
            if p.seq > input_ack {
                break;
            }
            self.pending.pop_front();
            out.acked += 1;
            if let Some(sent_at) = p.sent_at {
                out.ack_latencies
                    .push(now.saturating_duration_since(sent_at));
            }
            if p.seq == input_ack && had_position {
                predicted_for_ack = Some(p.pos_after);
            }
        }

        let Some(own) = own else {
            self.acked = (input_ack, None);
            return out;
        };
        let authoritative = IVec2::new(own.x, own.y);
        let life_event = own.hp == 0 || self.last_hp == Some(0);
        if let Some(predicted) = predicted_for_ack {
            if life_event {
                out.life_event = predicted != authoritative;
            } else {
                let d = (authoritative - predicted).as_dvec2().length();
                out.error_units = Some(d / f64::from(rules::QUANTA_PER_UNIT));
            }
        }

        // Re-predict from the authoritative position.
        let mut pos = authoritative;
        for p in &mut self.pending {
            if own.hp > 0 {
                pos = rules::move_player(pos, p.buttons, &self.rules);
            }
            p.pos_after = pos;
        }
        self.predicted = Some(pos);
        self.acked = (input_ack, Some(authoritative));
        self.last_hp = Some(own.hp);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::rules::buttons;
    use shared::snapshot::EntityKind;

    fn me(pos: IVec2, hp: u8) -> NetEntity {
        NetEntity {
            id: 1,
            kind: EntityKind::Player,
            x: pos.x,
            y: pos.y,
            vx: 0,
            vy: 0,
            angle: 0,
            hp,
            vel_age: 0,
        }
    }

    #[test]
    fn inputs_given_up_are_predicted_no_more() {
        let rules = TickRules::new(30);
        let now = Instant::now();
        let mut p = Predictor::new(30);
        let start = IVec2::new(4000, 3000);
        let _ = p.on_snapshot(0, Some(&me(start, 100)), now);
        for seq in 1..=10 {
            p.on_input(seq, buttons::RIGHT, now);
        }
        assert_eq!(p.give_up_after(6), 4);
        assert_eq!(p.unacked(), 6);
        let mut pos = start;
        for _ in 0..6 {
            pos = rules::move_player(pos, buttons::RIGHT, &rules);
        }
        assert_eq!(p.predicted(), Some(pos));
        // The server applies the six: no misprediction.
        let r = p.on_snapshot(6, Some(&me(pos, 100)), now);
        assert_eq!(r.error_units, Some(0.0));
        assert_eq!(p.give_up_after(6), 0);

        // The same after a snapshot without the player, when no position
        // is held for the acknowledged input.
        for seq in 7..=10 {
            p.on_input(seq, buttons::RIGHT, now);
        }
        let _ = p.on_snapshot(6, None, now);
        assert_eq!(p.give_up_after(8), 2);
        for _ in 0..2 {
            pos = rules::move_player(pos, buttons::RIGHT, &rules);
        }
        assert_eq!(p.predicted(), Some(pos));
    }

    /// A tiny simulated server: applies one pending input per tick.
    struct FakeServer {
        rules: TickRules,
        pos: IVec2,
        hp: u8,
        queue: VecDeque<(u32, u8)>,
        ack: u32,
    }

    impl FakeServer {
        fn tick(&mut self) {
            if let Some((seq, b)) = self.queue.pop_front() {
                if self.hp > 0 {
                    self.pos = rules::move_player(self.pos, b, &self.rules);
                }
                self.ack = seq;
            }
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn exact_replay_gives_zero_error_and_real_latencies() {
        let t0 = Instant::now();
        let rules = TickRules::new(30);
        let start = IVec2::new(4000, 3000);
        let mut server = FakeServer {
            rules,
            pos: start,
            hp: 100,
            queue: VecDeque::new(),
            ack: 0,
        };
        let mut p = Predictor::new(30);
        let first = p.on_snapshot(0, Some(&me(start, 100)), t0);
        assert_eq!(first.error_units, None);
        assert_eq!(p.predicted(), Some(start));

        let pattern = [
            buttons::RIGHT,
            buttons::RIGHT | buttons::DOWN,
            0,
            buttons::UP | buttons::FIRE,
        ];
        let mut errors = Vec::new();
        let mut latencies = Vec::new();
        for seq in 1..=200u32 {
            let now = t0 + ms(33 * u64::from(seq));
            let b = pattern[(seq as usize / 7) % pattern.len()];
            p.on_input(seq, b, now);
            server.queue.push_back((seq, b));
            // Two inputs in flight: the server is two ticks behind.
            if seq > 2 {
                server.tick();
                let r = p.on_snapshot(server.ack, Some(&me(server.pos, 100)), now + ms(5));
                errors.extend(r.error_units);
                latencies.extend(r.ack_latencies);
            }
        }
        assert!(errors.iter().all(|&e| e == 0.0), "{errors:?}");
        assert_eq!(errors.len(), 198);
        assert_eq!(latencies.len(), 198);
        assert!(latencies.iter().all(|&l| l == ms(66 + 5)), "{latencies:?}");
        assert_eq!(p.unacked(), 2);
        // The prediction runs two inputs ahead of the server.
        let mut ahead = server.pos;
        for (_, b) in &server.queue {
            ahead = rules::move_player(ahead, *b, &rules);
        }
        assert_eq!(p.predicted(), Some(ahead));
    }

    #[test]
    fn a_shove_is_measured_once_and_then_reconciled() {
        let t0 = Instant::now();
        let start = IVec2::new(4000, 3000);
        let mut p = Predictor::new(30);
        p.on_snapshot(0, Some(&me(start, 100)), t0);
        for seq in 1..=3 {
            p.on_input(seq, buttons::RIGHT, t0);
        }
        assert_eq!(p.predicted(), Some(start + IVec2::new(96, 0)));
        // The server applied input 1 but the player sits 8 quanta (2 units)
        // lower than predicted.
        let server_pos = start + IVec2::new(32, 8);
        let r = p.on_snapshot(1, Some(&me(server_pos, 100)), t0 + ms(40));
        assert_eq!(r.error_units, Some(2.0));
        assert_eq!(r.ack_latencies, vec![ms(40)]);
        // Inputs 2 and 3 replayed from the corrected position.
        assert_eq!(p.predicted(), Some(server_pos + IVec2::new(64, 0)));
        // The next snapshot agrees with the reconciled prediction.
        let r = p.on_snapshot(2, Some(&me(server_pos + IVec2::new(32, 0), 100)), t0);
        assert_eq!(r.error_units, Some(0.0));
        // A snapshot without a new ack re-checks the same input.
        let r = p.on_snapshot(2, Some(&me(server_pos + IVec2::new(32, 0), 100)), t0);
        assert_eq!(r.error_units, Some(0.0));
        assert!(r.ack_latencies.is_empty());
    }

    #[test]
    fn deaths_and_respawns_are_life_events_not_errors() {
        let t0 = Instant::now();
        let start = IVec2::new(4000, 3000);
        let mut p = Predictor::new(30);
        p.on_snapshot(0, Some(&me(start, 100)), t0);
        p.on_input(1, buttons::LEFT, t0);
        // Died before the input was applied: the server did not move us.
        let r = p.on_snapshot(1, Some(&me(start, 0)), t0);
        assert_eq!(r.error_units, None);
        assert!(r.life_event);
        // While dead, inputs predict no movement.
        p.on_input(2, buttons::LEFT, t0);
        assert_eq!(p.predicted(), Some(start));
        let r = p.on_snapshot(2, Some(&me(start, 0)), t0);
        assert!(!r.life_event && r.error_units.is_none());
        // Respawned far away: a teleport, counted apart.
        p.on_input(3, buttons::LEFT, t0);
        let spawn = IVec2::new(800, 900);
        let r = p.on_snapshot(3, Some(&me(spawn, 100)), t0);
        assert!(r.life_event);
        assert_eq!(r.error_units, None);
        // Alive again: back to measuring.
        p.on_input(4, buttons::DOWN, t0);
        let r = p.on_snapshot(4, Some(&me(spawn + IVec2::new(0, 32), 100)), t0);
        assert_eq!(r.error_units, Some(0.0));
    }

    #[test]
    fn regressing_ack_is_flagged_and_changes_nothing() {
        let t0 = Instant::now();
        let mut p = Predictor::new(30);
        p.on_snapshot(0, Some(&me(IVec2::new(400, 400), 100)), t0);
        for seq in 1..=5 {
            p.on_input(seq, buttons::DOWN, t0);
        }
        let _ = p.on_snapshot(4, Some(&me(IVec2::new(400, 528), 100)), t0);
        let r = p.on_snapshot(3, Some(&me(IVec2::new(400, 496), 100)), t0);
        assert!(r.ack_regressed);
        assert_eq!(p.unacked(), 1);
    }

    #[test]
    fn unacked_inputs_are_bounded() {
        let t0 = Instant::now();
        let mut p = Predictor::new(30);
        p.on_snapshot(0, Some(&me(IVec2::new(400, 400), 100)), t0);
        let n = MAX_PENDING_INPUTS as u32 + 10;
        for seq in 1..=n {
            p.on_input(seq, 0, t0);
        }
        assert_eq!(p.unacked(), MAX_PENDING_INPUTS);
        let r = p.on_snapshot(n, Some(&me(IVec2::new(400, 400), 100)), t0);
        assert_eq!(r.dropped_unacked, 10);
        assert_eq!(r.ack_latencies.len(), MAX_PENDING_INPUTS);
    }

    #[test]
    fn inputs_sent_before_a_reconnection_are_acked_but_not_timed() {
        let t0 = Instant::now();
        let start = IVec2::new(400, 400);
        let mut p = Predictor::new(30);
        p.on_snapshot(0, Some(&me(start, 100)), t0);
        p.on_input(1, buttons::RIGHT, t0);
        p.on_input(2, buttons::RIGHT, t0);
        p.forget_send_times();
        p.on_input(3, buttons::RIGHT, t0 + ms(500));
        let r = p.on_snapshot(3, Some(&me(start + IVec2::new(96, 0), 100)), t0 + ms(520));
        assert_eq!(r.acked, 3);
        assert_eq!(r.ack_latencies, vec![ms(20)]);
        // Prediction is untouched by the reconnection.
        assert_eq!(r.error_units, Some(0.0));
        assert_eq!(p.acked_seq(), 3);
    }

    #[test]
    fn missing_own_entity_still_yields_latencies() {
        let t0 = Instant::now();
        let mut p = Predictor::new(30);
        p.on_snapshot(0, Some(&me(IVec2::new(400, 400), 100)), t0);
        p.on_input(1, buttons::UP, t0);
        let r = p.on_snapshot(1, None, t0 + ms(20));
        assert_eq!(r.ack_latencies, vec![ms(20)]);
        assert_eq!(r.error_units, None);
    }
}
