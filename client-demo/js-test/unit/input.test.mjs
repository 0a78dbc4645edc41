// Mouse and keyboard sampling, driven with the event sequences a browser
// sends (no browser): window, document and the canvas are plain EventTargets.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Input } from '../../web/js/input.js';
import { Buttons } from '../../web/js/rules.js';

/** An Input on a fake surface, and a function that fires events on it. */
function setup() {
  const g = /** @type {any} */ (globalThis);
  g.window = new EventTarget();
  g.document = Object.assign(new EventTarget(), { hidden: false });
  g.HTMLInputElement ??= class {};
  const surface = Object.assign(new EventTarget(), { setPointerCapture() {} });
  const input = new Input(/** @type {any} */ (surface), { onToggleStats() {} });
  /**
   * @param {EventTarget} target @param {string} type @param {Record<string, unknown>} [fields]
   */
  const fire = (target, type, fields = {}) => {
    target.dispatchEvent(Object.assign(new Event(type), { offsetX: 10, offsetY: 20, pointerId: 1, ...fields }));
  };
  /** @param {string} type @param {number} button @param {number} buttons */
  const pointer = (type, button, buttons) => fire(surface, type, { button, buttons });
  return { input, pointer, fire, surface };
}

const firing = (/** @type {Input} */ input) => (input.sampleButtons() & Buttons.FIRE) !== 0;

test('a click shorter than a tick still fires once, and a held button keeps firing', () => {
  const { input, pointer } = setup();
  pointer('pointerdown', 0, 1);
  pointer('pointerup', 0, 0);
  assert.ok(firing(input), 'the click is counted');
  assert.ok(!firing(input), 'once');
  pointer('pointerdown', 0, 1);
  assert.ok(firing(input));
  pointer('pointermove', -1, 1);
  assert.ok(firing(input), 'still held');
  pointer('pointerup', 0, 0);
  assert.ok(!firing(input));
});

test('left released before right, with both held, stops firing', () => {
  const { input, pointer } = setup();
  // A browser's chorded sequence: the second press and the first release
  // are pointermove events; only the last release is a pointerup, and its
  // `button` is the right one.
  pointer('pointerdown', 0, 1);
  pointer('pointermove', 2, 3);
  pointer('pointermove', 0, 2);
  assert.ok(firing(input), 'the left press is counted even though it ended');
  assert.ok(!firing(input), 'left is up: no more fire');
  pointer('pointerup', 2, 0);
  assert.ok(!firing(input));
});

test('a left press while right is held fires, and its release stops it', () => {
  const { input, pointer } = setup();
  pointer('pointerdown', 2, 2);
  assert.ok(!firing(input), 'the right button does not fire');
  pointer('pointermove', 0, 3);
  assert.ok(firing(input));
  assert.ok(firing(input), 'held');
  pointer('pointermove', 0, 2);
  assert.ok(!firing(input));
  pointer('pointerup', 2, 0);
  assert.ok(!firing(input));
});

test('a cancelled pointer or a lost focus releases everything', () => {
  const { input, pointer, fire } = setup();
  pointer('pointerdown', 0, 1);
  assert.ok(firing(input));
  pointer('pointercancel', 0, 0);
  assert.ok(!firing(input), 'cancel releases the button');
  pointer('pointermove', -1, 1);
  assert.ok(firing(input), 'a button still held when the pointer comes back fires again');
  fire(globalThis.window, 'keydown', { code: 'KeyW' });
  fire(globalThis.window, 'blur');
  assert.equal(input.sampleButtons(), 0, 'blur releases keys and the mouse');
});

test('shortcuts and keys pressed on a button or link are not the game\'s', () => {
  const { input } = setup();
  /** @param {Record<string, unknown>} fields @param {unknown} [target] */
  const key = (fields, target) => {
    const ev = Object.assign(new Event('keydown', { cancelable: true }), fields);
    if (target) Object.defineProperty(ev, 'target', { value: target });
    globalThis.window.dispatchEvent(ev);
    return ev;
  };
  // Cmd+W / Ctrl+S: on macOS the W's keyup never comes while Cmd is held.
  assert.ok(!key({ code: 'KeyW', metaKey: true }).defaultPrevented);
  assert.ok(!key({ code: 'KeyS', ctrlKey: true }).defaultPrevented);
  assert.equal(input.sampleButtons(), 0, 'no key held by a shortcut');
  // Space on the focused "Reconnect now" button presses the button.
  const onButton = key({ code: 'Space' }, { tagName: 'BUTTON' });
  assert.ok(!onButton.defaultPrevented, 'the button gets its Space');
  assert.equal(input.sampleButtons(), 0, 'and the game does not fire');
  // Other keys play whatever has focus: after following the footer's
  // status link, focus stays on it.
  assert.ok(key({ code: 'KeyW' }, { tagName: 'A' }).defaultPrevented);
  assert.equal(input.heldKeys(), Buttons.UP);
  assert.ok(key({ code: 'KeyD' }, { tagName: 'BUTTON' }).defaultPrevented);
  assert.equal(input.heldKeys(), Buttons.UP | Buttons.RIGHT);
  // Cmd going down lets go of them: their keyups will not come.
  key({ code: 'MetaLeft', key: 'Meta', metaKey: true });
  assert.equal(input.heldKeys(), 0);
  // On the page itself, Space fires.
  assert.ok(key({ code: 'Space' }).defaultPrevented);
  assert.ok((input.sampleButtons() & Buttons.FIRE) !== 0);
});
