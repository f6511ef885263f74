//! The tests of `checkout-bench`: its command line (`command_line`), and
//! the smoke test: every scenario runs for about a second
//! against real parts (its own Tansu, a fresh PostgreSQL database on
//! `TEST_DATABASE_URL`) so the benchmark code cannot rot. It asserts only that
//! each scenario produced measurements, never a timing.

mod command_line;
mod smoke;
