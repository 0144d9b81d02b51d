//! The one error type of this crate: what failed, on which server or file, and the logs that say why.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while installing, starting, querying or
/// breaking a server. Errors about a process that did not come up carry the
/// tail of its log, so that a CI failure can be read without the temporary
/// directory.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `tests/cluster/install-packages.sh` failed: most often no network or
    /// no package registry, which the message says.
    #[error("packages: PostgreSQL, Patroni and etcd could not be installed ({status}): {output}")]
    Packages { status: String, output: String },

    /// A program these servers need is not on disk even after the install.
    #[error("{program}: not found (looked in {looked_in}); run tests/cluster/install-packages.sh")]
    MissingProgram {
        program: &'static str,
        looked_in: String,
    },

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("starting {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// The OS user servers run as (PostgreSQL refuses to run as root).
    #[error("OS user {user}: {reason}")]
    ServiceUser { user: &'static str, reason: String },

    #[error("{what} exited before it was ready ({status})\n{logs}")]
    ExitedEarly {
        what: String,
        status: String,
        logs: String,
    },

    #[error("timed out after {waited:?} waiting for {what}\n{logs}")]
    Timeout {
        what: String,
        waited: Duration,
        logs: String,
    },

    #[error("SQL on {what}: {}", postgres_error_text(source))]
    Sql {
        what: String,
        #[source]
        source: postgres::Error,
    },

    /// Patroni reports no leader where one is needed.
    #[error("the cluster has no leader now: {state}")]
    NoLeader { state: String },

    #[error("Patroni REST API {url}: {reason}")]
    RestApi { url: String, reason: String },

    /// A caller's argument this crate refuses, named.
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },

    #[error("signal {signal} to {what} (pid {pid}): {source}")]
    Signal {
        signal: &'static str,
        what: String,
        pid: i32,
        #[source]
        source: nix::errno::Errno,
    },

    #[error("TLS certificate for PostgreSQL: {0}")]
    Certificate(#[from] truc_pki::PkiError),

    #[error("the system's random source gave no bytes for a password")]
    Random,
}

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

/// A PostgreSQL error with what the server said: `postgres::Error`'s own
/// text is only "db error" when the server refused something.
pub fn postgres_error_text(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db_error) => format!(
            "{} {}: {}",
            db_error.severity(),
            db_error.code().code(),
            db_error.message()
        ),
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        }
    }
}

/// A closure turning an I/O error into [`ClusterError::Io`] for `path`.
pub(crate) fn io_error(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> ClusterError {
    let path = path.into();
    move |source| ClusterError::Io {
        action,
        path,
        source,
    }
}
