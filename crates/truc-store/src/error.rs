//! What the store can refuse or fail with.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("document {document_id} already exists with different content (accepted at {})", truc_domain::vietnam_time(*.accepted_at_unix_ms))]
    AlreadyExists {
        document_id: String,
        accepted_at_unix_ms: i64,
    },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("status: {0}")]
    IllegalMove(#[from] truc_domain::StatusMoveError),
    /// A read or write of the store's files failed: what was being done,
    /// on which file or folder, and the system's error.
    #[error("storage is failing: {op} {path}: {source}")]
    Io {
        path: String,
        op: String,
        #[source]
        source: std::io::Error,
    },
    /// The data directory's file system is (nearly) full. New documents are
    /// refused; reads, deliveries, acknowledgements and moves go on.
    #[error("storage full: {reason}; retry when space is freed")]
    StorageFull { reason: String },
    #[error("stored record {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    /// The record exists but its state no longer allows the change.
    #[error("{what}")]
    Closed { what: String },
    /// The data directory lost acknowledged writes or cannot be trusted:
    /// the hub must not start on it.
    #[error("the data files cannot be trusted: {reason}")]
    DataLost { dir: String, reason: String },
    /// Another store (another hub, or `truc report --data-dir`) has the
    /// data directory open; nothing is damaged.
    #[error("{dir} is in use by another process{}", pid.map(|pid| format!(" (PID {pid})")).unwrap_or_default())]
    Locked { dir: String, pid: Option<u32> },
    #[error("the storage writer has stopped")]
    WriterGone,
    /// The database cannot be reached, or holds no writable primary now;
    /// the caller may retry (on this hub or another).
    #[error("the database is unavailable: {reason}")]
    Unavailable { reason: String },
    /// The database refused or failed a statement.
    #[error("the database failed: {reason}")]
    Database { reason: String },
    /// The document left the live store for an archive: its deliveries
    /// were all final, and nothing more can be recorded on them.
    #[error("{document_id} left the live store for archive {archive}: every delivery was final")]
    Archived {
        document_id: String,
        archive: String,
    },
    /// Something the operation needed went away meanwhile; the same
    /// request again will be served (`field` names what).
    #[error("{field}: {reason}")]
    Retry { field: String, reason: String },
    /// An archive file could not be written; nothing left the live store.
    #[error("archive {file}: {reason}")]
    Archive { file: String, reason: String },
}

impl StoreError {
    /// The same error again, for each of the callers one failure answers.
    pub(crate) fn again(&self) -> StoreError {
        match self {
            StoreError::AlreadyExists {
                document_id,
                accepted_at_unix_ms,
            } => StoreError::AlreadyExists {
                document_id: document_id.clone(),
                accepted_at_unix_ms: *accepted_at_unix_ms,
            },
            StoreError::NotFound { what } => StoreError::NotFound { what: what.clone() },
            StoreError::IllegalMove(error) => StoreError::IllegalMove(error.clone()),
            StoreError::Io { path, op, source } => StoreError::Io {
                path: path.clone(),
                op: op.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            StoreError::StorageFull { reason } => StoreError::StorageFull {
                reason: reason.clone(),
            },
            StoreError::Corrupt { key, reason } => StoreError::Corrupt {
                key: key.clone(),
                reason: reason.clone(),
            },
            StoreError::Closed { what } => StoreError::Closed { what: what.clone() },
            StoreError::DataLost { dir, reason } => StoreError::DataLost {
                dir: dir.clone(),
                reason: reason.clone(),
            },
            StoreError::Locked { dir, pid } => StoreError::Locked {
                dir: dir.clone(),
                pid: *pid,
            },
            StoreError::WriterGone => StoreError::WriterGone,
            StoreError::Unavailable { reason } => StoreError::Unavailable {
                reason: reason.clone(),
            },
            StoreError::Database { reason } => StoreError::Database {
                reason: reason.clone(),
            },
            StoreError::Archived {
                document_id,
                archive,
            } => StoreError::Archived {
                document_id: document_id.clone(),
                archive: archive.clone(),
            },
            StoreError::Retry { field, reason } => StoreError::Retry {
                field: field.clone(),
                reason: reason.clone(),
            },
            StoreError::Archive { file, reason } => StoreError::Archive {
                file: file.clone(),
                reason: reason.clone(),
            },
        }
    }
}

impl StoreError {
    /// A failed file operation, named.
    pub(crate) fn io(
        op: impl Into<String>,
        path: &std::path::Path,
        source: std::io::Error,
    ) -> Self {
        if is_storage_full(&source) {
            return StoreError::StorageFull {
                reason: format!(
                    "the disk filled up while {} {} ({source}); free space on the data \
                     directory's disk (everything acknowledged is on disk)",
                    op.into(),
                    path.display()
                ),
            };
        }
        StoreError::Io {
            path: path.display().to_string(),
            op: op.into(),
            source,
        }
    }
}

impl From<sled::Error> for StoreError {
    fn from(error: sled::Error) -> Self {
        let source = match error {
            sled::Error::Io(io) => io,
            other => std::io::Error::other(other.to_string()),
        };
        if is_storage_full(&source) {
            StoreError::StorageFull {
                reason: format!(
                    "the disk filled up during a write ({source}); sled writes nothing more in \
                     this process, so free space on the data directory's disk and restart the hub \
                     (everything acknowledged is on disk)"
                ),
            }
        } else {
            StoreError::Io {
                path: "the tree".into(),
                op: "sled".into(),
                source,
            }
        }
    }
}

/// ENOSPC, known by its error code: the system's, or the kind sled keeps
/// when it raises the error again after a failed flush.
pub(crate) fn is_storage_full(error: &std::io::Error) -> bool {
    const ENOSPC: i32 = 28;
    error.kind() == std::io::ErrorKind::StorageFull || error.raw_os_error() == Some(ENOSPC)
}

/// A write to the payload log that failed: a full disk refuses only the send
/// whose bytes did not fit (nothing else was written), anything else is a
/// storage failure.
pub(crate) fn payload_error(error: std::io::Error) -> StoreError {
    if is_storage_full(&error) {
        StoreError::StorageFull {
            reason: format!(
                "the disk filled up while storing this document's bytes ({error}); nothing of it \
                 was kept, and other sends are taken as space allows"
            ),
        }
    } else {
        StoreError::Io {
            path: crate::PAYLOAD_DIR.into(),
            op: "appending to".into(),
            source: error,
        }
    }
}

/// A read of the payload log that failed: bytes that no longer match their
/// CRC are damage (never served), anything else a storage failure.
pub(crate) fn payload_read_error(error: std::io::Error) -> StoreError {
    if error.kind() == std::io::ErrorKind::InvalidData {
        StoreError::Corrupt {
            key: "(payload)".into(),
            reason: error.to_string(),
        }
    } else {
        StoreError::Io {
            path: crate::PAYLOAD_DIR.into(),
            op: "reading".into(),
            source: error,
        }
    }
}
