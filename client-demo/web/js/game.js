// The game client: ties the connection, snapshots, prediction, interpolation,
// input, effects and rendering together.
//
// Two clocks run here. The simulation clock is a fixed-step accumulator at the
// server's tick rate: every step samples the buttons, sends one input (which
// also acknowledges the newest snapshot held: one message per tick, see
// acks.js) and predicts one move, however fast frames come. The frame clock
// (requestAnimationFrame) only draws: the own player between its last two
// predicted steps, everybody else from the interpolation buffer.

import { Kind } from './protocol.js';
import { Acker } from './acks.js';
import { Effects } from './effects.js';
import { Input } from './input.js';
import { Interpolator } from './interpolation.js';
import { Connection } from './net.js';
import { InputPacer } from './pacing.js';
import { Predictor } from './prediction.js';
import { Renderer, playerColor } from './render.js';
import {
  ARENA_HEIGHT,
  ARENA_WIDTH,
  Buttons,
  aimFromVector,
  moveAxes,
  projectileVelocity,
  tickRules,
} from './rules.js';
import { inputsToResend } from './session.js';
import { SnapshotReceiver } from './snapshot.js';
import { NetStats, statsLines } from './stats.js';

/** Most simulation steps run back to back after a stall (a hidden tab). */
const MAX_CATCHUP_STEPS = 5;
/** Full snapshots in a row that fail their checksum before the page gives up. */
const FULL_FAILURES_MAX = 3;
/** A frame this long after the last one spawns no effects (see `spawnEffects`). */
const EFFECTS_GAP_MS = 250;

/**
 * @typedef {import('./codec.js').SnapshotMsg} SnapshotMsg
 * @typedef {import('./snapshot.js').WorldState} WorldState
 * @typedef {import('./interpolation.js').RenderEntity} RenderEntity
 * @typedef {{x: number, y: number, prevX: number, prevY: number, vx: number, vy: number,
 *   ticksLeft: number, spawnX: number, spawnY: number, born: number,
 *   serverId: number|null}} LocalShot
 */

export class Game {
  /**
   * @param {{canvas: HTMLCanvasElement, name: string, url: string, ui: import('./ui.js').Ui,
   *   room: string|null, auth: string|null,
   *   storage: Pick<Storage, 'getItem'|'setItem'|'removeItem'>|null}} opts
   *   `room`: the room to join (null: matchmaking); `auth`: the token for
   *   the server's authentication, if it wants one; `storage`: where the
   *   session is kept for a reload (sessionStorage).
   */
  constructor(opts) {
    this.name = opts.name;
    this.requestedRoom = opts.room;
    this.ui = opts.ui;
    this.renderer = new Renderer(opts.canvas);
    this.input = new Input(opts.canvas, { onToggleStats: () => this.ui.toggleStats() });
    this.effects = new Effects();
    this.stats = new NetStats();
    this.receiver = new SnapshotReceiver();
    /** Acknowledges snapshots: inside each input, alone only when no input goes. */
    this.acks = new Acker((msg) => this.conn.send(msg));
    /** @type {import('./codec.js').ServerMsg & {type: 'Welcome'} | null} */
    this.welcome = null;
    this.rules = tickRules(30);
    this.predictor = new Predictor(this.rules);
    this.pacer = new InputPacer(30, 30);
    /** input_ack of the newest snapshot: with the last sent seq, the inputs in flight. */
    this.inputAck = 0;
    /** The tick of the snapshot that carried `inputAck` (null: none yet). */
    this.inputAckTick = /** @type {number|null} */ (null);
    /** Inputs sent again after resumes, and given up (more than the server buffers). */
    this.resent = 0;
    this.resendDropped = 0;
    /** Sessions resumed on this page. */
    this.resumes = 0;
    /** Holding only the state an earlier page kept: no snapshot applied since. */
    this.keptOnly = false;
    /** Full snapshots in a row that did not check out (see `onSnapshot`). */
    this.fullFailures = 0;
    this.interp = new Interpolator(30, 30);
    this.stepMs = 1000 / 30;
    this.acc = 0;
    this.lastUpdate = 0;
    this.lastFrame = 0;
    /** Newest good snapshot tick and the steps predicted since (the input's `tick`). */
    this.stepsSinceSnapshot = 0;
    /** Aim in 1/65536 turns. */
    this.aim = 0;
    /** Local fire cooldown in ticks, mirroring the server's. */
    this.cooldown = 0;
    /** @type {LocalShot[]} own shots drawn ahead of the server */
    this.shots = [];
    /** Server projectile ids drawn as a local shot instead, with when to forget them. */
    this.hidden = new Map();
    /** @type {Set<number>} projectile ids of the newest state */
    this.knownProjectiles = new Set();
    /** Entity ids -> last rendered {hp, x, y, kind}, to turn changes into effects. */
    this.lastRendered = new Map();
    /** When `lastRendered` was drawn (local ms), or null: none to compare. */
    this.lastRenderedAt = /** @type {number|null} */ (null);
    /** @type {{id: number, x: number, y: number, hp: number} | null} own entity in the newest state */
    this.own = null;
    this.diedAt = /** @type {number|null} */ (null);
    this.hurtFlash = 0;
    /** @type {Map<number, string>} */
    this.names = new Map();
    /** @type {import('./codec.js').PlayerInfo[]} */
    this.players = [];
    /** @type {RenderEntity[]} what the last frame drew (for the debug hook) */
    this.rendered = [];
    /** @type {{x: number, y: number}|null} */
    this.ownRendered = null;
    this.lastStatsText = '';
    this.lastStatsUpdate = 0;

    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    this.conn = new Connection({
      url: opts.url || `${scheme}//${location.host}/ws`,
      name: () => this.name,
      room: opts.room,
      auth: opts.auth,
      storage: opts.storage,
      onWelcome: (w) => this.onWelcome(w),
      onSnapshot: (s, bytes) => this.onSnapshot(s, bytes),
      onBytes: (bytes) => this.stats.messageIn(performance.now(), bytes),
      onPing: (rtt) => {
        this.stats.pingMs = rtt;
        this.pacer.onRtt(rtt);
      },
      onStatus: (s) => {
        // No ping while there is no connection to measure.
        if (s.state !== 'playing') this.stats.pingMs = null;
        this.ui.showStatus(s, {
          reconnect: () => this.conn.connect(),
          rejoin: () => this.conn.rejoin(),
        });
      },
    });
  }

  start() {
    this.conn.connect();
    const frame = (/** @type {number} */ now) => {
      this.frame(now);
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
    // Inputs keep flowing when frames are throttled (a background tab).
    setInterval(() => this.update(performance.now()), 8);
  }

  /** @param {import('./codec.js').ServerMsg & {type: 'Welcome'}} w */
  onWelcome(w) {
    const same = this.welcome !== null && w.resumed && w.playerId === this.welcome.playerId && w.tickHz === this.rules.tickHz;
    this.welcome = w;
    this.ui.showRoom(w.room, this.requestedRoom !== null);
    if (same) {
      this.resume(w);
      return;
    }
    this.rules = tickRules(w.tickHz);
    this.stepMs = 1000 / this.rules.tickHz;
    this.predictor = new Predictor(this.rules);
    this.pacer = new InputPacer(this.rules.tickHz, w.snapshotHz || w.tickHz);
    this.interp = new Interpolator(this.rules.tickHz, w.snapshotHz || w.tickHz);
    this.receiver.reset();
    this.stats.resetConnection();
    this.acc = 0;
    this.lastUpdate = performance.now();
    this.stepsSinceSnapshot = 0;
    this.cooldown = 0;
    this.shots = [];
    this.hidden.clear();
    this.knownProjectiles.clear();
    this.lastRendered.clear();
    this.lastRenderedAt = null;
    this.effects.clear();
    this.own = null;
    this.diedAt = null;
    this.players = [];
    this.names.clear();
    this.ui.updateScoreboard([], w.playerId);
    // A session resumed by a reloaded page: a new client, an old player.
    // Its inputs went up to input_seq; number on from there. The state the
    // old page acknowledged last is probably the server's baseline.
    this.inputAck = w.inputSeq;
    this.inputAckTick = w.tick;
    const kept = this.conn.store.takeState();
    const seeded = w.resumed && kept !== null;
    this.keptOnly = seeded;
    if (w.resumed) {
      this.resumes++;
      this.predictor.resume(w.inputSeq, []);
      if (kept) this.receiver.seed(kept);
    }
    // Holding no snapshot yet, the inputs acknowledge Welcome.tick, which no
    // snapshot carries; a kept state is held, as if just received.
    this.acks.reset(seeded && kept ? kept.tick : w.tick, seeded, this.lastUpdate);
  }

  /**
   * The page is going away (a reload, perhaps): keep the newest acknowledged
   * state with the session, for the next page to resume from. The newest
   * held state is acknowledged now if no input has carried it yet (the
   * server reads that Ack before the close), so the server's baseline for
   * the resume is most likely the state kept.
   */
  stash() {
    if (!this.conn.session) return;
    this.acks.flush();
    const tick = this.acks.acked;
    const state = tick === null ? null : this.receiver.ring.get(tick);
    if (state) this.conn.store.saveState(state);
  }

  /**
   * The same player, back on a new connection: send again what the server
   * never received, and carry on.
   * @param {import('./codec.js').ServerMsg & {type: 'Welcome'}} w
   */
  resume(w) {
    this.resumes++;
    const now = performance.now();
    // The picture jumps from the world held through the outage to the
    // server's: no effects for what changed meanwhile.
    this.lastRenderedAt = null;
    // What the server has applied by now: input_ack as last seen, and one
    // more input per tick since, of those it holds.
    const since = this.inputAckTick === null ? 0 : Math.max(0, (w.tick - this.inputAckTick) | 0);
    const applied = Math.min(w.inputSeq, this.inputAck + since);
    const { resend, dropped } = inputsToResend(this.predictor.pending, w.inputSeq, applied);
    this.predictor.resume(w.inputSeq, dropped);
    // The resent inputs acknowledge the newest state held now, not what was
    // held when they were first sent.
    this.acks.reconnected(w.tick, now);
    this.acks.resend(resend);
    this.resent += resend.length;
    this.resendDropped += dropped.length;
    // The receiver keeps its states: the server's next snapshot is a delta
    // against the newest one it read acknowledged, which is among them. An
    // ack of a state it never sent on this connection (one whose ack was
    // lost with the old one) does not move its baseline, so acking our
    // newest is safe.
    this.acc = 0;
    this.lastUpdate = now;
    this.stats.pingMs = null;
  }

  /** @param {SnapshotMsg} msg @param {number} bytes */
  onSnapshot(msg, bytes) {
    const now = performance.now();
    this.stats.snapshotIn(now, bytes);
    const broken = this.receiver.desyncs + this.receiver.badDeltas;
    const state = this.receiver.receive(msg);
    // The header holds even when the delta is unusable: which inputs the
    // server has applied, so the pacer does not hold back input meanwhile.
    this.inputAck = msg.inputAck;
    this.inputAckTick = msg.tick;
    this.pacer.onSnapshot(this.predictor.nextSeq - 1 - msg.inputAck);
    // Unusable: nothing new to acknowledge. The server keeps encoding against
    // the last state it read acknowledged (or sends a full snapshot once
    // that is too old).
    if (!state) {
      // Unless all we hold is the state an earlier page kept: then the
      // server's baseline is older (the old page's ack of the kept state was
      // lost with its connection), and it would stay so until it leaves the
      // server's history, about 2 s with nothing drawn. Or unless the delta
      // applied to a state we hold did not check out (a desync, or a delta
      // that does not fit it): that state is suspect, and the next deltas
      // are against it. Holding nothing gets a full snapshot at once.
      const failed = this.receiver.desyncs + this.receiver.badDeltas > broken;
      // A full snapshot depends on no state of ours: if several in a row
      // do not check out, this page and the server disagree on the rules
      // or the format (an old page cached under the same protocol
      // version), and asking for more would loop with nothing drawn.
      if (failed && msg.baseAge === 0 && ++this.fullFailures >= FULL_FAILURES_MAX) {
        this.fullFailures = 0;
        this.conn.abandon(`The game state from the server does not check out on this page (${FULL_FAILURES_MAX} full snapshots in a row)`);
        return;
      }
      if ((failed || (this.keptOnly && msg.baseAge !== 0)) && this.welcome) {
        this.keptOnly = false;
        this.receiver.reset();
        this.acks.forget(this.welcome.tick);
      }
      return;
    }
    this.keptOnly = false;
    this.fullFailures = 0;
    this.acks.held(state.tick, now);
    this.stepsSinceSnapshot = 0;
    this.interp.push(state, now);
    this.applyOwn(state, msg.inputAck, now);
    this.matchShots(state, now);
    if (state.players !== this.players) {
      this.ui.killFeed(this.players, state.players, this.welcome?.playerId ?? -1);
      this.players = state.players;
      this.names = new Map(state.players.map((p) => [p.id, p.name]));
      this.ui.updateScoreboard(state.players, this.welcome?.playerId ?? -1);
    }
  }

  /** @param {WorldState} state @param {number} inputAck @param {number} now */
  applyOwn(state, inputAck, now) {
    const id = this.welcome?.playerId;
    const e = state.entities.find((x) => x.id === id && x.kind === Kind.Player);
    if (!e) return;
    const before = this.own;
    this.own = { id: e.id, x: e.x, y: e.y, hp: e.hp };
    if (before) {
      if (e.hp < before.hp) {
        this.hurtFlash = 1;
        this.effects.hit(e.x, e.y, before.hp - e.hp, '#ff6b6b');
      }
      if (before.hp > 0 && e.hp === 0) {
        this.diedAt = now;
        this.effects.death(e.x, e.y, '#4ee1ff');
      }
      if (before.hp === 0 && e.hp > 0) {
        this.diedAt = null;
        this.effects.spawn(e.x, e.y, '#4ee1ff');
      }
    } else if (e.hp === 0) {
      this.diedAt = now;
    }
    this.predictor.reconcile(e, inputAck);
  }

  /**
   * Pairs new server projectiles with the local shots that predicted them, so
   * each shot is drawn once: ahead of the server, from the muzzle, at once.
   * @param {WorldState} state @param {number} now
   */
  matchShots(state, now) {
    const present = new Set();
    for (const e of state.entities) {
      if (e.kind !== Kind.Projectile) continue;
      present.add(e.id);
      if (this.knownProjectiles.has(e.id)) continue;
      const shot = this.shots.find((s) => s.serverId === null && onPath(s, e));
      if (shot) {
        shot.serverId = e.id;
        this.hidden.set(e.id, Infinity);
      }
    }
    this.knownProjectiles = present;
    // The server's copy of a shot is drawn for as long as the interpolation
    // delay after it is gone, and some more for a late snapshot.
    const keepMs = this.interp.delayTicks * this.interp.tickMs + 500;
    for (const [id, until] of this.hidden) {
      // Gone on the server: forget it once the interpolation delay has
      // passed. Expiry is checked first: after a long reconnect the server
      // may have given the id to another projectile, which must be drawn.
      if (until < now) this.hidden.delete(id);
      else if (until === Infinity && !present.has(id)) this.hidden.set(id, now + keepMs);
    }
    const unmatchedFor = Math.max(400, 2 * (this.stats.pingMs ?? 100) + 250);
    this.shots = this.shots.filter((s) => {
      if (s.serverId !== null && !present.has(s.serverId)) {
        // The server's projectile ended early: it hit something.
        if (s.ticksLeft > 1) this.effects.impact(s.x, s.y);
        return false;
      }
      // Never confirmed by the server (it was on cooldown, or we were dead).
      return !(s.serverId === null && now - s.born > unmatchedFor);
    });
  }

  /** Runs the fixed simulation steps that are due. @param {number} now */
  update(now) {
    if (!this.conn.playing || !this.welcome) {
      this.lastUpdate = now;
      this.acc = 0;
      return;
    }
    this.acc += now - this.lastUpdate;
    this.lastUpdate = now;
    if (this.acc > MAX_CATCHUP_STEPS * this.stepMs) this.acc = MAX_CATCHUP_STEPS * this.stepMs;
    while (this.acc >= this.stepMs) {
      this.acc -= this.stepMs;
      this.step(now);
    }
  }

  /** One tick: sample, send, predict. @param {number} now */
  step(now) {
    this.updateAim();
    const latest = this.receiver.latest;
    this.stepsSinceSnapshot++;
    // The server holds a backlog of our inputs, or takes none: this tick
    // sends nothing and predicts nothing (the server will not move us
    // either); the rest of the world goes on. The buttons are read only for
    // a tick that sends them: a click is kept for the next one.
    const skipped = this.pacer.skip(this.predictor.nextSeq - 1 - this.inputAck);
    let buttons = 0;
    if (!skipped) {
      buttons = this.input.sampleButtons();
      const tick = latest ? (latest.tick + this.stepsSinceSnapshot) >>> 0 : (this.welcome?.tick ?? 0);
      const seq = this.predictor.step(buttons, { tick, aim: this.aim });
      this.acks.input({ seq, tick, buttons, aim: this.aim }, now);
    } else {
      this.predictor.idle();
      // No input carries the ack this tick: it goes alone, if there is a
      // newer snapshot to acknowledge.
      this.acks.tickWithoutInput(now);
    }

    for (const s of this.shots) {
      s.prevX = s.x;
      s.prevY = s.y;
      s.x += s.vx;
      s.y += s.vy;
      s.ticksLeft--;
    }
    this.shots = this.shots.filter((s) => {
      const inside = s.x >= 0 && s.y >= 0 && s.x <= ARENA_WIDTH && s.y <= ARENA_HEIGHT;
      if (!inside) this.effects.impact(Math.min(Math.max(s.x, 0), ARENA_WIDTH), Math.min(Math.max(s.y, 0), ARENA_HEIGHT));
      return inside && s.ticksLeft > 0;
    });

    // The server fires in the same tick the input moves the player, from the
    // position after the move, when the cooldown has run out.
    this.cooldown = Math.max(0, this.cooldown - 1);
    const p = this.predictor;
    if (!skipped && buttons & Buttons.FIRE && this.cooldown === 0 && p.alive && p.x !== null && p.y !== null) {
      this.cooldown = this.rules.fireCooldownTicks;
      const [vx, vy] = projectileVelocity(this.aim, this.rules);
      this.shots.push({
        x: p.x,
        y: p.y,
        prevX: p.x,
        prevY: p.y,
        vx,
        vy,
        ticksLeft: this.rules.projectileTicks,
        spawnX: p.x,
        spawnY: p.y,
        born: now,
        serverId: null,
      });
      this.effects.muzzle(p.x, p.y, (this.aim / 65536) * Math.PI * 2);
    }
  }

  updateAim() {
    const m = this.input.mouse;
    if (!m) {
      // No pointer yet (a keyboard-only player): aim where the player
      // moves, and keep that aim when they stop.
      const [dx, dy] = moveAxes(this.input.heldKeys());
      if (dx !== 0 || dy !== 0) this.aim = aimFromVector(dx, dy);
      return;
    }
    const own = this.ownRendered;
    if (!own) return;
    const [wx, wy] = this.renderer.toWorld(m.x, m.y);
    const dx = wx - own.x;
    const dy = wy - own.y;
    if (Math.abs(dx) + Math.abs(dy) > 1) this.aim = aimFromVector(dx, dy);
  }

  /** Draws one frame. @param {number} now */
  frame(now) {
    const dt = this.lastFrame ? Math.min(now - this.lastFrame, 250) : 16;
    this.lastFrame = now;
    this.update(now);
    this.stats.frame(now);
    this.predictor.decay(dt);
    this.effects.update(dt);
    this.hurtFlash = Math.max(0, this.hurtFlash - dt / 400);

    const ownId = this.welcome?.playerId ?? -1;
    const sample = this.welcome ? this.interp.sample(now) : { tick: 0, entities: [] };
    const entities = sample.entities.filter(
      (e) => e.id !== ownId && !(e.kind === Kind.Projectile && this.hidden.has(e.id)),
    );
    this.spawnEffects(entities, now, this.interp.states.length > 0);
    const alpha = this.acc / this.stepMs;
    const pos = this.predictor.renderPosition(alpha);
    this.ownRendered = pos;
    const shots = this.shots.map((s) => ({
      x: s.prevX + (s.x - s.prevX) * alpha,
      y: s.prevY + (s.y - s.prevY) * alpha,
      vx: s.vx,
      vy: s.vy,
    }));

    this.renderer.resize();
    if (pos) this.renderer.follow(pos.x, pos.y);
    this.rendered = entities;
    this.renderer.draw({
      entities,
      own: pos && this.own ? { id: ownId, x: pos.x, y: pos.y, hp: this.own.hp, aim: this.aim, name: this.names.get(ownId) ?? this.name } : null,
      shots,
      names: this.names,
      effects: this.effects.list,
      now,
      hurtFlash: this.hurtFlash,
    });
    this.ui.fadeBeneath(this.renderer.ownDrawn);

    this.ui.showDeath(this.diedAt === null ? null : Math.max(0, this.rules.respawnTicks * this.stepMs - (now - this.diedAt)));
    if (now - this.lastStatsUpdate > 250) {
      this.lastStatsUpdate = now;
      this.ui.updateStats(this.statsLines(now));
    }
  }

  /**
   * Effects for what changed since the last frame in the interpolated view.
   * None after a gap (a background tab come back, a new connection): what
   * changed meanwhile is not news, and every shot in flight would flash
   * from mid-air.
   * @param {RenderEntity[]} entities @param {number} now
   * @param {boolean} pictured whether the interpolator holds a state: no
   *   snapshot since the welcome is no picture to compare the first with
   */
  spawnEffects(entities, now, pictured) {
    const recent = this.lastRenderedAt !== null && now - this.lastRenderedAt < EFFECTS_GAP_MS;
    this.lastRenderedAt = pictured ? now : null;
    const seen = new Map();
    if (!recent) {
      for (const e of entities) seen.set(e.id, { kind: e.kind, hp: e.hp, x: e.x, y: e.y });
      this.lastRendered = seen;
      return;
    }
    for (const e of entities) {
      const before = this.lastRendered.get(e.id);
      if (e.kind === Kind.Projectile) {
        if (!before) this.effects.muzzle(e.x, e.y, Math.atan2(e.vy, e.vx));
      } else if (before && before.kind === e.kind) {
        const color = e.kind === Kind.Npc ? '#e0894a' : playerColor(e.id);
        if (e.hp < before.hp) this.effects.hit(e.x, e.y, before.hp - e.hp);
        if (e.hp === 0 && before.hp > 0) this.effects.death(e.x, e.y, color);
        if (e.hp > 0 && before.hp === 0) this.effects.spawn(e.x, e.y, color);
      }
      seen.set(e.id, { kind: e.kind, hp: e.hp, x: e.x, y: e.y });
    }
    for (const [id, b] of this.lastRendered) {
      if (!seen.has(id) && b.kind === Kind.Projectile) this.effects.impact(b.x, b.y);
    }
    this.lastRendered = seen;
  }

  /** @param {number} now */
  statsLines(now) {
    return statsLines({
      now,
      room: this.welcome?.room ?? null,
      resumes: this.resumes,
      paced: this.pacer.paced,
      net: this.stats,
      corrections: this.predictor.corrections,
      lastCorrection: this.predictor.lastCorrection,
      desyncs: this.receiver.desyncs,
      badSnapshots: this.receiver.badDeltas + this.receiver.missingBaselines,
      tickHz: this.rules.tickHz,
      snapshotHz: this.welcome?.snapshotHz ?? 0,
      entities: this.receiver.latest?.entities.length ?? 0,
      pending: this.predictor.pending.length,
      underruns: this.interp.underruns,
      interpDelayMs: this.interp.delayTicks * this.interp.tickMs,
    });
  }

  /**
   * A read-only view for tests and the curious (window.__arena.view()): what
   * the last frame drew, in quanta, and the overlay's numbers.
   */
  debugView() {
    const now = performance.now();
    const ownId = this.welcome?.playerId ?? null;
    return {
      connected: this.conn.playing,
      status: this.conn.status.state,
      playerId: ownId,
      room: this.welcome?.room ?? null,
      resumed: this.welcome?.resumed ?? null,
      resumes: this.resumes,
      inputsResent: this.resent,
      inputsResendDropped: this.resendDropped,
      inputsPaced: this.pacer.paced,
      inputsStalled: this.pacer.stalled,
      /** Standalone Acks (every other ack rode in an input), and those sent because the loop had stalled. */
      acksAlone: this.acks.alone,
      acksAloneStalled: this.acks.aloneStalled,
      pendingInputs: this.predictor.pending.length,
      tickHz: this.rules.tickHz,
      snapshotHz: this.welcome?.snapshotHz ?? null,
      /** The current connection's Welcome.tick: what an ack names while nothing is held. */
      welcomeTick: this.welcome?.tick ?? null,
      tick: this.receiver.latest?.tick ?? null,
      own: this.ownRendered && this.own ? { id: ownId, x: this.ownRendered.x, y: this.ownRendered.y, hp: this.own.hp } : null,
      /** Screen position (CSS pixels) of a world point, as the last frame drew it. */
      camera: { x: this.renderer.camX, y: this.renderer.camY, scale: this.renderer.scale, width: this.renderer.width, height: this.renderer.height },
      /** Where the last frame drew the own player and the minimap, and which corner panels it faded because the player was beneath them. */
      ownBox: this.renderer.ownDrawn,
      minimap: this.renderer.minimapBox(),
      faded: {
        stats: this.ui.stats.classList.contains('beneath'),
        scoreboard: this.ui.scoreboard.classList.contains('beneath'),
        minimap: this.renderer.minimapFaded,
      },
      entities: this.rendered.map((e) => ({
        id: e.id,
        kind: ['player', 'npc', 'projectile'][e.kind],
        x: e.x,
        y: e.y,
        hp: e.hp,
        name: e.kind === Kind.Npc ? `npc-${e.id}` : (this.names.get(e.id) ?? null),
      })),
      players: this.players.map((p) => ({ ...p })),
      stats: {
        pingMs: this.stats.pingMs,
        snapshotsPerSec: this.stats.snapshots.rate(now),
        kBPerSecIn: this.stats.bytesIn.rate(now) / 1000,
        lastSnapshotBytes: this.stats.lastSnapshotBytes,
        corrections: this.predictor.corrections,
        desyncs: this.receiver.desyncs,
        unusableSnapshots: this.receiver.missingBaselines + this.receiver.badDeltas,
        fps: this.stats.frames.rate(now),
      },
    };
  }
}

/**
 * Whether server projectile `e` is the one local shot `s` predicted: same
 * velocity (give or take the f32 rounding) and on the shot's line near
 * where the shot is expected.
 * @param {LocalShot} s @param {import('./snapshot.js').NetEntity} e
 */
function onPath(s, e) {
  if (Math.abs(s.vx - e.vx) > 1 || Math.abs(s.vy - e.vy) > 1) return false;
  const v2 = s.vx * s.vx + s.vy * s.vy;
  if (v2 === 0) return Math.hypot(e.x - s.spawnX, e.y - s.spawnY) < 400;
  const rx = e.x - s.spawnX;
  const ry = e.y - s.spawnY;
  const t = (rx * s.vx + ry * s.vy) / v2; // ticks along the path
  const off = Math.abs(rx * s.vy - ry * s.vx) / Math.sqrt(v2); // distance from the path
  return t > -4 && t < 60 && off < 400;
}
