// Short-lived visual feedback: muzzle flashes, hit sparks, damage numbers,
// death bursts. Purely cosmetic, in world quanta, advanced by frame time.

/**
 * @typedef {{kind: 'spark', x: number, y: number, vx: number, vy: number, life: number, max: number, color: string, size: number}
 *   | {kind: 'ring', x: number, y: number, r0: number, r1: number, life: number, max: number, color: string}
 *   | {kind: 'text', x: number, y: number, text: string, life: number, max: number, color: string}
 *   | {kind: 'flash', x: number, y: number, angle: number, life: number, max: number}} Effect
 */

const MAX_EFFECTS = 600;

export class Effects {
  constructor() {
    /** @type {Effect[]} */
    this.list = [];
  }

  /** @param {Effect} e */
  add(e) {
    if (this.list.length >= MAX_EFFECTS) this.list.shift();
    this.list.push(e);
  }

  /**
   * A muzzle flash where a shot leaves, pointing along `angle` (radians).
   * @param {number} x @param {number} y @param {number} angle
   */
  muzzle(x, y, angle) {
    this.add({ kind: 'flash', x, y, angle, life: 90, max: 90 });
  }

  /**
   * Sparks and a damage number where something was hit.
   * @param {number} x @param {number} y @param {number} damage @param {string} [color]
   */
  hit(x, y, damage, color = '#ffd166') {
    for (let i = 0; i < 10; i++) {
      const a = Math.random() * Math.PI * 2;
      const s = 0.2 + Math.random() * 0.6;
      this.add({ kind: 'spark', x, y, vx: Math.cos(a) * s, vy: Math.sin(a) * s, life: 350, max: 350, color, size: 2 + Math.random() * 2 });
    }
    this.add({ kind: 'ring', x, y, r0: 20, r1: 120, life: 250, max: 250, color });
    if (damage > 0) this.add({ kind: 'text', x: x + 110, y: y - 20, text: `-${damage}`, life: 800, max: 800, color: '#ff6b6b' });
  }

  /** A projectile ending against something or the wall. @param {number} x @param {number} y */
  impact(x, y) {
    for (let i = 0; i < 5; i++) {
      const a = Math.random() * Math.PI * 2;
      const s = 0.1 + Math.random() * 0.3;
      this.add({ kind: 'spark', x, y, vx: Math.cos(a) * s, vy: Math.sin(a) * s, life: 200, max: 200, color: '#fff3b0', size: 1.5 });
    }
  }

  /** A burst where someone died. @param {number} x @param {number} y @param {string} color */
  death(x, y, color) {
    for (let i = 0; i < 28; i++) {
      const a = Math.random() * Math.PI * 2;
      const s = 0.3 + Math.random() * 1.1;
      this.add({ kind: 'spark', x, y, vx: Math.cos(a) * s, vy: Math.sin(a) * s, life: 700, max: 700, color, size: 2 + Math.random() * 3 });
    }
    this.add({ kind: 'ring', x, y, r0: 40, r1: 260, life: 500, max: 500, color });
  }

  /** A ring where someone (re)appears. @param {number} x @param {number} y @param {string} color */
  spawn(x, y, color) {
    this.add({ kind: 'ring', x, y, r0: 200, r1: 60, life: 400, max: 400, color });
  }

  /** @param {number} dtMs */
  update(dtMs) {
    let w = 0;
    for (const e of this.list) {
      e.life -= dtMs;
      if (e.life <= 0) continue;
      if (e.kind === 'spark') {
        e.x += e.vx * dtMs * 4;
        e.y += e.vy * dtMs * 4;
        e.vx *= 0.96;
        e.vy *= 0.96;
      } else if (e.kind === 'text') {
        e.y -= dtMs * 0.12;
      }
      this.list[w++] = e;
    }
    this.list.length = w;
  }

  clear() {
    this.list.length = 0;
  }
}
