//! Integration tests of the contract crate against real parts: the Kafka
//! helpers and dead-lettering on a real broker, and the descriptor set for
//! reflection.

mod dead_letter;
mod descriptor;
mod kafka;
