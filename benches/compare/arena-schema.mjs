// The arena as a Colyseus game would declare it, and the changes that take
// a Colyseus state from one recorded tick to the next. Shared by the encoder
// comparison (colyseus.mjs) and the Colyseus server of the end-to-end
// comparison (e2e/colyseus-server.mjs).
//
// The types are the smallest fixed-width ones that hold this server's
// quantized values (positions as int16 quanta, velocities as int8, angle and
// hit points as uint8): the leanest a Colyseus schema can carry the same
// information.
//
// No import of its own: each caller passes its own `@colyseus/schema`
// (`declare`), so the classes come from the same copy as the encoder or the
// server that uses them (e2e/ has its own node_modules).

/** The arena's schema classes, made with the caller's `{ schema, t }`. */
export function declare({ schema, t }) {
  const Entity = schema(
    {
      kind: t.uint8(),
      x: t.int16(),
      y: t.int16(),
      vx: t.int8(),
      vy: t.int8(),
      angle: t.uint8(),
      hp: t.uint8(),
    },
    'Entity',
  );
  const Player = schema({ name: t.string(), score: t.uint32(), deaths: t.uint32() }, 'Player');
  const Arena = schema({ entities: t.map(Entity), players: t.map(Player) }, 'Arena');
  return { Entity, Player, Arena };
}

/** The entity fields, in the order of the trajectories' flat arrays. */
export const FIELDS = ['kind', 'x', 'y', 'vx', 'vy', 'angle', 'hp'];

const RANGES = {
  kind: [0, 255],
  x: [-32768, 32767],
  y: [-32768, 32767],
  vx: [-128, 127],
  vy: [-128, 127],
  angle: [0, 255],
  hp: [0, 255],
};

/** Refuses a world whose values the declared types would wrap. */
export function checkRanges(states) {
  for (const s of states) {
    for (let i = 0; i < s.entities.length; i += 8) {
      FIELDS.forEach((f, k) => {
        const v = s.entities[i + 1 + k];
        const [lo, hi] = RANGES[f];
        if (v < lo || v > hi) throw new Error(`tick ${s.tick}: ${f} = ${v} does not fit`);
      });
    }
  }
}

/**
 * What a game would do to its Colyseus state to go from world state `a` to
 * `b` (null: from nothing): the fields that changed, the entities and
 * players that appeared and those gone. Worked out ahead of time, so that
 * timing holds only Colyseus's own work (its setters track changes).
 */
export function changes(a, b) {
  const ops = { set: [], add: [], del: [], setPlayer: [], addPlayer: [], delPlayer: [] };
  const before = new Map();
  if (a) for (let i = 0; i < a.entities.length; i += 8) before.set(a.entities[i], i);
  const now = new Set();
  for (let i = 0; i < b.entities.length; i += 8) {
    const id = b.entities[i];
    now.add(id);
    const values = b.entities.slice(i + 1, i + 8);
    const j = before.get(id);
    if (j === undefined) {
      ops.add.push([id, values]);
      continue;
    }
    for (let k = 0; k < FIELDS.length; k++) {
      if (a.entities[j + 1 + k] !== values[k]) ops.set.push([id, k, values[k]]);
    }
  }
  for (const id of before.keys()) if (!now.has(id)) ops.del.push(id);
  const players = new Map((a ? a.players : []).map((p) => [p[0], p]));
  const seen = new Set();
  for (const p of b.players) {
    seen.add(p[0]);
    const old = players.get(p[0]);
    if (old === undefined) ops.addPlayer.push([String(p[0]), p]);
    else if (old[1] !== p[1] || old[2] !== p[2] || old[3] !== p[3]) ops.setPlayer.push([String(p[0]), p]);
  }
  for (const id of players.keys()) if (!seen.has(id)) ops.delPlayer.push(String(id));
  return ops;
}

/** Field `k` of FIELDS, assigned by name as game code does. */
function set(e, k, v) {
  switch (k) {
    case 0: e.kind = v; break;
    case 1: e.x = v; break;
    case 2: e.y = v; break;
    case 3: e.vx = v; break;
    case 4: e.vy = v; break;
    case 5: e.angle = v; break;
    default: e.hp = v;
  }
}

/**
 * Applies `ops` to `state`. `refs` maps ids to the state's own objects, as a
 * game holds references to its entities rather than looking them up in the
 * state. `types` makes the objects: `declare`'s classes, or plain ones to
 * time the harness.
 */
export function apply(state, refs, ops, types) {
  for (const [id, k, v] of ops.set) set(refs.entities.get(id), k, v);
  for (const [id, values] of ops.add) {
    const e = new types.Entity();
    for (let k = 0; k < FIELDS.length; k++) set(e, k, values[k]);
    refs.entities.set(id, e);
    state.entities.set(String(id), e);
  }
  for (const id of ops.del) {
    refs.entities.delete(id);
    state.entities.delete(String(id));
  }
  for (const [key, [, name, score, deaths]] of ops.setPlayer) {
    const p = refs.players.get(key);
    if (p.name !== name) p.name = name;
    if (p.score !== score) p.score = score;
    if (p.deaths !== deaths) p.deaths = deaths;
  }
  for (const [key, [, name, score, deaths]] of ops.addPlayer) {
    const p = new types.Player();
    p.name = name;
    p.score = score;
    p.deaths = deaths;
    refs.players.set(key, p);
    state.players.set(key, p);
  }
  for (const key of ops.delPlayer) {
    refs.players.delete(key);
    state.players.delete(key);
  }
}
