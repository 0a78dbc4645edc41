//! Replicated world state and its delta encoding (the Quake 3 model).
//!
//! The server publishes one [`WorldState`] per snapshot tick. For each client
//! it encodes a [`SnapshotMsg`] against the newest state that client has
//! acknowledged (its *baseline*); the client rebuilds the state with
//! [`apply`] and checks it against [`SnapshotMsg::checksum`].
//!
//! A delta lists removed entities, created entities (all fields), and changed
//! entities (only the field groups that differ). Entity ids are sent as gaps to
//! the previous id of the same list, so consecutive ids cost little (one bit
//! in a change head, bit-packed by [`crate::codec`]).
//! Positions are sent as the residual against dead reckoning from the baseline
//! (`base.pos + base.vel * age`), so anything moving in a straight line at
//! constant speed costs nothing at all until it turns.

use std::cell::RefCell;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Tick;

/// What an entity is. Never changes during an entity's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntityKind {
    /// A connected player.
    Player,
    /// A server-driven wanderer.
    Npc,
    /// A shot in flight.
    Projectile,
}

impl EntityKind {
    /// The wire index of this kind (its bincode variant index).
    #[must_use]
    pub fn index(self) -> u32 {
        match self {
            Self::Player => 0,
            Self::Npc => 1,
            Self::Projectile => 2,
        }
    }
}

/// One entity as replicated: everything quantized to integers.
///
/// Equality and hashing cover the replicated fields only, not
/// [`NetEntity::vel_age`]: a state a client rebuilt equals the server's.
#[derive(Clone, Copy, Debug)]
pub struct NetEntity {
    /// Network id: stable for the entity's life, unique in a state, never
    /// above [`MAX_NET_ID`].
    pub id: u32,
    /// What it is.
    pub kind: EntityKind,
    /// Position in quanta ([`crate::rules::QUANTA_PER_UNIT`] per unit).
    pub x: i32,
    /// Position in quanta.
    pub y: i32,
    /// Displacement during the last tick, in quanta.
    pub vx: i32,
    /// Displacement during the last tick, in quanta.
    pub vy: i32,
    /// Facing, in 1/256 turns clockwise from +x.
    pub angle: u8,
    /// Hit points; 0 means dead and waiting to respawn.
    pub hp: u8,
    /// Not replicated: for how many ticks, this one included, the velocity
    /// (`vx`, `vy`) has had its current value, saturating at 255; 0 when
    /// unknown. The server's simulation knows it and fills it in; decoders
    /// leave it 0.
    ///
    /// An encoder hint, in what was the struct's padding: the turn age of a
    /// velocity change (see [`fields::VEL`]) is then `min(vel_age, age)`,
    /// one load, instead of a least-squares fit with a division behind a
    /// branch that a third of changed entities take and the predictor
    /// cannot learn (the fallback when it is 0). That fit was a tenth of
    /// diff + encode at age 10 (`BENCHMARKS.md` section 2). Any turn age
    /// decodes to the same state; this one is exact for an entity that
    /// turned once since the baseline, and costs a few bits more than the
    /// fit for one that turned twice.
    pub vel_age: u8,
}

impl NetEntity {
    /// The replicated fields, which equality and hashing compare.
    fn replicated(&self) -> (u32, EntityKind, [i32; 4], u8, u8) {
        (
            self.id,
            self.kind,
            [self.x, self.y, self.vx, self.vy],
            self.angle,
            self.hp,
        )
    }
}

impl PartialEq for NetEntity {
    fn eq(&self, other: &Self) -> bool {
        self.replicated() == other.replicated()
    }
}

impl Eq for NetEntity {}

impl std::hash::Hash for NetEntity {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.replicated().hash(state);
    }
}

/// Scoreboard entry of one player.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PlayerInfo {
    /// The player's entity id.
    pub id: u32,
    /// Display name. Shared, not owned: a server hands the same allocation
    /// to every scoreboard it builds for the player's whole life, so an
    /// unchanged entry is recognized by its pointer ([`Arc::ptr_eq`])
    /// without reading the name's bytes (a cache miss per entry when
    /// every roster owned its names), and copying an entry into a message
    /// or a rebuilt state allocates nothing. Encoded as a plain string
    /// (serde's `rc` feature), the same bytes as a `String`.
    pub name: Arc<str>,
    /// Kills.
    pub score: u32,
    /// Deaths.
    pub deaths: u32,
}

/// The replicated world at one tick. Both vectors are sorted by id, ids unique.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorldState {
    /// The tick this state belongs to.
    pub tick: Tick,
    /// Entities, sorted by id.
    pub entities: Vec<NetEntity>,
    /// Scoreboard, sorted by id. Shared between consecutive states while it
    /// does not change, so encoders can skip comparing it (`Arc::ptr_eq`).
    pub players: Arc<Vec<PlayerInfo>>,
}

/// Largest entity id the delta format can carry (an id gap shares a change
/// head's `u32` with a 4-bit field mask).
pub const MAX_NET_ID: u32 = u32::MAX >> FIELD_BITS;

/// Field groups of a changed entity, in the order of their columns in
/// [`SnapshotMsg::values`].
pub mod fields {
    /// Position residual against dead reckoning: two values (x, y).
    pub const POS: u32 = 1;
    /// Velocity change: two values (vx, vy), then, when the baseline is
    /// more than one tick old, the turn age `k`: ticks since the velocity
    /// changed (the position is dead-reckoned with the baseline's velocity
    /// for `age - k` ticks and the new one for `k`).
    pub const VEL: u32 = 2;
    /// Angle change, wrapped to -128..=127: one value.
    pub const ANGLE: u32 = 4;
    /// Hit point change: one value.
    pub const HP: u32 = 8;
}

// Bit `i` of a mask is column `i` of the values: `field_counts` and
// `Staged::changed` rely on it.
const _: () =
    assert!(fields::POS == 1 && fields::VEL == 2 && fields::ANGLE == 4 && fields::HP == 8);
const FIELD_BITS: u32 = 4;
const FIELD_MASK: u32 = (1 << FIELD_BITS) - 1;

/// An entity that the baseline does not have, with all its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntityCreate {
    /// Id gap to the previous created entity (see [`SnapshotMsg`]).
    pub gap: u32,
    /// What it is.
    pub kind: EntityKind,
    /// Position in quanta.
    pub x: i32,
    /// Position in quanta.
    pub y: i32,
    /// Last-tick displacement in quanta.
    pub vx: i32,
    /// Last-tick displacement in quanta.
    pub vy: i32,
    /// Facing in 1/256 turns.
    pub angle: u8,
    /// Hit points.
    pub hp: u8,
}

/// A scoreboard entry whose player is in the baseline's scoreboard under
/// the same name, and whose score or deaths changed: sent as changes, the
/// name not repeated (a kill changes two entries; resending them whole was
/// most of the scoreboard's bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreDelta {
    /// Id gap to the previous entry of [`SnapshotMsg::players_scored`]
    /// (gap-coded like the entity lists).
    pub gap: u32,
    /// `new score - baseline score`, wrapping.
    pub score: i32,
    /// `new deaths - baseline deaths`, wrapping.
    pub deaths: i32,
}

/// One snapshot on the wire: the world at `tick` as a delta against the
/// client's baseline.
///
/// Id gaps: each of `removed`, `created` and `changed` lists ids in increasing
/// order; the first entry carries the id itself, every later one
/// `id - previous_id - 1`.
///
/// Its wire form (serde) is in [`crate::codec`]: the entity lists travel
/// bit-packed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMsg {
    /// The tick of the state this message describes.
    pub tick: Tick,
    /// `tick - baseline tick`; 0 means a full snapshot (the baseline is the
    /// empty world).
    pub base_age: u32,
    /// Sequence number of the last input the server applied for the
    /// recipient (0: none yet).
    pub input_ack: u32,
    /// [`checksum`] of the full state; a client whose rebuilt state hashes
    /// differently is out of sync.
    pub checksum: u32,
    /// Ids (gap-coded) of baseline entities that are gone.
    pub removed: Vec<u32>,
    /// Entities the baseline does not have.
    pub created: Vec<EntityCreate>,
    /// One head per changed entity: `gap << 4 | field_mask`.
    pub changed: Vec<u32>,
    /// The changed fields' values, in columns: the `POS` pair of every head
    /// with [`fields::POS`], in head order, then the `VEL` values of every
    /// head with [`fields::VEL`], then the `ANGLE` values, then the `HP`
    /// values (protocol 6; protocol 5 listed them head after head). Each
    /// column is a run of values of one kind, which an encoder codes in one
    /// loop, without a branch on which fields each head has.
    pub values: Vec<i32>,
    /// Ids (absolute, increasing) of scoreboard entries that are gone.
    pub players_removed: Vec<u32>,
    /// Scoreboard entries that are new or renamed, whole, by increasing id.
    pub players_upserted: Vec<PlayerInfo>,
    /// Baseline scoreboard entries whose score or deaths changed, as
    /// changes, by increasing (gap-coded) id.
    pub players_scored: Vec<ScoreDelta>,
}

impl SnapshotMsg {
    /// Empties every list, keeping their allocations.
    pub fn clear(&mut self) {
        self.removed.clear();
        self.created.clear();
        self.changed.clear();
        self.values.clear();
        self.players_removed.clear();
        self.players_upserted.clear();
        self.players_scored.clear();
    }

    /// Whether this is a full snapshot (no baseline).
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.base_age == 0
    }
}

/// Why a delta cannot be applied. Every variant means the bytes did not come
/// from a correct server for this baseline.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    /// The delta needs a baseline the caller did not give, or a different one.
    #[error("delta needs baseline tick {needed}, have {have:?}")]
    BaselineMismatch {
        /// Tick the delta was encoded against.
        needed: Tick,
        /// Tick of the baseline given, if any.
        have: Option<Tick>,
    },
    /// An id gap overflowed the id space.
    #[error("entity id out of range")]
    IdOverflow,
    /// A removed or changed id is not in the baseline.
    #[error("entity {0} is not in the baseline")]
    UnknownEntity(u32),
    /// A created id is already in the baseline.
    #[error("entity {0} already exists")]
    DuplicateEntity(u32),
    /// The value list is shorter or longer than the heads ask for.
    #[error("field values do not match the change heads")]
    ValueCount,
    /// Scoreboard ids are not strictly increasing or do not match.
    #[error("scoreboard delta is inconsistent")]
    Players,
}

/// Checksum of a state: FNV-1a over 32-bit words (entities, then scoreboard).
/// Cheap enough to compute once per published tick; precise enough that any
/// divergence in a replicated field shows up.
#[must_use]
pub fn checksum(state: &WorldState) -> u32 {
    const PRIME: u32 = 0x0100_0193;
    let mut h: u32 = 0x811c_9dc5;
    let mut mix = |w: u32| h = (h ^ w).wrapping_mul(PRIME);
    for e in &state.entities {
        mix(e.id);
        mix(e.kind.index());
        mix(e.x as u32);
        mix(e.y as u32);
        mix(e.vx as u32);
        mix(e.vy as u32);
        mix(u32::from(e.angle));
        mix(u32::from(e.hp));
    }
    for p in state.players.iter() {
        mix(p.id);
        mix(p.score);
        mix(p.deaths);
        mix(p.name.len() as u32);
        for b in p.name.bytes() {
            mix(u32::from(b));
        }
    }
    h
}

/// Writes ids in increasing order as gaps.
struct GapWriter {
    prev: u32,
}

impl GapWriter {
    fn new() -> Self {
        Self { prev: u32::MAX }
    }
    fn gap(&mut self, id: u32) -> u32 {
        let gap = id.wrapping_sub(self.prev).wrapping_sub(1);
        self.prev = id;
        gap
    }
}

/// Reads gap-coded ids back.
struct GapReader {
    prev: Option<u32>,
}

impl GapReader {
    fn new() -> Self {
        Self { prev: None }
    }
    fn id(&mut self, gap: u32) -> Result<u32, DeltaError> {
        let id = match self.prev {
            None => gap,
            Some(p) => p
                .checked_add(1)
                .and_then(|n| n.checked_add(gap))
                .ok_or(DeltaError::IdOverflow)?,
        };
        if id > MAX_NET_ID {
            return Err(DeltaError::IdOverflow);
        }
        self.prev = Some(id);
        Ok(id)
    }
}

fn create_record(e: &NetEntity, gap: u32) -> EntityCreate {
    EntityCreate {
        gap,
        kind: e.kind,
        x: e.x,
        y: e.y,
        vx: e.vx,
        vy: e.vy,
        angle: e.angle,
        hp: e.hp,
    }
}

/// Encodes `current` as a delta against `baseline` into `out` (cleared
/// first, allocations reused). Entity ids must not exceed [`MAX_NET_ID`]
/// (the server's id allocator guarantees it). `None`, a baseline that is not older than
/// `current`, or one more than `u32::MAX / 2` ticks old, gives a full snapshot.
///
/// Computes [`checksum`]`(current)`, which walks every entity with a serial
/// hash and costs about as much as the rest of the diff. A server sending the
/// same state to many clients should compute it once per state and call
/// [`diff_into_with_checksum`].
pub fn diff_into(
    baseline: Option<&WorldState>,
    current: &WorldState,
    input_ack: u32,
    out: &mut SnapshotMsg,
) {
    diff_into_with_checksum(baseline, current, checksum(current), input_ack, out);
}

/// [`diff_into`] with `current_checksum`, which must be
/// [`checksum`]`(current)`, computed by the caller once for every client.
///
/// Allocation-free in steady state: every list of `out` keeps its capacity,
/// and the scoreboard entries it sends share their names with `current`.
pub fn diff_into_with_checksum(
    baseline: Option<&WorldState>,
    current: &WorldState,
    current_checksum: u32,
    input_ack: u32,
    out: &mut SnapshotMsg,
) {
    out.removed.clear();
    out.created.clear();
    out.changed.clear();
    out.values.clear();
    out.players_removed.clear();
    out.players_scored.clear();
    out.tick = current.tick;
    out.input_ack = input_ack;
    out.checksum = current_checksum;
    let base = baseline.filter(|b| current.tick.since(b.tick) > 0);
    let age = base.map_or(0, |b| current.tick.since(b.tick));
    out.base_age = age as u32;
    let base_entities = base.map_or(&[][..], |b| &b.entities[..]);
    diff_entities(base_entities, &current.entities, age, out);

    // Scoreboard: removed ids, new or renamed entries, and score changes.
    // An unchanged scoreboard is the same allocation as the baseline's:
    // nothing to compare.
    let mut upserts = UpsertWriter::new(&mut out.players_upserted);
    let scored = &mut out.players_scored;
    let mut scored_gaps = GapWriter::new();
    let (bp, cp) = match base {
        Some(b) if Arc::ptr_eq(&b.players, &current.players) => (&[][..], &[][..]),
        Some(b) => (&b.players[..], &current.players[..]),
        None => (&[][..], &current.players[..]),
    };
    let (mut i, mut j) = (0, 0);
    while i < bp.len() && j < cp.len() {
        // Kills change the scoreboard every tick, but only a few entries of
        // it: runs of the same players are walked zipped, each entry tested
        // without a call.
        let mut run = 0;
        for (b, c) in bp[i..].iter().zip(&cp[j..]) {
            if b.id != c.id {
                break;
            }
            run += 1;
            if !same_name(b, c) {
                upserts.push(c);
            } else if b.score != c.score || b.deaths != c.deaths {
                scored.push(ScoreDelta {
                    gap: scored_gaps.gap(c.id),
                    score: c.score.wrapping_sub(b.score) as i32,
                    deaths: c.deaths.wrapping_sub(b.deaths) as i32,
                });
            }
        }
        i += run;
        j += run;
        match (bp.get(i), cp.get(j)) {
            (Some(b), Some(c)) if b.id < c.id => {
                out.players_removed.push(b.id);
                i += 1;
            }
            (Some(_), Some(c)) => {
                upserts.push(c);
                j += 1;
            }
            _ => break,
        }
    }
    out.players_removed.extend(bp[i..].iter().map(|b| b.id));
    for c in &cp[j..] {
        upserts.push(c);
    }
    upserts.finish();
}

/// Whether two scoreboard entries of the same id have the same name.
///
/// A server's rosters share each player's name allocation, so an equal name
/// is nearly always the same pointer, and its bytes (elsewhere on the heap,
/// a likely cache miss) are not read. Other names are short (at most 16
/// bytes from the server), so they are compared as one or two words where
/// they can be, rather than through a `memcmp` call per entry.
#[inline(always)]
fn same_name(b: &PlayerInfo, c: &PlayerInfo) -> bool {
    Arc::ptr_eq(&b.name, &c.name) || same_bytes(b.name.as_bytes(), c.name.as_bytes())
}

/// `a == b`, without a call for slices of 4 to 16 bytes: their first and
/// last words (which overlap when shorter than two words) cover them.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    fn words<const N: usize>(s: &[u8]) -> Option<(&[u8; N], &[u8; N])> {
        Some((s.first_chunk()?, s.last_chunk()?))
    }
    if a.len() != b.len() {
        return false;
    }
    if a.len() <= 16 {
        if let (Some((a0, a1)), Some((b0, b1))) = (words::<8>(a), words::<8>(b)) {
            return (u64::from_ne_bytes(*a0) ^ u64::from_ne_bytes(*b0))
                | (u64::from_ne_bytes(*a1) ^ u64::from_ne_bytes(*b1))
                == 0;
        }
        if let (Some((a0, a1)), Some((b0, b1))) = (words::<4>(a), words::<4>(b)) {
            return (u32::from_ne_bytes(*a0) ^ u32::from_ne_bytes(*b0))
                | (u32::from_ne_bytes(*a1) ^ u32::from_ne_bytes(*b1))
                == 0;
        }
    }
    a == b
}

/// Id gap writers of the removed and created lists of a delta (the changed
/// list's is [`Staged::prev`]).
struct Gaps {
    removed: GapWriter,
    created: GapWriter,
}

/// The entity part of a delta: one merge walk over both id-sorted lists.
fn diff_entities(bs: &[NetEntity], cs: &[NetEntity], age: i32, out: &mut SnapshotMsg) {
    debug_assert!(cs.last().is_none_or(|e| e.id <= MAX_NET_ID));
    let mut gaps = Gaps {
        removed: GapWriter::new(),
        created: GapWriter::new(),
    };
    // A stage zeroed once per thread: zeroing its 3.6 KiB for every call
    // would cost as much as the rest of a 100-entity diff.
    let (i, j) = STAGE.with_borrow_mut(|staged| {
        staged.reset();
        // Age 1, a client that acknowledges every snapshot, is the common
        // case, and gets its own copy of the walk: dead reckoning is one
        // addition, and a velocity change needs no turn age (see `walk`).
        let ij = if age == 1 {
            walk::<true>(bs, cs, 1, staged, &mut gaps, out)
        } else {
            walk::<false>(bs, cs, age, staged, &mut gaps, out)
        };
        staged.finish(out);
        ij
    });
    for b in &bs[i..] {
        out.removed.push(gaps.removed.gap(b.id));
    }
    for c in &cs[j..] {
        out.created.push(create_record(c, gaps.created.gap(c.id)));
    }
}

/// The merge walk of [`diff_entities`]: stages the changed entities, pushes
/// removed and created ones, and returns where each list's walk stopped.
///
/// `AGE_ONE` is `age == 1`, known at compile time. That copy of the walk
/// predicts a position with one addition and no multiplication, and its
/// [`Staged::changed`] drops the turn age's floating-point arithmetic
/// (at age 1 the turn age can only be 1): at 1,000 entities, 11% fewer
/// instructions per delta and 17-20% less time (`BENCHMARKS.md` section 2).
#[inline(always)]
fn walk<const AGE_ONE: bool>(
    bs: &[NetEntity],
    cs: &[NetEntity],
    age: i32,
    staged: &mut Staged,
    gaps: &mut Gaps,
    out: &mut SnapshotMsg,
) -> (usize, usize) {
    let age = if AGE_ONE { 1 } else { age };
    let (mut i, mut j) = (0, 0);
    while i < bs.len() && j < cs.len() {
        // Runs of ids present in both lists are the common case: walk
        // them zipped, without per-element bounds checks.
        let mut run = 0;
        for (b, c) in bs[i..].iter().zip(&cs[j..]) {
            if b.id != c.id {
                break;
            }
            run += 1;
            // Most entities fly straight or stand still and cost
            // nothing: one branch-free test on the loaded fields, no
            // spills. The rest goes out of line.
            let px = b.x.wrapping_add(b.vx.wrapping_mul(age));
            let py = b.y.wrapping_add(b.vy.wrapping_mul(age));
            let same = ((c.x ^ px)
                | (c.y ^ py)
                | (c.vx ^ b.vx)
                | (c.vy ^ b.vy)
                | i32::from(c.angle ^ b.angle)
                | i32::from(c.hp ^ b.hp))
                == 0;
            if !same || b.kind != c.kind {
                staged.changed::<AGE_ONE>(b, c, age, gaps, out);
            }
        }
        i += run;
        j += run;
        match (bs.get(i), cs.get(j)) {
            (Some(b), Some(c)) if b.id < c.id => {
                i += 1;
                out.removed.push(gaps.removed.gap(b.id));
            }
            (Some(_), Some(c)) => {
                j += 1;
                out.created.push(create_record(c, gaps.created.gap(c.id)));
            }
            _ => break,
        }
    }
    (i, j)
}

/// The turn age `k` in `1..=age` that best explains the residual `r` of
/// plain dead reckoning by a velocity change `dv` (`r ≈ dv * k`, least
/// squares, rounded): exact for an entity that turned once. 1 when `dv` is
/// zero or the age is 1 (then `k` is not sent). Any `k` decodes the same
/// state; this one makes the position residual smallest.
#[inline(always)]
fn turn_age(rx: i32, ry: i32, dvx: i32, dvy: i32, age: i32) -> i32 {
    // In floating point: the products of 32-bit values overflow 64-bit
    // integers, and only the encoder computes `k` (the decoder reads it),
    // so rounding need not be the same everywhere. No velocity change is a
    // division by zero: NaN, which casts to 0 and clamps to 1.
    let (dvx, dvy) = (f64::from(dvx), f64::from(dvy));
    let k = (f64::from(rx) * dvx + f64::from(ry) * dvy) / (dvx * dvx + dvy * dvy);
    // `+ 0.5` and truncation round to nearest for every k ≥ -0.5; anything
    // below clamps to 1 anyway.
    ((k + 0.5) as i32).clamp(1, age.max(1))
}

/// Changed entities staged before they go to the message's lists (and
/// their values to [`Staged::columns`]): 144 KiB of stage per thread that
/// diffs (the fan-out's: one per worker), which holds the whole delta of a
/// 5,000-entity world at age 10 (about 2,700 changed entities) and moves
/// each value once. A quarter of it, flushing three times there, was
/// 2.5% slower (`BENCHMARKS.md` section 8).
const HEADS: usize = 4096;

/// The changed entities of a delta, staged per thread: their heads, and
/// their values in four columns, one per field group, in the order
/// [`SnapshotMsg::values`] lists them.
///
/// Which field groups of a changed entity differ is as good as random, so a
/// branch per group is a misprediction every few entities. Instead every
/// group is written to its column as if it had changed, and the column's
/// length advances only past those that did: straight-line code whose cost
/// does not depend on the data. The staging arrays make that possible
/// without `unsafe` (a `Vec` cannot be written past its length; their
/// lengths are powers of two, so an index wraps with a mask instead of a
/// bounds check) and spare `Vec::push`'s capacity test per value.
///
/// Whether an entity changed at all stays a branch, in the merge walk: it
/// is much better predicted (players turn, NPCs mostly fly straight, and
/// ids come in runs of each), and a branch-free walk that staged every
/// entity was slower at every age measured (sessions 3, 25 and 26,
/// `BENCHMARKS.md` section 8).
struct Staged {
    heads: [u32; HEADS],
    values: StagedValues,
    heads_len: usize,
    /// Each column's values from the stages flushed before, for a delta
    /// of more than [`HEADS`] changed entities.
    columns: [Vec<i32>; 4],
    /// Id of the last changed entity, for the gap of the next head (the
    /// changed list's [`GapWriter`]).
    prev: u32,
}

/// The values of [`Staged`]'s changed entities, column by column.
struct StagedValues {
    /// `POS` pairs.
    pos: [i32; 2 * HEADS],
    /// `VEL` pairs, each with its turn age from age 2 on (at most three
    /// values a head; four slots for a mask).
    vel: [i32; 4 * HEADS],
    angle: [i32; HEADS],
    hp: [i32; HEADS],
    /// The values in each column.
    lens: [usize; 4],
}

impl StagedValues {
    /// The values staged, column by column.
    fn columns(&self) -> [&[i32]; 4] {
        let [np, nv, na, nh] = self.lens;
        [
            &self.pos[..np],
            &self.vel[..nv],
            &self.angle[..na],
            &self.hp[..nh],
        ]
    }
}

thread_local! {
    /// The stage of [`diff_entities`] on this thread.
    static STAGE: RefCell<Box<Staged>> = RefCell::new(Box::new(Staged::new()));
}

impl Staged {
    fn new() -> Self {
        Self {
            heads: [0; HEADS],
            values: StagedValues {
                pos: [0; 2 * HEADS],
                vel: [0; 4 * HEADS],
                angle: [0; HEADS],
                hp: [0; HEADS],
                lens: [0; 4],
            },
            heads_len: 0,
            columns: Default::default(),
            prev: GapWriter::new().prev,
        }
    }

    /// Empties the stage for a new delta (the arrays keep stale values,
    /// which are never read).
    fn reset(&mut self) {
        self.heads_len = 0;
        self.values.lens = [0; 4];
        for c in &mut self.columns {
            c.clear();
        }
        self.prev = GapWriter::new().prev;
    }

    /// One entity present in both states (same id) that differs from its
    /// dead reckoning, or changed kind. `AGE_ONE` is `age == 1` (see
    /// [`walk`]).
    ///
    /// Out of line, so that the merge walk's fast path keeps its registers.
    #[inline(never)]
    fn changed<const AGE_ONE: bool>(
        &mut self,
        b: &NetEntity,
        c: &NetEntity,
        age: i32,
        gaps: &mut Gaps,
        out: &mut SnapshotMsg,
    ) {
        let age = if AGE_ONE { 1 } else { age };
        if b.kind != c.kind {
            // An id reused by another kind within `age` ticks: the old
            // entity is removed and the new one created.
            out.removed.push(gaps.removed.gap(b.id));
            out.created.push(create_record(c, gaps.created.gap(c.id)));
            return;
        }
        if self.heads_len == HEADS {
            self.flush(out);
        }
        let dvx = c.vx.wrapping_sub(b.vx);
        let dvy = c.vy.wrapping_sub(b.vy);
        // Residual against plain dead reckoning, then against the turn that
        // explains it best: moved with the old velocity for `age - k`
        // ticks and the new one for `k`, so a prediction of `dv * k` more.
        // A single turn (or stop) leaves no residual at all; `k` is sent
        // only for ages of 2 and more (at age 1 it can only be 1). With no
        // velocity change `dv` is 0 and `k` changes nothing.
        let r0x = c.x.wrapping_sub(b.x.wrapping_add(b.vx.wrapping_mul(age)));
        let r0y = c.y.wrapping_sub(b.y.wrapping_add(b.vy.wrapping_mul(age)));
        // The turn age: at age 1 it can only be 1; a server's states know
        // it (`vel_age`: one load, no branch). Without that hint, only
        // entities that turned pay for the least-squares fit: computed for
        // every changed entity, branch-free, its division made the whole
        // diff + encode 25-50% slower (criterion, alternating runs); behind
        // this branch (taken by about a third of changed entities at age
        // 10) it is still a sixth of the diff: the branch mispredicts, and
        // the division's latency is on the way to the entity's values.
        let turn = if AGE_ONE {
            1
        } else if c.vel_age != 0 {
            i32::from(c.vel_age).min(age)
        } else if (dvx | dvy) != 0 {
            turn_age(r0x, r0y, dvx, dvy, age)
        } else {
            1
        };
        let rx = r0x.wrapping_sub(dvx.wrapping_mul(turn));
        let ry = r0y.wrapping_sub(dvy.wrapping_mul(turn));
        let da = i32::from(c.angle.wrapping_sub(b.angle) as i8);
        let dh = i32::from(c.hp) - i32::from(b.hp);
        // Each column written as if the field had changed, its length
        // advanced only if it had.
        let v = &mut self.values;
        let n = v.lens[0];
        v.pos[n % (2 * HEADS)] = rx;
        v.pos[(n + 1) % (2 * HEADS)] = ry;
        let pos = u32::from((rx | ry) != 0);
        v.lens[0] = n + 2 * pos as usize;
        let n = v.lens[1];
        v.vel[n % (4 * HEADS)] = dvx;
        v.vel[(n + 1) % (4 * HEADS)] = dvy;
        v.vel[(n + 2) % (4 * HEADS)] = turn;
        let vel = u32::from((dvx | dvy) != 0);
        v.lens[1] = n + if AGE_ONE { 2 } else { 3 } * vel as usize;
        let n = v.lens[2];
        v.angle[n % HEADS] = da;
        let angle = u32::from(da != 0);
        v.lens[2] = n + angle as usize;
        let n = v.lens[3];
        v.hp[n % HEADS] = dh;
        let hp = u32::from(dh != 0);
        v.lens[3] = n + hp as usize;
        let mask = pos | (vel << 1) | (angle << 2) | (hp << 3);
        let nh = self.heads_len;
        self.heads[nh % HEADS] =
            (c.id.wrapping_sub(self.prev).wrapping_sub(1) << FIELD_BITS) | mask;
        self.heads_len = nh + 1;
        self.prev = c.id;
    }

    /// Appends the staged heads to `out` and the values to
    /// [`Staged::columns`], and empties the stage.
    fn flush(&mut self, out: &mut SnapshotMsg) {
        out.changed.extend_from_slice(&self.heads[..self.heads_len]);
        for (column, staged) in self.columns.iter_mut().zip(self.values.columns()) {
            column.extend_from_slice(staged);
        }
        self.heads_len = 0;
        self.values.lens = [0; 4];
    }

    /// Appends the staged heads to `out`, and all the values, one column
    /// after another.
    fn finish(&mut self, out: &mut SnapshotMsg) {
        out.changed.extend_from_slice(&self.heads[..self.heads_len]);
        for (flushed, staged) in self.columns.iter().zip(self.values.columns()) {
            out.values.extend_from_slice(flushed);
            out.values.extend_from_slice(staged);
        }
    }
}

/// Fills a scoreboard list (a message's `players_upserted`, or a rebuilt
/// state's scoreboard) by overwriting the entries already there, so a
/// scoreboard that changes every tick costs no allocation once the list has
/// grown to its largest: names are shared (`Arc::clone`, skipped when the
/// slot already holds the same name), never copied.
struct UpsertWriter<'a> {
    list: &'a mut Vec<PlayerInfo>,
    len: usize,
}

impl<'a> UpsertWriter<'a> {
    fn new(list: &'a mut Vec<PlayerInfo>) -> Self {
        Self { list, len: 0 }
    }

    fn push(&mut self, p: &PlayerInfo) {
        match self.list.get_mut(self.len) {
            Some(slot) => {
                slot.id = p.id;
                if !Arc::ptr_eq(&slot.name, &p.name) {
                    slot.name = Arc::clone(&p.name);
                }
                slot.score = p.score;
                slot.deaths = p.deaths;
            }
            None => self.list.push(p.clone()),
        }
        self.len += 1;
    }

    /// `b` with a [`ScoreDelta`] applied.
    fn push_changed(&mut self, b: &PlayerInfo, d: &ScoreDelta) {
        self.push(b);
        let slot = &mut self.list[self.len - 1];
        slot.score = b.score.wrapping_add(d.score as u32);
        slot.deaths = b.deaths.wrapping_add(d.deaths as u32);
    }

    fn finish(self) {
        self.list.truncate(self.len);
    }
}

/// [`diff_into`] into a fresh message.
#[must_use]
pub fn diff(baseline: Option<&WorldState>, current: &WorldState, input_ack: u32) -> SnapshotMsg {
    let mut out = SnapshotMsg::default();
    diff_into(baseline, current, input_ack, &mut out);
    out
}

/// How many change heads have each field group, in the order `POS`,
/// `VEL`, `ANGLE`, `HP`: how many entries each column of
/// [`SnapshotMsg::values`] has. One pass, no branch per head.
#[must_use]
pub(crate) fn field_counts(heads: &[u32]) -> [usize; 4] {
    let mut count = [0; 4];
    for &head in heads {
        for (bit, n) in count.iter_mut().enumerate() {
            *n += ((head >> bit) & 1) as usize;
        }
    }
    count
}

/// Reads one column of a message's values.
struct Values<'a> {
    values: &'a [i32],
    at: usize,
}

impl Values<'_> {
    fn next(&mut self) -> Result<i32, DeltaError> {
        let v = *self.values.get(self.at).ok_or(DeltaError::ValueCount)?;
        self.at += 1;
        Ok(v)
    }
}

/// A message's values read column by column (see [`SnapshotMsg::values`]).
struct Columns<'a> {
    pos: Values<'a>,
    vel: Values<'a>,
    angle: Values<'a>,
    hp: Values<'a>,
    /// How many values the heads ask for.
    wanted: usize,
}

impl<'a> Columns<'a> {
    /// Splits `values` where the heads say its columns end (a column cut
    /// short if there are too few values: reading past its end is a
    /// [`DeltaError::ValueCount`], like any difference between
    /// [`Columns::wanted`] and the values there are).
    fn new(values: &'a [i32], heads: &[u32], base_age: u32) -> Self {
        let [pos, vel, angle, hp] = field_counts(heads);
        let vel_values = if base_age > 1 { 3 } else { 2 };
        // At most seven values a head: no overflow for any list that fits
        // in memory.
        let lens = [2 * pos, vel_values * vel, angle, hp];
        let mut rest = values;
        let [pos, vel, angle, hp] = lens.map(|len| {
            let (column, after) = rest.split_at(len.min(rest.len()));
            rest = after;
            Values {
                values: column,
                at: 0,
            }
        });
        Self {
            pos,
            vel,
            angle,
            hp,
            wanted: lens.iter().sum(),
        }
    }
}

fn apply_change(
    e: &mut NetEntity,
    mask: u32,
    age: i32,
    columns: &mut Columns<'_>,
) -> Result<(), DeltaError> {
    // Dead reckoning first, with the baseline's velocity.
    e.x = e.x.wrapping_add(e.vx.wrapping_mul(age));
    e.y = e.y.wrapping_add(e.vy.wrapping_mul(age));
    if mask & fields::POS != 0 {
        e.x = e.x.wrapping_add(columns.pos.next()?);
        e.y = e.y.wrapping_add(columns.pos.next()?);
    }
    if mask & fields::VEL != 0 {
        let dvx = columns.vel.next()?;
        let dvy = columns.vel.next()?;
        // The last `k` ticks were flown with the new velocity, not the old.
        // Sent from a base age of 2 on (as the unsigned `base_age`).
        let k = if age as u32 > 1 {
            columns.vel.next()?
        } else {
            1
        };
        e.vx = e.vx.wrapping_add(dvx);
        e.vy = e.vy.wrapping_add(dvy);
        e.x = e.x.wrapping_add(dvx.wrapping_mul(k));
        e.y = e.y.wrapping_add(dvy.wrapping_mul(k));
    }
    if mask & fields::ANGLE != 0 {
        e.angle = e.angle.wrapping_add(columns.angle.next()? as u8);
    }
    if mask & fields::HP != 0 {
        e.hp = (i32::from(e.hp).wrapping_add(columns.hp.next()?)) as u8;
    }
    Ok(())
}

/// Rebuilds the state a delta describes into `out` (allocations reused).
///
/// `baseline` must be the state of tick `msg.tick - msg.base_age` (ignored for
/// full snapshots). Never panics on any input; any inconsistency is a
/// [`DeltaError`] and leaves `out` unspecified.
pub fn apply_into(
    baseline: Option<&WorldState>,
    msg: &SnapshotMsg,
    out: &mut WorldState,
) -> Result<(), DeltaError> {
    // Built only for full snapshots: a delta allocates nothing here.
    let empty;
    let base = if msg.is_full() {
        empty = WorldState::default();
        &empty
    } else {
        let needed = msg.tick.advanced(msg.base_age.wrapping_neg());
        match baseline {
            Some(b) if b.tick == needed => b,
            other => {
                return Err(DeltaError::BaselineMismatch {
                    needed,
                    have: other.map(|b| b.tick),
                });
            }
        }
    };
    let age = msg.base_age as i32;
    out.tick = msg.tick;
    out.entities.clear();

    let mut removed = msg.removed.iter().peekable();
    let mut removed_ids = GapReader::new();
    let mut next_removed = || -> Result<Option<u32>, DeltaError> {
        removed.next().map(|&g| removed_ids.id(g)).transpose()
    };
    let mut created_ids = GapReader::new();
    let mut created = msg.created.iter().map(move |c| {
        created_ids.id(c.gap).map(|id| NetEntity {
            id,
            kind: c.kind,
            x: c.x,
            y: c.y,
            vx: c.vx,
            vy: c.vy,
            angle: c.angle,
            hp: c.hp,
            vel_age: 0,
        })
    });
    let mut changed_ids = GapReader::new();
    let mut changed = msg.changed.iter().map(move |&h| {
        changed_ids
            .id(h >> FIELD_BITS)
            .map(|id| (id, h & FIELD_MASK))
    });
    let mut columns = Columns::new(&msg.values, &msg.changed, msg.base_age);

    let mut rem = next_removed()?;
    let mut cre = created.next().transpose()?;
    let mut chg = changed.next().transpose()?;
    for b in &base.entities {
        while let Some(c) = cre.filter(|c| c.id < b.id) {
            out.entities.push(c);
            cre = created.next().transpose()?;
        }
        if let Some(r) = rem {
            if r < b.id {
                return Err(DeltaError::UnknownEntity(r));
            }
            if r == b.id {
                rem = next_removed()?;
                if let Some((c, _)) = chg.filter(|(c, _)| *c == b.id) {
                    return Err(DeltaError::UnknownEntity(c));
                }
                continue;
            }
        }
        if cre.is_some_and(|c| c.id == b.id) {
            return Err(DeltaError::DuplicateEntity(b.id));
        }
        let mut e = *b;
        match chg {
            Some((c, _)) if c < b.id => return Err(DeltaError::UnknownEntity(c)),
            Some((c, mask)) if c == b.id => {
                apply_change(&mut e, mask, age, &mut columns)?;
                chg = changed.next().transpose()?;
            }
            _ => {
                e.x = e.x.wrapping_add(e.vx.wrapping_mul(age));
                e.y = e.y.wrapping_add(e.vy.wrapping_mul(age));
            }
        }
        out.entities.push(e);
    }
    if let Some(r) = rem {
        return Err(DeltaError::UnknownEntity(r));
    }
    if let Some((c, _)) = chg {
        return Err(DeltaError::UnknownEntity(c));
    }
    while let Some(c) = cre {
        out.entities.push(c);
        cre = created.next().transpose()?;
    }
    if columns.wanted != msg.values.len() {
        return Err(DeltaError::ValueCount);
    }

    apply_players(&base.players, msg, &mut out.players)
}

fn strictly_increasing(ids: impl Iterator<Item = u32>) -> bool {
    let mut prev = None;
    ids.into_iter().all(|id| {
        let ok = prev.is_none_or(|p| id > p);
        prev = Some(id);
        ok
    })
}

fn apply_players(
    base: &Arc<Vec<PlayerInfo>>,
    msg: &SnapshotMsg,
    out: &mut Arc<Vec<PlayerInfo>>,
) -> Result<(), DeltaError> {
    if msg.players_removed.is_empty()
        && msg.players_upserted.is_empty()
        && msg.players_scored.is_empty()
    {
        *out = Arc::clone(base);
        return Ok(());
    }
    // A scoreboard nobody else holds (a recycled state's) is rebuilt in
    // place, its list reused and its names shared with the baseline and
    // the message: a client whose scoreboard changes every tick then
    // allocates nothing for it.
    if let Some(players) = Arc::get_mut(out) {
        return merge_players(base, msg, players);
    }
    let mut players = Vec::with_capacity(base.len() + msg.players_upserted.len());
    merge_players(base, msg, &mut players)?;
    *out = Arc::new(players);
    Ok(())
}

fn merge_players(
    base: &[PlayerInfo],
    msg: &SnapshotMsg,
    out: &mut Vec<PlayerInfo>,
) -> Result<(), DeltaError> {
    if !strictly_increasing(msg.players_removed.iter().copied())
        || !strictly_increasing(msg.players_upserted.iter().map(|p| p.id))
    {
        return Err(DeltaError::Players);
    }
    let mut out = UpsertWriter::new(out);
    let mut removed = msg.players_removed.iter().copied().peekable();
    let mut upserts = msg.players_upserted.iter().peekable();
    let mut scored_ids = GapReader::new();
    let mut scored = msg
        .players_scored
        .iter()
        .map(|d| scored_ids.id(d.gap).map(|id| (id, d)));
    let mut score = scored.next().transpose()?;
    for b in base {
        while let Some(u) = upserts.next_if(|u| u.id < b.id) {
            out.push(u);
        }
        // A score change must name a baseline entry that stays.
        if score.is_some_and(|(id, _)| id < b.id) {
            return Err(DeltaError::Players);
        }
        let changes = score.filter(|(id, _)| *id == b.id).map(|(_, d)| d);
        if changes.is_some() {
            score = scored.next().transpose()?;
        }
        if removed.next_if_eq(&b.id).is_some() {
            if changes.is_some() || upserts.peek().is_some_and(|u| u.id == b.id) {
                return Err(DeltaError::Players);
            }
            continue;
        }
        if removed.peek().is_some_and(|&r| r < b.id) {
            return Err(DeltaError::Players);
        }
        match (upserts.next_if(|u| u.id == b.id), changes) {
            (Some(_), Some(_)) => return Err(DeltaError::Players),
            (Some(u), None) => out.push(u),
            (None, Some(d)) => out.push_changed(b, d),
            (None, None) => out.push(b),
        }
    }
    if removed.next().is_some() || score.is_some() {
        return Err(DeltaError::Players);
    }
    for u in upserts {
        out.push(u);
    }
    out.finish();
    Ok(())
}

/// [`apply_into`] into a fresh state.
pub fn apply(baseline: Option<&WorldState>, msg: &SnapshotMsg) -> Result<WorldState, DeltaError> {
    let mut out = WorldState::default();
    apply_into(baseline, msg, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod reference {
    //! [`diff_into`] checked against the delta written the obvious way, one
    //! entity and one branch at a time, on random worlds of up to 1,200
    //! entities and on a few larger than its stage, with names of every
    //! length its word compare distinguishes.

    use proptest::prelude::*;

    use super::*;

    /// The straightforward delta of `current` against `base` (older).
    fn reference_diff(base: &WorldState, current: &WorldState) -> SnapshotMsg {
        let age = current.tick.since(base.tick);
        let mut out = SnapshotMsg {
            tick: current.tick,
            base_age: age as u32,
            input_ack: 7,
            checksum: checksum(current),
            ..SnapshotMsg::default()
        };
        let (mut removed, mut created, mut changed) =
            (GapWriter::new(), GapWriter::new(), GapWriter::new());
        // The values of each field group, in head order.
        let mut columns: [Vec<i32>; 4] = Default::default();
        let (bs, cs) = (&base.entities, &current.entities);
        let (mut i, mut j) = (0, 0);
        while i < bs.len() || j < cs.len() {
            match (bs.get(i), cs.get(j)) {
                (Some(b), Some(c)) if b.id == c.id && b.kind == c.kind => {
                    let (dvx, dvy) = (c.vx.wrapping_sub(b.vx), c.vy.wrapping_sub(b.vy));
                    let turned = dvx != 0 || dvy != 0;
                    let mut rx = c.x.wrapping_sub(b.x.wrapping_add(b.vx.wrapping_mul(age)));
                    let mut ry = c.y.wrapping_sub(b.y.wrapping_add(b.vy.wrapping_mul(age)));
                    // The velocity's age where the state knows it, else
                    // the best fit.
                    let k = match c.vel_age {
                        0 => turn_age(rx, ry, dvx, dvy, age),
                        known => i32::from(known).clamp(1, age),
                    };
                    if turned {
                        rx = rx.wrapping_sub(dvx.wrapping_mul(k));
                        ry = ry.wrapping_sub(dvy.wrapping_mul(k));
                    }
                    let da = i32::from(c.angle.wrapping_sub(b.angle) as i8);
                    let dh = i32::from(c.hp) - i32::from(b.hp);
                    let mut mask = 0;
                    if rx != 0 || ry != 0 {
                        mask |= fields::POS;
                        columns[0].extend([rx, ry]);
                    }
                    if turned {
                        mask |= fields::VEL;
                        columns[1].extend([dvx, dvy]);
                        if age > 1 {
                            columns[1].push(k);
                        }
                    }
                    if da != 0 {
                        mask |= fields::ANGLE;
                        columns[2].push(da);
                    }
                    if dh != 0 {
                        mask |= fields::HP;
                        columns[3].push(dh);
                    }
                    if mask != 0 {
                        out.changed.push((changed.gap(c.id) << FIELD_BITS) | mask);
                    }
                    i += 1;
                    j += 1;
                }
                (Some(b), Some(c)) if b.id == c.id => {
                    out.removed.push(removed.gap(b.id));
                    out.created.push(create_record(c, created.gap(c.id)));
                    i += 1;
                    j += 1;
                }
                (Some(b), c) if c.is_none_or(|c| b.id < c.id) => {
                    out.removed.push(removed.gap(b.id));
                    i += 1;
                }
                (_, Some(c)) => {
                    out.created.push(create_record(c, created.gap(c.id)));
                    j += 1;
                }
                (Some(_), None) | (None, None) => unreachable!("loop condition"),
            }
        }
        out.values = columns.concat();
        let (bp, cp) = (&base.players, &current.players);
        let mut scored = GapWriter::new();
        let (mut i, mut j) = (0, 0);
        while i < bp.len() || j < cp.len() {
            match (bp.get(i), cp.get(j)) {
                (Some(b), Some(c)) if b.id == c.id => {
                    if b.name != c.name {
                        out.players_upserted.push(c.clone());
                    } else if b != c {
                        out.players_scored.push(ScoreDelta {
                            gap: scored.gap(c.id),
                            score: c.score.wrapping_sub(b.score) as i32,
                            deaths: c.deaths.wrapping_sub(b.deaths) as i32,
                        });
                    }
                    i += 1;
                    j += 1;
                }
                (Some(b), c) if c.is_none_or(|c| b.id < c.id) => {
                    out.players_removed.push(b.id);
                    i += 1;
                }
                (_, Some(c)) => {
                    out.players_upserted.push(c.clone());
                    j += 1;
                }
                (Some(_), None) | (None, None) => unreachable!("loop condition"),
            }
        }
        out
    }

    /// xorshift64*: worlds of hundreds of entities from one seed, quickly.
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
        fn small(&mut self) -> i32 {
            // Mostly one-byte values, sometimes wide ones.
            match self.below(8) {
                0 => self.next() as i32,
                1 => self.below(70_000) as i32 - 35_000,
                _ => self.below(300) as i32 - 150,
            }
        }
        fn name(&mut self) -> Arc<str> {
            // Few letters, so that equal lengths and near misses are common.
            let len = self.below(25) as usize;
            (0..len)
                .map(|_| char::from(b'a' + self.below(3) as u8))
                .collect::<String>()
                .into()
        }
    }

    /// A baseline and a current state `age` ticks later: most entities
    /// dead-reckoned exactly, the rest changed in random field groups,
    /// some removed, created or reused under another kind; likewise for
    /// the scoreboard.
    fn worlds(seed: u64, entities: u64, age: u32) -> (WorldState, WorldState) {
        let mut rng = Rng(seed | 1);
        let kinds = [EntityKind::Player, EntityKind::Npc, EntityKind::Projectile];
        let mut base = WorldState {
            tick: Tick(rng.next() as u32),
            ..WorldState::default()
        };
        let mut current = WorldState {
            tick: base.tick.advanced(age),
            ..WorldState::default()
        };
        let mut id = 0;
        for _ in 0..entities {
            id += 1 + rng.below(3) as u32;
            let b = NetEntity {
                id,
                kind: kinds[rng.below(3) as usize],
                x: rng.small(),
                y: rng.small(),
                vx: rng.small(),
                vy: rng.small(),
                angle: rng.next() as u8,
                hp: rng.next() as u8,
                vel_age: 0,
            };
            let mut c = b;
            c.x = c.x.wrapping_add(c.vx.wrapping_mul(age as i32));
            c.y = c.y.wrapping_add(c.vy.wrapping_mul(age as i32));
            // The velocity's age: unknown (a rebuilt state's) half the
            // time, else anything up to past the baseline, or saturated.
            c.vel_age = match rng.below(4) {
                0 | 1 => 0,
                2 => 1 + rng.below(u64::from(age) + 2) as u8,
                _ => u8::MAX,
            };
            match rng.below(10) {
                0 => {
                    base.entities.push(b);
                    continue;
                }
                1 => {
                    current.entities.push(c);
                    continue;
                }
                2 => c.kind = kinds[(rng.below(2) as usize + 1 + b.kind.index() as usize) % 3],
                3..=5 => {
                    let groups = rng.below(16);
                    if groups & 1 != 0 {
                        c.x = c.x.wrapping_add(rng.small());
                        c.y = c.y.wrapping_add(rng.small());
                    }
                    if groups & 2 != 0 {
                        c.vx = rng.small();
                    }
                    if groups & 4 != 0 {
                        c.angle = rng.next() as u8;
                    }
                    if groups & 8 != 0 {
                        c.hp = rng.next() as u8;
                    }
                }
                _ => {}
            }
            base.entities.push(b);
            current.entities.push(c);
        }
        let (mut bp, mut cp) = (vec![], vec![]);
        for id in 0..entities / 2 {
            let b = PlayerInfo {
                id: id as u32,
                name: rng.name(),
                score: rng.below(3) as u32,
                deaths: rng.below(3) as u32,
            };
            let mut c = b.clone();
            match rng.below(12) {
                0 => {
                    bp.push(b);
                    continue;
                }
                1 => {
                    cp.push(c);
                    continue;
                }
                2 => c.score += 1,
                3 => c.deaths += 1,
                4 => c.name = rng.name(),
                5 if !c.name.is_empty() => {
                    // Same length, one byte different.
                    let mut bytes = c.name.as_bytes().to_vec();
                    let at = rng.below(bytes.len() as u64) as usize;
                    bytes[at] = if bytes[at] == b'z' { b'y' } else { b'z' };
                    c.name = String::from_utf8(bytes).unwrap_or_default().into();
                }
                // The same name in another allocation, as when an id is
                // reused by a namesake: equal, although not the same
                // pointer.
                6 => c.name = Arc::from(&*c.name),
                _ => {}
            }
            bp.push(b);
            cp.push(c);
        }
        base.players = Arc::new(bp);
        current.players = Arc::new(cp);
        (base, current)
    }

    #[test]
    fn same_bytes_is_slice_equality() {
        let text: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        for len in 0..=text.len() {
            let a = &text[..len];
            let copy = a.to_vec();
            assert!(same_bytes(a, &copy));
            for at in 0..len {
                let mut b = a.to_vec();
                b[at] ^= 1;
                assert!(!same_bytes(a, &b), "{len} {at}");
            }
            if len > 0 {
                assert!(!same_bytes(a, &text[..len - 1]));
            }
        }
    }

    /// A delta of more changed entities than the stage holds: the stage is
    /// flushed into the columns mid-walk, and the columns still come out
    /// one after another.
    #[test]
    fn a_delta_larger_than_the_stage_matches_the_reference() {
        for (seed, age) in [(1, 1), (2, 3), (3, 10)] {
            let (base, current) = worlds(seed, 5 * HEADS as u64, age);
            let msg = diff(Some(&base), &current, 7);
            assert!(msg.changed.len() > HEADS, "{} heads", msg.changed.len());
            assert_eq!(msg, reference_diff(&base, &current));
            assert_eq!(apply(Some(&base), &msg), Ok(current));
        }
    }

    proptest! {
        #[test]
        fn staged_diff_matches_the_reference(
            seed: u64,
            entities in 0..1_200u64,
            age in 1..12u32,
        ) {
            let (base, current) = worlds(seed, entities, age);
            let mut msg = SnapshotMsg::default();
            // Twice into the same message: stale content must not leak.
            for _ in 0..2 {
                diff_into(Some(&base), &current, 7, &mut msg);
                prop_assert_eq!(&msg, &reference_diff(&base, &current));
            }
            prop_assert_eq!(apply(Some(&base), &msg), Ok(current));
        }
    }
}
