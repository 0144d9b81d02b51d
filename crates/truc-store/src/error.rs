//! What the store can refuse or fail with.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("document {document_id} already exists with different content (accepted at {accepted_at_unix_ms} ms)")]
    AlreadyExists {
        document_id: String,
        accepted_at_unix_ms: i64,
    },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("status: {0}")]
    IllegalMove(#[from] truc_domain::StatusMoveError),
    #[error("storage is full or failing: {0}")]
    Storage(#[from] sled::Error),
    #[error("stored record {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    /// The record exists but its state no longer allows the change.
    #[error("{what}")]
    Closed { what: String },
    /// The data directory lost acknowledged writes or cannot be trusted:
    /// the hub must not start on it.
    #[error("the data files cannot be trusted: {reason}")]
    DataLost { dir: String, reason: String },
    #[error("the storage writer has stopped")]
    WriterGone,
}
