//! Status moves by recipients: the request as asked checked once into a
//! store request, for single moves and batches alike.

use truc_domain::{AgencyCode, Status as DocStatus};
use truc_store::{MoveRequest, StatusEntry, StoreError};

use crate::directory::{Directory, Route};
use crate::error::HubError;
use crate::{parse_document_id, Hub};

/// A move as a recipient asked it, nothing checked yet (the service's
/// conversion of the wire request).
pub(crate) struct AskedMove {
    pub document_id: String,
    /// Empty: the caller's own delivery.
    pub recipient: String,
    /// The code as sent, checked by [`check`] so that its refusal names it.
    pub status: i32,
    pub reason: String,
}

/// Checks one move made by `agency`: the document id, that the delivery is
/// the caller's own, the status code and the reason's length.
pub(crate) fn check(
    hub: &Hub,
    agency: AgencyCode,
    request: AskedMove,
) -> Result<MoveRequest, HubError> {
    parse_document_id("document_id", &request.document_id)?;
    let recipient = if request.recipient.is_empty() {
        agency
    } else {
        let recipient: AgencyCode = request
            .recipient
            .parse()
            .map_err(|error| HubError::invalid("recipient", format!("{error}")))?;
        let directory = hub.directory();
        if recipient != agency && !directory.acts_for(&agency, &recipient) {
            return Err(HubError::denied(
                "recipient",
                not_acting_for(&directory, agency, recipient),
            ));
        }
        recipient
    };
    let status = u32::try_from(request.status)
        .map_err(|_| truc_domain::StatusMoveError::UnknownCode(0))
        .and_then(DocStatus::from_code)
        .map_err(|_| {
            HubError::invalid(
                "status",
                format!(
                    "{} is not a status code (01, 02, 03, 04, 05, 06, 15, 16)",
                    request.status
                ),
            )
        })?;
    if status == DocStatus::RecallRequested {
        return Err(HubError::invalid(
            "status",
            "13 (recall requested) is recorded when the sender sends a recall, update or replace; a recipient answers 15 or 16",
        ));
    }
    truc_domain::check_reason(&request.reason, hub.limits.reason_chars_max)?;
    Ok(MoveRequest {
        document_id: request.document_id,
        entry: StatusEntry {
            code: status.code(),
            at_unix_ms: hub.watch.clock.now_unix_ms(),
            // A relay's moves are its own acts on the unit's behalf.
            actor: agency.to_string(),
            reason: request.reason,
        },
        recipient: recipient.to_string(),
    })
}

/// Why `agency` may not move `unit`'s delivery, in the directory's terms.
fn not_acting_for(directory: &Directory, agency: AgencyCode, unit: AgencyCode) -> String {
    if !directory.is_relay(&agency) {
        return format!("{agency} may move only its own deliveries, not {unit}'s");
    }
    if !directory.relays_for(&agency, &unit) {
        return format!(
            "{agency} relays only for the units of its subtree; {unit} is not one of them"
        );
    }
    match directory.route(&unit) {
        Route::Unregistered { .. } => {
            format!("{unit} is not registered in the directory of the axis")
        }
        Route::Own { .. } => {
            format!("{unit} has a node of its own, which moves its statuses; {agency} does not act for it")
        }
        Route::Relay { relay, .. } => {
            format!("{unit} is reached through {relay}, the nearer relay, which acts for it")
        }
        Route::NoRoute { .. } => format!("{unit} has no route; no relay acts for it"),
    }
}

/// A refused move, with "not found" said in the caller's terms.
pub(crate) fn refusal(error: StoreError, document_id: &str, recipient: &str) -> HubError {
    match error {
        StoreError::NotFound { .. } => HubError::not_found(
            "document_id",
            format!("{document_id} has no delivery to {recipient}"),
        ),
        other => other.into(),
    }
}

/// Counts a recorded move and logs it inside the envelope's span.
pub(crate) fn record_moved(recipient: &str, entry: &StatusEntry) {
    let status = DocStatus::from_code(entry.code).map_or("unknown", |status| status.name());
    crate::metrics::status_moved(recipient, status);
    tracing::debug!(%recipient, status, "status moved");
}

/// Checks and records a batch: every move gets its own result.
pub(crate) async fn move_all(
    hub: &Hub,
    agency: AgencyCode,
    requests: Vec<AskedMove>,
) -> Result<Vec<Result<StatusEntry, HubError>>, HubError> {
    if requests.len() > hub.limits.moves_per_call_max {
        return Err(HubError::TooLarge {
            field: "moves".into(),
            reason: format!(
                "{} moves in one call; at most {}",
                requests.len(),
                hub.limits.moves_per_call_max
            ),
        });
    }
    let mut results: Vec<Option<Result<StatusEntry, HubError>>> =
        Vec::with_capacity(requests.len());
    let mut checked = Vec::with_capacity(requests.len());
    let mut positions = Vec::with_capacity(requests.len());
    for (index, request) in requests.into_iter().enumerate() {
        match check(hub, agency, request) {
            Ok(request) => {
                positions.push(index);
                checked.push(request);
                results.push(None);
            }
            Err(error) => results.push(Some(Err(error))),
        }
    }
    let keys: Vec<(String, String)> = checked
        .iter()
        .map(|r| (r.document_id.clone(), r.recipient.clone()))
        .collect();
    let stored = hub.store.move_all(checked).await?;
    for ((index, outcome), (document_id, recipient)) in positions.into_iter().zip(stored).zip(keys)
    {
        results[index] = Some(outcome.map_err(|error| refusal(error, &document_id, &recipient)));
    }
    Ok(results
        .into_iter()
        .map(|result| result.expect("every move has a result"))
        .collect())
}
