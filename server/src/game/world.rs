//! The arena world: players, NPCs and projectiles, stepped one tick at a time.

use std::sync::Arc;

use glam::IVec2;
use shared::Tick;
use shared::protocol::InputCmd;
use shared::rules::{
    self, MAX_HP, PLAYER_RADIUS, PROJECTILE_DAMAGE, PROJECTILE_RADIUS, TickRules, buttons,
};
use shared::snapshot::{EntityKind, NetEntity, PlayerInfo, WorldState};
use slotmap::SlotMap;

use super::grid::Grid;
use super::ids::NetIds;

slotmap::new_key_type! {
    /// Key of an entity in the world's slotmap. Never leaves the server; the
    /// wire uses compact network ids.
    pub struct EntityKey;
}

/// What the world needs to know at creation.
#[derive(Clone, Copy, Debug)]
pub struct WorldConfig {
    /// Simulation steps per second.
    pub tick_hz: u32,
    /// Seed of the world's random numbers (spawn points, NPC wandering), so
    /// tests and benchmarks are reproducible.
    pub seed: u64,
    /// Ticks a freed network id waits before reuse. Should cover the longest
    /// baseline a client may still hold.
    pub id_quarantine_ticks: u32,
}

impl Default for WorldConfig {
    fn default() -> Self {
        Self {
            tick_hz: 30,
            seed: 0x5eed,
            id_quarantine_ticks: 256,
        }
    }
}

/// Health, weapon and score of anything that can shoot and be shot.
#[derive(Clone, Debug)]
struct Fighter {
    /// Ticks until the weapon may fire again.
    cooldown: u32,
    /// Ticks until respawn while dead (hp == 0).
    respawn_in: u32,
    score: u32,
    deaths: u32,
}

impl Fighter {
    fn new() -> Self {
        Self {
            cooldown: 0,
            respawn_in: 0,
            score: 0,
            deaths: 0,
        }
    }
}

#[derive(Clone, Debug)]
enum Body {
    Player {
        /// Allocated once at spawn; every roster the world builds shares
        /// it, so diffs recognize an unchanged name by its pointer.
        name: Arc<str>,
        /// The input to apply at the next step, set by the room.
        pending: Option<InputCmd>,
        fighter: Fighter,
    },
    Npc {
        /// Movement axes (-1..=1 each), as if buttons were held.
        axes: IVec2,
        turn_in: u32,
        fighter: Fighter,
    },
    Projectile {
        owner: EntityKey,
        ttl: u32,
    },
}

#[derive(Clone, Debug)]
struct Entity {
    net_id: u32,
    pos: IVec2,
    /// Displacement during the last step (what the wire calls velocity; for
    /// a projectile also its constant per-tick velocity).
    vel: IVec2,
    aim: u16,
    hp: u8,
    /// The tick `vel` took its current value ([`NetEntity::vel_age`]).
    vel_since: Tick,
    body: Body,
}

impl Entity {
    /// Sets the velocity at `tick`, which starts its age if it changed.
    fn set_vel(&mut self, vel: IVec2, tick: Tick) {
        if vel != self.vel {
            self.vel = vel;
            self.vel_since = tick;
        }
    }

    fn fighter_mut(&mut self) -> Option<&mut Fighter> {
        match &mut self.body {
            Body::Player { fighter, .. } | Body::Npc { fighter, .. } => Some(fighter),
            Body::Projectile { .. } => None,
        }
    }

    fn kind(&self) -> EntityKind {
        match self.body {
            Body::Player { .. } => EntityKind::Player,
            Body::Npc { .. } => EntityKind::Npc,
            Body::Projectile { .. } => EntityKind::Projectile,
        }
    }
}

/// The authoritative game state of one room.
///
/// Owned by exactly one task, mutated only through `&mut self`; nothing in it
/// is shared or locked. [`World::step`] advances one tick; [`World::snapshot`]
/// produces the replicated view.
#[derive(Debug)]
pub struct World {
    entities: SlotMap<EntityKey, Entity>,
    ids: NetIds,
    rules: TickRules,
    tick: Tick,
    rng: fastrand::Rng,
    grid: Grid,
    /// Scratch buffers reused every step.
    spawns: Vec<(EntityKey, IVec2, u16)>,
    dead: Vec<EntityKey>,
    hits: Vec<(EntityKey, EntityKey, EntityKey)>,
    /// The scoreboard of the last snapshot, reused while nothing in it changed.
    roster: Arc<Vec<PlayerInfo>>,
    roster_dirty: bool,
}

impl World {
    /// An empty arena.
    #[must_use]
    pub fn new(config: WorldConfig) -> Self {
        Self {
            entities: SlotMap::with_key(),
            ids: NetIds::new(config.id_quarantine_ticks),
            rules: TickRules::new(config.tick_hz),
            tick: Tick(0),
            rng: fastrand::Rng::with_seed(config.seed),
            grid: Grid::default(),
            spawns: Vec::new(),
            dead: Vec::new(),
            hits: Vec::new(),
            roster: Arc::default(),
            roster_dirty: true,
        }
    }

    /// The current tick (the number of steps taken).
    #[must_use]
    pub fn tick(&self) -> Tick {
        self.tick
    }

    /// The per-tick rules in force.
    #[must_use]
    pub fn rules(&self) -> &TickRules {
        &self.rules
    }

    /// Number of live entities of every kind.
    #[must_use]
    pub fn entity_count(&self) -> usize {
        self.entities.len()
    }

    fn spawn_point(&mut self) -> IVec2 {
        let r = PLAYER_RADIUS;
        IVec2::new(
            self.rng.i32(r..=rules::ARENA_WIDTH - r),
            self.rng.i32(r..=rules::ARENA_HEIGHT - r),
        )
    }

    fn insert(
        &mut self,
        pos: IVec2,
        vel: IVec2,
        aim: u16,
        hp: u8,
        body: Body,
    ) -> Option<EntityKey> {
        let key = self.entities.insert(Entity {
            net_id: 0,
            pos,
            vel,
            aim,
            hp,
            vel_since: self.tick,
            body,
        });
        match self.ids.alloc(key, self.tick) {
            Some(id) => {
                self.entities[key].net_id = id;
                Some(key)
            }
            None => {
                self.entities.remove(key);
                None
            }
        }
    }

    /// Adds a player at a random spawn point. Returns its key and network id,
    /// or `None` when the id space is exhausted.
    pub fn spawn_player(&mut self, name: String) -> Option<(EntityKey, u32)> {
        let pos = self.spawn_point();
        let body = Body::Player {
            name: name.into(),
            pending: None,
            fighter: Fighter::new(),
        };
        let key = self.insert(pos, IVec2::ZERO, 0, MAX_HP, body)?;
        self.roster_dirty = true;
        Some((key, self.entities[key].net_id))
    }

    /// Adds a wandering NPC.
    pub fn spawn_npc(&mut self) -> Option<EntityKey> {
        let pos = self.spawn_point();
        let body = Body::Npc {
            axes: IVec2::ZERO,
            turn_in: 0,
            fighter: Fighter::new(),
        };
        self.insert(pos, IVec2::ZERO, 0, MAX_HP, body)
    }

    /// Removes an entity (a player who left). Unknown keys are ignored.
    pub fn remove(&mut self, key: EntityKey) {
        if let Some(e) = self.entities.remove(key) {
            self.ids.release(e.net_id, self.tick);
            if matches!(e.body, Body::Player { .. }) {
                self.roster_dirty = true;
            }
        }
    }

    /// Queues the input a player's next step applies. The caller (the room)
    /// has already ordered and validated it; this only clamps the fields.
    pub fn set_input(&mut self, key: EntityKey, mut cmd: InputCmd) {
        cmd.buttons &= buttons::ALL;
        if let Some(Entity {
            body: Body::Player { pending, .. },
            ..
        }) = self.entities.get_mut(key)
        {
            *pending = Some(cmd);
        }
    }

    /// Position of an entity in quanta.
    #[must_use]
    pub fn position(&self, key: EntityKey) -> Option<IVec2> {
        self.entities.get(key).map(|e| e.pos)
    }

    /// Moves an entity (tests and tools; the game itself never teleports
    /// anything but respawns).
    pub fn set_position(&mut self, key: EntityKey, pos: IVec2) {
        if let Some(e) = self.entities.get_mut(key) {
            e.pos = rules::clamp_to_arena(pos, PLAYER_RADIUS);
        }
    }

    /// Advances the world one tick: inputs, NPCs, projectiles, hits, deaths
    /// and respawns. Allocation-free once the scratch buffers are warm.
    pub fn step(&mut self) {
        self.tick = self.tick.next();
        let rules = self.rules;
        self.spawns.clear();
        self.dead.clear();

        // Movement and weapons.
        for (key, e) in &mut self.entities {
            let prev = e.pos;
            match &mut e.body {
                Body::Player {
                    pending, fighter, ..
                } => {
                    fighter.cooldown = fighter.cooldown.saturating_sub(1);
                    if let Some(cmd) = pending.take() {
                        e.aim = cmd.aim;
                        if e.hp > 0 {
                            e.pos = rules::move_player(e.pos, cmd.buttons, &rules);
                            if cmd.buttons & buttons::FIRE != 0 && fighter.cooldown == 0 {
                                fighter.cooldown = rules.fire_cooldown_ticks;
                                self.spawns.push((key, e.pos, cmd.aim));
                            }
                        }
                    }
                }
                Body::Npc {
                    axes,
                    turn_in,
                    fighter,
                } => {
                    fighter.cooldown = fighter.cooldown.saturating_sub(1);
                    if e.hp > 0 {
                        if *turn_in == 0 {
                            *axes = IVec2::new(self.rng.i32(-1..=1), self.rng.i32(-1..=1));
                            *turn_in = self.rng.u32(rules.tick_hz..=3 * rules.tick_hz);
                            e.aim = self.rng.u16(..);
                        }
                        *turn_in -= 1;
                        let target = e.pos + *axes * rules.npc_step;
                        e.pos = rules::clamp_to_arena(target, PLAYER_RADIUS);
                        if e.pos != target {
                            *turn_in = 0; // bumped into a wall: pick a new way next tick
                        }
                        if fighter.cooldown == 0 && self.rng.u32(..4 * rules.tick_hz) == 0 {
                            fighter.cooldown = rules.fire_cooldown_ticks;
                            self.spawns.push((key, e.pos, e.aim));
                        }
                    }
                }
                Body::Projectile { ttl, .. } => {
                    *ttl = ttl.saturating_sub(1);
                    e.pos += e.vel;
                    if *ttl == 0 || !rules::inside_arena(e.pos) {
                        self.dead.push(key);
                    }
                    continue;
                }
            }
            e.set_vel(e.pos - prev, self.tick);
        }

        // Hits: projectiles against the fighters bucketed by cell.
        self.grid.clear();
        for (key, e) in &self.entities {
            if e.hp > 0 && !matches!(e.body, Body::Projectile { .. }) {
                self.grid.push(e.pos, key);
            }
        }
        self.grid.build();
        self.hits.clear();
        for (key, e) in &self.entities {
            let Body::Projectile { owner, ttl } = e.body else {
                continue;
            };
            if ttl == 0 {
                continue;
            }
            let victim = self.grid.near(e.pos).find(|(pos, victim)| {
                *victim != owner
                    && rules::circles_overlap(*pos, e.pos, PLAYER_RADIUS + PROJECTILE_RADIUS)
            });
            if let Some(&(_, victim)) = victim {
                self.hits.push((key, victim, owner));
            }
        }
        for i in 0..self.hits.len() {
            let (projectile, victim, owner) = self.hits[i];
            if !self.dead.contains(&projectile) {
                self.dead.push(projectile);
            }
            let Some(v) = self.entities.get_mut(victim) else {
                continue;
            };
            if v.hp == 0 {
                continue; // killed by an earlier hit this tick
            }
            v.hp = v.hp.saturating_sub(PROJECTILE_DAMAGE);
            if v.hp == 0 {
                let is_player = matches!(v.body, Body::Player { .. });
                if let Some(f) = v.fighter_mut() {
                    f.deaths += 1;
                    f.respawn_in = rules.respawn_ticks;
                }
                v.set_vel(IVec2::ZERO, self.tick);
                if let Some(shooter) = self.entities.get_mut(owner)
                    && let Some(f) = shooter.fighter_mut()
                {
                    f.score += 1;
                }
                // Only player scores and deaths are on the scoreboard.
                self.roster_dirty |= is_player
                    || self
                        .entities
                        .get(owner)
                        .is_some_and(|o| matches!(o.body, Body::Player { .. }));
            }
        }

        // Respawns.
        for e in self.entities.values_mut() {
            if e.hp > 0 {
                continue;
            }
            if let Some(f) = e.fighter_mut() {
                f.respawn_in = f.respawn_in.saturating_sub(1);
                if f.respawn_in == 0 {
                    e.hp = MAX_HP;
                    let r = PLAYER_RADIUS;
                    e.pos = IVec2::new(
                        self.rng.i32(r..=rules::ARENA_WIDTH - r),
                        self.rng.i32(r..=rules::ARENA_HEIGHT - r),
                    );
                    e.set_vel(IVec2::ZERO, self.tick);
                }
            }
        }

        for i in 0..self.dead.len() {
            self.remove(self.dead[i]);
        }
        for i in 0..self.spawns.len() {
            let (owner, pos, aim) = self.spawns[i];
            let body = Body::Projectile {
                owner,
                ttl: rules.projectile_ticks,
            };
            let vel = rules::projectile_velocity(aim, &rules);
            let _ = self.insert(pos, vel, aim, 1, body);
        }
    }

    /// The replicated view of the current tick, sorted by network id.
    #[must_use]
    pub fn snapshot(&mut self) -> WorldState {
        let mut entities = Vec::with_capacity(self.entities.len());
        for key in self.ids.iter() {
            let e = &self.entities[key];
            entities.push(NetEntity {
                id: e.net_id,
                kind: e.kind(),
                x: e.pos.x,
                y: e.pos.y,
                vx: e.vel.x,
                vy: e.vel.y,
                angle: rules::replicated_angle(e.aim),
                hp: e.hp,
                vel_age: u8::try_from(self.tick.since(e.vel_since) + 1).unwrap_or(u8::MAX),
            });
        }
        if self.roster_dirty {
            let mut players: Vec<PlayerInfo> = self
                .ids
                .iter()
                .filter_map(|key| {
                    let e = &self.entities[key];
                    match &e.body {
                        Body::Player { name, fighter, .. } => Some(PlayerInfo {
                            id: e.net_id,
                            name: Arc::clone(name),
                            score: fighter.score,
                            deaths: fighter.deaths,
                        }),
                        _ => None,
                    }
                })
                .collect();
            players.shrink_to_fit();
            self.roster = Arc::new(players);
            self.roster_dirty = false;
        }
        WorldState {
            tick: self.tick,
            entities,
            players: Arc::clone(&self.roster),
        }
    }
}

#[cfg(test)]
mod tests;
