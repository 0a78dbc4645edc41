//! The arena's wire protocol and game rules, shared by the server, the bots and
//! (through the golden vectors in `client-demo/js-test/golden.json`) the browser.
//!
//! Everything here is pure: no sockets, no clocks, no threads. Time arrives as
//! [`Tick`]s, bytes arrive as slices. That is what lets the server, the bots and
//! the fuzzers run exactly the same code.
//!
//! * [`codec`] is the only module that knows the byte format (bincode 2, varint,
//!   and the snapshot's bit-packed entity section).
//! * [`protocol`] holds the messages of both directions.
//! * [`snapshot`] holds the replicated world state and the delta encoding
//!   (`diff` / `apply`) against a baseline the client acknowledged.
//! * [`rules`] holds the movement and combat rules both sides must agree on.
//! * [`auth`] holds the signed, expiring join tokens.
//! * [`tick`] holds the wrapping [`Tick`] counter.

pub mod auth;
pub mod codec;
pub mod protocol;
pub mod rules;
pub mod snapshot;
pub mod tick;

pub use tick::Tick;
