//! The arena game: the world the room's tick task owns by `&mut`.

mod grid;
mod ids;
mod world;

pub use world::{EntityKey, World, WorldConfig};
