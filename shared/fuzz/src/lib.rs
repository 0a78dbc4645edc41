//! Bodies of the fuzz targets, kept in a library so that the seed test
//! (`tests/seeds.rs`) runs exactly the code the fuzzers run, on stable and
//! without libFuzzer.
//!
//! Each body panics only when it has found a bug: a decoder that panicked, a
//! value that does not survive re-encoding, or a rebuilt world that breaks
//! the invariants [`WorldState`] documents.

use std::hint::black_box;
use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use shared::Tick;
use shared::codec::{
    self, DatagramMac, client_bytes, decode_client, decode_server, peek_hello_version,
};
use shared::protocol::{ClientMsg, DATAGRAM_TAG_BYTES, DatagramKey, ServerMsg};
use shared::snapshot::{
    self, EntityCreate, EntityKind, MAX_NET_ID, NetEntity, PlayerInfo, ScoreDelta, SnapshotMsg,
    WorldState,
};

/// The fixed baseline of the `delta` target: a real full snapshot of a small
/// arena (players, NPCs, projectiles in flight, a scoreboard), written by the
/// seed generator next to the deltas that were encoded against it.
pub const BASELINE_BYTES: &[u8] = include_bytes!("../seeds/baseline.bin");

/// [`BASELINE_BYTES`] decoded and applied, once per process.
///
/// # Panics
/// If the committed baseline is not a full snapshot that applies: the seeds
/// are stale, regenerate them (see the README).
pub fn baseline() -> &'static WorldState {
    static BASE: OnceLock<WorldState> = OnceLock::new();
    BASE.get_or_init(|| match decode_server(BASELINE_BYTES) {
        Ok(ServerMsg::Snapshot(s)) if s.is_full() => match snapshot::apply(None, &s) {
            Ok(state) => state,
            Err(e) => panic!("seeds/baseline.bin does not apply: {e}"),
        },
        other => panic!("seeds/baseline.bin is not a full snapshot: {other:?}"),
    })
}

/// `client_msg` target: what the server runs on every binary message a
/// client sends, and on every datagram (`decode_datagram`, the same bytes
/// read as a datagram).
///
/// # Panics
/// On a bug: a decoder panicked, a decoded message does not round-trip, the
/// canonical encoding is longer than the input, or the hello peek disagrees
/// with the full decode.
pub fn client_msg(data: &[u8]) {
    client_datagram(data);
    let peeked = peek_hello_version(data);
    let Ok(msg) = decode_client(data) else {
        return;
    };
    // The peek must agree with the full decode whenever the latter succeeds.
    match &msg {
        ClientMsg::Hello(h) => assert_eq!(peeked, Some(h.protocol), "peek vs decode"),
        _ => assert_eq!(peeked, None, "peek found a hello in {msg:?}"),
    }
    // Re-encoding gives the shortest form: never longer than what was
    // accepted (the decoder also takes non-minimal varints, so the bytes
    // need not be equal), and it must decode to the same value.
    let bytes = client_bytes(&msg);
    assert!(bytes.len() <= data.len(), "{msg:?} re-encoded longer");
    assert_eq!(decode_client(&bytes), Ok(msg), "client message round trip");
}

/// The key the datagram seeds are signed with (`tests/seeds.rs`): the
/// `client_msg` target checks datagrams with it.
pub const DATAGRAM_KEY: DatagramKey = DatagramKey([0x42; 16]);

/// Client datagrams, as the server's receiving thread reads them: the
/// fuzzer's bytes as they are (the seeds are signed, so the parser runs on
/// them; nearly every mutation is refused at the tag, which must never
/// panic), and the same bytes signed anew, so that the parser behind the
/// tag sees every mutation too.
fn client_datagram(data: &[u8]) {
    let mac = DatagramMac::new(&DATAGRAM_KEY);
    check_datagram(data, &mac);
    if let Some(unsigned) = data.len().checked_sub(DATAGRAM_TAG_BYTES) {
        let mut signed = data[..unsigned].to_vec();
        mac.seal_client(&mut signed);
        check_datagram(&signed, &mac);
    }
}

/// A datagram that decodes must survive re-encoding, never longer.
fn check_datagram(data: &[u8], mac: &DatagramMac) {
    let Ok(datagram) = codec::decode_datagram(data, mac) else {
        return;
    };
    let mut bytes = Vec::new();
    codec::encode_datagram(&datagram.id, mac, datagram.messages(), &mut bytes);
    assert!(bytes.len() <= data.len(), "{datagram:?} re-encoded longer");
    assert_eq!(
        codec::decode_datagram(&bytes, mac).ok(),
        Some(datagram),
        "datagram round trip"
    );
}

/// `delta` target: what a client runs on every binary message the server
/// sends: decode, then rebuild the world from the snapshot against the fixed
/// [`baseline`], against the same baseline moved to whatever tick the delta
/// names (so that random ticks still reach the merge), and with no baseline.
/// Every decoded snapshot is also encoded by the server's hand-written
/// encoder and [`codec::SharedSnapshot`], which must give serde's bytes, and
/// applied into a recycled state as well as a fresh one ([`apply_both`]).
///
/// # Panics
/// On a bug: see [`client_msg`], plus [`check_shared_snapshot`],
/// [`apply_both`] and [`check_applied`].
pub fn delta(data: &[u8]) {
    let Ok(msg) = decode_server(data) else {
        return;
    };
    let bytes = codec::server_bytes(&msg);
    assert!(bytes.len() <= data.len(), "{msg:?} re-encoded longer");
    assert_eq!(
        decode_server(&bytes).as_ref(),
        Ok(&msg),
        "server round trip"
    );
    let ServerMsg::Snapshot(s) = msg else {
        return;
    };
    // The server's hand-written snapshot encoder and its ack splicing must
    // give serde's bytes exactly.
    let mut direct = Vec::new();
    codec::encode_snapshot(&s, &mut direct);
    assert_eq!(direct, bytes, "encode_snapshot differs from server_bytes");
    check_shared_snapshot(&s);

    let base = baseline();
    let mut moved = base.clone();
    moved.tick = s.tick.advanced(s.base_age.wrapping_neg());
    let stale = stale_state(base);
    for b in [Some(base), Some(&moved), None] {
        if let Ok(out) = apply_both(b, &s, &stale) {
            check_applied(b, &s, &out);
        }
    }
}

/// A state full of data no delta here describes: the baseline's entities
/// shifted, and a longer scoreboard with long names. What a client that
/// recycles its states hands [`snapshot::apply_into`].
fn stale_state(base: &WorldState) -> WorldState {
    let mut players: Vec<PlayerInfo> = base.players.iter().cloned().collect();
    players.extend((0..24).map(|n| PlayerInfo {
        id: 1000 + n,
        name: "stale".repeat(n as usize).into(),
        score: n,
        deaths: n,
    }));
    WorldState {
        tick: base.tick.advanced(1),
        entities: base
            .entities
            .iter()
            .map(|e| NetEntity {
                id: e.id.wrapping_add(1),
                x: e.x ^ 0x55,
                ..*e
            })
            .collect(),
        players: Arc::new(players),
    }
}

/// [`snapshot::apply`] into a fresh state, and [`snapshot::apply_into`]
/// into a deep copy of `stale` (its scoreboard held by no one else, so it
/// is rebuilt in place): both must agree, on the state or on the error.
///
/// # Panics
/// When they differ.
pub fn apply_both(
    base: Option<&WorldState>,
    msg: &SnapshotMsg,
    stale: &WorldState,
) -> Result<WorldState, snapshot::DeltaError> {
    let fresh = snapshot::apply(base, msg);
    let mut recycled = WorldState {
        players: Arc::new(stale.players.to_vec()),
        ..stale.clone()
    };
    let into = snapshot::apply_into(base, msg, &mut recycled);
    match (&fresh, into) {
        (Ok(f), Ok(())) => assert_eq!(&recycled, f, "apply_into a recycled state"),
        (Err(a), Err(b)) => assert_eq!(a, &b, "apply_into a recycled state"),
        (a, b) => panic!("apply gave {a:?}, apply_into a recycled state {b:?}"),
    }
    fresh
}

/// Checks a world that [`snapshot::apply`] accepted: it must satisfy the
/// invariants [`WorldState`] documents (entities and scoreboard sorted by
/// id, ids unique, entity ids at most [`MAX_NET_ID`]), and encoding it again
/// against the same baseline, through the real codec, must rebuild it.
///
/// # Panics
/// When any of that fails.
pub fn check_applied(base: Option<&WorldState>, msg: &SnapshotMsg, out: &WorldState) {
    assert_eq!(out.tick, msg.tick);
    assert!(
        out.entities.windows(2).all(|w| w[0].id < w[1].id),
        "entities not strictly increasing by id"
    );
    assert!(
        out.entities.iter().all(|e| e.id <= MAX_NET_ID),
        "id > MAX_NET_ID"
    );
    assert!(
        out.players.windows(2).all(|w| w[0].id < w[1].id),
        "scoreboard not strictly increasing by id"
    );
    black_box(snapshot::checksum(out));
    let again = over_the_wire(&snapshot::diff(base, out, msg.input_ack));
    match snapshot::apply(base, &again) {
        Ok(rebuilt) => assert_eq!(&rebuilt, out, "re-diff of an applied state"),
        Err(e) => panic!("re-diff of an applied state does not apply: {e}"),
    }
}

/// Checks [`codec::SharedSnapshot`]: the bytes it writes for any ack are
/// the bytes [`codec::encode_snapshot`] gives for the message with that ack.
///
/// # Panics
/// When they differ.
pub fn check_shared_snapshot(s: &SnapshotMsg) {
    let shared = codec::SharedSnapshot::new(s);
    let mut with_ack = s.clone();
    let (mut spliced, mut own) = (Vec::new(), Vec::new());
    // Every varint width, both ways, and one ack the input chose.
    for ack in [
        s.input_ack,
        0,
        250,
        251,
        65_535,
        65_536,
        u32::MAX,
        s.checksum,
    ] {
        shared.write_for(ack, &mut spliced);
        with_ack.input_ack = ack;
        codec::encode_snapshot(&with_ack, &mut own);
        assert_eq!(spliced, own, "SharedSnapshot::write_for({ack})");
        assert_eq!(
            shared.len_for(ack),
            own.len(),
            "SharedSnapshot::len_for({ack})"
        );
    }
}

/// Encodes a snapshot and decodes it, as the wire would.
///
/// # Panics
/// If the codec does not give the snapshot back.
pub fn over_the_wire(msg: &SnapshotMsg) -> SnapshotMsg {
    let mut bytes = Vec::new();
    codec::encode_snapshot(msg, &mut bytes);
    check_shared_snapshot(msg);
    match decode_server(&bytes) {
        Ok(ServerMsg::Snapshot(s)) => {
            assert_eq!(&s, msg, "snapshot codec round trip");
            s
        }
        other => panic!("an encoded snapshot decoded as {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Structured input: a baseline, an evolution of it, and a free-form delta.
// ---------------------------------------------------------------------------

/// Entity kind, as the fuzzer picks it.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum ArbKind {
    /// [`EntityKind::Player`].
    Player,
    /// [`EntityKind::Npc`].
    Npc,
    /// [`EntityKind::Projectile`].
    Projectile,
}

impl From<ArbKind> for EntityKind {
    fn from(k: ArbKind) -> Self {
        match k {
            ArbKind::Player => Self::Player,
            ArbKind::Npc => Self::Npc,
            ArbKind::Projectile => Self::Projectile,
        }
    }
}

/// An entity whose id is a small gap to the previous one, so that worlds
/// are dense and deltas hit existing ids.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct ArbEntity {
    /// Id gap to the previous entity of the same list.
    pub gap: u8,
    /// What it is.
    pub kind: ArbKind,
    /// Position and velocity in quanta; any value, wrapping is the contract.
    pub x: i32,
    /// See `x`.
    pub y: i32,
    /// See `x`.
    pub vx: i32,
    /// See `x`.
    pub vy: i32,
    /// Facing.
    pub angle: u8,
    /// Hit points.
    pub hp: u8,
}

/// A scoreboard entry whose id is a small gap to the previous one.
#[derive(Arbitrary, Clone, Debug)]
pub struct ArbPlayer {
    /// Id gap to the previous entry.
    pub gap: u8,
    /// Display name (any UTF-8).
    pub name: String,
    /// Kills.
    pub score: u32,
    /// Deaths.
    pub deaths: u32,
}

/// A baseline world.
#[derive(Arbitrary, Clone, Debug)]
pub struct ArbWorld {
    /// Its tick.
    pub tick: u32,
    /// Id of the first entity (reduced modulo `MAX_NET_ID + 1`), so that
    /// worlds near the top of the id space are reached too.
    pub first_id: u32,
    /// Entities, gap-coded.
    pub entities: Vec<ArbEntity>,
    /// Scoreboard, gap-coded.
    pub players: Vec<ArbPlayer>,
}

/// What happens to one baseline entity on the way to the current world.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum EntityOp {
    /// Keeps moving in a straight line: costs nothing in the delta.
    Coast,
    /// Anything may change (added with wrapping).
    Edit {
        /// Added to x after coasting.
        dx: i32,
        /// Added to y after coasting.
        dy: i32,
        /// Added to vx.
        dvx: i32,
        /// Added to vy.
        dvy: i32,
        /// Added to angle.
        dangle: u8,
        /// Added to hp.
        dhp: u8,
    },
    /// Gone.
    Remove,
    /// Same id, another life: a different kind and fresh fields.
    Replace(ArbEntity),
}

/// What happens to one baseline scoreboard entry.
#[derive(Arbitrary, Clone, Debug)]
pub enum PlayerOp {
    /// Unchanged.
    Keep,
    /// New score, deaths, maybe a new name.
    Edit {
        /// New kills.
        score: u32,
        /// New deaths.
        deaths: u32,
        /// New name, if any.
        name: Option<String>,
    },
    /// Gone.
    Remove,
}

/// How a free-form delta names an entity id.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum IdPick {
    /// The id of baseline entity `n % len` (the first id if the baseline is
    /// empty): reaches ids that exist, so deltas get accepted.
    Base(u8),
    /// A small step past the previous id: ids that may not exist.
    Next(u8),
    /// Any gap at all, written to the wire as is (overflow paths).
    RawGap(u32),
}

/// A free-form delta: every list the wire has, with ids the fuzzer picks,
/// and a tick that always names the baseline so the merge is reached.
#[derive(Arbitrary, Clone, Debug)]
pub struct ArbDelta {
    /// `base_age`; 0 is a full snapshot.
    pub base_age: u32,
    /// Sort and deduplicate the picked ids of each list before gap-coding,
    /// as a correct server would.
    pub sorted: bool,
    /// Cut or pad `values` to exactly what the change heads ask for.
    pub values_fit: bool,
    /// Removed ids.
    pub removed: Vec<IdPick>,
    /// Created entities.
    pub created: Vec<(IdPick, ArbEntity)>,
    /// Change heads as (id, field mask); the mask is cut to 4 bits.
    pub changed: Vec<(IdPick, u8)>,
    /// Field values.
    pub values: Vec<i32>,
    /// Removed scoreboard ids, gap-coded here for density (the wire has
    /// absolute ids).
    pub players_removed: Vec<u8>,
    /// Upserted scoreboard entries (gap-coded here).
    pub players_upserted: Vec<ArbPlayer>,
    /// Score changes: (id gap, as on the wire; score change; deaths change).
    pub players_scored: Vec<(u8, i32, i32)>,
}

/// Gap-codes picked ids the way the wire does (first id as is, then
/// `id - previous - 1`, wrapping so that out-of-order picks become huge
/// gaps). Returns the gap of each entry, in the (maybe sorted) order, with
/// the index of the entry it came from.
fn pick_gaps(base: &WorldState, picks: &[IdPick], sorted: bool) -> Vec<(u32, usize)> {
    let mut prev: Option<u32> = None;
    let mut ids: Vec<(Result<u32, u32>, usize)> = picks
        .iter()
        .enumerate()
        .map(|(n, pick)| {
            let id = match *pick {
                IdPick::Base(i) => Ok(base
                    .entities
                    .get(usize::from(i) % base.entities.len().max(1))
                    .map_or(0, |e| e.id)),
                IdPick::Next(step) => Ok(prev.map_or(u32::from(step), |p| {
                    p.wrapping_add(1).wrapping_add(u32::from(step))
                })),
                IdPick::RawGap(g) => Err(g),
            };
            if let Ok(id) = id {
                prev = Some(id);
            }
            (id, n)
        })
        .collect();
    if sorted && ids.iter().all(|(id, _)| id.is_ok()) {
        ids.sort_by_key(|(id, _)| *id);
        ids.dedup_by_key(|(id, _)| *id);
    }
    let mut prev: Option<u32> = None;
    ids.into_iter()
        .map(|(id, n)| match id {
            Ok(id) => {
                let gap = prev.map_or(id, |p| id.wrapping_sub(p).wrapping_sub(1));
                prev = Some(id);
                (gap, n)
            }
            Err(gap) => {
                prev = Some(prev.map_or(gap, |p| p.wrapping_add(1).wrapping_add(gap)));
                (gap, n)
            }
        })
        .collect()
}

/// The `delta_structured` target's input.
#[derive(Arbitrary, Clone, Debug)]
pub struct DeltaCase {
    /// The client's baseline.
    pub base: ArbWorld,
    /// Ticks from the baseline to the current world; anything, so that
    /// wraparound and the full-snapshot fallback are reached.
    pub age: u32,
    /// One operation per baseline entity (missing ones coast).
    pub entity_ops: Vec<EntityOp>,
    /// Entities that appear (merged in by id; ids already taken are skipped).
    pub spawned: Vec<ArbEntity>,
    /// One operation per baseline scoreboard entry (missing ones stay).
    pub player_ops: Vec<PlayerOp>,
    /// Scoreboard entries that appear.
    pub joined: Vec<ArbPlayer>,
    /// Keep the very same scoreboard allocation (the server's fast path).
    pub share_roster: bool,
    /// A delta that did not come from `diff`.
    pub garbage: ArbDelta,
}

fn entity(id: u32, e: &ArbEntity) -> NetEntity {
    NetEntity {
        id,
        kind: e.kind.into(),
        x: e.x,
        y: e.y,
        vx: e.vx,
        vy: e.vy,
        angle: e.angle,
        hp: e.hp,
        vel_age: 0,
    }
}

/// Turns gap-coded ids into absolute ones, stopping at `max`.
fn ids(first: u32, gaps: impl Iterator<Item = u32>, max: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut prev: Option<u32> = None;
    for g in gaps {
        let id = match prev {
            None => first.checked_add(g),
            Some(p) => p.checked_add(1).and_then(|n| n.checked_add(g)),
        };
        match id {
            Some(id) if id <= max => {
                out.push(id);
                prev = Some(id);
            }
            _ => break,
        }
    }
    out
}

fn players(list: &[ArbPlayer]) -> Vec<PlayerInfo> {
    let ids = ids(0, list.iter().map(|p| u32::from(p.gap)), u32::MAX);
    ids.into_iter()
        .zip(list)
        .map(|(id, p)| PlayerInfo {
            id,
            name: p.name.as_str().into(),
            score: p.score,
            deaths: p.deaths,
        })
        .collect()
}

impl ArbWorld {
    /// The world this describes: sorted, unique, ids within [`MAX_NET_ID`].
    #[must_use]
    pub fn build(&self) -> WorldState {
        let first = self.first_id % (MAX_NET_ID + 1);
        let ids = ids(
            first,
            self.entities.iter().map(|e| u32::from(e.gap)),
            MAX_NET_ID,
        );
        WorldState {
            tick: Tick(self.tick),
            entities: ids
                .into_iter()
                .zip(&self.entities)
                .map(|(id, e)| entity(id, e))
                .collect(),
            players: Arc::new(players(&self.players)),
        }
    }
}

impl DeltaCase {
    /// The current world: the baseline evolved by the operations.
    #[must_use]
    pub fn current(&self, base: &WorldState) -> WorldState {
        let age = self.age as i32;
        let mut entities = Vec::with_capacity(base.entities.len() + self.spawned.len());
        for (n, b) in base.entities.iter().enumerate() {
            let mut e = *b;
            e.x = e.x.wrapping_add(e.vx.wrapping_mul(age));
            e.y = e.y.wrapping_add(e.vy.wrapping_mul(age));
            match self.entity_ops.get(n).copied().unwrap_or(EntityOp::Coast) {
                EntityOp::Coast => {}
                EntityOp::Edit {
                    dx,
                    dy,
                    dvx,
                    dvy,
                    dangle,
                    dhp,
                } => {
                    e.x = e.x.wrapping_add(dx);
                    e.y = e.y.wrapping_add(dy);
                    e.vx = e.vx.wrapping_add(dvx);
                    e.vy = e.vy.wrapping_add(dvy);
                    e.angle = e.angle.wrapping_add(dangle);
                    e.hp = e.hp.wrapping_add(dhp);
                }
                EntityOp::Remove => continue,
                EntityOp::Replace(r) => e = entity(b.id, &r),
            }
            entities.push(e);
        }
        let new_ids = ids(0, self.spawned.iter().map(|e| u32::from(e.gap)), MAX_NET_ID);
        for (id, s) in new_ids.into_iter().zip(&self.spawned) {
            if base.entities.binary_search_by_key(&id, |e| e.id).is_err() {
                entities.push(entity(id, s));
            }
        }
        entities.sort_by_key(|e| e.id);

        let players = if self.share_roster {
            Arc::clone(&base.players)
        } else {
            let mut list = Vec::new();
            for (n, b) in base.players.iter().enumerate() {
                match self.player_ops.get(n).cloned().unwrap_or(PlayerOp::Keep) {
                    PlayerOp::Keep => list.push(b.clone()),
                    PlayerOp::Edit {
                        score,
                        deaths,
                        name,
                    } => list.push(PlayerInfo {
                        id: b.id,
                        name: name.map_or_else(|| b.name.clone(), Into::into),
                        score,
                        deaths,
                    }),
                    PlayerOp::Remove => {}
                }
            }
            for p in players(&self.joined) {
                if base.players.binary_search_by_key(&p.id, |b| b.id).is_err() {
                    list.push(p);
                }
            }
            list.sort_by_key(|p| p.id);
            Arc::new(list)
        };
        WorldState {
            tick: base.tick.advanced(self.age),
            entities,
            players,
        }
    }

    /// The free-form delta, naming `base`'s tick.
    #[must_use]
    pub fn garbage(&self, base: &WorldState) -> SnapshotMsg {
        let g = &self.garbage;
        let removed = pick_gaps(base, &g.removed, g.sorted);
        let created_picks: Vec<IdPick> = g.created.iter().map(|(p, _)| *p).collect();
        let created = pick_gaps(base, &created_picks, g.sorted);
        let changed_picks: Vec<IdPick> = g.changed.iter().map(|(p, _)| *p).collect();
        let changed: Vec<u32> = pick_gaps(base, &changed_picks, g.sorted)
            .into_iter()
            .map(|(gap, n)| gap << 4 | u32::from(g.changed[n].1 & 0xf))
            .collect();
        let mut values = g.values.clone();
        if g.values_fit {
            let needed: usize = changed
                .iter()
                .map(|h| {
                    let m = h & 0xf;
                    // VEL takes a third value, the turn age, from age 2 on.
                    let vel = 2 + u32::from(g.base_age > 1);
                    (2 * (m & 1) + vel * (m >> 1 & 1) + (m >> 2 & 1) + (m >> 3 & 1)) as usize
                })
                .sum();
            values.resize(needed, 0);
        }
        let mut removed_player = 0u32;
        SnapshotMsg {
            tick: base.tick.advanced(g.base_age),
            base_age: g.base_age,
            input_ack: self.age,
            checksum: 0,
            removed: removed.into_iter().map(|(gap, _)| gap).collect(),
            created: created
                .into_iter()
                .map(|(gap, n)| {
                    let e = &g.created[n].1;
                    EntityCreate {
                        gap,
                        kind: e.kind.into(),
                        x: e.x,
                        y: e.y,
                        vx: e.vx,
                        vy: e.vy,
                        angle: e.angle,
                        hp: e.hp,
                    }
                })
                .collect(),
            changed,
            values,
            players_removed: g
                .players_removed
                .iter()
                .map(|&gap| {
                    removed_player = removed_player.wrapping_add(u32::from(gap));
                    removed_player
                })
                .collect(),
            players_upserted: players(&g.players_upserted),
            players_scored: g
                .players_scored
                .iter()
                .map(|&(gap, score, deaths)| ScoreDelta {
                    gap: u32::from(gap),
                    score,
                    deaths,
                })
                .collect(),
        }
    }
}

/// `delta_structured` target: `diff` then the codec then `apply` must
/// rebuild any evolution of any baseline exactly, with a matching checksum;
/// and a free-form delta against the same baseline must either fail with a
/// `DeltaError` or pass [`check_applied`]. Every apply also runs into a
/// recycled state holding another world ([`apply_both`]).
///
/// # Panics
/// On a bug.
pub fn delta_structured(case: &DeltaCase) {
    let base = case.base.build();
    let current = case.current(&base);

    let msg = over_the_wire(&snapshot::diff(Some(&base), &current, 7));
    assert_eq!(msg.checksum, snapshot::checksum(&current));
    match apply_both(Some(&base), &msg, &current) {
        Ok(rebuilt) => assert_eq!(rebuilt, current, "apply(diff) is not the target"),
        Err(e) => panic!("a correct delta was refused: {e}"),
    }
    let full = over_the_wire(&snapshot::diff(None, &current, 7));
    assert!(full.is_full());
    match apply_both(None, &full, &base) {
        Ok(rebuilt) => assert_eq!(rebuilt, current, "apply(full) is not the target"),
        Err(e) => panic!("a correct full snapshot was refused: {e}"),
    }

    let garbage = over_the_wire(&case.garbage(&base));
    if let Ok(out) = apply_both(Some(&base), &garbage, &current) {
        check_applied(Some(&base), &garbage, &out);
    }
}
