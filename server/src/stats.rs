//! Server-wide counters. Plain atomics: the hot paths only ever add.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;
use shared::protocol::DisconnectReason;

/// Counters shared by every connection task.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// WebSocket connections currently open.
    pub connections: AtomicU64,
    /// Successful joins since start.
    pub joins: AtomicU64,
    /// Snapshots written.
    pub snapshots_sent: AtomicU64,
    /// Of those, full snapshots (no usable baseline).
    pub full_snapshots: AtomicU64,
    /// Payload bytes written to clients.
    pub bytes_out: AtomicU64,
    /// Payload bytes read from joined clients.
    pub bytes_in: AtomicU64,
    /// Upgrade requests refused because the server was full.
    pub refused_full: AtomicU64,
    /// Connections closed by the server, by reason (index: [`reason_index`]).
    closes: [AtomicU64; REASONS.len()],
}

/// Every disconnect reason label, in a fixed order.
pub const REASONS: [&str; 10] = [
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

fn reason_index(reason: &DisconnectReason) -> usize {
    REASONS
        .iter()
        .position(|l| *l == reason.label())
        .unwrap_or(REASONS.len() - 1)
}

/// A point-in-time copy of [`ServerStats`], for `/status.json`.
#[derive(Debug, Serialize)]
pub struct StatsSnapshot {
    /// See [`ServerStats::connections`].
    pub connections: u64,
    /// See [`ServerStats::joins`].
    pub joins: u64,
    /// See [`ServerStats::snapshots_sent`].
    pub snapshots_sent: u64,
    /// See [`ServerStats::full_snapshots`].
    pub full_snapshots: u64,
    /// See [`ServerStats::bytes_out`].
    pub bytes_out: u64,
    /// See [`ServerStats::bytes_in`].
    pub bytes_in: u64,
    /// See [`ServerStats::refused_full`].
    pub refused_full: u64,
    /// Server-initiated closes by reason label.
    pub closes: std::collections::BTreeMap<&'static str, u64>,
}

impl ServerStats {
    /// Counts a server-initiated close.
    pub fn count_close(&self, reason: &DisconnectReason) {
        self.closes[reason_index(reason)].fetch_add(1, Relaxed);
    }

    /// Closes with this reason so far.
    #[must_use]
    pub fn closes(&self, reason: &DisconnectReason) -> u64 {
        self.closes[reason_index(reason)].load(Relaxed)
    }

    /// Copies every counter.
    #[must_use]
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            connections: self.connections.load(Relaxed),
            joins: self.joins.load(Relaxed),
            snapshots_sent: self.snapshots_sent.load(Relaxed),
            full_snapshots: self.full_snapshots.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            refused_full: self.refused_full.load(Relaxed),
            closes: REASONS
                .iter()
                .zip(&self.closes)
                .map(|(l, c)| (*l, c.load(Relaxed)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_counter() {
        let all = [
            DisconnectReason::VersionMismatch {
                server: 1,
                client: 2,
            },
            DisconnectReason::ServerFull,
            DisconnectReason::MalformedMessage,
            DisconnectReason::MessageTooLarge,
            DisconnectReason::UnexpectedMessage,
            DisconnectReason::HelloTimeout,
            DisconnectReason::IdleTimeout,
            DisconnectReason::TooSlow,
            DisconnectReason::RateLimited,
            DisconnectReason::ServerShutdown,
        ];
        let stats = ServerStats::default();
        for (i, r) in all.iter().enumerate() {
            assert_eq!(reason_index(r), i, "{r:?}");
            stats.count_close(r);
        }
        assert!(stats.snapshot().closes.values().all(|&n| n == 1));
    }
}
