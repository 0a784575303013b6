//! Persistence of the simulator's decisions.

pub mod journal;

pub use journal::Journal;
