//! Overdue feedback and dead letters as callers see them: lists (operators:
//! all; agencies: what they sent or receive, a relay also its units'), and
//! the operators' resend and cancel, recorded with the operator's name.

use truc_domain::views::{
    DeadLetter, DeadLetterAction, DeadLetterFilter, DeadLetterList, OverdueDelivery, OverdueFilter,
    OverdueList,
};
use truc_domain::AgencyCode;
use truc_store::{DeadLetterRecord, DeadLetterState, OverdueRecord};

use crate::error::HubError;
use crate::{parse_document_id, Caller, Hub, Rows};

/// Rows listed when the request names no limit.
const LIST_ROWS_DEFAULT: usize = 100;

fn limit(hub: &Hub, asked: u32) -> Result<usize, HubError> {
    match asked as usize {
        0 => Ok(LIST_ROWS_DEFAULT.min(hub.limits.list_rows_max)),
        asked if asked > hub.limits.list_rows_max => Err(HubError::TooLarge {
            field: "limit".into(),
            reason: format!("{asked} rows asked; at most {}", hub.limits.list_rows_max),
        }),
        asked => Ok(asked),
    }
}

fn agency_filter(text: &str) -> Result<Option<String>, HubError> {
    if text.is_empty() {
        return Ok(None);
    }
    let code: AgencyCode = text
        .parse()
        .map_err(|error| HubError::invalid("agency", format!("{error}")))?;
    Ok(Some(code.to_string()))
}

/// Whether `caller` sees a delivery of `sender`'s document to `recipient`.
fn sees(hub: &Hub, caller: &Caller, sender: &str, recipient: &str) -> bool {
    match caller {
        Caller::Operator { .. } | Caller::Administrator { .. } => true,
        Caller::Agency { code, .. } => {
            sender == code.to_string() || Rows::Of(*code).shows(&hub.directory(), recipient)
        }
    }
}

/// Overdue records still owed: the feedback has not come since, and the
/// delivery is not a dead letter (those are listed as such until resent).
pub(crate) fn owed(hub: &Hub) -> impl Iterator<Item = Result<OverdueRecord, HubError>> + '_ {
    hub.store.overdue_records(None).filter_map(move |record| {
        let owed = || -> Result<Option<OverdueRecord>, HubError> {
            let record = record?;
            let Some(delivery) = hub.store.delivery(&record.document_id, &record.recipient)? else {
                return Ok(None);
            };
            // Answered late: counted in reports, no longer owed.
            if record.kind.met_by(&delivery) {
                return Ok(None);
            }
            if hub
                .store
                .dead_letter(&record.document_id, &record.recipient)?
                .is_some_and(|letter| letter.state != DeadLetterState::Resent)
            {
                return Ok(None);
            }
            Ok(Some(record))
        };
        owed().transpose()
    })
}

pub(crate) fn list_overdue(
    hub: &Hub,
    caller: &Caller,
    request: &OverdueFilter,
) -> Result<OverdueList, HubError> {
    let agency = agency_filter(&request.agency)?;
    let limit = limit(hub, request.limit)?;
    let now = hub.watch.clock.now_unix_ms();
    let mut rows = Vec::new();
    for record in owed(hub) {
        let record = record?;
        if agency
            .as_ref()
            .is_some_and(|a| *a != record.recipient && *a != record.sender)
            || !sees(hub, caller, &record.sender, &record.recipient)
        {
            continue;
        }
        let subject = hub
            .store
            .document(&record.document_id)?
            .map(|d| d.subject)
            .unwrap_or_default();
        rows.push(OverdueDelivery {
            late_ms: (now - record.deadline_unix_ms).max(0),
            document_id: record.document_id,
            sender: record.sender,
            recipient: record.recipient,
            deadline: record.kind.name().into(),
            deadline_unix_ms: record.deadline_unix_ms,
            subject,
        });
    }
    rows.sort_by(|a, b| {
        (a.recipient.as_str(), -a.late_ms, a.document_id.as_str()).cmp(&(
            b.recipient.as_str(),
            -b.late_ms,
            b.document_id.as_str(),
        ))
    });
    let truncated = rows.len() > limit;
    rows.truncate(limit);
    Ok(OverdueList {
        deliveries: rows,
        truncated,
    })
}

pub(crate) fn dead_letter(letter: DeadLetterRecord) -> DeadLetter {
    DeadLetter {
        document_id: letter.document_id,
        sender: letter.sender,
        recipient: letter.recipient,
        queue_owner: letter.queue_owner,
        expired_at_unix_ms: letter.expired_at_unix_ms,
        reason: letter.reason,
        state: letter.state.name().into(),
        actions: letter
            .actions
            .into_iter()
            .map(|action| DeadLetterAction {
                action: action.action.name().into(),
                operator: action.operator,
                at_unix_ms: action.at_unix_ms,
                reason: action.reason,
            })
            .collect(),
    }
}

pub(crate) fn list_dead_letters(
    hub: &Hub,
    caller: &Caller,
    request: &DeadLetterFilter,
) -> Result<DeadLetterList, HubError> {
    let agency = agency_filter(&request.agency)?;
    let limit = limit(hub, request.limit)?;
    let mut rows = Vec::new();
    for letter in hub.store.dead_letters(None) {
        let letter = letter?;
        if (!request.include_resolved && letter.state != DeadLetterState::Open)
            || agency
                .as_ref()
                .is_some_and(|a| *a != letter.recipient && *a != letter.sender)
            || !sees(hub, caller, &letter.sender, &letter.recipient)
        {
            continue;
        }
        rows.push(dead_letter(letter));
        if rows.len() > limit {
            break;
        }
    }
    let truncated = rows.len() > limit;
    rows.truncate(limit);
    Ok(DeadLetterList {
        dead_letters: rows,
        truncated,
    })
}

/// The administrator's recorded name (`administrator:<name>`), or a
/// refusal naming the certificate: operators only read.
fn administrator(caller: &Caller, what: &str) -> Result<String, HubError> {
    match caller {
        Caller::Administrator { .. } => Ok(caller.name()),
        Caller::Operator { name } => Err(HubError::denied(
            "certificate",
            format!(
                "operator '{name}' may read but not {what} dead letters; an administrator's \
                 certificate may (`truc certs administrator --name <name>` issues one)"
            ),
        )),
        Caller::Agency { code, .. } => Err(HubError::denied(
            "certificate",
            format!("{code} is an agency; only administrators may {what} dead letters"),
        )),
    }
}

/// The dead letter named by a request, checked field by field.
fn named_letter(hub: &Hub, document_id: &str, recipient: &str) -> Result<(), HubError> {
    parse_document_id("document_id", document_id)?;
    recipient
        .parse::<AgencyCode>()
        .map_err(|error| HubError::invalid("recipient", format!("{error}")))?;
    if hub.store.dead_letter(document_id, recipient)?.is_none() {
        return Err(HubError::not_found(
            "document_id",
            format!("no dead letter of {document_id} to {recipient}"),
        ));
    }
    Ok(())
}

pub(crate) async fn resend(
    hub: &Hub,
    caller: &Caller,
    document_id: &str,
    recipient: &str,
) -> Result<DeadLetter, HubError> {
    let operator = administrator(caller, "resend")?;
    named_letter(hub, document_id, recipient)?;
    let now = hub.watch.clock.now_unix_ms();
    let mut deadlines = hub.watch.accept_deadlines(now, None);
    deadlines.due_date_unix_ms = None;
    let letter = hub
        .store
        .resend_dead_letter(document_id, recipient, &operator, now, deadlines)
        .await?;
    tracing::info!(document_id = %letter.document_id, recipient = %letter.recipient, %operator, "dead letter resent");
    Ok(dead_letter(letter))
}

pub(crate) async fn cancel(
    hub: &Hub,
    caller: &Caller,
    document_id: &str,
    recipient: &str,
    reason: &str,
) -> Result<DeadLetter, HubError> {
    let operator = administrator(caller, "cancel")?;
    parse_document_id("document_id", document_id)?;
    if reason.trim().is_empty() {
        return Err(HubError::invalid(
            "reason",
            "a cancelled dead letter must say why",
        ));
    }
    truc_domain::check_reason(reason, hub.limits.reason_chars_max)?;
    named_letter(hub, document_id, recipient)?;
    let letter = hub
        .store
        .cancel_dead_letter(
            document_id,
            recipient,
            &operator,
            hub.watch.clock.now_unix_ms(),
            reason,
        )
        .await?;
    tracing::info!(document_id = %letter.document_id, recipient = %letter.recipient, %operator, "dead letter cancelled");
    Ok(dead_letter(letter))
}
