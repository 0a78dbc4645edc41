// The game rules the browser must agree on: a port of `shared/src/rules.rs`.
//
// Positions are integers ("quanta", QUANTA_PER_UNIT per world unit) on the
// server and on the wire, so a port in integer math is exact: replaying inputs
// with movePlayer from an authoritative position lands on exactly the server's
// position. The golden vectors check every constant, TickRules at nine tick
// rates and movePlayer for every button combination near every edge.

export const QUANTA_PER_UNIT = 4;
export const ARENA_WIDTH = 2400 * QUANTA_PER_UNIT;
export const ARENA_HEIGHT = 1600 * QUANTA_PER_UNIT;
export const PLAYER_RADIUS = 16 * QUANTA_PER_UNIT;
export const PROJECTILE_RADIUS = 4 * QUANTA_PER_UNIT;
export const PLAYER_SPEED = 240 * QUANTA_PER_UNIT;
export const NPC_SPEED = 140 * QUANTA_PER_UNIT;
export const PROJECTILE_SPEED = 720 * QUANTA_PER_UNIT;
export const PROJECTILE_LIFETIME_MS = 1000;
export const FIRE_COOLDOWN_MS = 250;
export const RESPAWN_MS = 2000;
export const MAX_HP = 100;
export const PROJECTILE_DAMAGE = 25;
export const MAX_NAME_CHARS = 16;

/** Input button bits (shared::rules::buttons). */
export const Buttons = Object.freeze({
  UP: 1,
  DOWN: 2,
  LEFT: 4,
  RIGHT: 8,
  FIRE: 16,
  ALL: 31,
});

/**
 * Rounded integer division for non-negative operands, as Rust's
 * `(num + den / 2) / den` on i64: integer division truncates.
 * @param {number} num @param {number} den
 */
function divRound(num, den) {
  return Math.trunc((num + Math.trunc(den / 2)) / den);
}

/** @param {number} ms @param {number} tickHz */
function msToTicks(ms, tickHz) {
  return Math.max(divRound(ms * tickHz, 1000), 1);
}

/**
 * Per-tick constants derived from the tick rate the server announces
 * (shared::rules::TickRules::new), with the same integer math.
 * @typedef {{tickHz: number, playerStep: number, playerStepDiag: number,
 *   npcStep: number, projectileStep: number, projectileTicks: number,
 *   fireCooldownTicks: number, respawnTicks: number}} TickRules
 * @param {number} tickHz steps per second, clamped to 1..=128
 * @returns {TickRules}
 */
export function tickRules(tickHz) {
  const hz = Math.min(Math.max(Math.trunc(tickHz), 1), 128);
  const perTick = (/** @type {number} */ speed) => divRound(speed, hz);
  const playerStep = perTick(PLAYER_SPEED);
  return Object.freeze({
    tickHz: hz,
    playerStep,
    playerStepDiag: divRound(playerStep * 7071, 10000),
    npcStep: perTick(NPC_SPEED),
    projectileStep: perTick(PROJECTILE_SPEED),
    projectileTicks: msToTicks(PROJECTILE_LIFETIME_MS, hz),
    fireCooldownTicks: msToTicks(FIRE_COOLDOWN_MS, hz),
    respawnTicks: msToTicks(RESPAWN_MS, hz),
  });
}

/**
 * The movement direction the buttons ask for: each axis in -1..=1.
 * @param {number} buttons
 * @returns {[number, number]}
 */
export function moveAxes(buttons) {
  const axis = (/** @type {number} */ neg, /** @type {number} */ pos) =>
    (buttons & pos ? 1 : 0) - (buttons & neg ? 1 : 0);
  return [axis(Buttons.LEFT, Buttons.RIGHT), axis(Buttons.UP, Buttons.DOWN)];
}

/** @param {number} v @param {number} lo @param {number} hi */
function clamp(v, lo, hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

/**
 * Clamps a body of `radius` quanta so it stays fully inside the arena.
 * @param {number} x @param {number} y @param {number} radius
 * @returns {[number, number]}
 */
export function clampToArena(x, y, radius) {
  return [clamp(x, radius, ARENA_WIDTH - radius), clamp(y, radius, ARENA_HEIGHT - radius)];
}

/**
 * One tick of player movement: the step the buttons ask for, then the arena
 * clamp. This is the function prediction replays (shared::rules::move_player).
 * Inputs are i32 quanta; Rust's i32 addition cannot overflow for positions
 * the server produces, and `| 0` keeps the JavaScript in i32 as well.
 * @param {number} x @param {number} y @param {number} buttons
 * @param {TickRules} rules
 * @returns {[number, number]}
 */
export function movePlayer(x, y, buttons, rules) {
  const [ax, ay] = moveAxes(buttons);
  const step = ax !== 0 && ay !== 0 ? rules.playerStepDiag : rules.playerStep;
  return clampToArena((x + ax * step) | 0, (y + ay * step) | 0, PLAYER_RADIUS);
}

/**
 * Aim angle as replicated in snapshots: 1/256 turns (shared::rules::replicated_angle).
 * @param {number} aim 1/65536 turns
 */
export function replicatedAngle(aim) {
  return (aim >>> 8) & 0xff;
}

/**
 * The aim in 1/65536 turns, clockwise from +x in screen coordinates, of a
 * direction vector (the inverse of shared::rules::aim_direction).
 * @param {number} dx @param {number} dy
 */
export function aimFromVector(dx, dy) {
  if (dx === 0 && dy === 0) return 0;
  const turns = Math.atan2(dy, dx) / (2 * Math.PI);
  return Math.round((turns < 0 ? turns + 1 : turns) * 65536) & 0xffff;
}

/**
 * Per-tick velocity of a projectile fired at `aim`, rounded to quanta, as
 * shared::rules::projectile_velocity (which uses f32: the result may differ
 * by a quantum in rare cases, so it is used for drawing only).
 * @param {number} aim @param {TickRules} rules
 * @returns {[number, number]}
 */
export function projectileVelocity(aim, rules) {
  const a = (aim * 2 * Math.PI) / 65536;
  // Rust's round() rounds halves away from zero; Math.round rounds them up.
  const round = (/** @type {number} */ v) => Math.sign(v) * Math.round(Math.abs(v));
  return [round(Math.cos(a) * rules.projectileStep), round(Math.sin(a) * rules.projectileStep)];
}
