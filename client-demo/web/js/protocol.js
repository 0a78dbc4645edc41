// Protocol constants and the meaning of the server's disconnect reasons: a
// port of `shared/src/protocol.rs`. The golden vectors check every value here.

/** Must equal shared::protocol::PROTOCOL_VERSION; sent in the hello. */
export const PROTOCOL_VERSION = 1;

/** Entity kinds by wire index (shared::snapshot::EntityKind). */
export const Kind = Object.freeze({ Player: 0, Npc: 1, Projectile: 2 });
/** Names of the kinds, by index, as serde writes them. */
export const KIND_NAMES = ['Player', 'Npc', 'Projectile'];
export const KIND_COUNT = KIND_NAMES.length;

/**
 * What each disconnect reason means for a player: the text is the Rust
 * `Display` of the reason (thiserror), the close code its `close_code()`, and
 * `retry` whether reconnecting on its own can help. A version mismatch or a
 * refused message means this page is out of date or broken: retrying would
 * only repeat it, so the player gets a reload button instead.
 */
const REASONS = {
  VersionMismatch: { code: 1002, label: 'version_mismatch', retry: false },
  ServerFull: { code: 1013, label: 'server_full', text: 'server full', retry: true },
  MalformedMessage: { code: 1002, label: 'malformed_message', text: 'malformed message', retry: false },
  MessageTooLarge: { code: 1009, label: 'message_too_large', text: 'message too large', retry: false },
  UnexpectedMessage: { code: 1002, label: 'unexpected_message', text: 'unexpected message', retry: false },
  HelloTimeout: { code: 1008, label: 'hello_timeout', text: 'no hello in time', retry: true },
  IdleTimeout: { code: 1008, label: 'idle_timeout', text: 'idle timeout', retry: true },
  TooSlow: { code: 1008, label: 'too_slow', text: 'client too slow', retry: true },
  RateLimited: { code: 1008, label: 'rate_limited', text: 'rate limit exceeded', retry: true },
  ServerShutdown: { code: 1001, label: 'server_shutdown', text: 'server shutting down', retry: true },
};

/**
 * @typedef {import('./codec.js').DisconnectReason} DisconnectReason
 */

/**
 * The server's words for a disconnect reason (identical to Rust's Display).
 * @param {DisconnectReason} reason
 * @returns {string}
 */
export function reasonText(reason) {
  if (reason.type === 'VersionMismatch') {
    return `protocol version mismatch: server speaks ${reason.server}, client sent ${reason.client}`;
  }
  return REASONS[reason.type].text;
}

/** @param {DisconnectReason} reason @returns {number} WebSocket close code */
export function reasonCloseCode(reason) {
  return REASONS[reason.type].code;
}

/** @param {DisconnectReason} reason @returns {string} stable label */
export function reasonLabel(reason) {
  return REASONS[reason.type].label;
}

/** @param {DisconnectReason} reason @returns {boolean} whether retrying can help */
export function reasonRetries(reason) {
  return REASONS[reason.type].retry;
}
