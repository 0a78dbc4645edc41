//! Messages of both directions. The byte format is [`crate::codec`]'s business;
//! `PROTOCOL.md` documents it byte by byte.
//!
//! Variant order is part of the wire format: never reorder, only append, and
//! bump [`PROTOCOL_VERSION`] for any change.

use serde::{Deserialize, Serialize};

use crate::Tick;
use crate::snapshot::SnapshotMsg;

/// Version of this protocol. A client sends it in [`Hello`]; the server
/// answers a mismatch with [`DisconnectReason::VersionMismatch`] and closes.
pub const PROTOCOL_VERSION: u32 = 9;

/// Client to server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// First message of every connection; nothing else is accepted before it.
    Hello(Hello),
    /// One tick of player input.
    Input(InputCmd),
    /// The client holds the snapshot of this tick: the server may use it as the
    /// baseline of the next deltas. A playing client acknowledges inside
    /// each [`InputCmd::ack`] instead; this message is for a tick on which
    /// it sends no input but holds a newer snapshot. The server encodes against the newest
    /// ack it has read, which may lag the newest one sent (and, across a
    /// resume, is whatever it read before the drop): a client keeps every
    /// state it acked from the baseline of the newest delta it received on
    /// (PROTOCOL.md section 5.7).
    Ack(Tick),
    /// Round-trip probe; the server echoes the nonce in [`ServerMsg::Pong`].
    Ping(u64),
    /// A deliberate leave: the server removes the player at once and answers
    /// with [`DisconnectReason::Left`]. A connection that ends otherwise (a
    /// close frame, a reset, or a reason whose
    /// [`DisconnectReason::session_kept`] is true) keeps the player's entity
    /// for the resume grace period; a kick for breaking the rules does not.
    Leave,
    /// Asks for a datagram channel (`PROTOCOL.md` section 3.7): a native
    /// client that can send UDP may then carry its inputs and acks, and
    /// receive its snapshots, as datagrams, which cost both ends less than
    /// the WebSocket. Answered with [`ServerMsg::DatagramChannel`]. It may
    /// follow the hello at once: the server reads it once the client is
    /// seated. Everything else stays on the WebSocket.
    OpenDatagrams,
}

/// Join request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Must equal [`PROTOCOL_VERSION`]. Encoded first so the server can read it
    /// even from a future client whose other fields it cannot parse.
    pub protocol: u32,
    /// Display name; the server strips control characters and keeps at most
    /// [`crate::rules::MAX_NAME_CHARS`] characters. Ignored on a resume.
    pub name: String,
    /// Which room to join.
    pub room: RoomRequest,
    /// Credential for the server's authentication hook, at most
    /// [`MAX_AUTH_TOKEN_BYTES`]. `None` when the server runs without one.
    /// Not needed to resume: the session token is the credential then.
    pub auth: Option<AuthToken>,
    /// The [`Welcome::session`] of an earlier connection, to take back that
    /// player. The server refuses an unknown, expired or other room's token
    /// with a typed [`DisconnectReason`].
    pub resume: Option<SessionToken>,
}

impl Hello {
    /// A hello of this protocol version asking for matchmaking, without
    /// tokens; set the other fields with struct update syntax.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            protocol: PROTOCOL_VERSION,
            name: name.into(),
            room: RoomRequest::Matchmake,
            auth: None,
            resume: None,
        }
    }
}

/// Where a [`Hello`] asks to play.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomRequest {
    /// Any public room: the server picks the fullest one with a free seat and
    /// opens a new one when all are full. With a resume: the session's room.
    Matchmake,
    /// The room of this exact name (a private match), created if it does not
    /// exist. The name must pass [`is_valid_room_name`]. With a resume: the
    /// room the session must belong to.
    Named(String),
}

/// Longest room name, in bytes.
pub const MAX_ROOM_NAME_BYTES: usize = 32;

/// Room names are 1 to [`MAX_ROOM_NAME_BYTES`] ASCII letters, digits, `-` and
/// `_`: safe in URLs, logs and metric labels.
#[must_use]
pub fn is_valid_room_name(name: &str) -> bool {
    (1..=MAX_ROOM_NAME_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Longest accepted [`AuthToken`], in bytes.
pub const MAX_AUTH_TOKEN_BYTES: usize = 512;

/// An authentication token, opaque to the protocol. Its `Debug` output is
/// redacted so the token cannot leak into logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthToken(pub String);

impl std::fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthToken(<{} bytes redacted>)", self.0.len())
    }
}

/// Length of a [`SessionToken`], in bytes.
pub const SESSION_TOKEN_BYTES: usize = 16;

/// Proof of a session, issued in [`Welcome::session`]. Opaque to clients: 16
/// bytes, at least 96 of them random, on the wire as 16 raw bytes. Its
/// `Debug` output is redacted.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct SessionToken(pub [u8; SESSION_TOKEN_BYTES]);

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// One tick of input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputCmd {
    /// Sequence number, starting at 1 and increasing by one per input. The
    /// server applies inputs in this order and echoes the last applied one in
    /// [`SnapshotMsg::input_ack`].
    pub seq: u32,
    /// The server tick the client believed it was at when it sampled the
    /// input (newest snapshot tick plus the ticks it predicted since).
    pub tick: Tick,
    /// The newest snapshot tick the client holds, acknowledged with the
    /// input so that a playing client sends one message per tick, not an
    /// input and an [`ClientMsg::Ack`] (each message costs both ends a read,
    /// a wake-up and a TCP segment). Means the same as `Ack(ack)`. A client
    /// that holds no snapshot yet sends [`Welcome::tick`], which no snapshot
    /// carries; the server ignores acks of ticks it did not send.
    pub ack: Tick,
    /// Bits of [`crate::rules::buttons`].
    pub buttons: u8,
    /// Aim angle in 1/65536 turns, clockwise from +x.
    pub aim: u16,
}

/// Server to client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMsg {
    /// Answer to a valid [`Hello`].
    Welcome(Welcome),
    /// World state as a delta against an acknowledged baseline (or full).
    Snapshot(SnapshotMsg),
    /// Answer to [`ClientMsg::Ping`].
    Pong {
        /// The client's nonce, unchanged.
        nonce: u64,
        /// The server's current tick.
        tick: Tick,
    },
    /// Sent right before the server closes the connection.
    Disconnect(DisconnectReason),
    /// Answer to [`ClientMsg::OpenDatagrams`].
    DatagramChannel(DatagramChannel),
}

/// Where and how to send datagrams (`PROTOCOL.md` section 3.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatagramChannel {
    /// The server's UDP port, on the address the WebSocket connected to; 0
    /// when this server offers no datagrams (the client stays on the
    /// WebSocket alone).
    pub port: u16,
    /// Starts every datagram the client sends: names the connection, and
    /// is no secret (it crosses the network in the clear).
    pub id: DatagramId,
    /// Signs every datagram of both directions (its tag,
    /// [`DATAGRAM_TAG_BYTES`] of HMAC-SHA256), and never travels in one.
    /// The server accepts a datagram only with the id of a connection in
    /// play, from that connection's IP address, and with a valid tag; it
    /// sends snapshots to the address (IP and port) of the newest such
    /// datagram.
    pub key: DatagramKey,
}

/// Length of a [`DatagramId`], in bytes.
pub const DATAGRAM_ID_BYTES: usize = 8;

/// Names a connection in its datagrams: 8 random bytes, one per connection,
/// on the wire as 8 raw bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct DatagramId(pub [u8; DATAGRAM_ID_BYTES]);

/// Length of a [`DatagramKey`], in bytes.
pub const DATAGRAM_KEY_BYTES: usize = 16;

/// The secret that signs a connection's datagrams: 16 random bytes, one per
/// connection, on the wire (in [`DatagramChannel`] only) as 16 raw bytes.
/// Its `Debug` output is redacted.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct DatagramKey(pub [u8; DATAGRAM_KEY_BYTES]);

impl std::fmt::Debug for DatagramKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatagramKey(<redacted>)")
    }
}

/// Length of the tag that ends every datagram, in bytes: the first 8 bytes
/// of an HMAC-SHA256 keyed with the connection's [`DatagramKey`].
pub const DATAGRAM_TAG_BYTES: usize = 8;

/// Most messages in one client datagram. A client repeats its newest
/// inputs in each datagram so that one lost datagram loses none of them:
/// four cover three losses in a row.
pub const MAX_DATAGRAM_MESSAGES: usize = 4;

/// Largest client datagram the server reads, in bytes: the id, four inputs
/// (at most 15 bytes each) and the tag fit with room to spare.
pub const MAX_CLIENT_DATAGRAM: usize = 128;

/// Largest datagram the server sends, in bytes, its tag included: a
/// snapshot of up to this less [`DATAGRAM_TAG_BYTES`] goes by datagram, a
/// larger one over the WebSocket. Small enough to pass any path's MTU
/// (IPv6's minimum is 1,280 bytes, headers included) without fragmenting.
pub const MAX_SNAPSHOT_DATAGRAM: usize = 1200;

/// What a client learns when it joins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The server's [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// Network id of the client's own player entity.
    pub player_id: u32,
    /// Simulation steps per second: every input is one step.
    pub tick_hz: u16,
    /// Snapshots per second the server sends.
    pub snapshot_hz: u16,
    /// The server's tick at the moment of joining.
    pub tick: Tick,
    /// The room the client is playing in.
    pub room: String,
    /// Present it in [`Hello::resume`] to take this player back after a
    /// dropped connection, within the server's resume grace period.
    pub session: SessionToken,
    /// True when this welcome resumes an earlier session: the player, its
    /// score and its input numbering continue.
    pub resumed: bool,
    /// The highest input sequence number the room has accepted from this
    /// player (0 for a new one); inputs it dropped or had not yet read when
    /// the resume arrived do not count. A resuming client resends its inputs
    /// after this one and numbers new inputs on from its own counter; the
    /// server applies each sequence number at most once.
    pub input_seq: u32,
    /// How long the server holds the player's seat for a resume after its
    /// connection drops, in milliseconds (0: not at all). Past it, a resume
    /// is answered [`DisconnectReason::SessionExpired`]: a client that is
    /// still trying can tell its player the game is over.
    pub resume_grace_ms: u32,
}

/// Why the server closed a connection. Sent as [`ServerMsg::Disconnect`] and,
/// in text, as the WebSocket close frame's reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum DisconnectReason {
    /// The client speaks another protocol version.
    #[error("protocol version mismatch: server speaks {server}, client sent {client}")]
    VersionMismatch {
        /// The server's version.
        server: u32,
        /// The version the client sent.
        client: u32,
    },
    /// The server holds as many players as it is configured for.
    #[error("server full")]
    ServerFull,
    /// A message could not be decoded.
    #[error("malformed message")]
    MalformedMessage,
    /// A message (or the sum of its fragments) exceeded the size limit.
    #[error("message too large")]
    MessageTooLarge,
    /// A message that is valid but not allowed now (input before hello,
    /// a second hello, a text frame).
    #[error("unexpected message")]
    UnexpectedMessage,
    /// No hello arrived in time after the upgrade.
    #[error("no hello in time")]
    HelloTimeout,
    /// Nothing arrived from the client for too long.
    #[error("idle timeout")]
    IdleTimeout,
    /// The client did not read its snapshots for too long.
    #[error("client too slow")]
    TooSlow,
    /// The client sent far more messages than the tick rate allows.
    #[error("rate limit exceeded")]
    RateLimited,
    /// The server is shutting down.
    #[error("server shutting down")]
    ServerShutdown,
    /// The requested room has no free seat.
    #[error("room full")]
    RoomFull,
    /// The requested room name breaks [`is_valid_room_name`].
    #[error("invalid room name")]
    InvalidRoomName,
    /// The session token is unknown, or its grace period is over.
    #[error("session expired")]
    SessionExpired,
    /// The session token belongs to another room than the one requested.
    #[error("session belongs to another room")]
    SessionWrongRoom,
    /// A newer connection resumed this session.
    #[error("session resumed elsewhere")]
    SessionReplaced,
    /// The server requires an authentication token and none was sent.
    #[error("authentication required")]
    AuthRequired,
    /// The authentication token is invalid (bad format or signature) or the
    /// server's hook refused it.
    #[error("authentication failed")]
    AuthInvalid,
    /// The authentication token has expired.
    #[error("authentication token expired")]
    AuthExpired,
    /// Answer to [`ClientMsg::Leave`].
    #[error("left")]
    Left,
    /// The player's room stopped for a fault of its own (the server goes
    /// on): the session is gone, a fresh join works at once.
    #[error("room closed")]
    RoomClosed,
}

impl DisconnectReason {
    /// The WebSocket close code sent with this reason.
    #[must_use]
    pub fn close_code(&self) -> u16 {
        match self {
            Self::VersionMismatch { .. } | Self::MalformedMessage | Self::UnexpectedMessage => 1002,
            Self::MessageTooLarge => 1009,
            Self::ServerFull => 1013,
            Self::ServerShutdown => 1001,
            Self::HelloTimeout
            | Self::IdleTimeout
            | Self::TooSlow
            | Self::RateLimited
            | Self::InvalidRoomName
            | Self::SessionExpired
            | Self::SessionWrongRoom
            | Self::AuthRequired
            | Self::AuthInvalid
            | Self::AuthExpired => 1008,
            Self::RoomFull => 1013,
            Self::SessionReplaced | Self::Left => 1000,
            Self::RoomClosed => 1011,
        }
    }

    /// Every reason's [`label`](Self::label), by [`index`](Self::index).
    pub const LABELS: [&'static str; 20] = [
        "version_mismatch",
        "server_full",
        "malformed_message",
        "message_too_large",
        "unexpected_message",
        "hello_timeout",
        "idle_timeout",
        "too_slow",
        "rate_limited",
        "server_shutdown",
        "room_full",
        "invalid_room_name",
        "session_expired",
        "session_wrong_room",
        "session_replaced",
        "auth_required",
        "auth_invalid",
        "auth_expired",
        "left",
        "room_closed",
    ];

    /// One value of every reason, in wire order (`VersionMismatch` with
    /// this version and 0): for tables keyed by reason, and tests that must
    /// cover them all.
    #[must_use]
    pub fn every() -> [Self; Self::LABELS.len()] {
        [
            Self::VersionMismatch {
                server: PROTOCOL_VERSION,
                client: 0,
            },
            Self::ServerFull,
            Self::MalformedMessage,
            Self::MessageTooLarge,
            Self::UnexpectedMessage,
            Self::HelloTimeout,
            Self::IdleTimeout,
            Self::TooSlow,
            Self::RateLimited,
            Self::ServerShutdown,
            Self::RoomFull,
            Self::InvalidRoomName,
            Self::SessionExpired,
            Self::SessionWrongRoom,
            Self::SessionReplaced,
            Self::AuthRequired,
            Self::AuthInvalid,
            Self::AuthExpired,
            Self::Left,
            Self::RoomClosed,
        ]
    }

    /// Position of this reason in declaration order (its wire variant
    /// index), for tables keyed by reason such as per-reason counters.
    #[must_use]
    pub fn index(&self) -> usize {
        match self {
            Self::VersionMismatch { .. } => 0,
            Self::ServerFull => 1,
            Self::MalformedMessage => 2,
            Self::MessageTooLarge => 3,
            Self::UnexpectedMessage => 4,
            Self::HelloTimeout => 5,
            Self::IdleTimeout => 6,
            Self::TooSlow => 7,
            Self::RateLimited => 8,
            Self::ServerShutdown => 9,
            Self::RoomFull => 10,
            Self::InvalidRoomName => 11,
            Self::SessionExpired => 12,
            Self::SessionWrongRoom => 13,
            Self::SessionReplaced => 14,
            Self::AuthRequired => 15,
            Self::AuthInvalid => 16,
            Self::AuthExpired => 17,
            Self::Left => 18,
            Self::RoomClosed => 19,
        }
    }

    /// Whether the server kept the player's session after closing with this
    /// reason, so the client may resume it within the grace period: true for
    /// network trouble (idle, too slow), false for rule breaking, refusals,
    /// a deliberate leave, shutdown and a room that stopped.
    #[must_use]
    pub fn session_kept(&self) -> bool {
        matches!(self, Self::IdleTimeout | Self::TooSlow)
    }

    /// A short stable label, used in logs and metrics.
    #[must_use]
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{client_bytes, decode_client};

    #[test]
    fn room_names_are_short_url_safe_ascii() {
        for ok in ["a", "duel-7", "Team_Blue", &"x".repeat(MAX_ROOM_NAME_BYTES)] {
            assert!(is_valid_room_name(ok), "{ok}");
        }
        let too_long = "x".repeat(MAX_ROOM_NAME_BYTES + 1);
        for bad in ["", "a b", "a/b", "é", "a\n", "<script>", too_long.as_str()] {
            assert!(!is_valid_room_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            name: "ana".into(),
            room: RoomRequest::Matchmake,
            auth: Some(AuthToken("alice.99.deadbeef".into())),
            resume: Some(SessionToken([0xab; SESSION_TOKEN_BYTES])),
        };
        let shown = format!("{hello:?}");
        assert!(
            !shown.contains("deadbeef") && !shown.contains("alice"),
            "{shown}"
        );
        assert!(
            !shown.contains("171") && !shown.contains("ab, ab"),
            "{shown}"
        );
    }

    #[test]
    fn session_token_is_sixteen_raw_bytes_on_the_wire() {
        let with = |resume| {
            client_bytes(&ClientMsg::Hello(Hello {
                protocol: PROTOCOL_VERSION,
                name: String::new(),
                room: RoomRequest::Matchmake,
                auth: None,
                resume,
            }))
        };
        let token = SessionToken([0xff; SESSION_TOKEN_BYTES]);
        let (without, with_token) = (with(None), with(Some(token)));
        // The option tag (1) and the bytes, with no length prefix.
        assert_eq!(with_token.len(), without.len() + SESSION_TOKEN_BYTES);
        assert_eq!(&with_token[with_token.len() - 16..], &[0xff; 16]);
        assert!(matches!(
            decode_client(&with_token),
            Ok(ClientMsg::Hello(Hello { resume: Some(t), .. })) if t == token
        ));
    }

    #[test]
    fn only_network_trouble_keeps_the_session() {
        assert!(DisconnectReason::IdleTimeout.session_kept());
        assert!(DisconnectReason::TooSlow.session_kept());
        for r in [
            DisconnectReason::RateLimited,
            DisconnectReason::MalformedMessage,
            DisconnectReason::Left,
            DisconnectReason::SessionReplaced,
            DisconnectReason::ServerShutdown,
            DisconnectReason::RoomClosed,
        ] {
            assert!(!r.session_kept(), "{r:?}");
        }
    }
}
