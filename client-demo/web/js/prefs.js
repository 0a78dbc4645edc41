// Preferences kept across visits (the name, the stats overlay), in
// localStorage when the browser lets the page use it. With site data blocked,
// merely reading `localStorage` throws (a SecurityError), and a full storage
// refuses writes: the game then plays on without remembering, instead of
// failing to start.

/**
 * `localStorage` or `sessionStorage`, if the browser lets the page use it
 * (reading either throws when site data is blocked); else null.
 * @param {'localStorage'|'sessionStorage'} name
 * @returns {Storage|null}
 */
export function browserStorage(name) {
  try {
    return globalThis[name] ?? null;
  } catch {
    return null;
  }
}

const storage = () => browserStorage('localStorage');

/**
 * The stored value of `key`, or null (none, or no storage).
 * @param {string} key
 * @returns {string|null}
 */
export function getPref(key) {
  try {
    return storage()?.getItem(key) ?? null;
  } catch {
    return null;
  }
}

/**
 * Stores `value` under `key` if the browser lets the page; else nothing.
 * @param {string} key @param {string} value
 */
export function setPref(key, value) {
  try {
    storage()?.setItem(key, value);
  } catch {
    // Blocked or full: not remembered.
  }
}
