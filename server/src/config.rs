//! Server configuration. The binary fills it from flags and environment; tests
//! and embedders build it directly. Every limit has a safe default.

use std::sync::Arc;
use std::time::Duration;

use shared::Tick;

use crate::auth::Authenticator;
use crate::guard::{OperatorToken, OriginPolicy};

/// Most phases of the tick period rooms can be spread over
/// ([`Config::tick_phases`]).
pub const MAX_TICK_PHASES: u32 = 64;

/// Everything the server can be told. [`Default`] is what `cargo run -p server`
/// uses.
#[derive(Clone, Debug)]
pub struct Config {
    /// Simulation steps per second, 1..=128. Default: 30.
    pub tick_hz: u32,
    /// Snapshots per second, 1..=`tick_hz`. Default: 30 (one per tick).
    pub snapshot_hz: u32,
    /// Server-driven wandering NPCs in each room's arena. Default: 8.
    pub npcs: u32,
    /// Players per room, counting players whose session waits for a resume.
    /// Matchmaking opens a new room when every public one is full; a named
    /// room refuses the next with `RoomFull`. Default: 16.
    pub room_capacity: usize,
    /// Most rooms at once, each with its own simulation thread; a join that
    /// would open one more is refused with `ServerFull`. Default: 256.
    pub max_rooms: usize,
    /// Phases of the tick period the rooms are spread over, 1 to
    /// [`MAX_TICK_PHASES`]. Every room ticks on one grid of deadlines: a
    /// room in phase `p` ticks `p/tick_phases` of a period after it. A new
    /// room takes the phase whose rooms hold the fewest seats, so rooms
    /// opened one after another take the phases in turn. With 1,
    /// every room ticks at once: the fewest thread wake-ups, but every
    /// room's fan-out in one burst, so the clients served last wait for the
    /// first. More phases make smaller bursts for a few more wake-ups per
    /// period. At 1,000 clients in rooms of 16 on one core, 4 phases cut
    /// the median input-to-ack time by 9-20 ms against 1 for 0-4% more CPU
    /// (`BENCHMARKS.md` section 6). Default: 4.
    pub tick_phases: u32,
    /// How long an empty room lives before it is disposed, so a quick rematch
    /// or a resume finds it. Default: 30 s.
    pub empty_room_grace: Duration,
    /// How long a player whose connection dropped keeps its entity, waiting
    /// for a resume with its session token. Default: 10 s.
    pub resume_grace: Duration,
    /// Rooms created at start and never disposed, even when empty: a lobby,
    /// or a room with its own NPC count. Default: none.
    pub persistent_rooms: Vec<RoomSpec>,
    /// Checks the token in each hello before the player joins; `None` lets
    /// everyone in. See [`crate::auth`]. Default: `None`.
    pub auth: Option<Arc<dyn Authenticator>>,
    /// The operators' secret: with one, `/status.json` and `/metrics` answer
    /// only requests that present it (`Authorization: Bearer`), and `/rooms`
    /// and `/status.json` name private rooms to them. Without one, those
    /// endpoints are public and never name a private room, whose name is
    /// the key to join it. `/metrics` never does. Default: `None`.
    pub operator_token: Option<OperatorToken>,
    /// Most players connected at once, counting WebSockets that have not
    /// said hello yet (or whose hello was refused). With this many, an upgrade request
    /// closes one of those, the oldest of the address holding the most
    /// (module `evict`), or, with none, gets HTTP
    /// 503 before any WebSocket is set up. Default: 1000.
    pub max_clients: usize,
    /// Most TCP connections open at once: HTTP connections (counting ones
    /// still sending their headers) and WebSockets, for their whole life.
    /// With this many open, each new connection closes one that is not a
    /// player yet (plain HTTP, or a WebSocket before its hello), the oldest
    /// of the address holding the most (module `evict`). Default: `max_clients + 256`.
    pub max_connections: usize,
    /// Time a client has to send its complete HTTP request head (slowloris).
    /// Default: 5 s.
    pub header_read_timeout: Duration,
    /// Time from the WebSocket upgrade to a valid hello. Default: 5 s.
    pub hello_timeout: Duration,
    /// A connection that sends nothing for this long is closed. Clients send
    /// an input every tick and browsers answer pings, so only dead peers hit
    /// it. Default: 15 s.
    pub idle_timeout: Duration,
    /// How often the server sends a WebSocket ping. Default: 5 s.
    pub ping_interval: Duration,
    /// Longest a single outgoing message may take to write. A client whose
    /// socket accepts nothing for this long is dropped as too slow.
    /// Default: 5 s.
    pub write_timeout: Duration,
    /// A client that acknowledges no snapshot for this long while snapshots
    /// are being sent is disconnected: as too slow if it was heard from
    /// meanwhile, as idle if not (gone). Default: 10 s.
    pub ack_timeout: Duration,
    /// Snapshots each client's writer keeps as possible baselines, and each
    /// room keeps for resuming clients. A client whose newest ack is older
    /// gets a full snapshot. Default: 64 (about 2 s at 30 Hz).
    pub snapshot_history: usize,
    /// Inputs buffered per player ahead of the tick that applies them; an
    /// input arriving at a full buffer is dropped and counted. Default: 8.
    pub input_buffer: usize,
    /// Most ticks run back to back to catch up after a stall before the
    /// loop gives up on the missed ones (counted as overruns). Default: 5.
    pub max_catchup_ticks: u32,
    /// How long shutdown waits for connections to finish their close
    /// handshake. Default: 5 s.
    pub shutdown_grace: Duration,
    /// Seed of the world's random numbers. Default: fixed, so runs repeat.
    pub seed: u64,
    /// Web origins allowed to open the WebSocket. Default: the page's own
    /// host and localhost.
    pub allowed_origins: OriginPolicy,
    /// Most WebSocket connections from one IP; more get HTTP 429 before the
    /// upgrade. 0 means unlimited. Default: 16.
    pub max_clients_per_ip: u32,
    /// Most TCP connections of any kind from one IP (page loads, status
    /// polls and WebSockets alike); more are closed as soon as they are
    /// accepted, so that one address cannot take every slot of
    /// `max_connections`. Loopback is exempt with `per_ip_exempt_loopback`.
    /// 0 means unlimited. Default: 64 (16 players' WebSockets and their
    /// browsers' HTTP connections).
    pub max_connections_per_ip: u32,
    /// Whether loopback peers are exempt from `max_clients_per_ip` and
    /// `max_connections_per_ip` (behind a reverse proxy on the same host
    /// every player is loopback). Default: true.
    pub per_ip_exempt_loopback: bool,
    /// Messages per second a client may send beyond one input per tick and
    /// one ack per snapshot (pings and slack). Default: 10.
    pub message_rate_slack: u32,
    /// Consecutive seconds with rate-limited messages before the client is
    /// disconnected as abusive. Default: 3.
    pub rate_limit_kick_secs: u32,
    /// With `auth`: one session per user (the [`Identity`] the
    /// authenticator names). A user who joins again ends the session they
    /// had, playing or awaiting a resume, wherever it is; its connection is
    /// told `SessionReplaced`. Without it, one join token seats as many
    /// players as connections it is sent on while it is valid. Turn it off
    /// only if your authenticator names no account (every guest the same
    /// user, say). Default: true.
    ///
    /// [`Identity`]: crate::auth::Identity
    pub one_session_per_user: bool,
    /// The UDP port of the datagram channel (`PROTOCOL.md` section 3.7), on
    /// the HTTP listener's address: native clients that ask may send their
    /// inputs and receive their snapshots as datagrams, which cost the
    /// server about half of what the WebSocket does. `Some(0)`: any free
    /// port (clients are told which; give a fixed one behind a firewall).
    /// `None`: no datagrams, every client on its WebSocket alone.
    /// Default: `Some(0)`.
    pub datagram_port: Option<u16>,
}

impl Default for Config {
    fn default() -> Self {
        let max_clients = 1000;
        Self {
            tick_hz: 30,
            snapshot_hz: 30,
            npcs: 8,
            room_capacity: 16,
            max_rooms: 256,
            tick_phases: 4,
            empty_room_grace: Duration::from_secs(30),
            resume_grace: Duration::from_secs(10),
            persistent_rooms: Vec::new(),
            auth: None,
            operator_token: None,
            max_clients,
            max_connections: max_clients + 256,
            header_read_timeout: Duration::from_secs(5),
            hello_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            ping_interval: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            ack_timeout: Duration::from_secs(10),
            snapshot_history: 64,
            input_buffer: 8,
            max_catchup_ticks: 5,
            shutdown_grace: Duration::from_secs(5),
            seed: 0x5eed,
            allowed_origins: OriginPolicy::default(),
            max_clients_per_ip: 16,
            max_connections_per_ip: 64,
            per_ip_exempt_loopback: true,
            message_rate_slack: 10,
            rate_limit_kick_secs: 3,
            one_session_per_user: true,
            datagram_port: Some(0),
        }
    }
}

/// A configuration value out of range.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `tick_hz` outside 1..=128.
    #[error("tick rate {0} Hz is outside 1..=128")]
    TickHz(u32),
    /// `snapshot_hz` outside 1..=`tick_hz`.
    #[error("snapshot rate {snapshot_hz} Hz is outside 1..={tick_hz}")]
    SnapshotHz {
        /// The requested snapshot rate.
        snapshot_hz: u32,
        /// The tick rate it must not exceed.
        tick_hz: u32,
    },
    /// `tick_phases` outside 1..=[`MAX_TICK_PHASES`].
    #[error("tick phases {0} is outside 1..={MAX_TICK_PHASES}")]
    TickPhases(u32),
    /// A count that must be at least one is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// A persistent room's name breaks the room name rule.
    #[error("invalid room name {0:?}: use 1 to 32 of A-Z a-z 0-9 - _")]
    RoomName(String),
    /// More persistent rooms than `max_rooms`, or one named twice.
    #[error("persistent rooms must be distinct and at most max_rooms")]
    PersistentRooms,
    /// A duration longer than [`MAX_DURATION`]: deadlines are computed as
    /// `now + duration`, which must not overflow.
    #[error("{0} is longer than one day")]
    TooLong(&'static str),
    /// A timeout or the ping interval of zero: every connection would be
    /// closed at once, or pinged with every snapshot.
    #[error("{0} must be longer than zero")]
    ZeroDuration(&'static str),
    /// An NPC count above [`MAX_NPCS`], or one that is not a number, for
    /// the server (`npcs`) or a persistent room (`NAME:NPCS`).
    #[error("NPC count {0:?} is not a number up to {MAX_NPCS}")]
    Npcs(String),
    /// A count above [`MAX_COUNT`].
    #[error("{0} is above {MAX_COUNT}")]
    TooMany(&'static str),
    /// `max_connections` not above `max_clients`: every player's WebSocket
    /// holds a connection slot, so no HTTP request (page, `/healthz`,
    /// `/metrics`) would be served once the players fill them.
    #[error("max_connections ({connections}) must be above max_clients ({clients})")]
    Connections {
        /// The connection cap.
        connections: usize,
        /// The player cap.
        clients: usize,
    },
    /// A per-address connection cap below the per-address player cap: the
    /// players past it would be cut at accept, with no reason given.
    #[error(
        "max_connections_per_ip ({connections}) is below max_clients_per_ip ({clients}; 0 means unlimited)"
    )]
    PerIpConnections {
        /// The per-address connection cap.
        connections: u32,
        /// The per-address player cap.
        clients: u32,
    },
}

/// The longest duration any setting takes: one day.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// The largest count any setting takes (clients, connections, rooms, seats):
/// far beyond what one process serves, and small enough that the sums and
/// semaphores built from them cannot overflow.
pub const MAX_COUNT: usize = 1 << 20;

/// Most NPCs in one room: twice the largest world the tick bench measures
/// (50,000 entities, 27 ns each), a few milliseconds a tick. A room spawns
/// its NPCs before its loop starts, so a count far beyond would hold its
/// thread, and its memory, before the first tick.
pub const MAX_NPCS: u32 = 100_000;

/// A room the server opens at start and keeps open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomSpec {
    /// The room's name, as clients ask for it in `RoomRequest::Named`.
    pub name: String,
    /// NPCs in this room's arena (instead of [`Config::npcs`]).
    pub npcs: u32,
}

impl std::str::FromStr for RoomSpec {
    type Err = ConfigError;

    /// `NAME` or `NAME:NPCS`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, npcs) = match s.split_once(':') {
            Some((name, npcs)) => (
                name,
                Some(
                    npcs.parse()
                        .ok()
                        .filter(|&n| n <= MAX_NPCS)
                        .ok_or_else(|| ConfigError::Npcs(npcs.to_owned()))?,
                ),
            ),
            None => (s, None),
        };
        if !shared::protocol::is_valid_room_name(name) {
            return Err(ConfigError::RoomName(name.to_owned()));
        }
        Ok(Self {
            name: name.to_owned(),
            npcs: npcs.unwrap_or(Config::default().npcs),
        })
    }
}

impl Config {
    /// Checks the ranges the server relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=128).contains(&self.tick_hz) {
            return Err(ConfigError::TickHz(self.tick_hz));
        }
        if !(1..=self.tick_hz).contains(&self.snapshot_hz) {
            return Err(ConfigError::SnapshotHz {
                snapshot_hz: self.snapshot_hz,
                tick_hz: self.tick_hz,
            });
        }
        for (name, value) in [
            ("max_clients", self.max_clients),
            ("max_connections", self.max_connections),
            ("snapshot_history", self.snapshot_history),
            ("input_buffer", self.input_buffer),
            ("max_catchup_ticks", self.max_catchup_ticks as usize),
            ("room_capacity", self.room_capacity),
            ("max_rooms", self.max_rooms),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
            if value > MAX_COUNT {
                return Err(ConfigError::TooMany(name));
            }
        }
        // Graces may be zero (no resume, no empty room kept); a timeout or
        // the ping interval of zero would close every connection at once,
        // or ping it with every snapshot.
        for (name, value, may_be_zero) in [
            ("empty_room_grace", self.empty_room_grace, true),
            ("resume_grace", self.resume_grace, true),
            ("header_read_timeout", self.header_read_timeout, false),
            ("hello_timeout", self.hello_timeout, false),
            ("idle_timeout", self.idle_timeout, false),
            ("ping_interval", self.ping_interval, false),
            ("write_timeout", self.write_timeout, false),
            ("ack_timeout", self.ack_timeout, false),
            ("shutdown_grace", self.shutdown_grace, true),
        ] {
            if value > MAX_DURATION {
                return Err(ConfigError::TooLong(name));
            }
            if value.is_zero() && !may_be_zero {
                return Err(ConfigError::ZeroDuration(name));
            }
        }
        if self.max_connections <= self.max_clients {
            return Err(ConfigError::Connections {
                connections: self.max_connections,
                clients: self.max_clients,
            });
        }
        if self.max_connections_per_ip != 0
            && (self.max_clients_per_ip == 0
                || self.max_clients_per_ip > self.max_connections_per_ip)
        {
            return Err(ConfigError::PerIpConnections {
                connections: self.max_connections_per_ip,
                clients: self.max_clients_per_ip,
            });
        }
        if !(1..=MAX_TICK_PHASES).contains(&self.tick_phases) {
            return Err(ConfigError::TickPhases(self.tick_phases));
        }
        for npcs in std::iter::once(self.npcs).chain(self.persistent_rooms.iter().map(|r| r.npcs)) {
            if npcs > MAX_NPCS {
                return Err(ConfigError::Npcs(npcs.to_string()));
            }
        }
        let mut names = std::collections::HashSet::new();
        for room in &self.persistent_rooms {
            if !shared::protocol::is_valid_room_name(&room.name) {
                return Err(ConfigError::RoomName(room.name.clone()));
            }
            if !names.insert(&room.name) {
                return Err(ConfigError::PersistentRooms);
            }
        }
        if self.persistent_rooms.len() > self.max_rooms {
            return Err(ConfigError::PersistentRooms);
        }
        Ok(())
    }

    /// Messages per second a client may send, and the bucket size: one input
    /// per tick, one ack per snapshot, plus slack; half a second of burst.
    pub(crate) fn message_rate(&self) -> (f64, f64) {
        let rate = f64::from(self.tick_hz + self.snapshot_hz + self.message_rate_slack);
        (rate, (rate / 2.0).max(16.0))
    }

    /// Ticks between two snapshots, as a fraction: a snapshot is due on tick
    /// `t` when `t * snapshot_hz / tick_hz` advanced.
    pub(crate) fn snapshot_due(&self, tick: u32) -> bool {
        let (s, t) = (u64::from(self.snapshot_hz), u64::from(self.tick_hz));
        let tick = u64::from(tick);
        tick == 0 || (tick * s) / t != ((tick - 1) * s) / t
    }

    /// Snapshots due (by [`Self::snapshot_due`]) after tick `from` up to and
    /// including tick `to`: 1 from one snapshot to the next, however many
    /// ticks apart, the tick counter's wrap included.
    pub(crate) fn snapshots_between(&self, from: Tick, to: Tick) -> u64 {
        if self.snapshot_hz == self.tick_hz {
            // Every tick: no division in the fan-out's per-client path.
            return u64::from(to.0.wrapping_sub(from.0));
        }
        let (s, t) = (u64::from(self.snapshot_hz), u64::from(self.tick_hz));
        // Due ticks in 1..=n: n * s / t (tick 0 is due as well).
        let due_after_0 = |tick: u32| u64::from(tick) * s / t;
        if to.0 >= from.0 {
            due_after_0(to.0) - due_after_0(from.0)
        } else {
            // After `from` to the last tick, then tick 0, then up to `to`.
            due_after_0(u32::MAX) - due_after_0(from.0) + 1 + due_after_0(to.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(Config::default().validate().is_ok());
    }

    /// Values a flag accepts but the server cannot use (a deadline of
    /// `now + u64::MAX` seconds panics; a semaphore of `usize::MAX` permits
    /// too) are refused at start.
    #[test]
    fn durations_and_counts_beyond_their_bounds_are_refused() {
        let c = Config {
            resume_grace: Duration::from_secs(u64::MAX),
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::TooLong("resume_grace"))
        ));
        let c = Config {
            resume_grace: MAX_DURATION,
            ..Config::default()
        };
        assert!(c.validate().is_ok(), "a day is fine");
        let c = Config {
            max_clients: usize::MAX,
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::TooMany("max_clients"))
        ));
        let c = Config {
            ping_interval: Duration::ZERO,
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::ZeroDuration("ping_interval"))
        ));
        let c = Config {
            resume_grace: Duration::ZERO,
            ..Config::default()
        };
        assert!(c.validate().is_ok(), "no resume at all is a choice");
    }

    /// Caps that would cut players silently are refused: a connection cap
    /// the players alone fill, and a per-address connection cap below the
    /// per-address player cap.
    #[test]
    fn caps_that_contradict_each_other_are_refused() {
        let c = Config {
            max_clients: 10,
            max_connections: 10,
            ..Config::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::Connections { .. })));
        // Above the default 64 connections per address, and unlimited.
        for max_clients_per_ip in [100, 0] {
            let c = Config {
                max_clients_per_ip,
                ..Config::default()
            };
            assert!(matches!(
                c.validate(),
                Err(ConfigError::PerIpConnections { .. })
            ));
        }
        let c = Config {
            max_clients_per_ip: 0,
            max_connections_per_ip: 0,
            ..Config::default()
        };
        assert!(c.validate().is_ok(), "both unlimited");
    }

    #[test]
    fn out_of_range_rates_are_refused() {
        let c = Config {
            tick_hz: 129,
            ..Config::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::TickHz(129))));
        let c = Config {
            tick_hz: 20,
            snapshot_hz: 30,
            ..Config::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::SnapshotHz { .. })));
        let c = Config {
            tick_phases: 0,
            ..Config::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::TickPhases(0))));
        let c = Config {
            tick_phases: MAX_TICK_PHASES + 1,
            ..Config::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::TickPhases(65))));
        let c = Config {
            tick_phases: MAX_TICK_PHASES,
            ..Config::default()
        };
        assert!(c.validate().is_ok());
    }

    #[test]
    fn room_specs_parse_and_validate() {
        assert_eq!(
            "lobby".parse::<RoomSpec>().ok(),
            Some(RoomSpec {
                name: "lobby".into(),
                npcs: 8
            })
        );
        assert_eq!(
            "big-1:500".parse::<RoomSpec>().ok().map(|r| r.npcs),
            Some(500)
        );
        for bad in ["", "a b", "x:", "x:-1", "x:y", "x:100001"] {
            assert!(bad.parse::<RoomSpec>().is_err(), "{bad}");
        }
        // A bad count is named as such, not as a bad room name.
        assert!(matches!("x:y".parse::<RoomSpec>(), Err(ConfigError::Npcs(n)) if n == "y"));
        assert_eq!(
            "x:100000".parse::<RoomSpec>().ok().map(|r| r.npcs),
            Some(MAX_NPCS)
        );
        let crowded = Config {
            npcs: MAX_NPCS + 1,
            ..Config::default()
        };
        assert!(matches!(crowded.validate(), Err(ConfigError::Npcs(_))));
        let twice = Config {
            persistent_rooms: vec!["a".parse().expect("valid"), "a".parse().expect("valid")],
            ..Config::default()
        };
        assert!(matches!(
            twice.validate(),
            Err(ConfigError::PersistentRooms)
        ));
    }

    /// The default configuration at these rates.
    fn at_rates(tick_hz: u32, snapshot_hz: u32) -> Config {
        Config {
            tick_hz,
            snapshot_hz,
            ..Config::default()
        }
    }

    #[test]
    fn snapshot_cadence_matches_the_rate() {
        for (tick_hz, snapshot_hz) in [(30, 30), (60, 20), (30, 7), (128, 1)] {
            let c = at_rates(tick_hz, snapshot_hz);
            let due = (1..=tick_hz * 10).filter(|&t| c.snapshot_due(t)).count();
            assert_eq!(due as u32, snapshot_hz * 10, "{tick_hz}/{snapshot_hz}");
        }
    }

    /// Counted between any two ticks, the snapshots between them are the
    /// due ticks after the first up to the second: one from a snapshot to
    /// the next, however the ticks fall (60 / 25 Hz alternates 2 and 3
    /// ticks apart), and the count goes on across the tick counter's wrap.
    #[test]
    fn snapshots_between_counts_the_due_ticks() {
        for (tick_hz, snapshot_hz) in [(30, 30), (60, 20), (60, 25), (30, 7)] {
            let c = at_rates(tick_hz, snapshot_hz);
            let due: Vec<u32> = (0..200).filter(|&t| c.snapshot_due(t)).collect();
            for from in 0..100 {
                for to in from..200 {
                    let expected = due.iter().filter(|&&t| t > from && t <= to).count();
                    assert_eq!(
                        c.snapshots_between(Tick(from), Tick(to)),
                        expected as u64,
                        "{tick_hz}/{snapshot_hz} from {from} to {to}"
                    );
                }
            }
            for pair in due.windows(2) {
                assert_eq!(c.snapshots_between(Tick(pair[0]), Tick(pair[1])), 1);
            }
        }
        // Across the wrap, as the due ticks fall (tick 0 is always due).
        for (tick_hz, snapshot_hz) in [(30, 30), (60, 20), (60, 25), (30, 7)] {
            let c = at_rates(tick_hz, snapshot_hz);
            let ticks: Vec<u32> = (u32::MAX - 100..=u32::MAX).chain(0..100).collect();
            for (i, &from) in ticks.iter().enumerate() {
                let mut due = 0;
                for &to in &ticks[i + 1..] {
                    due += u64::from(c.snapshot_due(to));
                    assert_eq!(
                        c.snapshots_between(Tick(from), Tick(to)),
                        due,
                        "{tick_hz}/{snapshot_hz} from {from} to {to}"
                    );
                }
            }
        }
    }
}
