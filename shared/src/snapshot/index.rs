//! Deltas whose cost follows what changed, not the size of the world.
//!
//! A delta's merge walk ([`super::diff_into_with_checksum`]) reads every
//! entity of both states to find the few that left their dead-reckoned
//! path: about 40 instructions per entity, half of them for entities that
//! cost no byte. A [`StateIndex`], built once per published state from the
//! one before it, records for every entity the tick it last left that path
//! (created, turned, re-aimed, hit: bevy_replicon's change ticks, at the
//! granularity of a whole entity). A delta against a baseline of the same
//! chain then visits only the entities changed since the baseline's tick
//! and those removed since, found 64 ids at a time, and writes the same
//! bytes as the walk.
//!
//! Why that is exact: an entity whose path began at or before the
//! baseline's tick existed in every state of the chain from then on, with
//! the same kind, velocity, angle and hit points, and moved by its velocity
//! each tick. So it is in the baseline, on the path the walk dead-reckons,
//! and the walk skips it. Every other entity gets the walk's own test and
//! record.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{
    GapWriter, Gaps, NetEntity, STAGE, SnapshotMsg, WorldState, create_record, on_path, pair,
};
use crate::Tick;

/// Ids per presence word.
const WORD: usize = 64;

/// How far back a path's start is kept: paths older than this many ticks are
/// said to start this many ticks ago (exact for every baseline younger than
/// that), so that tick comparisons never wrap around.
const OLDEST_PATH: u32 = 1 << 30;

/// Distinguishes chains of indices; see [`StateIndex::chain`].
static CHAINS: AtomicU64 = AtomicU64::new(0);

/// What a delta needs to skip the entities of a [`WorldState`] that stayed
/// on their dead-reckoned path: built once per state with
/// [`StateIndex::follow`] (or [`StateIndex::first`]), then used by
/// [`diff_into_indexed`] for every baseline of the same chain.
///
/// Indexed by entity id, which the server keeps dense (ids are reused), so
/// it takes 8 bytes per id and one bit of presence: about a third of the
/// state's own size.
#[derive(Clone, Debug)]
pub struct StateIndex {
    /// The tick of the indexed state.
    tick: Tick,
    /// Shared by indices built one from another. A delta uses the indices
    /// only between states of one chain, where every state in between was
    /// indexed too; anything else falls back to the walk.
    chain: u64,
    /// Bit `id % 64` of word `id / 64`: whether the state has entity `id`.
    present: Vec<u64>,
    /// Per id: the tick its entity's current path began, as a raw tick.
    /// Meaningless for absent ids. As long as `present` has bits.
    since: Vec<u32>,
    /// Per id: the entity's position in the state's `entities`. Meaningless
    /// for absent ids. As long as `since`.
    at: Vec<u32>,
}

impl StateIndex {
    /// The index of the first state of a chain: every entity's path begins
    /// at its tick.
    pub fn first(state: &WorldState) -> Self {
        Self::build(state, CHAINS.fetch_add(1, Relaxed), |_, _| None)
    }

    /// The index of `state`, which follows `prev` (indexed by `prev_index`):
    /// the state published just before it. An entity keeps its path's start
    /// when it has the same kind in both and `state` has it where `prev`'s
    /// velocity took it, with the same velocity, angle and hit points.
    ///
    /// Starts a new chain ([`StateIndex::first`]) when `prev_index` is not
    /// `prev`'s or `state` is not later than `prev`.
    pub fn follow(prev: &WorldState, prev_index: &StateIndex, state: &WorldState) -> Self {
        let age = state.tick.since(prev.tick);
        if prev_index.tick != prev.tick || age <= 0 {
            return Self::first(state);
        }
        // Paths that began longer ago than this are said to begin here.
        let oldest = state.tick.0.wrapping_sub(OLDEST_PATH);
        Self::build(state, prev_index.chain, |id, c| {
            let b = prev_index.get(&prev.entities, id)?;
            let same = b.kind == c.kind && on_path(b, c, age);
            let since = prev_index.since[id as usize];
            let since = if oldest.wrapping_sub(since) as i32 > 0 {
                oldest
            } else {
                since
            };
            same.then_some(since)
        })
    }

    /// Builds the index of `state`; `kept(id, entity)` gives the start of
    /// the path it continues, or `None` when its path begins now.
    fn build(
        state: &WorldState,
        chain: u64,
        mut kept: impl FnMut(u32, &NetEntity) -> Option<u32>,
    ) -> Self {
        let ids = state.entities.last().map_or(0, |e| e.id as usize + 1);
        let words = ids.div_ceil(WORD);
        let mut index = Self {
            tick: state.tick,
            chain,
            present: vec![0; words],
            since: vec![0; words * WORD],
            at: vec![0; words * WORD],
        };
        for (at, c) in state.entities.iter().enumerate() {
            let id = c.id as usize;
            index.present[id / WORD] |= 1 << (id % WORD);
            index.since[id] = kept(c.id, c).unwrap_or(state.tick.0);
            index.at[id] = at as u32;
        }
        index
    }

    /// The tick of the state this indexes.
    pub fn tick(&self) -> Tick {
        self.tick
    }

    /// Entity `id` of `entities` (the indexed state's), if present.
    #[inline(always)]
    fn get<'a>(&self, entities: &'a [NetEntity], id: u32) -> Option<&'a NetEntity> {
        let id = id as usize;
        let word = self.present.get(id / WORD)?;
        if word >> (id % WORD) & 1 == 0 {
            return None;
        }
        entities.get(self.at[id] as usize)
    }

    /// The ids of word `w` whose entity's path began after `tick`.
    #[inline(always)]
    fn since_after(&self, w: usize, tick: Tick) -> u64 {
        let Some(since) = self
            .since
            .get(w * WORD..)
            .and_then(<[u32]>::first_chunk::<WORD>)
        else {
            return 0;
        };
        // One flag byte per id, in a loop the compiler turns into vector
        // compares; then eight flags to eight bits with one multiply: the
        // bytes' low bits, times 2^56 + 2^49 + ... + 2^7, land in the top
        // byte without carries. (A fold shifting each compare into place is
        // not vectorized: 9 instructions per id instead of about 1.)
        let mut flags = [0u8; WORD];
        for (f, &s) in flags.iter_mut().zip(since) {
            *f = u8::from(s.wrapping_sub(tick.0) as i32 > 0);
        }
        let mut mask = 0;
        for (k, eight) in flags.as_chunks::<8>().0.iter().enumerate() {
            let bits = u64::from_le_bytes(*eight).wrapping_mul(0x0102_0408_1020_4080) >> 56;
            mask |= bits << (8 * k);
        }
        mask
    }
}

/// [`super::diff_into_with_checksum`] for states indexed by one chain: the
/// same message, at a cost that follows the entities changed since the
/// baseline rather than all of them. `current_checksum` must be
/// [`super::checksum`]`(current.0)`.
///
/// Falls back to the walk when the indices do not belong to their states
/// or to one chain (both are checked). A full snapshot (`None`, or a
/// baseline not older than `current`) needs no index.
pub fn diff_into_indexed(
    baseline: Option<(&WorldState, &StateIndex)>,
    current: (&WorldState, &StateIndex),
    current_checksum: u32,
    input_ack: u32,
    out: &mut SnapshotMsg,
) {
    let (state, index) = current;
    let base = super::begin(
        baseline.map(|(b, _)| b),
        state,
        current_checksum,
        input_ack,
        out,
    );
    let age = out.base_age as i32;
    match (base, baseline) {
        (Some(b), Some((_, bi)))
            if bi.tick == b.tick && index.tick == state.tick && bi.chain == index.chain =>
        {
            diff_entities_indexed((b, bi), current, age, out);
        }
        _ => super::diff_entities(
            base.map_or(&[][..], |b| &b.entities[..]),
            &state.entities,
            age,
            out,
        ),
    }
    super::diff_players(base, state, out);
}

/// The entity part of [`diff_into_indexed`]: one pass over the presence
/// words of both states, visiting only the ids changed since the baseline
/// (their path began after its tick) or removed.
fn diff_entities_indexed(
    base: (&WorldState, &StateIndex),
    current: (&WorldState, &StateIndex),
    age: i32,
    out: &mut SnapshotMsg,
) {
    let ((b, bi), (c, ci)) = (base, current);
    let (bs, cs) = (&b.entities[..], &c.entities[..]);
    let mut gaps = Gaps {
        removed: GapWriter::new(),
        created: GapWriter::new(),
    };
    STAGE.with_borrow_mut(|staged| {
        staged.reset();
        let words = bi.present.len().max(ci.present.len());
        for w in 0..words {
            let in_b = bi.present.get(w).copied().unwrap_or(0);
            let in_c = ci.present.get(w).copied().unwrap_or(0);
            let mut visit = (ci.since_after(w, b.tick) & in_c) | (in_b & !in_c);
            while visit != 0 {
                let bit = visit.trailing_zeros() as usize;
                visit &= visit - 1;
                let id = (w * WORD + bit) as u32;
                let at = |index: &StateIndex| index.at[id as usize] as usize;
                if in_c >> bit & 1 == 0 {
                    out.removed.push(gaps.removed.gap(id));
                    continue;
                }
                // Present ids have entities, when the indices belong to
                // their states (checked by tick and chain).
                let Some(ce) = cs.get(at(ci)) else {
                    debug_assert!(false, "index of another state");
                    continue;
                };
                if in_b >> bit & 1 == 0 {
                    out.created.push(create_record(ce, gaps.created.gap(id)));
                } else if let Some(be) = bs.get(at(bi)) {
                    pair(staged, be, ce, age, &mut gaps, out);
                }
            }
        }
        staged.flush(out);
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::snapshot::{EntityKind, PlayerInfo, checksum, diff_into_with_checksum};

    /// xorshift64*.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
        fn small(&mut self) -> i32 {
            self.below(200) as i32 - 100
        }
    }

    const KINDS: [EntityKind; 3] = [EntityKind::Player, EntityKind::Npc, EntityKind::Projectile];

    fn entity(rng: &mut Rng, id: u32) -> NetEntity {
        NetEntity {
            id,
            kind: KINDS[rng.below(3) as usize],
            x: rng.small(),
            y: rng.small(),
            vx: rng.small(),
            vy: rng.small(),
            angle: rng.next() as u8,
            hp: rng.next() as u8,
        }
    }

    /// A chain of states published 1 to 3 ticks apart, starting just before
    /// the tick counter wraps: most entities fly straight, the others turn,
    /// stop, are re-aimed, hit, teleported, change kind, are removed (their
    /// ids reused at once or later), are created, or return exactly to the
    /// path they had a few states earlier. Every state has a scoreboard of
    /// its own.
    fn chain(seed: u64, entities: u64, states: usize) -> Vec<WorldState> {
        let mut rng = Rng(seed | 1);
        let mut tick = Tick(u32::MAX - rng.below(20) as u32);
        let mut live: Vec<NetEntity> = (0..entities)
            .map(|id| entity(&mut rng, id as u32))
            .collect();
        let mut free: Vec<u32> = vec![];
        let mut next_id = entities as u32;
        let mut out: Vec<WorldState> = vec![];
        for _ in 0..states {
            let step = 1 + rng.below(3) as i32;
            let mut next = vec![];
            for e in &live {
                let mut c = *e;
                c.x = c.x.wrapping_add(c.vx.wrapping_mul(step));
                c.y = c.y.wrapping_add(c.vy.wrapping_mul(step));
                match rng.below(100) {
                    0..=4 => {
                        free.push(e.id);
                        continue;
                    }
                    5..=6 => c.kind = KINDS[rng.below(3) as usize],
                    7..=16 => c.vx = rng.small(),
                    17..=19 => (c.vx, c.vy) = (0, 0),
                    20..=26 => c.angle = rng.next() as u8,
                    27..=29 => c.hp = rng.next() as u8,
                    30..=31 => c.x = rng.small(),
                    32..=37 => {
                        // Back on the path of an older state, if it had one.
                        let back = rng.below(out.len() as u64 + 1) as usize;
                        if let Some(old) = out.len().checked_sub(back + 1).map(|k| &out[k])
                            && let Some(o) = old.entities.iter().find(|o| o.id == e.id)
                        {
                            let age = tick.advanced(step as u32).since(old.tick);
                            c = *o;
                            c.x = o.x.wrapping_add(o.vx.wrapping_mul(age));
                            c.y = o.y.wrapping_add(o.vy.wrapping_mul(age));
                        }
                    }
                    _ => {}
                }
                next.push(c);
            }
            for _ in 0..rng.below(entities / 10 + 2) {
                let id = if !free.is_empty() && rng.chance(60) {
                    free.swap_remove(rng.below(free.len() as u64) as usize)
                } else {
                    next_id += 1 + rng.below(3) as u32;
                    next_id
                };
                next.push(entity(&mut rng, id));
            }
            next.sort_by_key(|e| e.id);
            next.dedup_by_key(|e| e.id);
            tick = tick.advanced(step as u32);
            let players = (0..rng.below(6))
                .map(|id| PlayerInfo {
                    id: id as u32,
                    name: "p".into(),
                    score: rng.below(3) as u32,
                    deaths: 0,
                })
                .collect();
            out.push(WorldState {
                tick,
                entities: next.clone(),
                players: Arc::new(players),
            });
            live = next;
        }
        out
    }

    fn indices(states: &[WorldState]) -> Vec<StateIndex> {
        let mut out: Vec<StateIndex> = vec![];
        for (k, s) in states.iter().enumerate() {
            let index = match out.last() {
                Some(prev) => StateIndex::follow(&states[k - 1], prev, s),
                None => StateIndex::first(s),
            };
            out.push(index);
        }
        out
    }

    fn walked(base: Option<&WorldState>, current: &WorldState) -> SnapshotMsg {
        let mut msg = SnapshotMsg::default();
        diff_into_with_checksum(base, current, checksum(current), 3, &mut msg);
        msg
    }

    proptest! {
        #[test]
        fn indexed_deltas_are_the_walked_deltas(
            seed: u64,
            entities in 0..400u64,
            states in 1..14usize,
        ) {
            let states = chain(seed, entities, states);
            let index = indices(&states);
            let mut msg = SnapshotMsg::default();
            for (j, current) in states.iter().enumerate() {
                // Every older state as the baseline, the current one itself
                // (a full snapshot), and none.
                for i in (0..=j).map(Some).chain([None]) {
                    let base = i.map(|i| (&states[i], &index[i]));
                    diff_into_indexed(base, (current, &index[j]), checksum(current), 3, &mut msg);
                    prop_assert_eq!(&msg, &walked(base.map(|(b, _)| b), current));
                }
            }
        }
    }

    #[test]
    fn paths_are_kept_across_states_and_restarted_by_any_change() {
        let at = |tick, x, vx, hp| WorldState {
            tick: Tick(tick),
            entities: vec![NetEntity {
                id: 70,
                kind: EntityKind::Npc,
                x,
                y: 5,
                vx,
                vy: 0,
                angle: 9,
                hp,
            }],
            players: Arc::default(),
        };
        let s0 = at(10, 0, 3, 100);
        let s1 = at(12, 6, 3, 100); // two ticks on, on its path
        let s2 = at(13, 9, 3, 90); // hit
        let s3 = at(14, 12, 3, 90);
        let i0 = StateIndex::first(&s0);
        let i1 = StateIndex::follow(&s0, &i0, &s1);
        let i2 = StateIndex::follow(&s1, &i1, &s2);
        let i3 = StateIndex::follow(&s2, &i2, &s3);
        assert_eq!(i0.since[70], 10);
        assert_eq!(i1.since[70], 10, "still on the path that began at 10");
        assert_eq!(i2.since[70], 13, "hit at 13");
        assert_eq!(i3.since[70], 13);
        assert_eq!(i3.present, vec![0, 1 << 6], "id 70 is bit 6 of word 1");
        assert_eq!(
            (i0.chain, i1.chain, i3.chain),
            (i0.chain, i0.chain, i0.chain)
        );
        // Not later than its predecessor, or another state's index: a new chain.
        for index in [
            StateIndex::follow(&s1, &i1, &s0),
            StateIndex::follow(&s1, &i0, &s2),
        ] {
            assert_ne!(index.chain, i0.chain);
            assert_eq!(index.since[70], index.tick.0);
        }
    }

    #[test]
    fn a_path_older_than_half_the_tick_ring_is_clamped_not_wrapped() {
        let at = |tick: u32| WorldState {
            tick: Tick(tick),
            entities: vec![NetEntity {
                id: 0,
                kind: EntityKind::Npc,
                x: 1,
                y: 2,
                vx: 0,
                vy: 0,
                angle: 0,
                hp: 100,
            }],
            players: Arc::default(),
        };
        let now = OLDEST_PATH + 5;
        let (old, new) = (at(0), at(now));
        let first = StateIndex::first(&old);
        let next = StateIndex::follow(&old, &first, &new);
        assert_eq!(next.chain, first.chain);
        assert_eq!(next.since[0], 5);
        // Against a baseline a tick old, the standing entity is not sent.
        let mut msg = SnapshotMsg::default();
        let prev = at(now - 1);
        let mut prev_index = next.clone();
        prev_index.tick = prev.tick;
        diff_into_indexed(Some((&prev, &prev_index)), (&new, &next), 0, 0, &mut msg);
        assert!(msg.changed.is_empty() && msg.created.is_empty() && msg.removed.is_empty());
    }

    #[test]
    fn indices_of_other_chains_or_states_fall_back_to_the_walk() {
        let states = chain(5, 200, 6);
        let index = indices(&states);
        let other = indices(&states[..3]);
        let (b, c) = (&states[2], &states[5]);
        let expected = walked(Some(b), c);
        let mut msg = SnapshotMsg::default();
        // A baseline index of another chain.
        let mut stale = other[2].clone();
        stale.chain = index[0].chain.wrapping_add(1_000);
        for bi in [&stale, &index[1]] {
            diff_into_indexed(Some((b, bi)), (c, &index[5]), checksum(c), 3, &mut msg);
            assert_eq!(msg, expected);
        }
        // The indices of a different chain: every since is new.
        let fresh = StateIndex::first(c);
        diff_into_indexed(Some((b, &index[2])), (c, &fresh), checksum(c), 3, &mut msg);
        assert_eq!(msg, expected);
    }
}
