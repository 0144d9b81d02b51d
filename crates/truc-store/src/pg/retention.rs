//! The PostgreSQL engine's part of retention (tables of migration 2): the
//! reads the rule makes inside a group's transaction, the rows a group's
//! retirements remove and write, and the readers' queries.

use std::collections::{BTreeMap, HashSet};

use postgres::Row;
use serde_json::Value;
use time::Date;

use super::reader::{keyed_page, row_overdue};
use super::rows::{self, timestamp, unix_ms};
use super::{database_error, params, Connection, Pipeline};
use crate::audit::AuditEntry;
use crate::error::StoreError;
use crate::records::{ArchiveFile, ArchivedDocument, OverdueRecord, RetainedFigures};
use crate::rules::ChangeSet;

fn fail(what: &'static str) -> impl Fn(postgres::Error) -> StoreError {
    move |error| database_error(what, &error)
}

pub(crate) fn blob_refs(
    connection: &mut Connection,
    sha256: &[u8; 32],
) -> Result<Option<u64>, StoreError> {
    Ok(connection
        .query_opt(
            "SELECT refs FROM attachments WHERE sha256 = $1",
            &[&sha256.to_vec()],
        )
        .map_err(fail("reading an attachment's references"))?
        .map(|row| row.get::<_, i64>(0).max(0) as u64))
}

pub(crate) fn row_archived(row: &Row) -> Result<ArchivedDocument, StoreError> {
    Ok(ArchivedDocument {
        document_id: row.get(0),
        content_sha256: rows::sha256_of(row.get(1), "archived_documents.content_sha256")?,
        accepted_at_unix_ms: unix_ms(row.get(2)),
        recipients: row.get(3),
        refused: rows::refused_from(&row.get(4))?,
        document_signature_state: rows::signature_state(row.get(5))?,
        archive: row.get(6),
        archive_offset: row.get::<_, i64>(7) as u64,
        archived_at_unix_ms: unix_ms(row.get(8)),
    })
}

/// The duplicate index's entries of several documents.
pub(crate) const ARCHIVED_ANY: &str =
    "SELECT document_id, content_sha256, accepted_at, recipients, refused,
            document_signature_state, archive, archive_offset, archived_at
     FROM archived_documents WHERE document_id = ANY($1)";

pub(crate) fn archived(
    connection: &mut Connection,
    document_id: &str,
) -> Result<Option<ArchivedDocument>, StoreError> {
    connection
        .query_opt(ARCHIVED_ANY, &[&[document_id].as_slice()])
        .map_err(fail("reading the duplicate index"))?
        .map(|row| row_archived(&row))
        .transpose()
}

/// A page of the duplicate index after `after`, keyed by id.
pub(crate) fn archived_page(
    connection: &mut Connection,
    after: Option<String>,
    page_rows: i64,
) -> Result<Vec<(String, ArchivedDocument)>, StoreError> {
    let rows = connection
        .query(
            "SELECT document_id, content_sha256, accepted_at, recipients, refused,
                    document_signature_state, archive, archive_offset, archived_at
             FROM archived_documents WHERE $1::text IS NULL OR document_id > $1
             ORDER BY document_id LIMIT $2",
            &[&after, &page_rows],
        )
        .map_err(fail("reading the duplicate index"))?;
    keyed_page(&rows, row_archived, |archived| archived.document_id.clone())
}

pub(crate) fn overdue_of(
    connection: &mut Connection,
    recipient: &str,
    document_id: &str,
) -> Result<Vec<OverdueRecord>, StoreError> {
    connection
        .query(
            "SELECT recipient, document_id, kind, deadline, detected_at, sender FROM overdue
             WHERE recipient = $1 AND document_id = $2 ORDER BY kind",
            &[&recipient, &document_id],
        )
        .map_err(fail("reading overdue deliveries"))?
        .iter()
        .map(row_overdue)
        .collect()
}

pub(crate) fn audit_oldest(
    connection: &mut Connection,
    before_unix_ms: i64,
    through_seq: u64,
    limit: usize,
) -> Result<Vec<AuditEntry>, StoreError> {
    // Up to the first entry that is neither old enough nor needed.
    connection
        .query(
            "SELECT seq, at, kind, actor, document_id, recipient, status, reason,
                    signed_sha256, signature, certificate_sha256, previous_sha256, sha256
             FROM audit_log
             WHERE seq < coalesce((SELECT min(seq) FROM audit_log
                                   WHERE at >= $1 AND seq > $2), 9223372036854775807)
             ORDER BY seq LIMIT $3",
            &[
                // The last millisecond PostgreSQL's timestamps and ours share.
                &timestamp(before_unix_ms.min(253_402_300_799_999)),
                &(through_seq.min(i64::MAX as u64) as i64),
                &(limit.min(i64::MAX as usize) as i64),
            ],
        )
        .map_err(fail("reading the audit log"))?
        .iter()
        .map(super::reader::row_audit)
        .collect()
}

pub(crate) fn send_seq(
    connection: &mut Connection,
    document_id: &str,
) -> Result<Option<u64>, StoreError> {
    Ok(connection
        .query_opt(
            "SELECT send_audit_seq FROM documents WHERE document_id = $1",
            &[&document_id],
        )
        .map_err(fail("reading a document's send"))?
        .map(|row| row.get::<_, i64>(0).max(0) as u64))
}

fn row_archive_file(row: &Row) -> Result<ArchiveFile, StoreError> {
    Ok(ArchiveFile {
        name: row.get(0),
        period: row.get(1),
        hub: row.get(2),
        open: row.get(3),
        committed_bytes: row.get::<_, i64>(4) as u64,
        batches: row.get::<_, i64>(5) as u64,
        documents: row.get::<_, i64>(6) as u64,
        last_seal_sha256: rows::sha256_of(row.get(7), "archive_files.last_seal_sha256")?,
        audit_first_seq: row.get::<_, i64>(8) as u64,
        audit_last_seq: row.get::<_, i64>(9) as u64,
        created_at_unix_ms: unix_ms(row.get(10)),
        closed_at_unix_ms: row
            .get::<_, Option<time::OffsetDateTime>>(11)
            .map_or(0, unix_ms),
    })
}

pub(crate) fn open_archive(
    connection: &mut Connection,
    hub: &str,
) -> Result<Option<ArchiveFile>, StoreError> {
    connection
        .query_opt(
            "SELECT name, period, hub, open, committed_bytes, batches, documents,
                    last_seal_sha256, audit_first_seq, audit_last_seq, created_at, closed_at
             FROM archive_files WHERE hub = $1 AND open",
            &[&hub],
        )
        .map_err(fail("reading the open archive"))?
        .map(|row| row_archive_file(&row))
        .transpose()
}

pub(crate) fn archive_files(connection: &mut Connection) -> Result<Vec<ArchiveFile>, StoreError> {
    connection
        .query(
            "SELECT name, period, hub, open, committed_bytes, batches, documents,
                    last_seal_sha256, audit_first_seq, audit_last_seq, created_at, closed_at
             FROM archive_files ORDER BY name",
            &[],
        )
        .map_err(fail("reading archive files"))?
        .iter()
        .map(row_archive_file)
        .collect()
}

pub(crate) fn retained_figures(
    connection: &mut Connection,
) -> Result<BTreeMap<(String, u32), RetainedFigures>, StoreError> {
    let mut figures = BTreeMap::new();
    for row in connection
        .query(
            "SELECT agency, day, sent, received, statuses, overdue, deliveries, reached,
                    rejected, recalled
             FROM retained_figures ORDER BY agency, day",
            &[],
        )
        .map_err(fail("reading the figures kept for archives"))?
    {
        let reached: Vec<i64> = row.get(7);
        let mut steps = [0u64; 5];
        for (step, count) in steps.iter_mut().zip(reached) {
            *step = count.max(0) as u64;
        }
        figures.insert(
            (row.get::<_, String>(0), rows::date_key(row.get(1))),
            RetainedFigures {
                sent: row.get::<_, i64>(2) as u64,
                received: row.get::<_, i64>(3) as u64,
                statuses_reported: row.get::<_, i32>(4) as u32,
                overdue: row.get::<_, i64>(5) as u64,
                deliveries: row.get::<_, i64>(6) as u64,
                reached: steps,
                rejected: row.get::<_, i64>(8) as u64,
                recalled: row.get::<_, i64>(9) as u64,
            },
        );
    }
    Ok(figures)
}

pub(crate) fn candidates(
    connection: &mut Connection,
    cutoff_unix_ms: i64,
    after: Option<(i64, String)>,
    limit: usize,
) -> Result<Vec<(i64, String)>, StoreError> {
    let (after_at, after_id) = match after {
        Some((at, id)) => (Some(timestamp(at)), id),
        None => (None, String::new()),
    };
    Ok(connection
        .query(
            "SELECT accepted_at, document_id FROM documents
             WHERE accepted_at < $1
               AND ($2::timestamptz IS NULL OR (accepted_at, document_id) > ($2, $3))
             ORDER BY accepted_at, document_id LIMIT $4",
            &[
                &timestamp(cutoff_unix_ms),
                &after_at,
                &after_id,
                &(limit.min(i64::MAX as usize) as i64),
            ],
        )
        .map_err(fail("finding documents for retention"))?
        .iter()
        .map(|row| (unix_ms(row.get(0)), row.get(1)))
        .collect())
}

/// A group's retention, as rows: attachments' reference counts moved and
/// those no document names removed, retired documents removed with every
/// row under them, the duplicate index and the kept figures written, the
/// archived audit entries removed, and the archive files' states.
pub(crate) fn write(changes: &mut ChangeSet) -> Result<Pipeline<'static>, StoreError> {
    let mut pipeline = Pipeline::default();
    push_attachment_changes(&mut pipeline, changes);
    push_retired_removals(&mut pipeline, changes);
    push_duplicate_index(&mut pipeline, changes)?;
    push_retained_figures(&mut pipeline, changes)?;
    if let Some(through) = changes.audit_pruned_through.take() {
        pipeline.push(
            "removing archived audit entries",
            "DELETE FROM audit_log WHERE seq <= $1",
            params![through.min(i64::MAX as u64) as i64],
        );
    }
    push_archive_files(&mut pipeline, changes);
    // The open file is the one with `open` set.
    changes.open_archive = None;
    Ok(pipeline)
}

/// Attachments' reference counts moved, and the attachments no document
/// names any more removed with their bytes.
fn push_attachment_changes(pipeline: &mut Pipeline<'static>, changes: &mut ChangeSet) {
    if !changes.blob_refs.is_empty() {
        let (digests, deltas): (Vec<Vec<u8>>, Vec<i64>) = changes
            .blob_refs
            .drain()
            .map(|(digest, delta)| (digest.to_vec(), delta))
            .unzip();
        pipeline.push(
            "counting attachments' references",
            "UPDATE attachments a SET refs = greatest(a.refs + u.d, 0)
                 FROM UNNEST($1::bytea[], $2::bigint[]) AS u(s, d) WHERE a.sha256 = u.s",
            params![digests, deltas],
        );
    }
    if !changes.blobs_dropped.is_empty() {
        let digests: Vec<Vec<u8>> = changes
            .blobs_dropped
            .drain(..)
            .map(|d| d.to_vec())
            .collect();
        pipeline.push(
            "removing archived attachments' bytes",
            "DELETE FROM attachment_chunks WHERE sha256 = ANY($1)",
            params![digests.clone()],
        );
        pipeline.push(
            "removing archived attachments",
            "DELETE FROM attachments WHERE sha256 = ANY($1) AND refs = 0",
            params![digests],
        );
    }
}

/// Retired documents removed with every row under them; a link goes with
/// the last of its two documents.
fn push_retired_removals(pipeline: &mut Pipeline<'static>, changes: &mut ChangeSet) {
    let retired: Vec<String> = changes
        .retired
        .drain(..)
        .map(|retired| retired.document_id)
        .collect();
    if !retired.is_empty() {
        for (what, sql) in [
            (
                "removing archived statuses",
                "DELETE FROM status_entries WHERE document_id = ANY($1)",
            ),
            (
                "removing archived deliveries",
                "DELETE FROM deliveries WHERE document_id = ANY($1)",
            ),
            (
                "removing archived overdue records",
                "DELETE FROM overdue WHERE document_id = ANY($1)",
            ),
            (
                "removing archived dead letters",
                "DELETE FROM dead_letters WHERE document_id = ANY($1)",
            ),
            (
                "removing archived documents",
                "DELETE FROM documents WHERE document_id = ANY($1)",
            ),
            // A link serves both its documents: it goes with the last of them.
            (
                "removing archived links",
                "DELETE FROM links l WHERE (l.earlier = ANY($1) OR l.later = ANY($1))
                   AND NOT EXISTS (SELECT 1 FROM documents d
                                   WHERE d.document_id IN (l.earlier, l.later))",
            ),
        ] {
            let statement: &'static str = sql;
            pipeline.push(what, statement, params![retired.clone()]);
        }
    }
}

/// The duplicate index's entries of the archived documents, one per id,
/// written in one statement of arrays.
fn push_duplicate_index(
    pipeline: &mut Pipeline<'static>,
    changes: &mut ChangeSet,
) -> Result<(), StoreError> {
    if !changes.archived.is_empty() {
        let mut ids = Vec::new();
        let mut senders = Vec::new();
        let mut dates: Vec<Date> = Vec::new();
        let mut contents = Vec::new();
        let mut accepted = Vec::new();
        let mut recipients = Vec::new();
        let mut refused: Vec<Value> = Vec::new();
        let mut states = Vec::new();
        let mut archives = Vec::new();
        let mut offsets = Vec::new();
        let mut archived_at = Vec::new();
        let mut seen = HashSet::new();
        for archived in changes.archived.drain(..) {
            if !seen.insert(archived.document_id.clone()) {
                continue;
            }
            let (sender, date_key) = archived.sender_and_date();
            ids.push(archived.document_id);
            senders.push(sender);
            dates.push(rows::date(date_key)?);
            contents.push(archived.content_sha256.to_vec());
            accepted.push(timestamp(archived.accepted_at_unix_ms));
            recipients.push(archived.recipients.join(","));
            refused.push(rows::refused_json(&archived.refused));
            states.push(rows::signature_state_name(
                archived.document_signature_state,
            ));
            archives.push(archived.archive);
            offsets.push(archived.archive_offset as i64);
            archived_at.push(timestamp(archived.archived_at_unix_ms));
        }
        pipeline.push(
            "writing the duplicate index",
            "INSERT INTO archived_documents (document_id, sender, document_date,
                     content_sha256, accepted_at, recipients, refused, document_signature_state,
                     archive, archive_offset, archived_at)
                 SELECT d, s, dt, c, acc, CASE WHEN r = '' THEN '{}'::text[]
                                              ELSE string_to_array(r, ',') END,
                        rf, st, ar, o, aa
                 FROM UNNEST($1::text[], $2::text[], $3::date[], $4::bytea[],
                             $5::timestamptz[], $6::text[], $7::jsonb[], $8::text[], $9::text[],
                             $10::bigint[], $11::timestamptz[])
                      AS u(d, s, dt, c, acc, r, rf, st, ar, o, aa)",
            params![
                ids,
                senders,
                dates,
                contents,
                accepted,
                recipients,
                refused,
                states,
                archives,
                offsets,
                archived_at
            ],
        );
    }
    Ok(())
}

/// The archived documents' figures, added to those already kept for the
/// same agency and day so that reports still count them.
fn push_retained_figures(
    pipeline: &mut Pipeline<'static>,
    changes: &mut ChangeSet,
) -> Result<(), StoreError> {
    for ((agency, date_key), figures) in std::mem::take(&mut changes.retained) {
        let reached: Vec<i64> = figures.reached.iter().map(|count| *count as i64).collect();
        pipeline.push(
            "keeping archived documents' figures",
            "INSERT INTO retained_figures (agency, day, sent, received, statuses, overdue,
                     deliveries, reached, rejected, recalled)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (agency, day) DO UPDATE SET
                     sent = retained_figures.sent + EXCLUDED.sent,
                     received = retained_figures.received + EXCLUDED.received,
                     statuses = retained_figures.statuses | EXCLUDED.statuses,
                     overdue = retained_figures.overdue + EXCLUDED.overdue,
                     deliveries = retained_figures.deliveries + EXCLUDED.deliveries,
                     reached = ARRAY(SELECT a + b FROM UNNEST(retained_figures.reached,
                                                               EXCLUDED.reached) AS t(a, b)),
                     rejected = retained_figures.rejected + EXCLUDED.rejected,
                     recalled = retained_figures.recalled + EXCLUDED.recalled",
            params![
                agency,
                rows::date(date_key)?,
                figures.sent as i64,
                figures.received as i64,
                figures.statuses_reported as i32,
                figures.overdue as i64,
                figures.deliveries as i64,
                reached,
                figures.rejected as i64,
                figures.recalled as i64
            ],
        );
    }
    Ok(())
}

/// The archive files' states, as retention left them.
fn push_archive_files(pipeline: &mut Pipeline<'static>, changes: &mut ChangeSet) {
    // In order: a file closed before the next one opens.
    for file in changes.archive_files.drain(..) {
        pipeline.push(
            "recording an archive file",
            "INSERT INTO archive_files (name, period, hub, open, committed_bytes, batches,
                     documents, last_seal_sha256, audit_first_seq, audit_last_seq, created_at,
                     closed_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT (name) DO UPDATE SET
                     open = EXCLUDED.open, committed_bytes = EXCLUDED.committed_bytes,
                     batches = EXCLUDED.batches, documents = EXCLUDED.documents,
                     last_seal_sha256 = EXCLUDED.last_seal_sha256,
                     audit_first_seq = EXCLUDED.audit_first_seq,
                     audit_last_seq = EXCLUDED.audit_last_seq, closed_at = EXCLUDED.closed_at",
            params![
                file.name,
                file.period,
                file.hub,
                file.open,
                file.committed_bytes as i64,
                file.batches as i64,
                file.documents as i64,
                file.last_seal_sha256.to_vec(),
                file.audit_first_seq as i64,
                file.audit_last_seq as i64,
                timestamp(file.created_at_unix_ms),
                (file.closed_at_unix_ms > 0).then(|| timestamp(file.closed_at_unix_ms))
            ],
        );
    }
}
