// The page's preferences with storage usable, blocked (reading localStorage
// throws) and full (writes throw): the page must start in every case.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { getPref, setPref } from '../../web/js/prefs.js';

/** Runs `f` with `globalThis.localStorage` defined by `descriptor`. */
function withStorage(/** @type {PropertyDescriptor} */ descriptor, /** @type {() => void} */ f) {
  const before = Object.getOwnPropertyDescriptor(globalThis, 'localStorage');
  Object.defineProperty(globalThis, 'localStorage', { configurable: true, ...descriptor });
  try {
    f();
  } finally {
    if (before) Object.defineProperty(globalThis, 'localStorage', before);
    else delete globalThis.localStorage;
  }
}

test('preferences are kept where storage works', () => {
  const map = new Map();
  const storage = { getItem: (/** @type {string} */ k) => map.get(k) ?? null, setItem: (/** @type {string} */ k, /** @type {string} */ v) => map.set(k, v) };
  withStorage({ value: storage }, () => {
    assert.equal(getPref('arena.name'), null);
    setPref('arena.name', 'Otter');
    assert.equal(getPref('arena.name'), 'Otter');
  });
});

test('blocked site data: nothing is remembered and nothing throws', () => {
  withStorage(
    {
      get() {
        throw new Error('SecurityError: access is denied for this document');
      },
    },
    () => {
      assert.equal(getPref('arena.name'), null);
      assert.doesNotThrow(() => setPref('arena.name', 'Otter'));
    },
  );
});

test('a full storage refuses the write quietly', () => {
  const storage = {
    getItem: () => 'Lynx',
    setItem: () => {
      throw new Error('QuotaExceededError');
    },
  };
  withStorage({ value: storage }, () => {
    assert.doesNotThrow(() => setPref('arena.stats', 'off'));
    assert.equal(getPref('arena.name'), 'Lynx');
  });
});
