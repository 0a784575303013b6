//! Pure logic of the simulator: channel settings, the book of decisions, randomness, statements.

pub mod book;
pub mod channel;
pub mod draw;
