//! What a bot presses: a small, deterministic imitation of a person.
//!
//! A person does not hold one direction forever or fire every tick. The brain
//! picks a new heading about once a second (sometimes standing still), turns
//! away from walls before hugging them, aims at the nearest other body in
//! sight with a little hand shake, and fires in short bursts now and then.
//! This exercises the parts of the netcode that matter: velocity changes
//! (delta residuals), projectiles being created and removed, hits and
//! respawns.
//!
//! Pure: the brain is driven once per tick with the bot's predicted position
//! and its replica of the world, and all randomness comes from a seeded
//! generator, so a run is reproducible.

use glam::{IVec2, Vec2};
use shared::rules::{self, buttons};
use shared::snapshot::{EntityKind, WorldState};

/// How close (in quanta) a wall may get before the brain turns away: 80 world
/// units, a third of a second of running at full speed.
const WALL_MARGIN: i32 = 80 * rules::QUANTA_PER_UNIT;
/// How far (in quanta) a target may be to be aimed at: 700 world units,
/// about what a projectile flies in its lifetime.
const SIGHT: i32 = 700 * rules::QUANTA_PER_UNIT;
/// Largest aim error from the shaking hand, in 1/65536 turns (about 8°).
const AIM_SHAKE: u16 = 1500;

/// The eight headings and standing still, as button bits. Standing still is
/// listed once, so a bot stands about one second in nine.
const HEADINGS: [u8; 9] = [
    buttons::UP,
    buttons::UP | buttons::RIGHT,
    buttons::RIGHT,
    buttons::DOWN | buttons::RIGHT,
    buttons::DOWN,
    buttons::DOWN | buttons::LEFT,
    buttons::LEFT,
    buttons::UP | buttons::LEFT,
    0,
];

/// One tick's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Bits of [`shared::rules::buttons`].
    pub buttons: u8,
    /// Aim angle in 1/65536 turns, clockwise from +x.
    pub aim: u16,
}

/// The decision state of one bot.
#[derive(Debug)]
pub struct Brain {
    rng: fastrand::Rng,
    tick_hz: u32,
    /// Movement bits currently held.
    heading: u8,
    /// Ticks left before picking a new heading.
    turn_in: u32,
    /// Ticks left in the current burst of fire (0: not firing).
    burst_left: u32,
    /// Last aim, kept when there is nothing to aim at.
    aim: u16,
    /// Player id of the bot itself, so it does not aim at itself.
    own_id: u32,
    /// Where a blind brain pretends its target is (see
    /// [`Brain::decide_blind`]).
    bearing: u16,
}

impl Brain {
    /// A brain for the player `own_id` on a server ticking at `tick_hz`,
    /// drawing its choices from `seed`.
    #[must_use]
    pub fn new(own_id: u32, tick_hz: u32, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let aim = rng.u16(..);
        Self {
            rng,
            tick_hz: tick_hz.max(1),
            heading: 0,
            turn_in: 0,
            burst_left: 0,
            aim,
            own_id,
            bearing: aim,
        }
    }

    /// Ticks until the next heading change: 0.6 to 1.4 seconds.
    fn turn_interval(&mut self) -> u32 {
        let hz = self.tick_hz;
        self.rng.u32(hz * 6 / 10..=hz * 14 / 10).max(1)
    }

    /// The buttons and aim for the next tick. `own` is the bot's predicted
    /// position (quanta), `world` its newest verified replica.
    pub fn decide(&mut self, own: IVec2, world: &WorldState) -> Decision {
        self.next_heading();
        self.heading = steer_off_walls(own, self.heading);
        let target = nearest_target(own, world, self.own_id);
        self.act(target.map(|t| aim_at(own, t)), target.is_some())
    }

    /// The buttons and aim for the next tick of a bot that knows neither its
    /// position nor the world (a light load-test bot). It behaves as if a
    /// target were always in sight, because in a crowded arena one nearly
    /// always is: it changes heading like [`decide`](Self::decide) (but
    /// cannot steer off walls; the server keeps it inside), aims with the
    /// same shaking hand at a bearing it picks anew with each heading, and
    /// fires in the same bursts. So the server simulates as many
    /// projectiles, and its deltas carry as many aim changes, as with full
    /// bots.
    pub fn decide_blind(&mut self) -> Decision {
        if self.turn_in == 0 {
            self.bearing = self.rng.u16(..);
        }
        self.next_heading();
        self.act(Some(self.bearing), true)
    }

    fn next_heading(&mut self) {
        if self.turn_in == 0 {
            self.heading = HEADINGS[self.rng.usize(..HEADINGS.len())];
            self.turn_in = self.turn_interval();
        }
        self.turn_in -= 1;
    }

    /// Aims (at `target_aim` with a shaking hand, else where the bot runs)
    /// and fires now and then when `may_fire`.
    fn act(&mut self, target_aim: Option<u16>, may_fire: bool) -> Decision {
        if let Some(aim) = target_aim {
            let shake = self.rng.u16(..=2 * AIM_SHAKE);
            self.aim = aim.wrapping_add(shake).wrapping_sub(AIM_SHAKE);
        } else if self.heading != 0 {
            // Nothing in sight: look where we run.
            self.aim = aim_at(IVec2::ZERO, rules::move_axes(self.heading));
        }

        // A burst every ~2.5 s on average while a target is in sight, 0.2 to
        // 0.6 s long: with the 250 ms cooldown that is one to three shots.
        if self.burst_left == 0 && may_fire && self.rng.u32(..self.tick_hz * 5 / 2) == 0 {
            self.burst_left = self.rng.u32(self.tick_hz / 5..=self.tick_hz * 3 / 5).max(1);
        }
        let fire = if self.burst_left > 0 {
            self.burst_left -= 1;
            buttons::FIRE
        } else {
            0
        };
        Decision {
            buttons: self.heading | fire,
            aim: self.aim,
        }
    }
}

/// Replaces any movement bit that would push into a nearby wall by its
/// opposite.
fn steer_off_walls(pos: IVec2, heading: u8) -> u8 {
    let mut h = heading;
    let mut flip = |toward: u8, away: u8, near: bool| {
        if near && h & toward != 0 {
            h = (h & !toward) | away;
        }
    };
    flip(buttons::LEFT, buttons::RIGHT, pos.x < WALL_MARGIN);
    flip(
        buttons::RIGHT,
        buttons::LEFT,
        pos.x > rules::ARENA_WIDTH - WALL_MARGIN,
    );
    flip(buttons::UP, buttons::DOWN, pos.y < WALL_MARGIN);
    flip(
        buttons::DOWN,
        buttons::UP,
        pos.y > rules::ARENA_HEIGHT - WALL_MARGIN,
    );
    h
}

/// The nearest living player or NPC other than `own_id` within [`SIGHT`].
fn nearest_target(own: IVec2, world: &WorldState, own_id: u32) -> Option<IVec2> {
    world
        .entities
        .iter()
        .filter(|e| e.id != own_id && e.hp > 0)
        .filter(|e| matches!(e.kind, EntityKind::Player | EntityKind::Npc))
        .map(|e| IVec2::new(e.x, e.y))
        .map(|p| (p, (p - own).as_i64vec2().length_squared()))
        .filter(|&(_, d2)| d2 <= i64::from(SIGHT) * i64::from(SIGHT))
        .min_by_key(|&(_, d2)| d2)
        .map(|(p, _)| p)
}

/// Aim angle from `from` to `to` in 1/65536 turns, clockwise from +x (screen
/// coordinates, +y down), the convention of [`rules::aim_direction`].
#[must_use]
pub fn aim_at(from: IVec2, to: IVec2) -> u16 {
    let d: Vec2 = (to - from).as_vec2();
    if d == Vec2::ZERO {
        return 0;
    }
    let turns = d.y.atan2(d.x) / std::f32::consts::TAU;
    (turns.rem_euclid(1.0) * 65536.0).round() as u32 as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::Tick;
    use shared::snapshot::NetEntity;

    fn body(id: u32, kind: EntityKind, x: i32, y: i32, hp: u8) -> NetEntity {
        NetEntity {
            id,
            kind,
            x,
            y,
            vx: 0,
            vy: 0,
            angle: 0,
            hp,
            vel_age: 0,
        }
    }

    fn middle() -> IVec2 {
        IVec2::new(rules::ARENA_WIDTH / 2, rules::ARENA_HEIGHT / 2)
    }

    #[test]
    fn aim_matches_the_shared_aim_convention() {
        for aim in [0u16, 9000, 16384, 30000, 49152, 65000] {
            let dir = rules::aim_direction(aim) * 1000.0;
            let to = dir.round().as_ivec2();
            let back = aim_at(IVec2::ZERO, to);
            let err = back.wrapping_sub(aim).min(aim.wrapping_sub(back));
            assert!(err < 50, "aim {aim} came back as {back}");
        }
    }

    #[test]
    fn heading_changes_about_once_a_second() {
        let mut brain = Brain::new(1, 30, 42);
        let world = WorldState::default();
        let mut changes = 0;
        let mut last = None;
        let ticks = 30 * 60;
        for _ in 0..ticks {
            let d = brain.decide(middle(), &world);
            let heading = d.buttons & !buttons::FIRE;
            if last.is_some_and(|l| l != heading) {
                changes += 1;
            }
            last = Some(heading);
        }
        // One pick per ~second, and about 1 in 9 picks repeats the heading.
        assert!((35..=70).contains(&changes), "{changes} changes in 60 s");
    }

    #[test]
    fn fires_now_and_then_only_with_a_target() {
        let mut brain = Brain::new(1, 30, 7);
        let empty = WorldState::default();
        let fired = (0..900)
            .filter(|_| brain.decide(middle(), &empty).buttons & buttons::FIRE != 0)
            .count();
        assert_eq!(fired, 0, "fired at nothing");

        let m = middle();
        let world = WorldState {
            tick: Tick(1),
            entities: vec![
                body(1, EntityKind::Player, m.x, m.y, 100),
                body(2, EntityKind::Npc, m.x + 400, m.y, 100),
            ],
            players: Default::default(),
        };
        let ticks = 30 * 60;
        let fired = (0..ticks)
            .filter(|_| brain.decide(m, &world).buttons & buttons::FIRE != 0)
            .count();
        // Bursts of ~0.4 s every ~2.5 s: roughly 15% of ticks; "now and
        // then" means neither never nor always.
        assert!(
            fired > ticks / 30 && fired < ticks / 3,
            "fired {fired} of {ticks} ticks"
        );
    }

    #[test]
    fn aims_at_the_nearest_living_other_body() {
        let m = middle();
        let world = WorldState {
            tick: Tick(1),
            entities: vec![
                // Itself, right on top: ignored.
                body(1, EntityKind::Player, m.x + 4, m.y, 100),
                // Dead and close: ignored.
                body(2, EntityKind::Player, m.x, m.y - 100, 0),
                // A projectile: ignored.
                body(3, EntityKind::Projectile, m.x - 50, m.y, 1),
                // The nearest valid target, straight down.
                body(4, EntityKind::Npc, m.x, m.y + 600, 100),
                body(5, EntityKind::Player, m.x + 1500, m.y, 100),
            ],
            players: Default::default(),
        };
        let mut brain = Brain::new(1, 30, 3);
        for _ in 0..100 {
            let aim = brain.decide(m, &world).aim;
            let err = aim.wrapping_sub(16384).min(16384u16.wrapping_sub(aim));
            assert!(err <= AIM_SHAKE + 1, "aim {aim}");
        }
    }

    #[test]
    fn never_pushes_into_a_wall() {
        let corners = [
            IVec2::new(rules::PLAYER_RADIUS, rules::PLAYER_RADIUS),
            IVec2::new(
                rules::ARENA_WIDTH - rules::PLAYER_RADIUS,
                rules::ARENA_HEIGHT - rules::PLAYER_RADIUS,
            ),
        ];
        let world = WorldState::default();
        for (i, corner) in corners.into_iter().enumerate() {
            let mut brain = Brain::new(1, 30, i as u64);
            for _ in 0..3000 {
                let axes = rules::move_axes(brain.decide(corner, &world).buttons);
                let inward = (middle() - corner).signum();
                assert!(axes.x == 0 || axes.x == inward.x, "{axes} at {corner}");
                assert!(axes.y == 0 || axes.y == inward.y, "{axes} at {corner}");
            }
        }
    }

    #[test]
    fn a_blind_brain_moves_and_fires_now_and_then() {
        let mut brain = Brain::new(1, 30, 5);
        let ticks = 30 * 60;
        let decisions: Vec<Decision> = (0..ticks).map(|_| brain.decide_blind()).collect();
        let fired = decisions
            .iter()
            .filter(|d| d.buttons & buttons::FIRE != 0)
            .count();
        let moving = decisions
            .iter()
            .filter(|d| d.buttons & !buttons::FIRE != 0)
            .count();
        assert!(
            fired > ticks / 30 && fired < ticks / 3,
            "fired {fired} of {ticks} ticks"
        );
        assert!(moving > ticks / 2, "moved on {moving} of {ticks} ticks");
        // The hand shakes, as when aiming at a target.
        let aim_changes = decisions
            .windows(2)
            .filter(|w| w[0].aim != w[1].aim)
            .count();
        assert!(aim_changes > ticks * 9 / 10, "{aim_changes} aim changes");
    }

    #[test]
    fn same_seed_same_play() {
        let world = WorldState::default();
        let play = |seed| {
            let mut brain = Brain::new(1, 30, seed);
            (0..300)
                .map(|_| brain.decide(middle(), &world))
                .collect::<Vec<_>>()
        };
        assert_eq!(play(11), play(11));
        assert_ne!(play(11), play(12));
    }
}
