//! Figures read from the stored records themselves, for any engine: the
//! per-agency report and the counters rebuilt, which the live counters are
//! checked against. Documents that left for an archive count through the
//! figures kept for them and the duplicate index.

use std::collections::BTreeMap;

use crate::engine::Reader;
use crate::error::StoreError;
use crate::records::DocumentSignatureState;
use crate::{CounterMap, ReportRow};

/// Per-agency figures for documents dated in an inclusive range of
/// `yyyymmdd` keys: sent and received, the distinct statuses each agency
/// reported as a recipient, how many documents each sent to `focus`
/// (signed ones apart), and deliveries that passed a feedback deadline.
pub(crate) fn from_records<R: Reader + ?Sized>(
    reader: &R,
    from_date_key: u32,
    to_date_key: u32,
    focus: Option<&str>,
) -> Result<BTreeMap<String, ReportRow>, StoreError> {
    let mut rows: BTreeMap<String, ReportRow> = BTreeMap::new();
    for document in reader.document_summaries() {
        let document = document?;
        if !(from_date_key..=to_date_key).contains(&document.date_key) {
            continue;
        }
        let sender = rows.entry(document.sender.clone()).or_default();
        sender.sent += 1;
        if focus.is_some_and(|focus| document.recipients.iter().any(|r| r == focus)) {
            sender.sent_to_focus += 1;
            if document.document_signature_state == DocumentSignatureState::Valid {
                sender.sent_to_focus_signed += 1;
            }
        }
        for delivery in reader.deliveries(&document.document_id)? {
            let row = rows.entry(delivery.recipient.clone()).or_default();
            if delivery.arrived() {
                row.received += 1;
            }
            for entry in &delivery.history {
                row.statuses_reported |= 1 << entry.code.min(31);
            }
        }
    }
    for record in reader.overdue_records(None) {
        let record = record?;
        let date_key = record
            .document_id
            .parse::<truc_domain::DocumentId>()
            .map_or(0, |id| id.date().ordinal_key());
        if (from_date_key..=to_date_key).contains(&date_key) {
            rows.entry(record.recipient).or_default().overdue += 1;
        }
    }
    for ((agency, date_key), figures) in reader.retained_figures()? {
        if (from_date_key..=to_date_key).contains(&date_key) {
            let row = rows.entry(agency).or_default();
            row.sent += figures.sent;
            row.received += figures.received;
            row.statuses_reported |= figures.statuses_reported;
            row.overdue += figures.overdue;
        }
    }
    if let Some(focus) = focus {
        for archived in reader.archived_documents() {
            let archived = archived?;
            let (sender, date_key) = archived.sender_and_date();
            if (from_date_key..=to_date_key).contains(&date_key)
                && archived.recipients.iter().any(|r| r == focus)
            {
                let row = rows.entry(sender).or_default();
                row.sent_to_focus += 1;
                if archived.document_signature_state == DocumentSignatureState::Valid {
                    row.sent_to_focus_signed += 1;
                }
            }
        }
    }
    Ok(rows)
}

/// The counters recomputed from the documents and deliveries: a document
/// counts once for its sender, and once for each recipient whose delivery
/// has arrived.
pub(crate) fn counters_from_records<R: Reader + ?Sized>(
    reader: &R,
) -> Result<CounterMap, StoreError> {
    let mut entries = CounterMap::new();
    for document in reader.document_summaries() {
        let document = document?;
        entries
            .entry((document.sender.clone(), document.date_key))
            .or_default()
            .0 += 1;
        for delivery in reader.deliveries(&document.document_id)? {
            if delivery.arrived() {
                entries
                    .entry((delivery.recipient.clone(), document.date_key))
                    .or_default()
                    .1 += 1;
            }
        }
    }
    add_retained(&mut entries, reader.retained_figures()?);
    Ok(entries)
}

/// Adds what archived documents counted to counters rebuilt from records.
pub(crate) fn add_retained(
    entries: &mut CounterMap,
    retained: BTreeMap<(String, u32), crate::RetainedFigures>,
) {
    for (key, figures) in retained {
        if figures.sent > 0 || figures.received > 0 {
            let entry = entries.entry(key).or_default();
            entry.0 += figures.sent;
            entry.1 += figures.received;
        }
    }
}
