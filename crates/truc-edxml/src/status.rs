//! Status messages and the moves they stand for: a checked status message
//! becomes one `MoveStatus` (document, recipient, status, reason), and each
//! entry of a notice the hub sends back becomes a status message for the
//! sender's system. `StaffInfo` and `Timestamp` of a dropped status are not
//! carried: the hub records its own time and the agency of the certificate
//! that moved, and those are what the sender hears.

use truc_domain::Status;

use crate::envelope::response_for;
use crate::model::{Organization, StatusMessage};

/// The move a status message asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusMove {
    pub document_id: String,
    /// `From/OrganId`: the recipient whose delivery moves (the node's own
    /// agency, or a unit of a relay's subtree).
    pub recipient: String,
    pub status: Status,
    /// `Description`.
    pub reason: String,
}

/// The move of a checked status message; `None` when its code is not one a
/// recipient reports (which the check refuses).
pub fn status_move(status: &StatusMessage) -> Option<StatusMove> {
    let code: u32 = status.status_code.parse().ok()?;
    Some(StatusMove {
        document_id: status.response_for.document_id.clone(),
        recipient: status.from.organ_id.clone(),
        status: Status::from_code(code).ok()?,
        reason: status.description.clone(),
    })
}

/// A time in Unix milliseconds as `yyyy/MM/dd HH:mm:ss` in Vietnam (UTC+7).
pub fn vietnam_timestamp(unix_ms: i64) -> String {
    let Ok(instant) =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
    else {
        return String::new();
    };
    let Ok(offset) = time::UtcOffset::from_hms(7, 0, 0) else {
        return String::new();
    };
    let local = instant.to_offset(offset);
    crate::check::format_timestamp(time::PrimitiveDateTime::new(local.date(), local.time()))
}

/// The status message a sender's system reads for one entry of a notice:
/// `recipient` did `code` on `document_id` at `at_unix_ms`, saying `reason`.
pub fn notice_message(
    document_id: &str,
    recipient: &str,
    code: u32,
    at_unix_ms: i64,
    reason: &str,
) -> StatusMessage {
    StatusMessage {
        response_for: response_for(document_id),
        from: Organization {
            organ_id: recipient.to_owned(),
            ..Organization::default()
        },
        status_code: format!("{code:02}"),
        description: reason.to_owned(),
        timestamp: vietnam_timestamp(at_unix_ms),
        staff_info: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_become_status_messages_and_back() {
        let message = notice_message(
            "000.00.00.G22,2026/11/22,7816/VPCP-TTĐT",
            "000.00.00.H41",
            2,
            1_764_000_000_000,
            "Sai thẩm quyền",
        );
        assert_eq!(message.status_code, "02");
        assert_eq!(message.response_for.organ_id, "000.00.00.G22");
        assert_eq!(message.response_for.code, "7816/VPCP-TTĐT");
        assert_eq!(message.response_for.promulgation_date, "2026/11/22");
        assert_eq!(message.timestamp, "2025/11/24 23:00:00");
        let moved = status_move(&message).unwrap();
        assert_eq!(moved.status, Status::Rejected);
        assert_eq!(moved.recipient, "000.00.00.H41");
        assert_eq!(moved.reason, "Sai thẩm quyền");
    }
}
