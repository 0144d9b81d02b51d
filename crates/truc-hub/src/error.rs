//! The hub's refusals, and the one place they become gRPC statuses; the
//! errors of setting a hub up and starting it. Converting has no side
//! effects: every refusal is logged and counted once, on its way out, by
//! the refusal layer (`refusals.rs`).

use tonic::{Code, Status};
use truc_domain::{EnvelopeError, StatusMoveError};
use truc_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{field}: {reason}")]
    TooLarge { field: String, reason: String },
    #[error("{field}: {reason}")]
    Unauthenticated { field: String, reason: String },
    #[error("{field}: {reason}")]
    PermissionDenied { field: String, reason: String },
    #[error("{field}: {reason}")]
    NotFound { field: String, reason: String },
    /// The request is well formed, but what it names is in no state to take it.
    #[error("{field}: {reason}")]
    Precondition { field: String, reason: String },
    /// A per-agency quota is used up; the caller may try again later.
    #[error("{field}: {reason}; retry after {retry_after_seconds} s")]
    Exhausted {
        field: String,
        reason: String,
        retry_after_seconds: u64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Work run on a blocking thread for the call did not finish: it
    /// panicked, or the runtime is shutting down. Never the caller's fault.
    #[error("{what} did not finish: {source}")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl HubError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        HubError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn denied(field: impl Into<String>, reason: impl Into<String>) -> Self {
        HubError::PermissionDenied {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn not_found(field: impl Into<String>, reason: impl Into<String>) -> Self {
        HubError::NotFound {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Runs `work` on a blocking thread and waits for it: the one way the
/// hub's calls keep sled reads and whole-store scans off the runtime's
/// workers, and the one conversion of a task that did not finish
/// ([`HubError::Task`], INTERNAL on the wire). `what` says what the work
/// was, for the message.
pub(crate) async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HubError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|source| HubError::Task { what, source })
}

/// Metadata that tells the refusal layer what the code alone does not: a
/// storage failure, or a full disk (RESOURCE_EXHAUSTED is also an oversize
/// message or a quota). The layer reads it and removes it before the answer
/// leaves the hub.
pub(crate) const CAUSE_KEY: &str = "truc-refusal-cause";

/// What [`CAUSE_KEY`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The store failed (a file, the database, damage): logged as an error.
    Storage,
    /// The data directory's disk is full: logged as a warning.
    StorageFull,
}

impl Cause {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Cause::Storage => "storage",
            Cause::StorageFull => "storage-full",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Cause> {
        [Cause::Storage, Cause::StorageFull]
            .into_iter()
            .find(|cause| cause.name() == name)
    }
}

impl HubError {
    /// What the refusal layer should know beyond the code, if anything.
    fn cause(&self) -> Option<Cause> {
        match self {
            HubError::Store(StoreError::StorageFull { .. }) => Some(Cause::StorageFull),
            HubError::Store(
                StoreError::Io { .. }
                | StoreError::WriterGone
                | StoreError::Locked { .. }
                | StoreError::Unavailable { .. }
                | StoreError::Database { .. }
                | StoreError::Corrupt { .. }
                | StoreError::DataLost { .. }
                | StoreError::Archive { .. },
            ) => Some(Cause::Storage),
            _ => None,
        }
    }
}

impl From<EnvelopeError> for HubError {
    fn from(error: EnvelopeError) -> Self {
        if error.too_large {
            HubError::TooLarge {
                field: error.field,
                reason: error.reason,
            }
        } else {
            HubError::Invalid {
                field: error.field,
                reason: error.reason,
            }
        }
    }
}

/// The one mapping from every refusal to a gRPC status; it only converts.
impl From<HubError> for Status {
    fn from(error: HubError) -> Status {
        let code = match &error {
            HubError::Invalid { .. } => Code::InvalidArgument,
            HubError::TooLarge { .. } => Code::ResourceExhausted,
            HubError::Unauthenticated { .. } => Code::Unauthenticated,
            HubError::PermissionDenied { .. } => Code::PermissionDenied,
            HubError::NotFound { .. } => Code::NotFound,
            HubError::Precondition { .. } => Code::FailedPrecondition,
            HubError::Exhausted { .. } => Code::ResourceExhausted,
            HubError::Store(store) => match store {
                StoreError::AlreadyExists { .. } => Code::AlreadyExists,
                StoreError::NotFound { .. } => Code::NotFound,
                StoreError::IllegalMove(StatusMoveError::ReasonRequired)
                | StoreError::IllegalMove(StatusMoveError::UnknownCode(_))
                | StoreError::IllegalMove(StatusMoveError::SenderOnly) => Code::InvalidArgument,
                StoreError::IllegalMove(_) => Code::FailedPrecondition,
                // A full disk is a limit the hub must carry, like an oversize
                // message: the caller may retry once space is freed.
                StoreError::StorageFull { .. } => Code::ResourceExhausted,
                StoreError::Io { .. }
                | StoreError::WriterGone
                | StoreError::Locked { .. }
                | StoreError::Unavailable { .. } => Code::Unavailable,
                StoreError::Database { .. } => Code::Internal,
                StoreError::Corrupt { .. } | StoreError::DataLost { .. } => Code::Internal,
                StoreError::Closed { .. } | StoreError::Archived { .. } => Code::FailedPrecondition,
                // Gone meanwhile: the same request again is served.
                StoreError::Retry { .. } => Code::Unavailable,
                StoreError::Archive { .. } => Code::Internal,
            },
            HubError::Task { .. } => Code::Internal,
        };
        let message = match &error {
            HubError::Store(StoreError::AlreadyExists {
                document_id,
                accepted_at_unix_ms,
            }) => format!(
                "document_id: {document_id} was already accepted at {} with different content; the original stands: send a document of another number, or an update (business type 2) of this one",
                truc_domain::vietnam_time(*accepted_at_unix_ms)
            ),
            HubError::Store(StoreError::IllegalMove(StatusMoveError::ReasonRequired)) => {
                "reason: a rejection or a refused recall must say why".to_owned()
            }
            HubError::Store(StoreError::IllegalMove(StatusMoveError::UnknownCode(code))) => {
                format!("status: {code} is not a status a recipient may report")
            }
            HubError::Store(StoreError::IllegalMove(other)) => format!("status: {other}"),
            HubError::Store(StoreError::Closed { what }) => format!("state: {what}"),
            HubError::Store(StoreError::Archived {
                document_id,
                archive,
            }) => format!(
                "document_id: {document_id} left the live store for archive {archive} once every \
                 delivery was final; nothing more can be recorded on it"
            ),
            other => other.to_string(),
        };
        let mut status = Status::new(code, message);
        if let Some(cause) = error.cause() {
            status.metadata_mut().insert(
                CAUSE_KEY,
                tonic::metadata::MetadataValue::from_static(cause.name()),
            );
        }
        if let HubError::Exhausted {
            retry_after_seconds,
            ..
        } = &error
        {
            // The HTTP header's name and meaning: whole seconds to wait.
            if let Ok(value) = retry_after_seconds.to_string().parse() {
                status.metadata_mut().insert("retry-after", value);
            }
        }
        status
    }
}

/// Why a hub cannot be set up from its configuration file: each names the
/// setting as the file writes it, or the file, and carries the error
/// underneath.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("directory: {0}")]
    Directory(#[from] crate::directory::DirectoryError),
    /// The CA's certificates, or the hub's certificate and key (`field`
    /// is `tls.ca_cert`, or `tls.cert` and `tls.key`).
    #[error("{field}: {source}")]
    Certificates {
        field: &'static str,
        #[source]
        source: truc_pki::PkiError,
    },
    /// The calendar's error names its key already.
    #[error(transparent)]
    Calendar(#[from] crate::calendar::CalendarError),
    #[error("data_dir: cannot create {}: {source}", path.display())]
    CreateDataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not damage: restoring a backup over it would lose what the other
    /// hub accepted.
    #[error(
        "data_dir: {} is in use by another hub{}; stop that hub first, or give this one a \
         data_dir of its own. Nothing is damaged.",
        path.display(),
        pid.map(|pid| format!(" (PID {pid}: `ps -p {pid}` shows it)")).unwrap_or_default()
    )]
    DataDirInUse {
        path: std::path::PathBuf,
        pid: Option<u32>,
    },
    #[error(
        "cannot open the data directory {}: {source}. If the files are damaged, restore them \
         from a backup; the hub will not serve from damaged storage.",
        path.display()
    )]
    OpenDataDir {
        path: std::path::PathBuf,
        #[source]
        source: StoreError,
    },
    /// `store.password_file` or `store.ca_cert`.
    #[error("{field}: cannot read {}: {source}", path.display())]
    ReadStoreFile {
        field: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the database of [store] url: {source}")]
    OpenDatabase {
        #[source]
        source: StoreError,
    },
}

/// Why the hub could not start serving, or stopped serving on an error: a
/// fault of its set-up or of the machine, never a caller's request.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The hub's certificate, key, trust anchors or revocation list do not
    /// make a TLS configuration.
    #[error("the hub's TLS cannot be set up: {0}")]
    Tls(#[from] crate::security::TlsSetupError),
    /// A setting the hub runs with cannot be honoured; `field` names it as
    /// the config file does.
    #[error("{field}: {source}")]
    Setting {
        field: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The API's descriptors for server reflection do not load.
    #[error("server reflection cannot start: the API descriptors do not load: {source}")]
    Reflection {
        #[source]
        source: tonic_reflection::server::Error,
    },
    /// Serving stopped on a transport error (the listener failed).
    #[error("serving gRPC failed: {source}")]
    Serve {
        #[source]
        source: tonic::transport::Error,
    },
}
