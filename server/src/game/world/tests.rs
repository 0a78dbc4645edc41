use std::sync::Arc;

use glam::IVec2;
use shared::protocol::InputCmd;
use shared::rules::{self, MAX_HP, PROJECTILE_DAMAGE, buttons};
use shared::snapshot::EntityKind;

use super::*;

fn world() -> World {
    World::new(WorldConfig::default())
}

fn input(seq: u32, buttons: u8, aim: u16) -> InputCmd {
    InputCmd {
        seq,
        tick: Tick(0),
        ack: Tick(0),
        buttons,
        aim,
    }
}

#[test]
fn each_input_is_exactly_one_shared_movement_step() {
    let mut w = world();
    let (p, _) = w.spawn_player("ana".into()).expect("spawn");
    w.set_position(p, IVec2::new(4000, 3000));
    let r = *w.rules();
    let mut expected = IVec2::new(4000, 3000);
    for (seq, b) in [buttons::RIGHT, buttons::RIGHT | buttons::DOWN, buttons::UP]
        .into_iter()
        .enumerate()
    {
        w.set_input(p, input(seq as u32 + 1, b, 0));
        w.step();
        expected = rules::move_player(expected, b, &r);
        assert_eq!(w.position(p), Some(expected));
    }
    // No input: no movement, and velocity reports the standstill.
    w.step();
    assert_eq!(w.position(p), Some(expected));
    let snap = w.snapshot();
    assert_eq!((snap.entities[0].vx, snap.entities[0].vy), (0, 0));
}

#[test]
fn unknown_button_bits_are_cleared() {
    let mut w = world();
    let (p, _) = w.spawn_player("x".into()).expect("spawn");
    w.set_position(p, IVec2::new(4000, 3000));
    w.set_input(p, input(1, 0b1110_0000 | buttons::LEFT, 0));
    w.step();
    assert_eq!(
        w.position(p),
        Some(IVec2::new(4000 - w.rules().player_step, 3000))
    );
}

/// Puts a shooter left of a target and fires one shot to the right.
fn shooting_range() -> (World, EntityKey, EntityKey) {
    let mut w = world();
    let (shooter, _) = w.spawn_player("shooter".into()).expect("spawn");
    let (target, _) = w.spawn_player("target".into()).expect("spawn");
    w.set_position(shooter, IVec2::new(2000, 2000));
    w.set_position(target, IVec2::new(2400, 2000));
    (w, shooter, target)
}

fn hp_of(w: &mut World, id_kind: EntityKind, nth: usize) -> u8 {
    w.snapshot()
        .entities
        .iter()
        .filter(|e| e.kind == id_kind)
        .nth(nth)
        .map(|e| e.hp)
        .expect("entity present")
}

#[test]
fn projectiles_damage_and_kill_and_score() {
    let (mut w, shooter, _target) = shooting_range();
    let cooldown = w.rules().fire_cooldown_ticks;
    let mut seq = 0;
    let mut kills_seen = false;
    for _ in 0..(4 * cooldown + 40) {
        seq += 1;
        w.set_input(shooter, input(seq, buttons::FIRE, 0));
        w.step();
        let snap = w.snapshot();
        if snap
            .players
            .iter()
            .any(|p| &*p.name == "shooter" && p.score == 1)
        {
            kills_seen = true;
            let target = snap
                .players
                .iter()
                .find(|p| &*p.name == "target")
                .expect("target");
            assert_eq!(target.deaths, 1);
            break;
        }
    }
    assert!(
        kills_seen,
        "four hits of {PROJECTILE_DAMAGE} kill a {MAX_HP} hp player"
    );
    assert_eq!(
        hp_of(&mut w, EntityKind::Player, 1),
        0,
        "dead until respawn"
    );
}

#[test]
fn dead_players_respawn_with_full_health() {
    let (mut w, shooter, target) = shooting_range();
    let mut seq = 0;
    while w.snapshot().players.iter().all(|p| p.score == 0) {
        seq += 1;
        w.set_input(shooter, input(seq, buttons::FIRE, 0));
        w.step();
        assert!(seq < 1000, "target never died");
    }
    let dead_at = w.position(target);
    // Dead players ignore movement.
    w.set_input(target, input(1, buttons::LEFT, 0));
    w.step();
    assert_eq!(w.position(target), dead_at);
    for _ in 0..w.rules().respawn_ticks {
        w.step();
    }
    assert_eq!(hp_of(&mut w, EntityKind::Player, 1), MAX_HP);
}

#[test]
fn own_projectiles_never_hurt_the_shooter() {
    let mut w = world();
    let (p, _) = w.spawn_player("solo".into()).expect("spawn");
    w.set_position(p, IVec2::new(3000, 3000));
    for seq in 1..200 {
        w.set_input(p, input(seq, buttons::FIRE, (seq * 997) as u16));
        w.step();
    }
    assert_eq!(hp_of(&mut w, EntityKind::Player, 0), MAX_HP);
}

#[test]
fn projectiles_expire() {
    let mut w = world();
    let (p, _) = w.spawn_player("solo".into()).expect("spawn");
    w.set_position(p, IVec2::new(4800, 3200));
    w.set_input(p, input(1, buttons::FIRE, 0));
    w.step();
    assert_eq!(w.entity_count(), 2);
    for _ in 0..w.rules().projectile_ticks {
        w.step();
    }
    assert_eq!(w.entity_count(), 1);
}

#[test]
fn npcs_wander_inside_the_arena() {
    let mut w = world();
    for _ in 0..50 {
        w.spawn_npc().expect("spawn");
    }
    let start = w.snapshot();
    for _ in 0..300 {
        w.step();
        for e in &w.snapshot().entities {
            assert!(rules::inside_arena(IVec2::new(e.x, e.y)), "{e:?}");
        }
    }
    let end = w.snapshot();
    let moved = start
        .entities
        .iter()
        .zip(&end.entities)
        .filter(|(a, b)| a.id == b.id && (a.x, a.y) != (b.x, b.y))
        .count();
    assert!(moved > 10, "only {moved} of 50 NPCs moved");
}

#[test]
fn snapshot_is_sorted_and_shares_an_unchanged_scoreboard() {
    let mut w = world();
    for _ in 0..20 {
        w.spawn_npc();
    }
    w.spawn_player("a".into());
    let first = w.snapshot();
    w.step();
    let second = w.snapshot();
    assert!(first.entities.windows(2).all(|p| p[0].id < p[1].id));
    assert!(Arc::ptr_eq(&first.players, &second.players));
    w.spawn_player("b".into());
    let third = w.snapshot();
    assert!(!Arc::ptr_eq(&second.players, &third.players));
    assert_eq!(third.players.len(), 2);
}

#[test]
fn removed_entities_leave_the_snapshot_and_scoreboard() {
    let mut w = world();
    let (a, id) = w.spawn_player("a".into()).expect("spawn");
    w.remove(a);
    w.remove(a);
    let snap = w.snapshot();
    assert!(snap.entities.iter().all(|e| e.id != id));
    assert!(snap.players.is_empty());
}

/// The velocity's age the snapshot reports is the ticks since the velocity
/// took its value, so a player who turned once since a client's baseline is
/// sent the turn and when it happened, with no position residual; a shot
/// starts its age when fired.
#[test]
fn velocity_ages_count_ticks_since_the_last_change() {
    let mut w = world();
    let (p, id) = w.spawn_player("ana".into()).expect("spawn");
    w.set_position(p, IVec2::new(4000, 3000));
    let me = |s: &WorldState| *s.entities.iter().find(|e| e.id == id).expect("present");
    let mut seq = 0;
    let mut press = |w: &mut World, b: u8| {
        seq += 1;
        w.set_input(p, input(seq, b, 0));
        w.step();
        w.snapshot()
    };
    for age in 1..=6 {
        assert_eq!(me(&press(&mut w, buttons::RIGHT)).vel_age, age);
    }
    let baseline = w.snapshot();
    for _ in 0..3 {
        press(&mut w, buttons::RIGHT);
    }
    for age in 1..=4 {
        assert_eq!(me(&press(&mut w, buttons::UP)).vel_age, age);
    }
    let current = w.snapshot();
    let msg = shared::snapshot::diff(Some(&baseline), &current, 0);
    assert_eq!(msg.changed, [id << 4 | shared::snapshot::fields::VEL]);
    let step = w.rules().player_step;
    assert_eq!(msg.values, [-step, -step, 4]);
    assert_eq!(shared::snapshot::apply(Some(&baseline), &msg), Ok(current));

    // Standing still is a velocity like any other; it saturates at 255.
    for age in 1..=300u32 {
        w.step();
        assert_eq!(me(&w.snapshot()).vel_age, age.min(255) as u8);
    }

    let (mut w, shooter, _) = shooting_range();
    w.set_input(shooter, input(1, buttons::FIRE, 0));
    w.step();
    let shot = |w: &mut World| {
        let s = w.snapshot();
        s.entities
            .iter()
            .find(|e| e.kind == EntityKind::Projectile)
            .map(|e| e.vel_age)
    };
    assert_eq!(shot(&mut w), Some(1));
    w.step();
    assert_eq!(shot(&mut w), Some(2));
}
