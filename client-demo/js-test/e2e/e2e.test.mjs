// End to end in a real browser: the real server binary, two headless
// Chromium pages playing together.
//
// Page A holds a movement key for about a second; page B must draw A's
// player moving; A's stats overlay must show a snapshot rate near the tick
// rate. A player in a corner of the arena is drawn whole, and the panel or
// minimap over it fades. Rooms keep players apart; a connection that dies
// without a close, and a reload, take the same player back. Screenshots land in
// client-demo/test-artifacts/.
//
// Needs /usr/bin/chromium (Debian's `chromium` package) and playwright-core:
// `npm run setup` (or `npm test`, which runs it first) installs both.

import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

import { chromium } from 'playwright-core';

import { decodeClient } from '../../web/js/codec.js';
import { PROTOCOL_VERSION } from '../../web/js/protocol.js';
import { overlaps } from '../../web/js/render.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const TICK_HZ = 30;
/** The shared server's operator token (`--operator-token`): its status
 * endpoints answer only to it, and it alone sees private rooms by name. */
const OPERATOR_TOKEN = 'e2e+operator/token=='; // as a base64 secret may be
const AS_OPERATOR = { headers: { Authorization: `Bearer ${OPERATOR_TOKEN}` } };
const ARENA_WIDTH = 2400 * 4;
const ARENA_HEIGHT = 1600 * 4;
// Where `cargo build` puts the binary, honouring CARGO_TARGET_DIR like cargo does.
const TARGET_DIR = process.env.CARGO_TARGET_DIR || `${ROOT}target`;
const SERVER_BIN = `${TARGET_DIR}/debug/server`;

/** @type {import('node:child_process').ChildProcess|null} */
let server = null;
/** @type {import('playwright-core').Browser|null} */
let browser = null;
let baseUrl = '';
/** Ticks the server reported skipping (its tick loop overran): inputs that
 * arrive during such a stall overflow its input buffer and are dropped. */
let missedTicks = 0;

/**
 * Spawns a server binary (on a free port unless given one).
 * @param {string} addr
 * @param {{args?: string[], env?: Record<string, string>}} [extra]
 * @returns {{child: import('node:child_process').ChildProcess, url: Promise<string>}}
 */
function spawnServer(addr, extra = {}) {
  // An operator token exported in the shell is not these servers': each
  // test says whether its server has one.
  const { ARENA_OPERATOR_TOKEN: _, ...inherited } = process.env;
  const child = spawn(SERVER_BIN, ['--addr', addr, '--tick-hz', String(TICK_HZ), '--npcs', '10', ...(extra.args ?? [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...inherited, RUST_LOG: process.env.RUST_LOG ?? 'warn', ...extra.env },
  });
  const url = new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`server did not report its address in 30 s; stdout: ${out}`)), 30000);
    child.stdout?.on('data', (chunk) => {
      out += chunk;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.stderr?.on('data', (chunk) => {
      process.stderr.write(chunk);
      for (const m of String(chunk).matchAll(/overran.*missed=(\d+)/g)) missedTicks += Number(m[1]);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`server exited early (code ${code}, signal ${signal}); stdout: ${out}`));
    });
  });
  return { child, url };
}

/**
 * Starts the server (on a free port unless given one) and resolves with its URL.
 * @param {string} [addr]
 * @returns {Promise<string>}
 */
function startServer(addr = '127.0.0.1:0') {
  const { child, url } = spawnServer(addr, { env: { ARENA_OPERATOR_TOKEN: OPERATOR_TOKEN } });
  server = child;
  return url;
}

// If this process dies without running the after hook (a hard kill of the
// test runner), do not leave the server running.
/** Servers started by single tests, stopped by them (or at exit). */
const extraServers = new Set();
process.on('exit', () => {
  for (const child of [server, ...extraServers]) if (child && child.exitCode === null) child.kill('SIGKILL');
});

async function stopServer() {
  const child = server;
  server = null;
  await stopChild(child);
}

/** @param {import('node:child_process').ChildProcess|null} child */
async function stopChild(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const killed = await Promise.race([exited.then(() => true), sleep(10000).then(() => false)]);
  if (!killed) {
    child.kill('SIGKILL');
    await exited;
  }
}

before(async () => {
  assert.ok(
    existsSync(CHROMIUM),
    `${CHROMIUM} not found: install Debian's chromium package (npm run setup does it)`,
  );
  // Debug build: fast enough to play, and shares the cache with `cargo test`.
  execFileSync('cargo', ['build', '-p', 'server'], { cwd: ROOT, stdio: ['ignore', 2, 2] });
  baseUrl = await startServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--headless',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-quic',
      '--no-first-run',
      // Both pages must run at full rate although only one can have focus.
      '--disable-background-timer-throttling',
      '--disable-renderer-backgrounding',
      '--disable-backgrounding-occluded-windows',
    ],
  });
}, { timeout: 15 * 60 * 1000 });

after(async () => {
  try {
    await browser?.close();
  } finally {
    browser = null;
    await stopServer();
  }
});

/** @type {import('playwright-core').BrowserContext[]} */
const openContexts = [];

// Each test closes its pages: software-rendered pages left running would eat
// the CPU the next test's server and pages need.
afterEach(async () => {
  await Promise.all(openContexts.splice(0).map((c) => c.close()));
});

/**
 * Opens the game in a fresh browser context (its own storage and cookies).
 * @param {string} name
 * @param {{join?: boolean, rewriteFirstMessage?: (bytes: Buffer) => Buffer, oneWayDelayMs?: number,
 *   room?: string, proxy?: boolean, blockStorage?: boolean}} [opts]
 *   `rewriteFirstMessage` tampers with what the page sends first (its hello)
 *   on the way to the real server, to provoke the server's refusals;
 *   `oneWayDelayMs` delays every message in both directions; `room` and
 *   `token` add `?room=` and `?token=`; `proxy` routes the socket through the
 *   test even without the others, so `cut()` can black-hole it; `base` is
 *   another server's URL; `blockStorage` makes the page's every use of
 *   localStorage and sessionStorage throw, as a browser blocking site data
 *   does.
 */
async function openPlayer(name, opts = {}) {
  assert.ok(browser);
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  openContexts.push(context);
  if (opts.blockStorage) {
    await context.addInitScript(() => {
      for (const key of ['localStorage', 'sessionStorage']) {
        Object.defineProperty(window, key, {
          get() {
            throw new DOMException(`${key} is blocked`, 'SecurityError');
          },
        });
      }
    });
  }
  const page = await context.newPage();
  /** @type {string[]} */
  const errors = [];
  page.on('pageerror', (e) => errors.push(`${name}: ${e.message}`));
  /** @type {string[]} */
  const consoleText = [];
  page.on('console', (m) => {
    consoleText.push(m.text());
    if (m.type() === 'error') errors.push(`${name}: console: ${m.text()}`);
  });
  const rewrite = opts.rewriteFirstMessage ?? ((/** @type {Buffer} */ b) => b);
  const delay = opts.oneWayDelayMs ?? 0;
  /** Per routed socket: whether the test black-holed it, and what the page sent on it (decoded). */
  const links = /** @type {{cut: boolean, fromPage: {at: number, msg: any}[]}[]} */ ([]);
  if (opts.rewriteFirstMessage || delay > 0 || opts.proxy) {
    await page.routeWebSocket(/\/ws$/, (ws) => {
      const server = ws.connectToServer();
      const link = { cut: false, fromPage: /** @type {{at: number, msg: any}[]} */ ([]) };
      links.push(link);
      let first = true;
      // Equal delays keep the order: timers of equal timeout fire in order.
      const later = (/** @type {() => void} */ f) => (delay > 0 ? setTimeout(f, delay) : f());
      ws.onMessage((m) => {
        if (typeof m !== 'string') {
          try {
            link.fromPage.push({ at: Date.now(), msg: decodeClient(new Uint8Array(m)) });
          } catch {
            // A tampered or broken message: the server judges it.
          }
        }
        if (link.cut) return;
        const out = first && typeof m !== 'string' ? rewrite(m) : m;
        first = false;
        later(() => server.send(out));
      });
      server.onMessage((m) => {
        if (!link.cut) later(() => ws.send(m));
      });
      // A cut link passes no close either way: both ends only go silent.
      // (1005 and 1006 mean "no code" and cannot be sent.)
      const closeWith = (/** @type {number|undefined} */ code, /** @type {string|undefined} */ reason) =>
        code && code !== 1005 && code !== 1006 ? { code, reason } : {};
      ws.onClose((code, reason) => {
        if (!link.cut) server.close(closeWith(code, reason));
      });
      server.onClose((code, reason) => {
        if (!link.cut) ws.close(closeWith(code, reason));
      });
    });
  }
  const query = new URLSearchParams({ name, stats: '1' });
  if (opts.room !== undefined) query.set('room', opts.room);
  if (opts.token !== undefined) query.set('token', opts.token);
  await page.goto(`${opts.base ?? baseUrl}/?${query}`);
  if (opts.join !== false) {
    await page.waitForFunction(() => {
      const v = window.__arena?.view();
      return v && v.connected && v.own !== null;
    }, null, { timeout: 20000 });
  }
  /** Black-holes the page's current connection: nothing passes, nothing closes. */
  const cut = () => {
    assert.ok(links.length > 0, 'cut() needs opts.proxy');
    for (const l of links) l.cut = true;
  };
  /** Console output of the page, to check that no secret reaches it. */
  return { page, errors, cut, links, console: consoleText };
}

/**
 * Waits for the connection banner and returns its text.
 * @param {import('playwright-core').Page} page @param {RegExp} pattern
 */
async function bannerText(page, pattern) {
  await page.waitForFunction(
    (src) => new RegExp(src).test(document.getElementById('banner')?.textContent ?? ''),
    pattern.source,
    { timeout: 10000 },
  );
  return (await page.locator('#banner').textContent()) ?? '';
}

/** Inputs the server dropped so far, from its status endpoint. */
async function inputsDropped() {
  const res = await fetch(`${baseUrl}/status.json`, AS_OPERATOR);
  assert.equal(res.status, 200, 'GET /status.json');
  const n = (await res.json())?.totals?.inputs_dropped;
  assert.equal(typeof n, 'number', '/status.json has totals.inputs_dropped');
  return n;
}

/** @param {import('playwright-core').Page} page */
const view = (page) => page.evaluate(() => window.__arena.view());

test('two browsers see each other move, at the tick rate', { timeout: 120000 }, async () => {
  const a = await openPlayer('alice');
  const b = await openPlayer('bob');
  const idA = (await view(a.page)).playerId;
  const idB = (await view(b.page)).playerId;
  assert.notEqual(idA, idB);

  // B draws A (interpolated, by A's id) and knows A's name from the scoreboard.
  await b.page.waitForFunction(
    (id) => window.__arena.view().entities.some((e) => e.id === id && e.kind === 'player' && e.name === 'alice'),
    idA,
    { timeout: 10000 },
  );
  const entityOf = async (/** @type {typeof a} */ p, /** @type {number} */ id) =>
    (await view(p.page)).entities.find((e) => e.id === id);

  const startA = (await view(a.page)).own;
  const startInB = await entityOf(b, idA);
  assert.ok(startA && startInB);
  // Walk towards the side with more room, so the wall cannot stop A early.
  const right = startA.x < ARENA_WIDTH / 2;
  const key = right ? 'KeyD' : 'KeyA';
  const sign = right ? 1 : -1;

  await a.page.keyboard.down(key);
  await sleep(1000);
  await a.page.keyboard.up(key);

  // Prediction: A's own player moved at once, about 240 units/s (960 quanta/s).
  const movedA = ((await view(a.page)).own.x - startA.x) * sign;
  assert.ok(movedA > 600, `A's predicted player moved ${movedA} quanta`);

  // Interpolation: B sees A arrive about where A predicted, a little later.
  let movedInB = 0;
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const e = await entityOf(b, idA);
    movedInB = e ? (e.x - startInB.x) * sign : 0;
    if (e && Math.abs(e.x - (await view(a.page)).own.x) < 8 && movedInB > 600) break;
    await sleep(100);
  }
  assert.ok(movedInB > 600, `A moved ${movedInB} quanta in B's view`);
  const finalA = (await view(a.page)).own;
  const finalInB = await entityOf(b, idA);
  assert.ok(finalInB && Math.abs(finalInB.x - finalA.x) < 8, `B sees A at ${finalInB?.x}, A is at ${finalA.x}`);

  // And A sees B, the other way round.
  assert.ok((await view(a.page)).entities.some((e) => e.id === idB && e.name === 'bob'));

  // The stats overlay, as a player reads it.
  const statsText = await a.page.locator('#stats').textContent();
  const rate = Number(/snapshots\/s\s+([\d.]+)/.exec(statsText ?? '')?.[1]);
  assert.ok(
    Math.abs(rate - TICK_HZ) <= TICK_HZ * 0.2,
    `snapshots/s ${rate} not within 20% of ${TICK_HZ}:\n${statsText}`,
  );
  assert.match(statsText ?? '', /ping\s+\d+ ms/);
  const statsA = (await view(a.page)).stats;
  assert.equal(statsA.desyncs, 0, 'no checksum mismatches');

  // Some action for the screenshot: A aims at B's side and fires a few shots.
  const box = { x: 640 + (right ? -260 : 260), y: 300 };
  await a.page.mouse.move(box.x, box.y);
  for (let i = 0; i < 3; i++) {
    await a.page.mouse.down();
    await sleep(120);
    await a.page.mouse.up();
    await sleep(180);
  }
  await a.page.keyboard.down(right ? 'KeyA' : 'KeyD');
  await a.page.keyboard.down('KeyS');
  await sleep(150);
  mkdirSync(ARTIFACTS, { recursive: true });
  await a.page.screenshot({ path: `${ARTIFACTS}e2e.png` });
  await a.page.keyboard.up('KeyS');
  await a.page.keyboard.up(right ? 'KeyA' : 'KeyD');
  await b.page.screenshot({ path: `${ARTIFACTS}e2e-b.png` });

  assert.deepEqual([...a.errors, ...b.errors], [], 'no page errors');
});

test('a player in a corner of the arena is never hidden: the panel or minimap over it fades', { timeout: 120000 }, async () => {
  const p = await openPlayer('cornered');
  // The player stops 16 units (64 quanta) from a wall.
  const near = 200;
  /** Holds `keys` until the own player is `there`, then waits out the fade. */
  const walk = async (/** @type {string[]} */ keys, /** @type {(o: {x: number, y: number}) => boolean} */ there) => {
    for (const k of keys) await p.page.keyboard.down(k);
    let own = (await view(p.page)).own;
    const deadline = Date.now() + 30000;
    while (!(own && there(own)) && Date.now() < deadline) {
      await sleep(200);
      own = (await view(p.page)).own;
    }
    for (const k of keys) await p.page.keyboard.up(k);
    assert.ok(own && there(own), `the player did not reach the corner: at ${own?.x}, ${own?.y}`);
    await sleep(400);
    const v = await view(p.page);
    // The camera leaves room beyond the walls: nothing of the player is cut off.
    const o = v.ownBox;
    assert.ok(
      o.left >= 0 && o.top >= 0 && o.right <= v.camera.width && o.bottom <= v.camera.height,
      `the player is drawn partly off screen: ${JSON.stringify(o)}`,
    );
    return v;
  };
  /** Whether the own player, as last drawn, lies under the element `id`. */
  const under = async (/** @type {any} */ v, /** @type {string} */ id) => {
    const r = await p.page.locator(`#${id}`).evaluate((e) => e.getBoundingClientRect().toJSON());
    return overlaps(v.ownBox, r);
  };
  const opacity = (/** @type {string} */ id) => p.page.locator(`#${id}`).evaluate((e) => getComputedStyle(e).opacity);

  // Top left: the stats overlay.
  let v = await walk(['KeyA', 'KeyW'], (o) => o.x < near && o.y < near);
  assert.ok(await under(v, 'stats'), `the corner player is drawn at ${JSON.stringify(v.ownBox)}, not under the stats`);
  assert.deepEqual(v.faded, { stats: true, scoreboard: false, minimap: false });
  assert.equal(await opacity('stats'), '0.25');
  assert.equal(await opacity('scoreboard'), '1');
  mkdirSync(ARTIFACTS, { recursive: true });
  await p.page.screenshot({ path: `${ARTIFACTS}corner-top-left.png` });

  // Top right: the scoreboard; the stats overlay is opaque again.
  v = await walk(['KeyD'], (o) => o.x > ARENA_WIDTH - near);
  assert.ok(await under(v, 'scoreboard'));
  assert.deepEqual(v.faded, { stats: false, scoreboard: true, minimap: false });
  assert.equal(await opacity('stats'), '1');
  assert.equal(await opacity('scoreboard'), '0.25');

  // Bottom right: the minimap, drawn on the canvas.
  v = await walk(['KeyS'], (o) => o.y > ARENA_HEIGHT - near);
  assert.ok(overlaps(v.ownBox, v.minimap), 'the player is drawn where the minimap is');
  assert.deepEqual(v.faded, { stats: false, scoreboard: false, minimap: true });
  await p.page.screenshot({ path: `${ARTIFACTS}corner-bottom-right.png` });

  assert.deepEqual(p.errors, [], 'no page errors');
});

test('a playing page sends one message per tick: each input acknowledges a snapshot it holds', { timeout: 60000 }, async (t) => {
  const room = freshRoom('acks');
  const p = await openPlayer('kai', { room, proxy: true });
  // Playing: a round trip measured and a snapshot held (a pong can come
  // before the first snapshot on a loaded machine, and inputs sent until
  // then still acknowledge the welcome's tick).
  await p.page.waitForFunction(() => {
    const v = window.__arena.view();
    return v.stats.pingMs !== null && v.tick !== null;
  }, null, { timeout: 10000 });
  const link = p.links[0];
  // The welcome's ping and a snapshot can both be back before the page's
  // first tick step (a step after the welcome), so wait for that input.
  const sentInput = () => link.fromPage.some((m) => m.msg.type === 'Input');
  for (let waited = 0; !sentInput() && waited < 5000; waited += 20) await sleep(20);
  assert.ok(sentInput(), 'the page sent inputs');
  const before = await view(p.page);
  // While nothing is held an ack names the welcome's tick, which is older
  // than every snapshot; from now on every ack names a held snapshot.
  assert.equal(typeof before.welcomeTick, 'number');
  const from = link.fromPage.length;
  const start = before.own;
  const key = start.x < ARENA_WIDTH / 2 ? 'KeyD' : 'KeyA';
  await p.page.keyboard.down(key);
  await sleep(1500);
  await p.page.keyboard.up(key);
  await sleep(500);
  // What the page sent, then what it holds: no ack can name a newer tick.
  const window_ = link.fromPage.slice(from).map((m) => m.msg);
  const after = await view(p.page);
  const inputs = window_.filter((m) => m.type === 'Input');
  const acks = window_.filter((m) => m.type === 'Ack');
  const ticks = after.tick - before.tick;
  t.diagnostic(`${ticks} ticks: ${inputs.length} inputs, ${acks.length} standalone acks, ${after.acksAloneStalled - before.acksAloneStalled} after a stalled loop, ${after.inputsPaced - before.inputsPaced} paced`);
  assert.ok(inputs.length >= ticks * 0.8, `${inputs.length} inputs in ${ticks} ticks`);
  // Every input carries an ack: increasing, and a tick the page held.
  for (let i = 0; i < inputs.length; i++) {
    assert.ok(inputs[i].ack > before.welcomeTick, `input ${inputs[i].seq} acknowledges ${inputs[i].ack}, welcome tick ${before.welcomeTick}`);
    if (i > 0) assert.ok(inputs[i].ack >= inputs[i - 1].ack, `acks go back at input ${inputs[i].seq}`);
  }
  // About the newest (one tick behind, plus what arrived since the slice).
  assert.ok(inputs.at(-1).ack <= after.tick && inputs.at(-1).ack >= after.tick - 10, `last ack ${inputs.at(-1).ack}, newest held ${after.tick}`);
  // No Ack of its own while inputs flow: what the page counted is what the
  // wire carried, and each one is explained by a tick without input or a
  // loop that did not run (a loaded machine).
  assert.equal(acks.length, after.acksAlone - before.acksAlone, 'standalone Acks counted by the page');
  const skippedTicks = after.inputsPaced - before.inputsPaced + (after.inputsStalled - before.inputsStalled);
  const stalled = after.acksAloneStalled - before.acksAloneStalled;
  assert.ok(acks.length <= skippedTicks + stalled, `${acks.length} Acks, ${skippedTicks} ticks without input, ${stalled} stalls`);
  assert.ok(acks.length <= Math.max(3, inputs.length / 10), `${acks.length} standalone Acks beside ${inputs.length} inputs`);
  // Deltas against those acks apply: no missing baseline, no desync.
  assert.equal(after.stats.desyncs, 0);
  assert.equal(after.stats.unusableSnapshots, 0);
  assert.deepEqual(p.errors, []);
});

test('a lost server shows why and the page reconnects when it is back', { timeout: 90000 }, async () => {
  const p = await openPlayer('carol');
  const before = (await view(p.page)).playerId;
  await stopServer();
  // A graceful shutdown sends ServerShutdown; its text must reach the player
  // and stay while the page retries.
  await p.page.waitForSelector('#banner:not([hidden])', { timeout: 10000 });
  await p.page.waitForFunction(
    () => /Retrying in/.test(document.getElementById('banner')?.textContent ?? ''),
    null,
    { timeout: 10000 },
  );
  const text = await p.page.locator('#banner').textContent();
  assert.match(text ?? '', /Disconnected by the server: server shutting down/);
  assert.match(text ?? '', /Retrying in \d+ s/);
  assert.equal(await p.page.locator('#banner-button').textContent(), 'Reconnect now');
  await p.page.screenshot({ path: `${ARTIFACTS}e2e-disconnected.png` });

  // Same address again: the page's own retries find it.
  baseUrl = await startServer(new URL(baseUrl).host);
  await p.page.waitForFunction(() => window.__arena.view().connected, null, { timeout: 30000 });
  await p.page.waitForSelector('#banner', { state: 'hidden', timeout: 5000 });
  assert.notEqual((await view(p.page)).status, 'closed');
  assert.ok(before !== null);
  // The browser itself logs each refused connection attempt; nothing else.
  assert.deepEqual(p.errors.filter((e) => !/WebSocket connection to .* failed/.test(e)), []);
});

test('a version mismatch and a kick show the server\'s reason and offer a reload', { timeout: 60000 }, async () => {
  // Hello is [variant 0, protocol varint, name...]: claim protocol 99.
  const old = await openPlayer('erin', {
    join: false,
    rewriteFirstMessage: (b) => Buffer.from([b[0], 99, ...b.subarray(2)]),
  });
  const text = await bannerText(old.page, /version mismatch/);
  assert.match(
    text,
    new RegExp(`Disconnected by the server: protocol version mismatch: server speaks ${PROTOCOL_VERSION}, client sent 99`),
  );
  assert.doesNotMatch(text, /Retrying/, 'retrying cannot fix a version mismatch');
  assert.equal(await old.page.locator('#banner-button').textContent(), 'Reload');
  await old.page.screenshot({ path: `${ARTIFACTS}e2e-version-mismatch.png` });

  // A hello the server cannot parse gets the player kicked with a reason
  // (the right version, then a name length with a reserved varint marker).
  const broken = await openPlayer('frank', {
    join: false,
    rewriteFirstMessage: () => Buffer.from([0, PROTOCOL_VERSION, 0xff]),
  });
  const kick = await bannerText(broken.page, /Disconnected/);
  assert.match(kick, /Disconnected by the server: malformed message/);
  assert.equal(await broken.page.locator('#banner-button').textContent(), 'Reload');
});

test('at 100 ms round trip the own player moves at once and is never corrected', { timeout: 60000 }, async (t) => {
  const p = await openPlayer('gina', { oneWayDelayMs: 50 });
  await p.page.waitForFunction(() => (window.__arena.view().stats.pingMs ?? 0) >= 100, null, { timeout: 10000 });
  const start = (await view(p.page)).own;
  const right = start.x < ARENA_WIDTH / 2;
  const sign = right ? 1 : -1;
  const key = right ? 'KeyD' : 'KeyA';
  const missedBefore = missedTicks;
  const droppedBefore = await inputsDropped();
  const correctionsBefore = (await view(p.page)).stats.corrections;
  await p.page.keyboard.down(key);
  // Two ticks later (67 ms), well before a round trip, the player has moved.
  await sleep(70);
  const early = (await view(p.page)).own;
  assert.ok((early.x - start.x) * sign >= 32, `moved ${(early.x - start.x) * sign} quanta after 70 ms`);
  await sleep(900);
  await p.page.keyboard.up(key);
  await sleep(600); // every input acknowledged
  const v = await view(p.page);
  assert.ok((v.own.x - start.x) * sign > 600, `moved ${(v.own.x - start.x) * sign} quanta`);
  const corrections = v.stats.corrections - correctionsBefore;
  const dropped = (await inputsDropped()) - droppedBefore;
  if (missedTicks === missedBefore && dropped === 0) {
    // The server applied every input: the replay must have matched exactly.
    assert.equal(corrections, 0, 'prediction matched the server at every ack');
  } else {
    // An overloaded machine: the server skipped ticks or its input buffer
    // overflowed, so it did not apply every input and correcting the client
    // is the right thing to do.
    t.diagnostic(`server skipped ${missedTicks - missedBefore} ticks, dropped ${dropped} inputs; ${corrections} corrections`);
  }
  // The delay is really there (no upper bound: a loaded machine adds more).
  assert.ok(v.stats.pingMs >= 100, `ping ${v.stats.pingMs}`);
  assert.deepEqual(p.errors, []);
});

/**
 * A blank page in a fresh browser context, for the operator's status page,
 * and the errors it raises.
 */
async function statusPage() {
  assert.ok(browser);
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  openContexts.push(context);
  const page = await context.newPage();
  /** @type {string[]} */
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  return { page, errors };
}

test('the operator status page shows players, tick times and a live chart', { timeout: 60000 }, async () => {
  const player = await openPlayer('watched');
  const { page, errors } = await statusPage();
  await page.goto(`${baseUrl}/status#token=${OPERATOR_TOKEN}`);
  // Rates need two polls, one second apart.
  await page.waitForFunction(() => window.__status?.rates != null, null, { timeout: 15000 });
  const shown = await page.evaluate(() => ({
    players: document.getElementById('players')?.textContent ?? '',
    tick: document.getElementById('tick')?.textContent ?? '',
    budget: document.getElementById('budget')?.textContent ?? '',
    snaps: document.getElementById('snaps')?.textContent ?? '',
    rooms: document.getElementById('rooms')?.textContent ?? '',
    snapsRate: window.__status?.rates?.snaps ?? 0,
    snapDetail: document.getElementById('snap-detail')?.textContent ?? '',
    age1Rate: window.__status?.rates?.age1 ?? -1,
    samples: window.__status?.data?.tick_us?.per_second?.length ?? 0,
    worstRoom: window.__status?.data?.worst_room ?? '',
    chartTitle: document.getElementById('chart-title')?.textContent ?? '',
    closes: [...document.querySelectorAll('#kicks tr')].map((tr) => tr.children[0]?.textContent ?? ''),
    roomRows: [...document.querySelectorAll('#rooms tr')].map((tr) => [...tr.children].map((td) => td.textContent ?? '')),
    phases: Object.fromEntries((window.__status?.data?.rooms ?? []).map((r) => [r.name, r.tick_phase])),
    // Any non-transparent pixel in the chart: the lines were drawn.
    chartDrawn: (() => {
      const c = /** @type {HTMLCanvasElement|null} */ (document.getElementById('chart'));
      const data = c?.getContext('2d')?.getImageData(0, 0, c.width, c.height).data ?? [];
      for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
      return false;
    })(),
  }));
  assert.match(shown.players, /^1 \/ \d+$/, `players card: ${shown.players}`);
  assert.match(shown.tick, /\d+(\.\d+)? (µs|ms) \/ \d+(\.\d+)? (µs|ms)/, `tick card: ${shown.tick}`);
  assert.match(shown.budget, /budget 33\.33 ms/);
  // The card shows the rate derived from two /status.json samples. (Whether
  // the server keeps the tick rate is the other tests' business; on a loaded
  // machine it may not during these first seconds.)
  const rate = Number(/(\d+)\/s/.exec(shown.snaps)?.[1]);
  assert.ok(rate > 0, `snapshots/s on the status page: ${shown.snaps}`);
  assert.equal(rate, Math.round(shown.snapsRate), 'the card shows the measured rate');
  // Under it, how old the baselines of those snapshots were.
  assert.match(shown.snapDetail, /^\d+\.\d% against the snapshot before · \d+\.\d% older than 3 snapshots · \d+ full/, `snapshots card: ${shown.snapDetail}`);
  assert.equal(shown.snapDetail.split('%')[0], Math.min(100, 100 * shown.age1Rate / shown.snapsRate).toFixed(1), 'the card shows the share at age 1');
  // The room the player was matched into is listed, with the phase of the
  // tick period it ticks in.
  const room = (await view(player.page)).room;
  assert.match(shown.rooms, new RegExp(room));
  const listed = shown.roomRows.find((cells) => cells[0] === room);
  assert.ok(listed, `a row for ${room}: ${JSON.stringify(shown.roomRows)}`);
  assert.equal(typeof shown.phases[room], 'number', '/status.json has the room\'s tick_phase');
  assert.equal(listed[2], String(shown.phases[room]), 'the row shows the room\'s phase');
  assert.ok(shown.samples >= 1, 'the chart has per-second samples');
  assert.ok(shown.chartDrawn, 'the tick chart was drawn');
  // The chart, like the headline's tick figures, is the worst room's (other
  // tests' rooms may still be open): named.
  assert.ok(shown.worstRoom !== '', 'a worst room while a player plays');
  assert.equal(shown.chartTitle, `Tick time, last minute, room ${shown.worstRoom}`);
  // Every close reason is listed; a leave the player asked for is not
  // shown as a kick.
  assert.ok(shown.closes.includes('left (the player asked)'), `close reasons: ${shown.closes}`);
  assert.ok(shown.closes.includes('too slow'), `close reasons: ${shown.closes}`);
  // Opened without the operator token, the page says how to give it.
  const anonymous = await statusPage();
  await anonymous.page.goto(`${baseUrl}/status`);
  await anonymous.page.waitForFunction(() => document.body.classList.contains('stale'), null, { timeout: 10000 });
  assert.match(
    (await anonymous.page.locator('#error').textContent()) ?? '',
    /wants its operator token: open \/status#token=TOKEN/,
  );
  // Given on the open page as told (no reload), it is used from the next poll.
  await anonymous.page.evaluate((token) => { location.hash = `token=${token}`; }, OPERATOR_TOKEN);
  await anonymous.page.waitForFunction(() => !document.body.classList.contains('stale'), null, { timeout: 10000 });
  assert.deepEqual(anonymous.errors, [], 'no page errors without the token');
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: `${ARTIFACTS}status.png`, fullPage: true });
  assert.deepEqual([...errors, ...player.errors], [], 'no page errors');
});

test('the status page survives a server restart and shows a hung server as unavailable', { timeout: 60000 }, async () => {
  const { page, errors } = await statusPage();
  // The real server's answers, passed on as they are, or made to look like
  // those of a process that just restarted (counters from zero), or never
  // answered (a hung server).
  let mode = 'pass';
  let requests = 0;
  await page.route('**/status.json', async (route) => {
    requests++;
    if (mode === 'hang') return;
    const response = await route.fetch();
    const body = await response.json();
    if (mode === 'restart') {
      body.uptime_s = 1;
      for (const k of ['bytes_out', 'bytes_in', 'snapshots_sent', 'inputs_applied', 'snapshots_age_1', 'snapshots_older_than_3']) body.totals[k] = 0;
      body.process.cpu_seconds = 0.01;
    }
    await route.fulfill({ response, json: body });
  });
  await page.goto(`${baseUrl}/status#token=${OPERATOR_TOKEN}`);
  await page.waitForFunction(() => window.__status?.rates != null, null, { timeout: 15000 });
  const cards = () =>
    page.evaluate(() => ['bw-out', 'bw-in', 'snaps', 'cpu', 'inputs'].map((id) => document.getElementById(id)?.textContent ?? ''));

  mode = 'restart';
  await page.waitForFunction(() => window.__status?.data?.uptime_s === 1, null, { timeout: 5000 });
  assert.equal(await page.evaluate(() => window.__status?.rates), null, 'no rates across a restart');
  for (const text of await cards()) assert.doesNotMatch(text, /-\d/, `a negative figure after the restart: ${text}`);
  mode = 'pass';
  await page.waitForFunction(() => (window.__status?.data?.uptime_s ?? 0) > 1, null, { timeout: 5000 });
  const after = await page.evaluate(() => window.__status?.rates);
  assert.ok(after && after.snaps >= 0 && after.out >= 0, `rates after the restart: ${JSON.stringify(after)}`);

  mode = 'hang';
  const hungAt = requests;
  await page.waitForFunction(() => document.body.classList.contains('stale'), null, { timeout: 8000 });
  const error = await page.evaluate(() => document.getElementById('error')?.textContent ?? '');
  assert.match(error, /status unavailable \(no answer in 3 s\)/);
  // One request at a time, each given up after 3 s: no pile-up.
  await sleep(2000);
  assert.ok(requests - hungAt <= 3, `${requests - hungAt} requests to a hung server in about 5 s`);
  mode = 'pass';
  await page.waitForFunction(() => !document.body.classList.contains('stale'), null, { timeout: 8000 });
  assert.deepEqual(errors, [], 'no page errors');
});

/** The server's rooms, from GET /rooms, by name. */
async function rooms() {
  const res = await fetch(`${baseUrl}/rooms`, AS_OPERATOR);
  assert.equal(res.status, 200, 'GET /rooms');
  /** @type {{id: string, public: boolean, players: number, capacity: number}[]} */
  const list = (await res.json()).rooms;
  return new Map(list.map((r) => [r.id, r]));
}

/** Names on a page's scoreboard, sorted. @param {import('playwright-core').Page} page */
const scoreboardNames = async (page) => (await view(page)).players.map((p) => p.name).sort();

/** A room name no other test (or earlier run against the same server) uses. @param {string} what */
const freshRoom = (what) => `${what}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e4)}`;

test('rooms keep players apart, and one room name brings them together', { timeout: 90000 }, async () => {
  const red = freshRoom('red');
  const blue = freshRoom('blue');
  const ann = await openPlayer('ann', { room: red });
  const ben = await openPlayer('ben', { room: blue });
  assert.equal((await view(ann.page)).room, red);
  assert.equal((await view(ben.page)).room, blue);

  // The footer names the room and offers a link to it, with nothing else in it.
  assert.equal(await ann.page.locator('#room-name').textContent(), red);
  const invite = new URL((await ann.page.locator('#room-link').getAttribute('href')) ?? '');
  assert.deepEqual([...invite.searchParams], [['room', red]]);
  assert.match((await ann.page.locator('#stats').textContent()) ?? '', new RegExp(`room\\s+${red}`));

  // Long enough for a scoreboard to show another player if it could.
  await sleep(1500);
  assert.deepEqual(await scoreboardNames(ann.page), ['ann']);
  assert.deepEqual(await scoreboardNames(ben.page), ['ben']);
  assert.ok(!(await view(ann.page)).entities.some((e) => e.kind === 'player'), 'ann draws no other player');

  // A third player with ann's room name joins ann, and only ann.
  const cid = await openPlayer('cid', { room: red });
  const draws = (/** @type {string} */ n) => window.__arena.view().entities.some((e) => e.kind === 'player' && e.name === n);
  await ann.page.waitForFunction(draws, 'cid', { timeout: 10000 });
  await cid.page.waitForFunction(draws, 'ann', { timeout: 10000 });
  assert.deepEqual(await scoreboardNames(ann.page), ['ann', 'cid']);
  assert.deepEqual(await scoreboardNames(ben.page), ['ben']);

  const listed = await rooms();
  assert.equal(listed.get(red)?.players, 2, `room ${red}: ${JSON.stringify(listed.get(red))}`);
  assert.equal(listed.get(red)?.public, false);
  assert.equal(listed.get(blue)?.players, 1);
  assert.deepEqual([...ann.errors, ...ben.errors, ...cid.errors], [], 'no page errors');
});

test('a connection that dies without a close resumes the same player', { timeout: 90000 }, async () => {
  const room = freshRoom('resume');
  const p = await openPlayer('hana', { room, proxy: true });
  // Let the stats settle so the pacer and prediction run as in play.
  await p.page.waitForFunction(() => window.__arena.view().stats.pingMs !== null, null, { timeout: 10000 });
  const before = await view(p.page);
  const right = before.own.x < ARENA_WIDTH / 2;
  const key = right ? 'KeyD' : 'KeyA';
  const sign = right ? 1 : -1;

  // Walk, and lose the link mid-stride: nothing passes either way, and
  // neither end sees a close. The page has inputs in flight.
  await p.page.keyboard.down(key);
  await sleep(300);
  p.cut();
  const cutAt = Date.now();
  await sleep(500);
  await p.page.keyboard.up(key);

  // The page notices the silence, says so, and comes back as the same player.
  await bannerText(p.page, /Reconnecting|Connection lost/).catch(async () => {
    throw new Error(`no reconnecting banner; view: ${JSON.stringify(await view(p.page))}`);
  });
  await p.page.waitForFunction(
    (id) => {
      const v = window.__arena.view();
      return v.connected && v.resumes === 1 && v.playerId === id && v.own !== null;
    },
    before.playerId,
    { timeout: 20000 },
  );
  const back = Date.now() - cutAt;
  const v = await view(p.page);
  // The inputs resent on the new link acknowledge the newest state held
  // (nothing arrived during the cut: the last ack the page sent), first
  // thing after the hello.
  const oldInputs = p.links[0].fromPage.filter((m) => m.msg.type === 'Input').map((m) => m.msg);
  const lastSeq = Math.max(...oldInputs.map((m) => m.seq));
  const lastAck = Math.max(...p.links[0].fromPage.map((m) => (m.msg.type === 'Input' ? m.msg.ack : m.msg.type === 'Ack' ? m.msg.tick : 0)));
  const onNew = p.links.at(-1)?.fromPage.map((m) => m.msg) ?? [];
  const resent = onNew.filter((m) => m.type === 'Input' && m.seq <= lastSeq);
  assert.ok(resent.length > 0, `inputs resent (old link up to seq ${lastSeq}); new link: ${JSON.stringify(onNew.slice(0, 4))}`);
  for (const r of resent) assert.equal(r.ack, lastAck, `resent input ${r.seq} acknowledges the newest held state`);
  assert.equal(onNew[0].type, 'Hello');
  assert.equal(v.resumed, true);
  assert.equal(v.room, room);
  assert.match((await p.page.locator('#toast').textContent()) ?? '', /resumed/);
  await p.page.waitForSelector('#banner', { state: 'hidden', timeout: 5000 });

  // The game goes on: new snapshots apply and verify, and the player moves.
  await p.page.waitForFunction((t) => window.__arena.view().tick > t + 30, v.tick, { timeout: 10000 });
  // NPCs shoot: a player shot dead mid-stride stands still until it
  // respawns, so walk while alive, and try again if it died on the way.
  let moved = 0;
  let end = await view(p.page);
  for (let attempt = 0; attempt < 4 && moved <= 400; attempt++) {
    await p.page.waitForFunction(() => (window.__arena.view().own?.hp ?? 0) > 0, null, { timeout: 10000 });
    const start = (await view(p.page)).own;
    await p.page.keyboard.down(right ? 'KeyA' : 'KeyD');
    await sleep(700);
    await p.page.keyboard.up(right ? 'KeyA' : 'KeyD');
    await sleep(400);
    end = await view(p.page);
    moved = start && end.own ? (start.x - end.own.x) * sign : 0;
  }
  assert.ok(moved > 400, `moved ${moved} quanta after the resume; view: ${JSON.stringify(end)}`);
  assert.equal(end.stats.desyncs, 0, 'no checksum mismatches');
  assert.equal(end.playerId, before.playerId);

  // One player on the server: the old connection was replaced, not doubled.
  const listed = await rooms();
  assert.equal(listed.get(room)?.players, 1, JSON.stringify(listed.get(room)));
  assert.deepEqual(await scoreboardNames(p.page), ['hana']);
  assert.deepEqual(p.errors, []);
  // The silence detection (5 s) plus a retry; bounded so that a regression to
  // waiting for the browser's own timeout shows.
  assert.ok(back < 12000, `back after ${back} ms`);
});

test('a reload within the grace period resumes the same player', { timeout: 60000 }, async (t) => {
  const room = freshRoom('reload');
  const p = await openPlayer('ivy', { room });
  const before = await view(p.page);
  const reloadAt = Date.now();
  await p.page.reload();
  await p.page.waitForFunction(() => {
    const v = window.__arena?.view();
    return v && v.connected && v.own !== null;
  }, null, { timeout: 20000 });
  const playing = Date.now() - reloadAt;
  const after = await view(p.page);
  t.diagnostic(`playing again ${playing} ms after the reload; ${after.stats.unusableSnapshots} unusable snapshots`);
  // The old page kept the state it acknowledged last, so the server's first
  // delta applies (without it, every delta for ~2 s would be unusable). One
  // may miss: the old page's last ack can be lost with its socket.
  assert.ok(after.stats.unusableSnapshots <= 2, `${after.stats.unusableSnapshots} unusable snapshots`);
  assert.equal(after.playerId, before.playerId);
  assert.equal(after.resumed, true);
  assert.equal(after.room, room);
  await p.page.waitForFunction((tick) => window.__arena.view().tick > tick + 15, after.tick, { timeout: 10000 });
  assert.equal((await view(p.page)).stats.desyncs, 0);
  assert.equal((await rooms()).get(room)?.players, 1);
  assert.deepEqual(p.errors, []);
});

test('a duplicated tab joins as a new player and leaves the original playing', { timeout: 60000 }, async () => {
  const room = freshRoom('dup');
  const a = await openPlayer('kim', { room });
  const before = await view(a.page);
  // "Duplicate tab": a page of the same browser that starts with a copy of
  // the original's sessionStorage, the session record included.
  const copied = await a.page.evaluate(() => Object.fromEntries(Object.entries(sessionStorage)));
  assert.ok(Object.keys(copied).includes('arena.session'), 'the playing page keeps its session record');
  const dup = await a.page.context().newPage();
  /** @type {string[]} */
  const errors = [];
  dup.on('pageerror', (e) => errors.push(e.message));
  await dup.addInitScript((entries) => {
    for (const [k, v] of Object.entries(entries)) sessionStorage.setItem(k, String(v));
  }, copied);
  await dup.goto(a.page.url());
  await dup.waitForFunction(() => {
    const v = window.__arena?.view();
    return v && v.connected && v.own !== null;
  }, null, { timeout: 20000 });
  const d = await view(dup);
  assert.notEqual(d.playerId, before.playerId, 'the copy took the original player');
  assert.equal(d.resumed, false);
  assert.equal(d.room, room);
  // The original was not closed: it plays on, as the same player, beside the copy.
  await a.page.waitForFunction((tick) => window.__arena.view().tick > tick + 30, before.tick, { timeout: 10000 });
  const after = await view(a.page);
  assert.ok(after.connected);
  assert.equal(after.playerId, before.playerId);
  assert.equal((await rooms()).get(room)?.players, 2);
  assert.deepEqual([...a.errors, ...errors], []);
});

test('leaving frees the seat at once, and Play again joins as a new player', { timeout: 60000 }, async () => {
  const room = freshRoom('leave');
  const p = await openPlayer('jo', { room });
  const before = await view(p.page);
  await p.page.click('#leave');
  const text = await bannerText(p.page, /You left the game/);
  assert.doesNotMatch(text, /Retrying/);
  assert.equal(await p.page.locator('#banner-button').textContent(), 'Play again');
  assert.equal(await p.page.evaluate(() => sessionStorage.getItem('arena.session')), null, 'the session is forgotten');
  // No grace period for a leave: the seat is free now.
  const deadline = Date.now() + 3000;
  let seat;
  while (Date.now() < deadline) {
    seat = (await rooms()).get(room);
    if (!seat || seat.players === 0) break;
    await sleep(100);
  }
  assert.ok(!seat || seat.players === 0, `room after the leave: ${JSON.stringify(seat)}`);
  // Nothing reconnects on its own.
  await sleep(1500);
  assert.equal((await view(p.page)).status, 'closed');

  await p.page.click('#banner-button');
  await p.page.waitForFunction(() => {
    const v = window.__arena.view();
    return v.connected && v.own !== null;
  }, null, { timeout: 10000 });
  const again = await view(p.page);
  assert.equal(again.resumed, false);
  assert.equal(again.room, room);
  assert.notEqual(before.playerId, null);
  assert.deepEqual(p.errors, []);
});

test('a browser that blocks site data plays all the same', { timeout: 60000 }, async () => {
  const p = await openPlayer('nostore', { blockStorage: true });
  assert.equal(await p.page.evaluate(() => {
    try {
      return localStorage.length;
    } catch (e) {
      return /** @type {Error} */ (e).name;
    }
  }), 'SecurityError', 'storage is blocked in this page');
  const v = await view(p.page);
  assert.ok(v.connected && v.own !== null);
  assert.deepEqual(p.errors, []);
});

test('a server that wants a token refuses pages without one and plays with one', { timeout: 90000 }, async () => {
  const secret = `e2e-secret-${Math.random().toString(36).slice(2)}`;
  const env = { ARENA_AUTH_SECRET: secret };
  const mint = (/** @type {string} */ user) =>
    execFileSync(SERVER_BIN, ['mint-token', '--user', user, '--ttl-secs', '600'], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
    }).trim();
  const { child, url } = spawnServer('127.0.0.1:0', { env });
  extraServers.add(child);
  try {
    const base = await url;
    const none = await openPlayer('kim', { base, join: false });
    const refused = await bannerText(none.page, /Disconnected/);
    assert.match(refused, /Disconnected by the server: authentication required/);
    assert.equal(await none.page.locator('#banner-button').textContent(), 'Reload');

    const token = mint('kim');
    const forged = `${token.slice(0, -1)}${token.endsWith('0') ? '1' : '0'}`;
    const bad = await openPlayer('kim', { base, join: false, token: forged });
    assert.match(await bannerText(bad.page, /Disconnected/), /authentication failed/);
    // Refusals are final: no retry loop against the server.
    await sleep(1500);
    assert.doesNotMatch((await bad.page.locator('#banner').textContent()) ?? '', /Retrying/);

    const ok = await openPlayer('kim', { base, token });
    assert.equal((await view(ok.page)).connected, true);
    // The token goes to the server and nowhere else on the page.
    for (const p of [bad, ok]) {
      assert.ok(!p.console.some((line) => line.includes(token) || line.includes(forged)), 'token in the console');
      assert.ok(!JSON.stringify(await view(p.page)).includes(secret));
      const stored = await p.page.evaluate(() => JSON.stringify({ ...sessionStorage, ...localStorage }));
      assert.ok(!stored.includes(token) && !stored.includes(forged), `token stored: ${stored}`);
    }
    assert.deepEqual(ok.errors, []);
  } finally {
    extraServers.delete(child);
    await stopChild(child);
  }
});

test('coming back after the grace period joins as a new player', { timeout: 60000 }, async () => {
  const { child, url } = spawnServer('127.0.0.1:0', { args: ['--resume-grace-secs', '1'] });
  extraServers.add(child);
  try {
    const base = await url;
    const room = freshRoom('late');
    const p = await openPlayer('lou', { base, room });
    const session = () => p.page.evaluate(() => JSON.parse(sessionStorage.getItem('arena.session') ?? 'null'));
    const first = await session();
    assert.ok(first?.token, 'a session is kept');
    // Away (the socket closes: the seat is parked), for longer than the grace.
    await p.page.goto('about:blank');
    await sleep(2500);
    await p.page.goto(`${base}/?name=lou&room=${room}`);
    // The page presents its token, hears SessionExpired, and joins afresh.
    await p.page.waitForFunction(() => {
      const v = window.__arena?.view();
      return v && v.connected && v.own !== null;
    }, null, { timeout: 15000 });
    const v = await view(p.page);
    assert.equal(v.resumed, false);
    assert.equal(v.room, room);
    const second = await session();
    assert.notEqual(second?.token, first.token, 'a new session');
    // The server did refuse a resume on the way (not a page that never tried).
    const metrics = await (await fetch(`${base}/metrics`)).text();
    const refused = Number(/arena_kicks_total\{reason="session_expired"\} (\d+)/.exec(metrics)?.[1]);
    assert.equal(refused, 1, metrics.split('\n').filter((l) => l.includes('session')).join('\n'));
    assert.deepEqual(p.errors, []);
  } finally {
    extraServers.delete(child);
    await stopChild(child);
  }
});
