//! Real PostgreSQL for tests and crash tests: a standalone server, or three under Patroni on etcd, started in a temporary directory.
//!
//! Nothing here is a stand-in: the servers are Debian's PostgreSQL, Patroni
//! and etcd, installed by the project's own script ([`ensure_packages`],
//! which runs `tests/cluster/install-packages.sh`), listening on free ports
//! of 127.0.0.1, with their data, sockets and logs in the directory they
//! are given. When this process is root (as CI is) they run as the
//! `postgres` user, since PostgreSQL refuses to run as root.
//!
//! - [`PostgresServer`]: one server with a role `truc` and
//!   [`PostgresServer::create_database`] for a database per test.
//! - [`Cluster`]: three members, Patroni in synchronous mode (strict), a
//!   three-member etcd; [`Cluster::url`] always reaches the primary;
//!   [`Cluster::kill_leader`], [`Cluster::kill_member`],
//!   [`Cluster::restart_member`], [`Cluster::kill_etcd`] and
//!   [`Cluster::restart_etcd`] break and mend it, and
//!   [`Cluster::wait_for_failover`] says how long until another member
//!   led and took writes again.
//!
//! Dropping either kills every process it started (also while a test
//! panics). A wait that times out returns [`ClusterError::Timeout`] with
//! the tail of every log.

mod cluster;
mod error;
mod os;
mod packages;
mod patroni;
mod server;
mod sql;
mod tls;

pub use cluster::{
    Cluster, ClusterOptions, ClusterState, Failover, KilledMember, MemberRole, MemberState,
    CLUSTER_MEMBERS, CLUSTER_STARTUP_TIMEOUT_DEFAULT, PATRONI_LOOP_WAIT_SECONDS_DEFAULT,
    PATRONI_RETRY_TIMEOUT_SECONDS_DEFAULT, PATRONI_TTL_SECONDS_DEFAULT,
};
pub use error::{postgres_error_text, ClusterError};
pub use os::postgres_bin_dir;
pub use packages::{ensure_packages, INSTALL_SCRIPT};
pub use server::{PostgresOptions, PostgresServer, POSTGRES_STARTUP_TIMEOUT_DEFAULT};
pub use sql::APPLICATION_ROLE;
