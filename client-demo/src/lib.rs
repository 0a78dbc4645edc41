//! The headless bot swarm: the project's load generator and netcode verifier.
//!
//! Each bot is a small set of tokio tasks that plays like a person (moves,
//! aims, shoots), keeps its own replica of the world by applying the server's
//! deltas with the `shared` code, verifies every snapshot against the server's
//! checksum, predicts its own player with the shared movement rules and
//! measures what a player would feel: input-to-acknowledgement latency,
//! snapshot spacing and prediction error.
//!
//! The crate follows the project's split between pure logic and I/O:
//!
//! * pure, clock-free and socket-free: [`brain`] (what a bot presses),
//!   [`prediction`] (client-side prediction and reconciliation), [`replica`]
//!   (the snapshot ring and checksum verification), [`pacing`] (keeping the
//!   server's input buffer short), [`conditioner`] (the latency/jitter model)
//!   and [`report`] (histograms and the JSON report);
//! * I/O: [`connection`] (WebSocket client handshake), `link` (one
//!   connection: reader and writer tasks, or for light bots on a
//!   transparent link, `direct`: read and written by the bot's own task),
//!   [`bot`] (one bot's game, across
//!   reconnections) and [`swarm`] (ramp-up, progress line, aggregation).
//!
//! The `bots` binary only parses flags into a [`swarm::SwarmConfig`] and calls
//! [`swarm::run`].

pub mod bot;
pub mod brain;
pub mod conditioner;
pub mod connection;
mod direct;
mod link;
pub mod metrics;
pub mod pacing;
pub mod prediction;
pub mod replica;
pub mod report;
pub mod swarm;
