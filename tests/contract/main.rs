//! Integration tests of the contract crate against real parts: the Kafka
//! helpers on a real broker, and the descriptor set for reflection.

mod descriptor;
mod kafka;
