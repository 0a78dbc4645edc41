// The decode budget (PROTOCOL.md section 1): both decoders charge every
// decoded value its in-memory width, not its wire size, and refuse a
// message whose charges exceed the limit (1024 bytes for client messages,
// 16 MiB for server messages). The boundaries below are the ones the Rust
// decoder enforces (shared/tests/codec_props.rs), so the browser refuses
// exactly the messages the bots and the server refuse.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  CodecError,
  MAX_CLIENT_MESSAGE,
  MAX_SERVER_MESSAGE,
  decodeClient,
  decodeServer,
  encodeClient,
  encodeServer,
} from '../../web/js/codec.js';
import { emptySnapshot } from './serde-shape.mjs';
import { PROTOCOL_VERSION } from '../../web/js/protocol.js';

/** Asserts that `f` throws a CodecError whose message matches `re`. */
function refused(/** @type {() => unknown} */ f, /** @type {RegExp} */ re, /** @type {string} */ what) {
  assert.throws(f, (e) => e instanceof CodecError && re.test(e.message), what);
}

/** A hello with a name of `len` ASCII bytes. */
function hello(/** @type {number} */ len, /** @type {object} */ fields = {}) {
  return {
    type: 'Hello',
    protocol: PROTOCOL_VERSION,
    name: 'x'.repeat(len),
    room: null,
    auth: null,
    resume: null,
    ...fields,
  };
}

test('a hello name fits the budget up to the limits PROTOCOL.md verifies, not one byte more', () => {
  const session = new Uint8Array(16).fill(7);
  // PROTOCOL.md section 1's table of verified limits.
  for (const [what, fields, longest] of /** @type {const} */ ([
    ['matchmaking, no tokens', {}, 1002],
    ['matchmaking, session token', { resume: session }, 986],
    ['Named("duel-7"), no tokens', { room: 'duel-7' }, 988],
  ])) {
    const fits = encodeClient(hello(longest, fields));
    assert.ok(fits.length <= MAX_CLIENT_MESSAGE, what);
    assert.equal(/** @type {{name: string}} */ (decodeClient(fits)).name.length, longest, what);
    // One more byte: still under 1024 on the wire, but over the budget.
    const over = encodeClient(hello(longest + 1, fields));
    assert.ok(over.length < MAX_CLIENT_MESSAGE, `${what}: ${over.length} bytes`);
    refused(() => decodeClient(over), /^message exceeds 1024 bytes$/, what);
  }
});

test('removed ids cost four bytes each: (16 MiB - 62) / 4 of them fit, as in Rust', () => {
  // 4 variant + 16 header + five length prefixes of 8 + the empty entity
  // section's 2 bytes: the same sum as the Rust test
  // `snapshot_removed_ids_are_charged_four_bytes_each`.
  const maxRemoved = Math.floor((MAX_SERVER_MESSAGE - (4 + 16 + 5 * 8 + 2)) / 4);
  assert.equal(maxRemoved, 4_194_288);
  const message = (/** @type {number} */ n) =>
    encodeServer({ type: 'Snapshot', snapshot: emptySnapshot({ removed: new Array(n).fill(0) }) });
  const fits = message(maxRemoved);
  // One byte per zero gap on the wire: about 4 MiB, far under the limit.
  assert.ok(fits.length < MAX_SERVER_MESSAGE / 3);
  const decoded = /** @type {{snapshot: {removed: number[]}}} */ (decodeServer(fits));
  assert.equal(decoded.snapshot.removed.length, maxRemoved);
  refused(() => decodeServer(message(maxRemoved + 1)), /^message exceeds 16777216 bytes$/, 'one more id');
});
