// Entry point: picks the player's name and room and starts the game.
//
// The name comes from `?name=`, else from the last visit, else a random
// two-word name; it is kept for the next visit. `?stats=0|1` forces the stats
// overlay off or on. `?room=NAME` plays in the private room NAME (created on
// first use); without it the server matchmakes into a public room.
// `?token=...` is sent as the hello's authentication token, for servers that
// want one; it is never logged or shown.

import { Game } from './game.js';
import { browserStorage, getPref, setPref } from './prefs.js';
import { MAX_NAME_CHARS } from './rules.js';
import { CLAIM_CHANNEL, SessionStore, answerClaims, heldElsewhere } from './session.js';
import { Ui } from './ui.js';

const ADJECTIVES = ['Swift', 'Brave', 'Quiet', 'Lucky', 'Rapid', 'Clever', 'Bold', 'Sly', 'Calm', 'Wild'];
const ANIMALS = ['Fox', 'Otter', 'Lynx', 'Hawk', 'Wolf', 'Panda', 'Viper', 'Moose', 'Raven', 'Gecko'];

function randomName() {
  const pick = (/** @type {string[]} */ a) => a[Math.floor(Math.random() * a.length)];
  return `${pick(ADJECTIVES)}${pick(ANIMALS)}${Math.floor(Math.random() * 90 + 10)}`;
}

/** @param {string} s */
function cleanName(s) {
  // The server strips control characters and cuts at 16 characters too; doing
  // it here shows the player the name others will see.
  return Array.from(s.replace(/\p{Cc}/gu, '').trim()).slice(0, MAX_NAME_CHARS).join('');
}

const params = new URLSearchParams(location.search);
let name = cleanName(params.get('name') ?? '');
if (!name) name = cleanName(getPref('arena.name') ?? '') || randomName();
setPref('arena.name', name);
if (params.has('stats')) setPref('arena.stats', params.get('stats') === '0' ? 'off' : 'on');

// An empty `?room=` is matchmaking. A name the server would refuse is
// refused by the page before it connects (net.js), with the same advice.
const room = params.get('room') || null;
const auth = params.get('token') || null;

// A duplicated tab holds a copy of this tab's session: it joins as a new
// player instead of taking this one's (session.js, heldElsewhere).
const storage = browserStorage('sessionStorage');
const claims = typeof BroadcastChannel === 'function' ? new BroadcastChannel(CLAIM_CHANNEL) : null;
const store = new SessionStore(storage);
const stored = store.load();
if (stored && (await heldElsewhere(claims, stored.token))) store.clear();

const canvas = /** @type {HTMLCanvasElement} */ (document.getElementById('game'));
const ui = new Ui();
const game = new Game({ canvas, name, url: '', ui, room, auth, storage });
answerClaims(claims, () => game.conn.session?.token ?? null);
const nameEl = document.getElementById('own-name');
if (nameEl) nameEl.textContent = name;
// A reload within the server's grace period resumes this player; the state
// kept here lets the first snapshot after it be a delta.
addEventListener('pagehide', () => game.stash());
const leaveEl = document.getElementById('leave');
if (leaveEl) leaveEl.onclick = () => game.conn.leave();

// A read-only window into the game for tests and the curious.
Object.defineProperty(window, '__arena', {
  value: Object.freeze({ view: () => game.debugView() }),
  writable: false,
  configurable: false,
});

game.start();
canvas.focus();
