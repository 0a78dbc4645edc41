// Replicated world state and the delta decoding: a port of
// `shared/src/snapshot.rs` (`apply` and `checksum`), plus the ring of
// received states that deltas are applied against.
//
// A state is {tick, entities, players}, both lists sorted by id. Entities are
// plain objects {id, kind, x, y, vx, vy, angle, hp} in integer quanta; the
// arithmetic wraps like Rust's i32/u8 `wrapping_*` (`| 0`, `Math.imul`,
// `& 0xff`), and apply refuses exactly the deltas Rust refuses, with the same
// error kind.

/**
 * @typedef {{id: number, kind: number, x: number, y: number, vx: number,
 *   vy: number, angle: number, hp: number}} NetEntity
 * @typedef {import('./codec.js').PlayerInfo} PlayerInfo
 * @typedef {import('./codec.js').SnapshotMsg} SnapshotMsg
 * @typedef {{tick: number, entities: NetEntity[], players: PlayerInfo[]}} WorldState
 */

/** Largest entity id the delta format can carry. */
export const MAX_NET_ID = 0xffffffff >>> 4;
const FIELD_BITS = 4;
const FIELD_MASK = (1 << FIELD_BITS) - 1;

/** Field groups of a changed entity. A message lists its values column by
 * column, in this order: every POS pair, then every VEL change, and so on. */
export const Fields = Object.freeze({ POS: 1, VEL: 2, ANGLE: 4, HP: 8 });

/** Why a delta cannot be applied; `kind` is the Rust DeltaError variant. */
export class DeltaError extends Error {
  /**
   * @param {'BaselineMismatch'|'IdOverflow'|'UnknownEntity'|'DuplicateEntity'|'ValueCount'|'Players'} kind
   * @param {string} [detail]
   */
  constructor(kind, detail) {
    super(detail ? `${kind}: ${detail}` : kind);
    this.name = 'DeltaError';
    this.kind = kind;
  }
}

/** @type {WorldState} */
export const EMPTY_STATE = Object.freeze({ tick: 0, entities: [], players: [] });

const utf8 = new TextEncoder();
/** UTF-8 bytes of names, cached: names rarely change and are hashed every snapshot. */
const nameBytes = new Map();
/** @param {string} name */
function utf8Bytes(name) {
  let b = nameBytes.get(name);
  if (b === undefined) {
    if (nameBytes.size > 4096) nameBytes.clear();
    b = utf8.encode(name);
    nameBytes.set(name, b);
  }
  return b;
}

/**
 * Checksum of a state: FNV-1a over 32-bit words (entities, then scoreboard),
 * exactly as shared::snapshot::checksum. Names are hashed as their UTF-8 bytes.
 * @param {WorldState} state
 * @returns {number} u32
 */
export function checksum(state) {
  const PRIME = 0x01000193;
  let h = 0x811c9dc5;
  // Written out rather than through a closure over `h`, which V8 kept in
  // memory: 1.5x faster at 5,000 entities (benches/HISTORY.md, session 15).
  for (const e of state.entities) {
    h = Math.imul(h ^ e.id, PRIME);
    h = Math.imul(h ^ e.kind, PRIME);
    h = Math.imul(h ^ e.x, PRIME);
    h = Math.imul(h ^ e.y, PRIME);
    h = Math.imul(h ^ e.vx, PRIME);
    h = Math.imul(h ^ e.vy, PRIME);
    h = Math.imul(h ^ e.angle, PRIME);
    h = Math.imul(h ^ e.hp, PRIME);
  }
  for (const p of state.players) {
    h = Math.imul(h ^ p.id, PRIME);
    h = Math.imul(h ^ p.score, PRIME);
    h = Math.imul(h ^ p.deaths, PRIME);
    const bytes = utf8Bytes(p.name);
    h = Math.imul(h ^ bytes.length, PRIME);
    for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], PRIME);
  }
  return h >>> 0;
}

/** Reads gap-coded ids back: first the id itself, then `id - prev - 1`. */
function gapReader() {
  /** @type {number|null} */
  let prev = null;
  return (/** @type {number} */ gap) => {
    const id = prev === null ? gap : prev + 1 + gap;
    // Numbers are exact here (both < 2^33): checked_add overflow and the id
    // limit are one comparison.
    if (id > MAX_NET_ID) throw new DeltaError('IdOverflow');
    prev = id;
    return id;
  };
}

/**
 * How many change heads have each field, which is how many entries each
 * column of a message's values has (shared::snapshot::field_counts).
 * @param {number[]} heads
 * @returns {{pos: number, vel: number, angle: number, hp: number}}
 */
export function fieldCounts(heads) {
  let pos = 0, vel = 0, angle = 0, hp = 0;
  for (const m of heads) {
    pos += m & Fields.POS ? 1 : 0;
    vel += m & Fields.VEL ? 1 : 0;
    angle += m & Fields.ANGLE ? 1 : 0;
    hp += m & Fields.HP ? 1 : 0;
  }
  return { pos, vel, angle, hp };
}

/**
 * A message's values, read column by column (shared::snapshot `Columns`):
 * the POS pairs of the heads with POS, then the VEL pairs (each with its turn
 * age from base age 2 on), then the ANGLE values, then the HP values. A
 * column is cut short if there are too few values; reading past its end, or
 * any other number of values than the heads ask for (`wanted`), is a
 * ValueCount error.
 */
class Columns {
  /** @param {number[]} values @param {number[]} heads @param {number} baseAge */
  constructor(values, heads, baseAge) {
    const { pos, vel, angle, hp } = fieldCounts(heads);
    const lens = [2 * pos, (baseAge >>> 0 > 1 ? 3 : 2) * vel, angle, hp];
    this.values = values;
    /** Where each column starts and ends in `values`, and where it is read. */
    this.ends = [];
    this.at = [];
    let start = 0;
    for (const len of lens) {
      this.at.push(start);
      start = Math.min(start + len, values.length);
      this.ends.push(start);
    }
    this.wanted = lens[0] + lens[1] + lens[2] + lens[3];
  }

  /** The next value of column `c` (0 POS, 1 VEL, 2 ANGLE, 3 HP). */
  next(/** @type {number} */ c) {
    if (this.at[c] >= this.ends[c]) throw new DeltaError('ValueCount');
    return this.values[this.at[c]++];
  }
}

/**
 * Applies a changed-entity record to a copy of its baseline entity.
 * @param {NetEntity} e mutated
 * @param {number} mask
 * @param {number} age
 * @param {Columns} values
 */
function applyChange(e, mask, age, values) {
  // Dead reckoning first, with the baseline's velocity.
  e.x = (e.x + Math.imul(e.vx, age)) | 0;
  e.y = (e.y + Math.imul(e.vy, age)) | 0;
  if (mask & Fields.POS) {
    e.x = (e.x + values.next(0)) | 0;
    e.y = (e.y + values.next(0)) | 0;
  }
  if (mask & Fields.VEL) {
    const dvx = values.next(1);
    const dvy = values.next(1);
    // Protocol 4: the last `k` ticks were flown with the new velocity, not
    // the baseline's. `k` is sent from a base age of 2 on (compared as the
    // unsigned base_age); at age 1 it can only be 1. Any `k` is valid: the
    // arithmetic wraps and the POS residual covers the rest.
    const k = age >>> 0 > 1 ? values.next(1) : 1;
    e.vx = (e.vx + dvx) | 0;
    e.vy = (e.vy + dvy) | 0;
    e.x = (e.x + Math.imul(dvx, k)) | 0;
    e.y = (e.y + Math.imul(dvy, k)) | 0;
  }
  if (mask & Fields.ANGLE) e.angle = (e.angle + values.next(2)) & 0xff;
  if (mask & Fields.HP) e.hp = (e.hp + values.next(3)) & 0xff;
}

/**
 * Rebuilds the state a delta describes (shared::snapshot::apply).
 * `baseline` must be the state of tick `msg.tick - msg.baseAge` (ignored for
 * full snapshots). Throws DeltaError on any inconsistency.
 * @param {WorldState|null} baseline
 * @param {SnapshotMsg} msg
 * @returns {WorldState}
 */
export function applyDelta(baseline, msg) {
  let base = EMPTY_STATE;
  if (msg.baseAge !== 0) {
    const needed = (msg.tick - msg.baseAge) >>> 0;
    if (!baseline || baseline.tick !== needed) {
      throw new DeltaError(
        'BaselineMismatch',
        `delta needs baseline tick ${needed}, have ${baseline ? baseline.tick : 'none'}`,
      );
    }
    base = baseline;
  }
  const age = msg.baseAge | 0;
  /** @type {NetEntity[]} */
  const out = [];

  const removedId = gapReader();
  let ri = 0;
  const nextRemoved = () => (ri < msg.removed.length ? removedId(msg.removed[ri++]) : null);
  const createdId = gapReader();
  let ci = 0;
  /** @returns {NetEntity|null} */
  const nextCreated = () => {
    if (ci >= msg.created.length) return null;
    const c = msg.created[ci++];
    return { id: createdId(c.gap), kind: c.kind, x: c.x, y: c.y, vx: c.vx, vy: c.vy, angle: c.angle, hp: c.hp };
  };
  const changedId = gapReader();
  let hi = 0;
  /** @returns {[number, number]|null} [id, mask] */
  const nextChanged = () => {
    if (hi >= msg.changed.length) return null;
    const h = msg.changed[hi++];
    return [changedId(h >>> FIELD_BITS), h & FIELD_MASK];
  };
  const values = new Columns(msg.values, msg.changed, msg.baseAge);

  let rem = nextRemoved();
  let cre = nextCreated();
  let chg = nextChanged();
  for (const b of base.entities) {
    while (cre !== null && cre.id < b.id) {
      out.push(cre);
      cre = nextCreated();
    }
    if (rem !== null) {
      if (rem < b.id) throw new DeltaError('UnknownEntity', `entity ${rem} is not in the baseline`);
      if (rem === b.id) {
        rem = nextRemoved();
        if (chg !== null && chg[0] === b.id) {
          throw new DeltaError('UnknownEntity', `entity ${chg[0]} is not in the baseline`);
        }
        continue;
      }
    }
    if (cre !== null && cre.id === b.id) {
      throw new DeltaError('DuplicateEntity', `entity ${b.id} already exists`);
    }
    // A literal, not `{ ...b }`: V8 copies a spread through a generic path
    // that made this loop 6-8x slower (BENCHMARKS.md section 9).
    const e = { id: b.id, kind: b.kind, x: b.x, y: b.y, vx: b.vx, vy: b.vy, angle: b.angle, hp: b.hp };
    if (chg !== null && chg[0] < b.id) {
      throw new DeltaError('UnknownEntity', `entity ${chg[0]} is not in the baseline`);
    } else if (chg !== null && chg[0] === b.id) {
      applyChange(e, chg[1], age, values);
      chg = nextChanged();
    } else {
      e.x = (e.x + Math.imul(e.vx, age)) | 0;
      e.y = (e.y + Math.imul(e.vy, age)) | 0;
    }
    out.push(e);
  }
  if (rem !== null) throw new DeltaError('UnknownEntity', `entity ${rem} is not in the baseline`);
  if (chg !== null) throw new DeltaError('UnknownEntity', `entity ${chg[0]} is not in the baseline`);
  while (cre !== null) {
    out.push(cre);
    cre = nextCreated();
  }
  if (values.wanted !== msg.values.length) throw new DeltaError('ValueCount');

  return { tick: msg.tick, entities: out, players: applyPlayers(base.players, msg) };
}

/** @param {number[]} ids */
function strictlyIncreasing(ids) {
  for (let i = 1; i < ids.length; i++) if (!(ids[i] > ids[i - 1])) return false;
  return true;
}

/**
 * The scoreboard delta (shared::snapshot::merge_players): removed ids, new
 * or renamed entries whole, and score changes of entries that keep their
 * name. An unchanged scoreboard is the baseline's array itself (shared,
 * never mutated).
 *
 * The checks run in the Rust order, so a delta that is wrong in two ways is
 * refused with the same error kind: the score changes' gap-coded ids are read
 * one at a time as the baseline is walked (an id overflow shows up only when
 * its entry is reached), and a score change must name a baseline entry that
 * is neither removed nor upserted.
 * @param {PlayerInfo[]} base
 * @param {SnapshotMsg} msg
 * @returns {PlayerInfo[]}
 */
function applyPlayers(base, msg) {
  const removed = msg.playersRemoved;
  const ups = msg.playersUpserted;
  const scored = msg.playersScored;
  if (removed.length === 0 && ups.length === 0 && scored.length === 0) return base;
  if (!strictlyIncreasing(removed) || !strictlyIncreasing(ups.map((u) => u.id))) {
    throw new DeltaError('Players', 'scoreboard ids are not strictly increasing');
  }
  const scoredId = gapReader();
  let si = 0;
  /** @returns {[number, import('./codec.js').ScoreDelta]|null} [id, change] */
  const nextScored = () => {
    if (si >= scored.length) return null;
    const d = scored[si++];
    return [scoredId(d.gap), d];
  };
  /** @type {PlayerInfo[]} */
  const out = [];
  let ri = 0;
  let ui = 0;
  let score = nextScored();
  for (const b of base) {
    while (ui < ups.length && ups[ui].id < b.id) out.push(ups[ui++]);
    if (score !== null && score[0] < b.id) {
      throw new DeltaError('Players', `score change of player ${score[0]}, not in the baseline`);
    }
    const change = score !== null && score[0] === b.id ? score[1] : null;
    if (change !== null) score = nextScored();
    if (ri < removed.length && removed[ri] === b.id) {
      ri++;
      if (change !== null) {
        throw new DeltaError('Players', `player ${b.id} both removed and score-changed`);
      }
      if (ui < ups.length && ups[ui].id === b.id) {
        throw new DeltaError('Players', `player ${b.id} both removed and upserted`);
      }
      continue;
    }
    if (ri < removed.length && removed[ri] < b.id) {
      throw new DeltaError('Players', `removed player ${removed[ri]} is not in the baseline`);
    }
    const upsert = ui < ups.length && ups[ui].id === b.id ? ups[ui++] : null;
    if (upsert !== null && change !== null) {
      throw new DeltaError('Players', `player ${b.id} both upserted and score-changed`);
    }
    if (upsert !== null) {
      out.push(upsert);
    } else if (change !== null) {
      // The name is the baseline's; score and deaths are u32 and wrap.
      out.push({
        id: b.id,
        name: b.name,
        score: (b.score + change.score) >>> 0,
        deaths: (b.deaths + change.deaths) >>> 0,
      });
    } else {
      out.push(b);
    }
  }
  if (ri < removed.length) {
    throw new DeltaError('Players', `removed player ${removed[ri]} is not in the baseline`);
  }
  if (score !== null) {
    throw new DeltaError('Players', `score change of player ${score[0]}, not in the baseline`);
  }
  while (ui < ups.length) out.push(ups[ui++]);
  return out;
}

/**
 * The states a client holds as baselines for the server's deltas, by tick.
 * The server encodes against the newest tick the client acknowledged, so a
 * short ring (64 states, about 2 s at 30 Hz) is plenty.
 */
export class SnapshotRing {
  /** @param {number} capacity */
  constructor(capacity = 64) {
    this.capacity = capacity;
    /** @type {Map<number, WorldState>} insertion order = age order */
    this.states = new Map();
  }

  /** @param {number} tick */
  get(tick) {
    return this.states.get(tick) ?? null;
  }

  /** @param {WorldState} state */
  put(state) {
    this.states.delete(state.tick);
    this.states.set(state.tick, state);
    while (this.states.size > this.capacity) {
      const oldest = this.states.keys().next().value;
      this.states.delete(/** @type {number} */ (oldest));
    }
  }

  clear() {
    this.states.clear();
  }
}

/**
 * Receives snapshot messages: finds the baseline, applies, verifies the
 * checksum, and says which tick to acknowledge.
 */
export class SnapshotReceiver {
  constructor(capacity = 64) {
    this.ring = new SnapshotRing(capacity);
    /** @type {WorldState|null} newest good state */
    this.latest = null;
    /** Snapshots whose rebuilt state did not match the checksum. */
    this.desyncs = 0;
    /** Deltas whose baseline was not in the ring, or that did not apply. */
    this.missingBaselines = 0;
    this.badDeltas = 0;
  }

  reset() {
    this.ring.clear();
    this.latest = null;
  }

  /**
   * Starts from a state kept by an earlier page of the same session, as if
   * it had just been received and acknowledged.
   * @param {WorldState} state
   */
  seed(state) {
    this.ring.put(state);
    this.latest = state;
  }

  /**
   * @param {SnapshotMsg} msg
   * @returns {WorldState|null} the new state (to acknowledge and render), or
   *   null when the message could not be used: the client then keeps acking
   *   its last good state and the server's next deltas are against that.
   */
  receive(msg) {
    if (this.latest && ((msg.tick - this.latest.tick) | 0) <= 0) return null; // stale
    let baseline = null;
    if (msg.baseAge !== 0) {
      baseline = this.ring.get((msg.tick - msg.baseAge) >>> 0);
      if (!baseline) {
        this.missingBaselines++;
        return null;
      }
    }
    let state;
    try {
      state = applyDelta(baseline, msg);
    } catch (e) {
      if (!(e instanceof DeltaError)) throw e;
      this.badDeltas++;
      return null;
    }
    if (checksum(state) !== msg.checksum) {
      this.desyncs++;
      return null;
    }
    this.ring.put(state);
    this.latest = state;
    return state;
  }
}
