//! `truc crashtest`: the hub and node agents of the `truc` executable killed with SIGKILL
//! under load (`crashtest.rs`), their files on a file system that loses power
//! (`powercut.rs`), or two hubs on a PostgreSQL cluster whose primary is killed
//! (`cluster.rs`); then every acknowledged send, delivery and move must be there exactly once.
//! The processes are started from the running executable, so only `truc` can call [`run`].

mod cluster;
mod crashtest;
mod powercut;

pub use crashtest::{run, CrashtestArgs};
