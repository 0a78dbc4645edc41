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
pub const PROTOCOL_VERSION: u32 = 1;

/// Client to server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// First message of every connection; nothing else is accepted before it.
    Hello(Hello),
    /// One tick of player input.
    Input(InputCmd),
    /// The client holds the snapshot of this tick: the server may use it as the
    /// baseline of the next deltas. Only the newest ack matters: the server
    /// encodes against the last tick acknowledged and forgets older
    /// baselines, so a client must keep the state of every tick it acked
    /// until it acks a newer one.
    Ack(Tick),
    /// Round-trip probe; the server echoes the nonce in [`ServerMsg::Pong`].
    Ping(u64),
}

/// Join request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Must equal [`PROTOCOL_VERSION`]. Encoded first so the server can read it
    /// even from a future client whose other fields it cannot parse.
    pub protocol: u32,
    /// Display name; the server strips control characters and keeps at most
    /// [`crate::rules::MAX_NAME_CHARS`] characters.
    pub name: String,
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
}

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
            Self::HelloTimeout | Self::IdleTimeout | Self::TooSlow | Self::RateLimited => 1008,
        }
    }

    /// Every reason's [`label`](Self::label), by [`index`](Self::index).
    pub const LABELS: [&'static str; 10] = [
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
    ];

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
        }
    }

    /// A short stable label, used in logs and metrics.
    #[must_use]
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }
}
