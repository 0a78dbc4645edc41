//! The game rules both sides must agree on: arena bounds, movement, collision
//! radii, weapon timing.
//!
//! Positions live on an integer grid of [`QUANTA_PER_UNIT`] steps per world
//! unit, on the server as well as on the wire. Because the server's state *is*
//! the quantized state, a client that starts from an authoritative position and
//! replays its inputs with [`move_player`] lands on exactly the server's
//! position: prediction error is zero unless something else (a hit, a respawn)
//! moved the player. Integer math also makes the browser's port of these
//! functions exact (see the golden vectors).

use glam::{IVec2, Vec2};

/// Grid steps per world unit. 1/4 unit is below a pixel at the demo's zoom,
/// and keeps a player's per-tick move at 30 Hz (32 quanta) inside a 1-byte
/// zigzag varint.
pub const QUANTA_PER_UNIT: i32 = 4;
/// Arena width in quanta (2400 world units).
pub const ARENA_WIDTH: i32 = 2400 * QUANTA_PER_UNIT;
/// Arena height in quanta (1600 world units).
pub const ARENA_HEIGHT: i32 = 1600 * QUANTA_PER_UNIT;
/// Radius of players and NPCs in quanta (16 units).
pub const PLAYER_RADIUS: i32 = 16 * QUANTA_PER_UNIT;
/// Radius of a projectile in quanta (4 units).
pub const PROJECTILE_RADIUS: i32 = 4 * QUANTA_PER_UNIT;
/// Player speed in quanta per second (240 units/s).
pub const PLAYER_SPEED: i32 = 240 * QUANTA_PER_UNIT;
/// NPC speed in quanta per second (140 units/s).
pub const NPC_SPEED: i32 = 140 * QUANTA_PER_UNIT;
/// Projectile speed in quanta per second (720 units/s).
pub const PROJECTILE_SPEED: i32 = 720 * QUANTA_PER_UNIT;
/// How long a projectile flies, in milliseconds.
pub const PROJECTILE_LIFETIME_MS: u32 = 1000;
/// Minimum time between two shots of one shooter, in milliseconds.
pub const FIRE_COOLDOWN_MS: u32 = 250;
/// How long a dead player or NPC waits before respawning, in milliseconds.
pub const RESPAWN_MS: u32 = 2000;
/// Hit points of a fresh player or NPC.
pub const MAX_HP: u8 = 100;
/// Damage of one projectile hit.
pub const PROJECTILE_DAMAGE: u8 = 25;
/// Longest player name in characters; longer names are cut.
pub const MAX_NAME_CHARS: usize = 16;

/// Input button bits (see [`crate::protocol::InputCmd::buttons`]).
pub mod buttons {
    /// Move up (towards y = 0).
    pub const UP: u8 = 1;
    /// Move down.
    pub const DOWN: u8 = 2;
    /// Move left (towards x = 0).
    pub const LEFT: u8 = 4;
    /// Move right.
    pub const RIGHT: u8 = 8;
    /// Fire the weapon in the aim direction.
    pub const FIRE: u8 = 16;
    /// Every bit that means something; the server clears the others.
    pub const ALL: u8 = UP | DOWN | LEFT | RIGHT | FIRE;
}

/// Per-tick constants derived from the tick rate. Both sides compute them with
/// the same integer math from the tick rate the server announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TickRules {
    /// Simulation steps per second.
    pub tick_hz: u32,
    /// Player move along one axis per tick, in quanta.
    pub player_step: i32,
    /// Player move along each axis per tick when moving diagonally, in quanta
    /// (`player_step / sqrt 2`, rounded).
    pub player_step_diag: i32,
    /// NPC move per tick, in quanta.
    pub npc_step: i32,
    /// Projectile move per tick, in quanta.
    pub projectile_step: i32,
    /// Projectile lifetime in ticks (at least 1).
    pub projectile_ticks: u32,
    /// Ticks between two shots (at least 1).
    pub fire_cooldown_ticks: u32,
    /// Ticks from death to respawn (at least 1).
    pub respawn_ticks: u32,
}

/// Rounded integer division for non-negative operands.
fn div_round(num: i64, den: i64) -> i64 {
    (num + den / 2) / den
}

fn ms_to_ticks(ms: u32, tick_hz: u32) -> u32 {
    (div_round(i64::from(ms) * i64::from(tick_hz), 1000) as u32).max(1)
}

impl TickRules {
    /// Derives the per-tick constants for `tick_hz` steps per second
    /// (clamped to 1..=128).
    #[must_use]
    pub fn new(tick_hz: u32) -> Self {
        let hz = tick_hz.clamp(1, 128);
        let per_tick = |speed: i32| div_round(i64::from(speed), i64::from(hz)) as i32;
        let player_step = per_tick(PLAYER_SPEED);
        Self {
            tick_hz: hz,
            player_step,
            player_step_diag: div_round(i64::from(player_step) * 7071, 10_000) as i32,
            npc_step: per_tick(NPC_SPEED),
            projectile_step: per_tick(PROJECTILE_SPEED),
            projectile_ticks: ms_to_ticks(PROJECTILE_LIFETIME_MS, hz),
            fire_cooldown_ticks: ms_to_ticks(FIRE_COOLDOWN_MS, hz),
            respawn_ticks: ms_to_ticks(RESPAWN_MS, hz),
        }
    }
}

/// The movement direction the buttons ask for: each axis in -1..=1.
#[must_use]
pub fn move_axes(buttons: u8) -> IVec2 {
    let axis = |neg: u8, pos: u8| i32::from(buttons & pos != 0) - i32::from(buttons & neg != 0);
    IVec2::new(
        axis(buttons::LEFT, buttons::RIGHT),
        axis(buttons::UP, buttons::DOWN),
    )
}

/// Clamps a body of `radius` quanta so it stays fully inside the arena.
#[must_use]
pub fn clamp_to_arena(pos: IVec2, radius: i32) -> IVec2 {
    IVec2::new(
        pos.x.clamp(radius, ARENA_WIDTH - radius),
        pos.y.clamp(radius, ARENA_HEIGHT - radius),
    )
}

/// One tick of player movement: the step the buttons ask for, then the arena
/// clamp. This is the function client-side prediction replays.
#[must_use]
pub fn move_player(pos: IVec2, buttons: u8, rules: &TickRules) -> IVec2 {
    let axes = move_axes(buttons);
    let step = if axes.x != 0 && axes.y != 0 {
        rules.player_step_diag
    } else {
        rules.player_step
    };
    clamp_to_arena(pos + axes * step, PLAYER_RADIUS)
}

/// Whether two circles overlap (touching counts as a hit).
#[must_use]
pub fn circles_overlap(a: IVec2, b: IVec2, radius_sum: i32) -> bool {
    let d = (a - b).as_i64vec2();
    d.length_squared() <= i64::from(radius_sum) * i64::from(radius_sum)
}

/// Whether a position lies inside the arena (edges included).
#[must_use]
pub fn inside_arena(pos: IVec2) -> bool {
    (0..=ARENA_WIDTH).contains(&pos.x) && (0..=ARENA_HEIGHT).contains(&pos.y)
}

/// Unit vector of an aim angle given in 1/65536 turns, clockwise from +x
/// (screen coordinates: +y points down).
#[must_use]
pub fn aim_direction(aim: u16) -> Vec2 {
    Vec2::from_angle(f32::from(aim) * (std::f32::consts::TAU / 65536.0))
}

/// Per-tick velocity of a projectile fired at `aim`, rounded to quanta.
#[must_use]
pub fn projectile_velocity(aim: u16, rules: &TickRules) -> IVec2 {
    (aim_direction(aim) * rules.projectile_step as f32)
        .round()
        .as_ivec2()
}

/// Aim angle as replicated in snapshots: 1/256 turns.
#[must_use]
pub fn replicated_angle(aim: u16) -> u8 {
    (aim >> 8) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_hz_steps_fit_one_byte_varints() {
        let r = TickRules::new(30);
        assert_eq!(r.player_step, 32);
        assert_eq!(r.player_step_diag, 23);
        assert_eq!(r.projectile_ticks, 30);
        assert_eq!(r.fire_cooldown_ticks, 8);
        assert_eq!(r.respawn_ticks, 60);
    }

    #[test]
    fn tick_rate_is_clamped_and_timers_never_reach_zero() {
        let slow = TickRules::new(0);
        assert_eq!(slow.tick_hz, 1);
        assert!(slow.fire_cooldown_ticks >= 1);
        let fast = TickRules::new(10_000);
        assert_eq!(fast.tick_hz, 128);
        assert!(fast.player_step > 0);
    }

    #[test]
    fn opposite_buttons_cancel_and_diagonals_are_slower_per_axis() {
        let r = TickRules::new(30);
        let start = IVec2::new(1000, 1000);
        assert_eq!(
            move_player(start, buttons::LEFT | buttons::RIGHT, &r),
            start
        );
        assert_eq!(
            move_player(start, buttons::RIGHT, &r),
            start + IVec2::new(32, 0)
        );
        assert_eq!(
            move_player(start, buttons::UP | buttons::RIGHT, &r),
            start + IVec2::new(23, -23)
        );
    }

    #[test]
    fn players_never_leave_the_arena() {
        let r = TickRules::new(1);
        let corner = IVec2::new(PLAYER_RADIUS, PLAYER_RADIUS);
        assert_eq!(move_player(corner, buttons::UP | buttons::LEFT, &r), corner);
        let far = IVec2::new(ARENA_WIDTH, ARENA_HEIGHT);
        assert_eq!(
            move_player(far, buttons::DOWN | buttons::RIGHT, &r),
            far - IVec2::splat(PLAYER_RADIUS)
        );
    }

    #[test]
    fn projectile_velocity_points_along_aim() {
        let r = TickRules::new(30);
        assert_eq!(projectile_velocity(0, &r), IVec2::new(96, 0));
        assert_eq!(projectile_velocity(16384, &r), IVec2::new(0, 96));
    }

    #[test]
    fn overlap_includes_touching() {
        assert!(circles_overlap(IVec2::ZERO, IVec2::new(3, 4), 5));
        assert!(!circles_overlap(IVec2::ZERO, IVec2::new(3, 4), 4));
    }
}
