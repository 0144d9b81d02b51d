//! Conversions between the store's records and PostgreSQL values: times
//! as `timestamptz` (exact to the millisecond), document dates as `date`,
//! lists as `jsonb` a person can read in `psql`.

use serde_json::{json, Value};
use time::{Date, Month, OffsetDateTime};

use crate::error::StoreError;
use crate::records::{
    AttachmentRef, DeadLetterAction, DeadLetterState, DeadlineKind, RefusedRecipient, StatusEntry,
};

pub(crate) fn timestamp(unix_ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub(crate) fn unix_ms(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

/// `yyyymmdd` as a date.
pub(crate) fn date(date_key: u32) -> Result<Date, StoreError> {
    let month = Month::try_from((date_key / 100 % 100) as u8).ok();
    month
        .and_then(|month| {
            Date::from_calendar_date((date_key / 10_000) as i32, month, (date_key % 100) as u8).ok()
        })
        .ok_or_else(|| StoreError::Corrupt {
            key: format!("date {date_key}"),
            reason: "not a calendar date".into(),
        })
}

pub(crate) fn date_key(date: Date) -> u32 {
    date.year() as u32 * 10_000 + u32::from(u8::from(date.month())) * 100 + u32::from(date.day())
}

fn corrupt(what: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: what.to_owned(),
        reason: reason.to_string(),
    }
}

pub(crate) fn attachments_json(attachments: &[AttachmentRef]) -> Value {
    Value::Array(
        attachments
            .iter()
            .map(|a| json!({"sha256": hex::encode(a.sha256), "size_bytes": a.size_bytes}))
            .collect(),
    )
}

pub(crate) fn attachments_from(value: &Value) -> Result<Vec<AttachmentRef>, StoreError> {
    let bad = |reason: &str| corrupt("documents.attachments", reason);
    value
        .as_array()
        .ok_or_else(|| bad("not an array"))?
        .iter()
        .map(|item| {
            let sha256 = item["sha256"]
                .as_str()
                .and_then(|text| hex::decode(text).ok())
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or_else(|| bad("an attachment without a SHA-256"))?;
            let size_bytes = item["size_bytes"]
                .as_u64()
                .ok_or_else(|| bad("an attachment without a size"))?;
            Ok(AttachmentRef { sha256, size_bytes })
        })
        .collect()
}

pub(crate) fn refused_json(refused: &[RefusedRecipient]) -> Value {
    Value::Array(
        refused
            .iter()
            .map(|r| json!({"organ_id": r.organ_id, "reason": r.reason}))
            .collect(),
    )
}

pub(crate) fn refused_from(value: &Value) -> Result<Vec<RefusedRecipient>, StoreError> {
    serde_json::from_value(value.clone()).map_err(|error| corrupt("documents.refused", error))
}

pub(crate) fn entries_json(entries: &[StatusEntry]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| {
                json!({"code": e.code, "at_unix_ms": e.at_unix_ms, "actor": e.actor, "reason": e.reason})
            })
            .collect(),
    )
}

pub(crate) fn entries_from(value: &Value) -> Result<Vec<StatusEntry>, StoreError> {
    serde_json::from_value(value.clone()).map_err(|error| corrupt("queue_items.entries", error))
}

pub(crate) fn actions_json(actions: &[DeadLetterAction]) -> Value {
    Value::Array(
        actions
            .iter()
            .map(|a| {
                json!({"action": a.action.name(), "operator": a.operator,
                       "at_unix_ms": a.at_unix_ms, "reason": a.reason})
            })
            .collect(),
    )
}

pub(crate) fn dead_letter_state(name: &str) -> Result<DeadLetterState, StoreError> {
    [
        DeadLetterState::Open,
        DeadLetterState::Resent,
        DeadLetterState::Cancelled,
    ]
    .into_iter()
    .find(|state| state.name() == name)
    .ok_or_else(|| corrupt("dead_letters.state", format!("unknown state {name:?}")))
}

pub(crate) fn actions_from(value: &Value) -> Result<Vec<DeadLetterAction>, StoreError> {
    let bad = |reason: &str| corrupt("dead_letters.actions", reason);
    value
        .as_array()
        .ok_or_else(|| bad("not an array"))?
        .iter()
        .map(|item| {
            Ok(DeadLetterAction {
                action: dead_letter_state(item["action"].as_str().unwrap_or_default())?,
                operator: item["operator"].as_str().unwrap_or_default().to_owned(),
                at_unix_ms: item["at_unix_ms"]
                    .as_i64()
                    .ok_or_else(|| bad("an action without a time"))?,
                reason: item["reason"].as_str().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

pub(crate) fn deadline_kind(name: &str) -> Result<DeadlineKind, StoreError> {
    [
        DeadlineKind::Arrived,
        DeadlineKind::Received,
        DeadlineKind::DueDate,
        DeadlineKind::Expiry,
    ]
    .into_iter()
    .find(|kind| kind.name() == name)
    .ok_or_else(|| corrupt("deadlines.kind", format!("unknown kind {name:?}")))
}

pub(crate) fn signature_state_name(state: crate::DocumentSignatureState) -> &'static str {
    match state {
        crate::DocumentSignatureState::Absent => "absent",
        crate::DocumentSignatureState::Valid => "valid",
        crate::DocumentSignatureState::Invalid => "invalid",
    }
}

pub(crate) fn signature_state(name: &str) -> Result<crate::DocumentSignatureState, StoreError> {
    Ok(match name {
        "absent" => crate::DocumentSignatureState::Absent,
        "valid" => crate::DocumentSignatureState::Valid,
        "invalid" => crate::DocumentSignatureState::Invalid,
        other => {
            return Err(corrupt(
                "documents.document_signature_state",
                format!("unknown state {other:?}"),
            ))
        }
    })
}

pub(crate) fn sha256_of(bytes: &[u8], what: &str) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| corrupt(what, "not 32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_dates_round_trip_exactly() {
        for ms in [0, 1, 1_796_573_188_569, -86_400_000] {
            assert_eq!(unix_ms(timestamp(ms)), ms);
        }
        for key in [20190312, 20211231, 20240229] {
            assert_eq!(date_key(date(key).unwrap()), key);
        }
        assert!(date(20230229).is_err());
    }
}
