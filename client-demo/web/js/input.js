// Keyboard and mouse state, sampled once per simulation tick.
//
// Keys are tracked by `KeyboardEvent.code` (the physical key), so WASD is
// the same keys on AZERTY or Dvorak layouts. Everything held is released when
// the window loses focus: a key released while another window had focus
// would otherwise stay "held" forever.

import { Buttons } from './rules.js';

const KEY_BUTTONS = new Map([
  ['KeyW', Buttons.UP],
  ['ArrowUp', Buttons.UP],
  ['KeyS', Buttons.DOWN],
  ['ArrowDown', Buttons.DOWN],
  ['KeyA', Buttons.LEFT],
  ['ArrowLeft', Buttons.LEFT],
  ['KeyD', Buttons.RIGHT],
  ['ArrowRight', Buttons.RIGHT],
  ['Space', Buttons.FIRE],
]);

export class Input {
  /**
   * @param {HTMLElement} surface element that receives mouse events (the canvas)
   * @param {{onToggleStats: () => void}} hooks
   */
  constructor(surface, hooks) {
    /** @type {Set<string>} */
    this.keys = new Set();
    this.mouseDown = false;
    /** Mouse position in CSS pixels relative to the surface, or null before it moved. */
    this.mouse = /** @type {{x: number, y: number}|null} */ (null);
    /** Fire presses since the last sample, so a click shorter than a tick still shoots. */
    this.pendingClicks = 0;

    window.addEventListener('keydown', (e) => {
      if (e.target instanceof HTMLInputElement) return;
      if (e.code === 'F3' || (e.code === 'KeyI' && !e.repeat && !e.ctrlKey && !e.metaKey)) {
        e.preventDefault();
        if (!e.repeat) hooks.onToggleStats();
        return;
      }
      // A shortcut (Ctrl/Cmd + key) is the browser's. On macOS no keyup
      // comes for a key released while Cmd is held, so Cmd going down lets
      // go of every key: the player would run on.
      if (e.key === 'Meta') this.releaseAll();
      if (e.ctrlKey || e.metaKey) return;
      // Space on a focused button presses it (Enter, which presses buttons
      // and follows links, is no game key). Every other key plays.
      const tag = /** @type {{tagName?: string}|null} */ (e.target)?.tagName;
      if (tag === 'BUTTON' && e.code === 'Space') return;
      if (KEY_BUTTONS.has(e.code)) {
        e.preventDefault(); // arrows and space would scroll the page
        if (e.code === 'Space' && !this.keys.has('Space')) this.pendingClicks++;
        this.keys.add(e.code);
      }
    });
    window.addEventListener('keyup', (e) => {
      this.keys.delete(e.code);
    });
    window.addEventListener('blur', () => this.releaseAll());
    document.addEventListener('visibilitychange', () => {
      if (document.hidden) this.releaseAll();
    });
    // Whether the primary button is held comes from `buttons`, on every
    // pointer event: a second button pressed or released while another is
    // held fires `pointermove`, not `pointerdown`/`pointerup` (Pointer
    // Events, "chorded button interactions"), so `button` on down and up
    // alone would miss a left press under a held right button, and leave
    // firing on after left is released before right.
    /** @param {PointerEvent} e */
    const track = (e) => {
      this.mouse = { x: e.offsetX, y: e.offsetY };
      const down = (e.buttons & 1) !== 0;
      if (down && !this.mouseDown) this.pendingClicks++;
      this.mouseDown = down;
    };
    surface.addEventListener('pointermove', track);
    surface.addEventListener('pointerdown', (e) => {
      track(e);
      // Captured on any first press, so that a left press chorded under a
      // held right one is released over the canvas too, wherever the
      // pointer has gone.
      surface.setPointerCapture?.(e.pointerId);
    });
    surface.addEventListener('pointerup', track);
    surface.addEventListener('pointercancel', () => {
      this.mouseDown = false;
    });
    surface.addEventListener('contextmenu', (e) => e.preventDefault());
  }

  releaseAll() {
    this.keys.clear();
    this.mouseDown = false;
  }

  /** The buttons of the keys held now, without taking pending clicks. */
  heldKeys() {
    let b = 0;
    for (const code of this.keys) b |= KEY_BUTTONS.get(code) ?? 0;
    return b;
  }

  /**
   * The buttons for one tick. Consumes the clicks counted since the last call.
   * @returns {number}
   */
  sampleButtons() {
    let b = this.heldKeys();
    if (this.mouseDown || this.pendingClicks > 0) b |= Buttons.FIRE;
    this.pendingClicks = 0;
    return b;
  }
}
