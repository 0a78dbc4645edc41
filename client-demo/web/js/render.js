// Canvas 2D renderer: arena, entities, names and hp bars, effects, minimap.
// Works in world quanta; the camera follows the own player and shows at most
// a strip beyond the walls when the arena is larger than the window. The
// minimap (and, in Ui, the HTML panels) fades while the own player is
// beneath it.

import { Kind } from './protocol.js';
import {
  ARENA_HEIGHT,
  ARENA_WIDTH,
  MAX_HP,
  PLAYER_RADIUS,
  PROJECTILE_RADIUS,
  QUANTA_PER_UNIT,
} from './rules.js';

/** @typedef {import('./interpolation.js').RenderEntity} RenderEntity */
/** @typedef {import('./effects.js').Effect} Effect */

/**
 * @typedef {{
 *   entities: RenderEntity[],
 *   own: {id: number, x: number, y: number, hp: number, aim: number, name: string} | null,
 *   shots: {x: number, y: number, vx: number, vy: number}[],
 *   names: Map<number, string>,
 *   effects: Effect[],
 *   now: number,
 *   hurtFlash: number,
 * }} Frame
 */

/**
 * A rectangle on screen, in CSS pixels (what getBoundingClientRect gives).
 * @typedef {{left: number, top: number, right: number, bottom: number}} Box
 */

/** Whether two screen rectangles share any area. @param {Box} a @param {Box} b */
export function overlaps(a, b) {
  return a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
}

/** Opacity of a panel (or the minimap) the own player is beneath. */
export const BENEATH_OPACITY = 0.25;

const GRID = 80 * QUANTA_PER_UNIT;
const FONT = '600 12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';

/**
 * A stable, distinct colour per player id (golden-angle hues), never close
 * to the own player's cyan, so the own player stays the only cyan body.
 * @param {number} id @param {number} [light]
 */
export function playerColor(id, light = 62) {
  let hue = Math.round((id * 137.508) % 360);
  if (hue >= 160 && hue <= 220) hue = (hue + 90) % 360;
  return `hsl(${hue}, 75%, ${light}%)`;
}
const NPC_COLOR = '#e0894a';
const OWN_COLOR = '#4ee1ff';

export class Renderer {
  /** @param {HTMLCanvasElement} canvas */
  constructor(canvas) {
    this.canvas = canvas;
    const ctx = canvas.getContext('2d', { alpha: false });
    if (!ctx) throw new Error('no 2D canvas context');
    this.ctx = ctx;
    this.width = 0;
    this.height = 0;
    this.dpr = 1;
    /** Screen pixels per quantum. */
    this.scale = 0.25;
    /** Camera centre in quanta. */
    this.camX = ARENA_WIDTH / 2;
    this.camY = ARENA_HEIGHT / 2;
    /** Where the last frame drew the own player (ownBox), null if it did not. */
    /** @type {Box|null} */
    this.ownDrawn = null;
    /** Whether the last frame faded the minimap because the own player was beneath it. */
    this.minimapFaded = false;
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const w = this.canvas.clientWidth;
    const h = this.canvas.clientHeight;
    if (w !== this.width || h !== this.height || dpr !== this.dpr) {
      this.width = w;
      this.height = h;
      this.dpr = dpr;
      this.canvas.width = Math.round(w * dpr);
      this.canvas.height = Math.round(h * dpr);
    }
    // Show about 1400 x 900 world units; never zoom in past 1:1.
    const pxPerUnit = Math.min(1, Math.max(0.45, Math.min(w / 1400, h / 900)));
    this.scale = pxPerUnit / QUANTA_PER_UNIT;
  }

  /** Centres the camera on a point, kept inside the arena. @param {number} x @param {number} y */
  follow(x, y) {
    const halfW = this.width / 2 / this.scale;
    const halfH = this.height / 2 / this.scale;
    // Room beyond the walls for the own player's name, bar and marker
    // (ownBox) when it stands against one.
    const margin = 80 * QUANTA_PER_UNIT;
    this.camX = ARENA_WIDTH + 2 * margin <= 2 * halfW ? ARENA_WIDTH / 2 : clamp(x, halfW - margin, ARENA_WIDTH + margin - halfW);
    this.camY = ARENA_HEIGHT + 2 * margin <= 2 * halfH ? ARENA_HEIGHT / 2 : clamp(y, halfH - margin, ARENA_HEIGHT + margin - halfH);
  }

  /**
   * Where the own player at world point (x, y) is drawn: its body, hit point
   * bar and marker (the name may reach further sideways).
   * @param {number} x @param {number} y @returns {Box}
   */
  ownBox(x, y) {
    const [sx, sy] = this.toScreen(x, y);
    const r = PLAYER_RADIUS * this.scale;
    // drawLabel: the bar is Math.max(34, r * 2.2) wide, the marker 46 px above the body.
    const half = Math.max(17, r * 1.1);
    return { left: sx - half, top: sy - r - 46, right: sx + half, bottom: sy + r };
  }

  /** Where the minimap is drawn: the bottom-right corner. @returns {Box} */
  minimapBox() {
    const w = Math.min(220, this.width * 0.22);
    const h = (w * ARENA_HEIGHT) / ARENA_WIDTH;
    return { left: this.width - w - 14, top: this.height - h - 14, right: this.width - 14, bottom: this.height - 14 };
  }

  /** World quanta to CSS pixels. @param {number} x @param {number} y @returns {[number, number]} */
  toScreen(x, y) {
    return [(x - this.camX) * this.scale + this.width / 2, (y - this.camY) * this.scale + this.height / 2];
  }

  /** CSS pixels to world quanta. @param {number} sx @param {number} sy @returns {[number, number]} */
  toWorld(sx, sy) {
    return [(sx - this.width / 2) / this.scale + this.camX, (sy - this.height / 2) / this.scale + this.camY];
  }

  /** @param {Frame} f */
  draw(f) {
    const { ctx } = this;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.fillStyle = '#070a10';
    ctx.fillRect(0, 0, this.width, this.height);
    this.drawArena();

    const visible = (/** @type {number} */ x, /** @type {number} */ y, r = PLAYER_RADIUS * 3) => {
      const [sx, sy] = this.toScreen(x, y);
      const rr = r * this.scale;
      return sx > -rr && sy > -rr && sx < this.width + rr && sy < this.height + rr;
    };

    for (const e of f.entities) {
      if (e.kind === Kind.Projectile && visible(e.x, e.y)) this.drawProjectile(e.x, e.y, e.vx, e.vy, '#ffe27a');
    }
    for (const s of f.shots) {
      if (visible(s.x, s.y)) this.drawProjectile(s.x, s.y, s.vx, s.vy, '#9ff3ff');
    }
    for (const e of f.entities) {
      if (e.kind === Kind.Projectile || !visible(e.x, e.y)) continue;
      const color = e.kind === Kind.Npc ? NPC_COLOR : playerColor(e.id);
      this.drawBody(e.kind, e.x, e.y, (e.angle / 256) * Math.PI * 2, e.hp, color, false);
    }
    if (f.own) {
      const angle = (f.own.aim / 65536) * Math.PI * 2;
      this.drawBody(Kind.Player, f.own.x, f.own.y, angle, f.own.hp, OWN_COLOR, true);
    }
    this.drawEffects(f.effects);
    // Labels last, so nothing covers them.
    for (const e of f.entities) {
      if (e.kind === Kind.Projectile || !visible(e.x, e.y)) continue;
      const name = e.kind === Kind.Npc ? `npc-${e.id}` : (f.names.get(e.id) ?? `player-${e.id}`);
      this.drawLabel(e.x, e.y, name, e.hp, e.kind === Kind.Npc ? '#f3c9a8' : '#e8eef7', false);
    }
    if (f.own) this.drawLabel(f.own.x, f.own.y, `${f.own.name} (you)`, f.own.hp, OWN_COLOR, true);

    if (f.hurtFlash > 0) {
      const g = ctx.createRadialGradient(this.width / 2, this.height / 2, Math.min(this.width, this.height) * 0.3, this.width / 2, this.height / 2, Math.max(this.width, this.height) * 0.7);
      g.addColorStop(0, 'rgba(255,40,40,0)');
      g.addColorStop(1, `rgba(255,40,40,${0.45 * f.hurtFlash})`);
      ctx.fillStyle = g;
      ctx.fillRect(0, 0, this.width, this.height);
    }
    // A player in the bottom-right corner would be hidden by the minimap:
    // fade it instead (the HTML panels do the same, Ui.fadeBeneath).
    this.ownDrawn = f.own ? this.ownBox(f.own.x, f.own.y) : null;
    this.minimapFaded = this.ownDrawn !== null && overlaps(this.ownDrawn, this.minimapBox());
    ctx.globalAlpha = this.minimapFaded ? BENEATH_OPACITY : 1;
    this.drawMinimap(f);
    ctx.globalAlpha = 1;
  }

  drawArena() {
    const { ctx } = this;
    const [x0, y0] = this.toScreen(0, 0);
    const [x1, y1] = this.toScreen(ARENA_WIDTH, ARENA_HEIGHT);
    ctx.fillStyle = '#0f1622';
    ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
    // Grid: only the visible lines.
    ctx.beginPath();
    const [wx0, wy0] = this.toWorld(0, 0);
    const [wx1, wy1] = this.toWorld(this.width, this.height);
    for (let gx = Math.max(GRID, Math.ceil(wx0 / GRID) * GRID); gx < Math.min(ARENA_WIDTH, wx1); gx += GRID) {
      const [sx] = this.toScreen(gx, 0);
      ctx.moveTo(Math.round(sx) + 0.5, Math.max(y0, 0));
      ctx.lineTo(Math.round(sx) + 0.5, Math.min(y1, this.height));
    }
    for (let gy = Math.max(GRID, Math.ceil(wy0 / GRID) * GRID); gy < Math.min(ARENA_HEIGHT, wy1); gy += GRID) {
      const [, sy] = this.toScreen(0, gy);
      ctx.moveTo(Math.max(x0, 0), Math.round(sy) + 0.5);
      ctx.lineTo(Math.min(x1, this.width), Math.round(sy) + 0.5);
    }
    ctx.strokeStyle = 'rgba(120, 160, 220, 0.09)';
    ctx.lineWidth = 1;
    ctx.stroke();
    // Glowing border.
    ctx.save();
    ctx.shadowColor = 'rgba(78, 225, 255, 0.6)';
    ctx.shadowBlur = 18;
    ctx.strokeStyle = 'rgba(78, 225, 255, 0.75)';
    ctx.lineWidth = 3;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    ctx.restore();
  }

  /**
   * @param {number} kind @param {number} x @param {number} y
   * @param {number} angle radians @param {number} hp @param {string} color
   * @param {boolean} own
   */
  drawBody(kind, x, y, angle, hp, color, own) {
    const { ctx } = this;
    const [sx, sy] = this.toScreen(x, y);
    const r = PLAYER_RADIUS * this.scale;
    const dead = hp === 0;
    ctx.save();
    ctx.translate(sx, sy);
    if (dead) ctx.globalAlpha = 0.28;
    // Soft shadow.
    ctx.fillStyle = 'rgba(0,0,0,0.35)';
    ctx.beginPath();
    ctx.ellipse(0, r * 0.35, r * 1.05, r * 0.75, 0, 0, Math.PI * 2);
    ctx.fill();
    // Gun barrel along the aim.
    if (!dead) {
      ctx.save();
      ctx.rotate(angle);
      ctx.fillStyle = own ? '#d7f8ff' : 'rgba(230,236,245,0.85)';
      ctx.fillRect(r * 0.4, -r * 0.18, r * 0.95, r * 0.36);
      ctx.restore();
    }
    ctx.beginPath();
    if (kind === Kind.Npc) {
      // NPCs are hexagons, players circles.
      for (let i = 0; i < 6; i++) {
        const a = angle + (i * Math.PI) / 3;
        ctx.lineTo(Math.cos(a) * r * 1.08, Math.sin(a) * r * 1.08);
      }
      ctx.closePath();
    } else {
      ctx.arc(0, 0, r, 0, Math.PI * 2);
    }
    const g = ctx.createRadialGradient(-r * 0.35, -r * 0.35, r * 0.1, 0, 0, r * 1.1);
    g.addColorStop(0, '#ffffff');
    g.addColorStop(0.25, color);
    g.addColorStop(1, shade(color));
    ctx.fillStyle = g;
    ctx.fill();
    ctx.lineWidth = own ? 3 : 1.5;
    ctx.strokeStyle = own ? '#ffffff' : 'rgba(0,0,0,0.5)';
    ctx.stroke();
    if (own && !dead) {
      // A pulsing ring marks the own player.
      const pulse = 0.5 + 0.5 * Math.sin(performance.now() / 250);
      ctx.beginPath();
      ctx.arc(0, 0, r + 6 + pulse * 3, 0, Math.PI * 2);
      ctx.strokeStyle = `rgba(78,225,255,${0.35 + 0.35 * pulse})`;
      ctx.lineWidth = 2;
      ctx.stroke();
    }
    if (dead) {
      ctx.globalAlpha = 0.8;
      ctx.strokeStyle = '#ff6b6b';
      ctx.lineWidth = 3;
      ctx.beginPath();
      ctx.moveTo(-r * 0.5, -r * 0.5);
      ctx.lineTo(r * 0.5, r * 0.5);
      ctx.moveTo(r * 0.5, -r * 0.5);
      ctx.lineTo(-r * 0.5, r * 0.5);
      ctx.stroke();
    }
    ctx.restore();
  }

  /**
   * Name above, hp bar below the name.
   * @param {number} x @param {number} y @param {string} name @param {number} hp
   * @param {string} color @param {boolean} own
   */
  drawLabel(x, y, name, hp, color, own) {
    const { ctx } = this;
    const [sx, sy] = this.toScreen(x, y);
    const r = PLAYER_RADIUS * this.scale;
    const top = sy - r - 24;
    ctx.font = own ? FONT.replace('600', '700') : FONT;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'bottom';
    ctx.lineWidth = 3;
    ctx.strokeStyle = 'rgba(0,0,0,0.75)';
    ctx.strokeText(name, sx, top);
    ctx.fillStyle = hp === 0 ? 'rgba(200,200,200,0.6)' : color;
    ctx.fillText(name, sx, top);
    const bw = Math.max(34, r * 2.2);
    const bh = 5;
    const bx = sx - bw / 2;
    const by = top + 4;
    ctx.fillStyle = 'rgba(0,0,0,0.6)';
    ctx.fillRect(bx - 1, by - 1, bw + 2, bh + 2);
    const frac = Math.min(1, hp / MAX_HP);
    ctx.fillStyle = frac > 0.5 ? '#5be37d' : frac > 0.25 ? '#ffd166' : '#ff5d5d';
    ctx.fillRect(bx, by, bw * frac, bh);
    if (own) {
      // A marker above the own name, visible even in a crowd.
      ctx.fillStyle = OWN_COLOR;
      ctx.beginPath();
      const ty = top - 16;
      ctx.moveTo(sx - 6, ty - 6);
      ctx.lineTo(sx + 6, ty - 6);
      ctx.lineTo(sx, ty + 1);
      ctx.closePath();
      ctx.fill();
    }
  }

  /** @param {number} x @param {number} y @param {number} vx @param {number} vy @param {string} color */
  drawProjectile(x, y, vx, vy, color) {
    const { ctx } = this;
    const [sx, sy] = this.toScreen(x, y);
    const tail = 2.2; // ticks of trail
    const [tx, ty] = this.toScreen(x - vx * tail, y - vy * tail);
    const g = ctx.createLinearGradient(tx, ty, sx, sy);
    g.addColorStop(0, 'rgba(255,255,255,0)');
    g.addColorStop(1, color);
    ctx.strokeStyle = g;
    ctx.lineCap = 'round';
    ctx.lineWidth = Math.max(2, PROJECTILE_RADIUS * this.scale * 1.2);
    ctx.beginPath();
    ctx.moveTo(tx, ty);
    ctx.lineTo(sx, sy);
    ctx.stroke();
    ctx.save();
    ctx.shadowColor = color;
    ctx.shadowBlur = 10;
    ctx.fillStyle = '#ffffff';
    ctx.beginPath();
    ctx.arc(sx, sy, Math.max(2, PROJECTILE_RADIUS * this.scale), 0, Math.PI * 2);
    ctx.fill();
    ctx.restore();
  }

  /** @param {Effect[]} effects */
  drawEffects(effects) {
    const { ctx } = this;
    for (const e of effects) {
      const t = e.life / e.max;
      const [sx, sy] = this.toScreen(e.x, e.y);
      ctx.globalAlpha = Math.max(0, Math.min(1, t));
      if (e.kind === 'spark') {
        ctx.fillStyle = e.color;
        ctx.fillRect(sx - e.size / 2, sy - e.size / 2, e.size, e.size);
      } else if (e.kind === 'ring') {
        ctx.strokeStyle = e.color;
        ctx.lineWidth = 2;
        ctx.beginPath();
        ctx.arc(sx, sy, (e.r1 + (e.r0 - e.r1) * t) * this.scale, 0, Math.PI * 2);
        ctx.stroke();
      } else if (e.kind === 'text') {
        ctx.font = '700 15px system-ui, sans-serif';
        ctx.textAlign = 'center';
        ctx.textBaseline = 'middle';
        ctx.lineWidth = 3;
        ctx.strokeStyle = 'rgba(0,0,0,0.8)';
        ctx.strokeText(e.text, sx, sy);
        ctx.fillStyle = e.color;
        ctx.fillText(e.text, sx, sy);
      } else if (e.kind === 'flash') {
        const r = PLAYER_RADIUS * this.scale;
        ctx.save();
        ctx.translate(sx, sy);
        ctx.rotate(e.angle);
        const g = ctx.createRadialGradient(r * 1.5, 0, 0, r * 1.5, 0, r * 1.1);
        g.addColorStop(0, 'rgba(255,255,220,1)');
        g.addColorStop(0.4, 'rgba(255,200,80,0.8)');
        g.addColorStop(1, 'rgba(255,120,0,0)');
        ctx.fillStyle = g;
        ctx.beginPath();
        ctx.arc(r * 1.5, 0, r * 1.1, 0, Math.PI * 2);
        ctx.fill();
        ctx.restore();
      }
    }
    ctx.globalAlpha = 1;
  }

  /** @param {Frame} f */
  drawMinimap(f) {
    const { ctx } = this;
    const { left: x0, top: y0, right, bottom } = this.minimapBox();
    const w = right - x0;
    const h = bottom - y0;
    const k = w / ARENA_WIDTH;
    ctx.fillStyle = 'rgba(10, 16, 26, 0.8)';
    ctx.fillRect(x0, y0, w, h);
    ctx.strokeStyle = 'rgba(78,225,255,0.5)';
    ctx.lineWidth = 1;
    ctx.strokeRect(x0 + 0.5, y0 + 0.5, w - 1, h - 1);
    for (const e of f.entities) {
      if (e.kind === Kind.Projectile || e.hp === 0) continue;
      ctx.fillStyle = e.kind === Kind.Npc ? NPC_COLOR : playerColor(e.id);
      ctx.fillRect(x0 + e.x * k - 1.5, y0 + e.y * k - 1.5, 3, 3);
    }
    // The visible part of the arena.
    const [vx0, vy0] = this.toWorld(0, 0);
    const [vx1, vy1] = this.toWorld(this.width, this.height);
    ctx.strokeStyle = 'rgba(255,255,255,0.35)';
    ctx.strokeRect(
      x0 + clamp(vx0, 0, ARENA_WIDTH) * k,
      y0 + clamp(vy0, 0, ARENA_HEIGHT) * k,
      (clamp(vx1, 0, ARENA_WIDTH) - clamp(vx0, 0, ARENA_WIDTH)) * k,
      (clamp(vy1, 0, ARENA_HEIGHT) - clamp(vy0, 0, ARENA_HEIGHT)) * k,
    );
    if (f.own) {
      ctx.fillStyle = OWN_COLOR;
      ctx.beginPath();
      ctx.arc(x0 + f.own.x * k, y0 + f.own.y * k, 3.5, 0, Math.PI * 2);
      ctx.fill();
    }
  }
}

/** @param {number} v @param {number} lo @param {number} hi */
function clamp(v, lo, hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

/** A darker version of an hsl() or hex colour for the body gradient. @param {string} color */
function shade(color) {
  const m = /^hsl\((\d+), (\d+)%, (\d+)%\)$/.exec(color);
  if (m) return `hsl(${m[1]}, ${m[2]}%, ${Math.max(10, Number(m[3]) - 32)}%)`;
  if (color === NPC_COLOR) return '#7a3a14';
  if (color === OWN_COLOR) return '#0b5f78';
  return '#222';
}
