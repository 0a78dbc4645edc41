// End to end in a real browser: the real server binary, two headless
// Chromium pages playing together.
//
// Page A holds a movement key for about a second; page B must draw A's
// player moving; A's stats overlay must show a snapshot rate near the tick
// rate. Rooms keep players apart; a connection that dies without a close, and
// a reload, take the same player back. Screenshots land in
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

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const TICK_HZ = 30;
const ARENA_WIDTH = 2400 * 4;
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
 * Starts the server (on a free port unless given one) and resolves with its URL.
 * @param {string} [addr]
 * @returns {Promise<string>}
 */
function startServer(addr = '127.0.0.1:0') {
  return new Promise((resolve, reject) => {
    const child = spawn(SERVER_BIN, ['--addr', addr, '--tick-hz', String(TICK_HZ), '--npcs', '10'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
    });
    server = child;
    let out = '';
    const timer = setTimeout(() => reject(new Error(`server did not report its address in 30 s; stdout: ${out}`)), 30000);
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.stderr.on('data', (chunk) => {
      process.stderr.write(chunk);
      for (const m of String(chunk).matchAll(/overran.*missed=(\d+)/g)) missedTicks += Number(m[1]);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`server exited early (code ${code}, signal ${signal}); stdout: ${out}`));
    });
  });
}

// If this process dies without running the after hook (a hard kill of the
// test runner), do not leave the server running.
process.on('exit', () => {
  if (server && server.exitCode === null) server.kill('SIGKILL');
});

async function stopServer() {
  const child = server;
  server = null;
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
 *   room?: string, proxy?: boolean}} [opts]
 *   `rewriteFirstMessage` tampers with what the page sends first (its hello)
 *   on the way to the real server, to provoke the server's refusals;
 *   `oneWayDelayMs` delays every message in both directions; `room` adds
 *   `?room=`; `proxy` routes the socket through the test even without the
 *   others, so `cut()` can black-hole it.
 */
async function openPlayer(name, opts = {}) {
  assert.ok(browser);
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  openContexts.push(context);
  const page = await context.newPage();
  /** @type {string[]} */
  const errors = [];
  page.on('pageerror', (e) => errors.push(`${name}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`${name}: console: ${m.text()}`);
  });
  const rewrite = opts.rewriteFirstMessage ?? ((/** @type {Buffer} */ b) => b);
  const delay = opts.oneWayDelayMs ?? 0;
  /** Per routed socket: whether the test black-holed it. */
  const links = /** @type {{cut: boolean}[]} */ ([]);
  if (opts.rewriteFirstMessage || delay > 0 || opts.proxy) {
    await page.routeWebSocket(/\/ws$/, (ws) => {
      const server = ws.connectToServer();
      const link = { cut: false };
      links.push(link);
      let first = true;
      // Equal delays keep the order: timers of equal timeout fire in order.
      const later = (/** @type {() => void} */ f) => (delay > 0 ? setTimeout(f, delay) : f());
      ws.onMessage((m) => {
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
  await page.goto(`${baseUrl}/?${query}`);
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
  return { page, errors, cut, links };
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
  const res = await fetch(`${baseUrl}/status.json`);
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
  assert.match(text, /Disconnected by the server: protocol version mismatch: server speaks 2, client sent 99/);
  assert.doesNotMatch(text, /Retrying/, 'retrying cannot fix a version mismatch');
  assert.equal(await old.page.locator('#banner-button').textContent(), 'Reload');
  await old.page.screenshot({ path: `${ARTIFACTS}e2e-version-mismatch.png` });

  // A hello the server cannot parse gets the player kicked with a reason
  // (the right version, then a name length with a reserved varint marker).
  const broken = await openPlayer('frank', {
    join: false,
    rewriteFirstMessage: () => Buffer.from([0, 2, 0xff]),
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

test('the operator status page shows players, tick times and a live chart', { timeout: 60000 }, async () => {
  const player = await openPlayer('watched');
  assert.ok(browser);
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  openContexts.push(context);
  const page = await context.newPage();
  /** @type {string[]} */
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${baseUrl}/status`);
  // Rates need two polls, one second apart.
  await page.waitForFunction(() => window.__status?.rates != null, null, { timeout: 15000 });
  const shown = await page.evaluate(() => ({
    players: document.getElementById('players')?.textContent ?? '',
    tick: document.getElementById('tick')?.textContent ?? '',
    budget: document.getElementById('budget')?.textContent ?? '',
    snaps: document.getElementById('snaps')?.textContent ?? '',
    rooms: document.getElementById('rooms')?.textContent ?? '',
    snapsRate: window.__status?.rates?.snaps ?? 0,
    samples: window.__status?.data?.rooms?.[0]?.tick_us?.per_second?.length ?? 0,
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
  assert.match(shown.rooms, /main/);
  assert.ok(shown.samples >= 1, 'the chart has per-second samples');
  assert.ok(shown.chartDrawn, 'the tick chart was drawn');
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: `${ARTIFACTS}status.png`, fullPage: true });
  assert.deepEqual([...errors, ...player.errors], [], 'no page errors');
});
