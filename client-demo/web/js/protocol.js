// Protocol constants and the meaning of the server's disconnect reasons: a
// port of `shared/src/protocol.rs`. The golden vectors check every value here.

/** Must equal shared::protocol::PROTOCOL_VERSION; sent in the hello. */
export const PROTOCOL_VERSION = 9;

/** Entity kinds by wire index (shared::snapshot::EntityKind). */
export const Kind = Object.freeze({ Player: 0, Npc: 1, Projectile: 2 });
/** Names of the kinds, by index, as serde writes them. */
export const KIND_NAMES = ['Player', 'Npc', 'Projectile'];
export const KIND_COUNT = KIND_NAMES.length;

/**
 * What each disconnect reason means for a player: the text is the Rust
 * `Display` of the reason (thiserror), the close code its `close_code()`,
 * `kept` its `session_kept()`, and `then` what this client does next:
 *
 * * `resume`: reconnect (with backoff) and present the session token, if one
 *   is held. For network trouble, and for refusals of a hello that leave a
 *   session as it was (the server was full, the hello came too late).
 * * `rejoin`: reconnect (with backoff) as a new player: the session is gone
 *   (the server restarted).
 * * `fresh`: the session token was refused; join as a new player at once.
 * * `stop`: reconnecting on its own cannot help or must not happen: the page
 *   is out of date or broke a rule, the credentials are wrong, the player
 *   left, or another tab took the session over. The player gets a button.
 */
const REASONS = {
  VersionMismatch: { code: 1002, label: 'version_mismatch', then: 'stop' },
  ServerFull: { code: 1013, label: 'server_full', text: 'server full', then: 'resume' },
  MalformedMessage: { code: 1002, label: 'malformed_message', text: 'malformed message', then: 'stop' },
  MessageTooLarge: { code: 1009, label: 'message_too_large', text: 'message too large', then: 'stop' },
  UnexpectedMessage: { code: 1002, label: 'unexpected_message', text: 'unexpected message', then: 'stop' },
  HelloTimeout: { code: 1008, label: 'hello_timeout', text: 'no hello in time', then: 'resume' },
  IdleTimeout: { code: 1008, label: 'idle_timeout', text: 'idle timeout', kept: true, then: 'resume' },
  TooSlow: { code: 1008, label: 'too_slow', text: 'client too slow', kept: true, then: 'resume' },
  RateLimited: { code: 1008, label: 'rate_limited', text: 'rate limit exceeded', then: 'stop' },
  ServerShutdown: { code: 1001, label: 'server_shutdown', text: 'server shutting down', then: 'rejoin' },
  RoomFull: { code: 1013, label: 'room_full', text: 'room full', then: 'resume' },
  InvalidRoomName: { code: 1008, label: 'invalid_room_name', text: 'invalid room name', then: 'stop' },
  SessionExpired: { code: 1008, label: 'session_expired', text: 'session expired', then: 'fresh' },
  SessionWrongRoom: { code: 1008, label: 'session_wrong_room', text: 'session belongs to another room', then: 'fresh' },
  SessionReplaced: { code: 1000, label: 'session_replaced', text: 'session resumed elsewhere', then: 'stop' },
  AuthRequired: { code: 1008, label: 'auth_required', text: 'authentication required', then: 'stop' },
  AuthInvalid: { code: 1008, label: 'auth_invalid', text: 'authentication failed', then: 'stop' },
  AuthExpired: { code: 1008, label: 'auth_expired', text: 'authentication token expired', then: 'stop' },
  Left: { code: 1000, label: 'left', text: 'left', then: 'stop' },
  RoomClosed: { code: 1011, label: 'room_closed', text: 'room closed', then: 'rejoin' },
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

/**
 * Whether the server kept the player's session after closing with this
 * reason (shared::protocol::DisconnectReason::session_kept).
 * @param {DisconnectReason} reason
 */
export function reasonSessionKept(reason) {
  return REASONS[reason.type].kept === true;
}

/**
 * What the client does after the server closed with this reason; see REASONS.
 * @param {DisconnectReason} reason
 * @returns {'resume'|'rejoin'|'fresh'|'stop'}
 */
export function reasonNext(reason) {
  return /** @type {'resume'|'rejoin'|'fresh'|'stop'} */ (REASONS[reason.type].then);
}

/** @param {DisconnectReason} reason @returns {boolean} whether reconnecting can help */
export function reasonRetries(reason) {
  return reasonNext(reason) !== 'stop';
}
