//! Named limits on everything an envelope may carry. The hub's config may
//! tighten or widen them; these are the defaults.

use serde::{Deserialize, Serialize};

/// Most queue items a node merges into one acknowledgement message (acks
/// queued while an earlier message was being written). The hub's
/// `acks_per_message_max` may not be set below it.
pub const MERGED_ACKS_MAX: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest encoded header accepted, in bytes.
    pub header_bytes_max: usize,
    /// Most recipients on one document.
    pub recipients_max: usize,
    /// Most attachments on one document.
    pub attachments_max: usize,
    /// Largest total of attachment bytes on one document.
    pub document_bytes_max: u64,
    /// Largest attachment chunk in one stream message, in bytes.
    pub chunk_bytes_max: usize,
    /// Longest subject (trich yeu), in characters.
    pub subject_chars_max: usize,
    /// Longest short text field (names, places, addresses), in characters.
    pub text_chars_max: usize,
    /// Most document ids in response_for or business_refs.
    pub references_max: usize,
    /// Longest status reason, in characters.
    pub reason_chars_max: usize,
    /// How far past today (hub clock, Vietnam time) a promulgation date may be, in days.
    pub future_days_max: i64,
    /// Most status moves in one `MoveStatuses` call.
    pub moves_per_call_max: usize,
    /// Most queue items acknowledged by one `Ack` message.
    pub acks_per_message_max: usize,
    /// Most documents one `ListDocuments` call returns.
    pub list_rows_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_bytes_max: 64 * 1024,
            recipients_max: 1_000,
            attachments_max: 100,
            document_bytes_max: 64 * 1024 * 1024,
            chunk_bytes_max: 1024 * 1024,
            subject_chars_max: 2_000,
            text_chars_max: 500,
            references_max: 100,
            reason_chars_max: 2_000,
            future_days_max: 1,
            moves_per_call_max: 4_096,
            acks_per_message_max: 4_096,
            list_rows_max: 1_000,
        }
    }
}
