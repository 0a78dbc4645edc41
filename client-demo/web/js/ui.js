// The HTML parts of the screen: connection banner, stats overlay,
// scoreboard, kill feed, death notice. Text goes in with textContent only:
// player names come from other players and are never parsed as HTML.

import { BENEATH_OPACITY, overlaps } from './render.js';
import { getPref, setPref } from './prefs.js';

/** @typedef {import('./codec.js').PlayerInfo} PlayerInfo */
/** @typedef {import('./render.js').Box} Box */
/** @typedef {import('./net.js').ConnStatus} ConnStatus */

/** @param {string} id */
function el(id) {
  const e = document.getElementById(id);
  if (!e) throw new Error(`#${id} missing from index.html`);
  return e;
}

export class Ui {
  constructor() {
    this.banner = el('banner');
    this.bannerTitle = el('banner-title');
    this.bannerText = el('banner-text');
    this.bannerButton = /** @type {HTMLButtonElement} */ (el('banner-button'));
    this.stats = el('stats');
    this.scoreboard = el('scoreboard');
    this.scoreRows = el('score-rows');
    this.scoreCount = el('score-count');
    this.feed = el('feed');
    this.death = el('death');
    this.deathTime = el('death-time');
    this.roomName = el('room-name');
    this.roomLink = /** @type {HTMLAnchorElement} */ (el('room-link'));
    this.toast = el('toast');
    /** @type {ReturnType<typeof setTimeout>|null} */
    this.toastTimer = null;
    /** @type {ReturnType<typeof setInterval>|null} */
    this.countdown = null;
    this.statsVisible = getPref('arena.stats') !== 'off';
    this.stats.hidden = !this.statsVisible;
  }

  toggleStats() {
    this.statsVisible = !this.statsVisible;
    this.stats.hidden = !this.statsVisible;
    setPref('arena.stats', this.statsVisible ? 'on' : 'off');
  }

  /**
   * Fades the corner panels (stats, scoreboard) the own player is beneath,
   * so that a player in a corner of the arena is never hidden by them.
   * @param {Box|null} own where the own player is drawn, null if nowhere
   */
  fadeBeneath(own) {
    for (const panel of [this.stats, this.scoreboard]) {
      const beneath = own !== null && !panel.hidden && overlaps(own, panel.getBoundingClientRect());
      if (beneath !== panel.classList.contains('beneath')) {
        panel.classList.toggle('beneath', beneath);
        panel.style.opacity = beneath ? String(BENEATH_OPACITY) : '';
      }
    }
  }

  /** @param {[string, string][]} lines */
  updateStats(lines) {
    if (!this.statsVisible) return;
    const width = Math.max(...lines.map(([k]) => k.length));
    this.stats.textContent = lines.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
  }

  /**
   * The room in the footer. A private room gets a link to it, to share: the
   * link holds the room and nothing else (no name, no token).
   * @param {string} room @param {boolean} isPrivate
   */
  showRoom(room, isPrivate) {
    this.roomName.textContent = room;
    this.roomLink.hidden = !isPrivate;
    if (isPrivate) {
      const url = new URL(location.pathname, location.origin);
      url.searchParams.set('room', room);
      this.roomLink.href = url.href;
      this.roomLink.title = 'Link to this room, to share';
      this.roomLink.textContent = `invite: ?room=${room}`;
    }
  }

  /** A short note at the top of the screen. @param {string} text @param {number} ms */
  flash(text, ms = 2500) {
    if (this.toastTimer) clearTimeout(this.toastTimer);
    this.toast.textContent = text;
    this.toast.hidden = false;
    this.toastTimer = setTimeout(() => {
      this.toast.hidden = true;
      this.toastTimer = null;
    }, ms);
  }

  /**
   * @param {ConnStatus} s
   * @param {{reconnect: () => void, rejoin: () => void}} actions
   */
  showStatus(s, actions) {
    if (this.countdown) clearInterval(this.countdown);
    this.countdown = null;
    if (s.state === 'playing') {
      this.banner.hidden = true;
      if (s.resumed) this.flash('Reconnected: your game resumed');
      return;
    }
    this.banner.hidden = false;
    this.banner.dataset.state = s.state;
    if (s.state === 'connecting') {
      this.bannerTitle.textContent = s.resuming ? 'Reconnecting…' : 'Connecting…';
      this.bannerText.textContent =
        s.note || (s.resuming ? 'Resuming your game' : `Joining the arena at ${location.host}`);
      this.bannerButton.hidden = true;
      return;
    }
    this.bannerTitle.textContent = s.fatal ? 'Disconnected' : s.resuming ? 'Reconnecting…' : 'Connection lost';
    this.bannerButton.hidden = false;
    if (s.fatal) {
      this.bannerText.textContent = `${s.message}. ${s.hint}`;
      if (s.button === 'rejoin') {
        this.bannerButton.textContent = 'Play again';
        this.bannerButton.onclick = actions.rejoin;
      } else {
        this.bannerButton.textContent = 'Reload';
        this.bannerButton.onclick = () => location.reload();
      }
      return;
    }
    this.bannerButton.textContent = 'Reconnect now';
    this.bannerButton.onclick = actions.reconnect;
    const retryAt = s.retryAt;
    const tick = () => {
      const left = retryAt === null ? 0 : Math.max(0, Math.ceil((retryAt - performance.now()) / 1000));
      this.bannerText.textContent = `${s.message}. Retrying in ${left} s…`;
    };
    tick();
    this.countdown = setInterval(tick, 250);
  }

  /**
   * @param {PlayerInfo[]} players
   * @param {number} ownId
   */
  updateScoreboard(players, ownId) {
    const sorted = [...players].sort((a, b) => b.score - a.score || a.deaths - b.deaths || a.id - b.id);
    this.scoreCount.textContent = `${players.length} online`;
    const rows = sorted.slice(0, 12);
    const own = sorted.findIndex((p) => p.id === ownId);
    if (own >= 12) rows.push(sorted[own]);
    this.scoreRows.replaceChildren(
      ...rows.map((p) => {
        const tr = document.createElement('tr');
        if (p.id === ownId) tr.className = 'own';
        const rank = sorted.indexOf(p) + 1;
        for (const text of [`${rank}`, p.name || `player-${p.id}`, `${p.score}`, `${p.deaths}`]) {
          const td = document.createElement('td');
          td.textContent = text;
          tr.append(td);
        }
        return tr;
      }),
    );
  }

  /**
   * Announces kills and deaths by comparing two scoreboards.
   * @param {PlayerInfo[]} before @param {PlayerInfo[]} after @param {number} ownId
   */
  killFeed(before, after, ownId) {
    if (before.length === 0) return;
    const old = new Map(before.map((p) => [p.id, p]));
    const killers = [];
    const victims = [];
    for (const p of after) {
      const o = old.get(p.id);
      if (!o) continue;
      if (p.score > o.score) killers.push(p);
      if (p.deaths > o.deaths) victims.push(p);
    }
    const name = (/** @type {PlayerInfo} */ p) => (p.id === ownId ? 'you' : p.name || `player-${p.id}`);
    const lines = [];
    if (killers.length === 1 && victims.length === 1) {
      lines.push(`${name(killers[0])} ✦ ${name(victims[0])}`);
    } else {
      for (const k of killers) lines.push(`${name(k)} scored a kill`);
      for (const v of victims) lines.push(`${name(v)} ${v.id === ownId ? 'were' : 'was'} eliminated`);
    }
    for (const text of lines) {
      const div = document.createElement('div');
      div.textContent = text;
      this.feed.prepend(div);
      setTimeout(() => div.remove(), 5000);
    }
    while (this.feed.children.length > 5) this.feed.lastElementChild?.remove();
  }

  /** @param {number|null} msLeft time to respawn, or null when alive */
  showDeath(msLeft) {
    this.death.hidden = msLeft === null;
    if (msLeft !== null) this.deathTime.textContent = msLeft > 0 ? `Respawning in ${(msLeft / 1000).toFixed(1)} s` : 'Respawning…';
  }
}
