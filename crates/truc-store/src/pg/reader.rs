//! The PostgreSQL engine's readers: each call runs on a pooled connection
//! and sees every committed group. Long lists are read a page at a time in
//! key order, so memory stays bounded whatever the table's size.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use postgres::Row;
use time::{Date, OffsetDateTime};

use super::rows::{self, unix_ms};
use super::{database_error, Connection, Pool, Reachability};
use crate::audit::{AuditEntry, AuditHead, AuditKind};
use crate::engine::{DocumentSummary, DueWatches, QueueDepth, Reader, Rows};
use crate::error::StoreError;
use crate::records::{
    ArchiveFile, ArchivedDocument, BlobRecord, DeadLetterRecord, DeliveryRecord, DocumentRecord,
    LinkRecord, OverdueRecord, QueueItem, RetainedFigures, StatusEntry, WatchRecord,
};
use crate::{CounterMap, Extent, NodeLease, ReportRow};

/// Rows read per page of a long list.
const PAGE_ROWS: i64 = 1000;

pub(crate) struct PgReader {
    pool: Arc<Pool>,
    reachability: Arc<Reachability>,
    hub_name: String,
}

impl PgReader {
    pub(crate) fn new(pool: Arc<Pool>, reachability: Arc<Reachability>, hub_name: String) -> Self {
        PgReader {
            pool,
            reachability,
            hub_name,
        }
    }

    /// A list read a page at a time: `page(connection, after)` reads the
    /// rows after the key `after` (`None`: from the start) and says each
    /// row's key.
    fn paged<T: Send + 'static>(
        &self,
        page: impl Fn(&mut Connection, Option<String>) -> Result<Vec<(String, T)>, StoreError>
            + Send
            + Sync
            + 'static,
    ) -> Rows<'_, T> {
        let page = Arc::new(page);
        let mut after: Option<String> = None;
        let mut buffered: std::vec::IntoIter<(String, T)> = Vec::new().into_iter();
        let mut done = false;
        Box::new(std::iter::from_fn(move || loop {
            if let Some((key, item)) = buffered.next() {
                after = Some(key);
                return Some(Ok(item));
            }
            if done {
                return None;
            }
            let page = page.clone();
            let from = after.clone();
            match self.pool.run(move |connection| page(connection, from)) {
                Ok(rows) => {
                    done = (rows.len() as i64) < PAGE_ROWS;
                    buffered = rows.into_iter();
                }
                Err(error) => {
                    done = true;
                    return Some(Err(error));
                }
            }
        }))
    }
}

/// A page's rows read into records, each with the key the next page is
/// read after (see [`PgReader::paged`]).
pub(crate) fn keyed_page<T>(
    rows: &[Row],
    read: impl Fn(&Row) -> Result<T, StoreError>,
    key: impl Fn(&T) -> String,
) -> Result<Vec<(String, T)>, StoreError> {
    rows.iter()
        .map(|row| {
            let record = read(row)?;
            Ok((key(&record), record))
        })
        .collect()
}

/// A stored document, whole, read inside any connection.
pub(crate) fn read_document(
    connection: &mut Connection,
    document_id: &str,
) -> Result<Option<DocumentRecord>, StoreError> {
    let row = connection
        .query_opt(
            "SELECT d.document_id, d.sender, d.document_date, d.subject, d.accepted_at,
                    d.recipients, d.refused, d.attachments, d.document_signature_state,
                    d.content_sha256, d.header, d.signature, d.document_signer_certificate,
                    d.document_signature, c.der
             FROM documents d JOIN certificates c ON c.sha256 = d.certificate_sha256
             WHERE d.document_id = $1",
            &[&document_id],
        )
        .map_err(|error| database_error("reading a document", &error))?;
    row.map(|row| row_document(&row)).transpose()
}

fn row_document(row: &Row) -> Result<DocumentRecord, StoreError> {
    let document_id: String = row.get(0);
    let signer: Option<Vec<u8>> = row.get(12);
    let document_signature: Option<Vec<u8>> = row.get(13);
    Ok(DocumentRecord {
        sender: row.get(1),
        date_key: rows::date_key(row.get::<_, Date>(2)),
        subject: row.get(3),
        accepted_at_unix_ms: unix_ms(row.get(4)),
        recipients: row.get(5),
        refused: rows::refused_from(&row.get(6))?,
        attachments: rows::attachments_from(&row.get(7))?,
        document_signature_state: rows::signature_state(row.get(8))?,
        content_sha256: rows::sha256_of(row.get(9), "documents.content_sha256")?,
        header_bytes: row.get(10),
        signature: row.get(11),
        document_signature: signer.zip(document_signature),
        sender_certificate: row.get(14),
        document_id,
    })
}

/// Every delivery of a document with its history, read inside any connection.
pub(crate) fn read_deliveries(
    connection: &mut Connection,
    document_id: &str,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let rows = connection
        .query(
            "SELECT d.recipient, d.queue_seq, e.code, e.at, e.actor, e.reason
             FROM deliveries d
             LEFT JOIN status_entries e USING (document_id, recipient)
             WHERE d.document_id = $1
             ORDER BY d.recipient, e.position",
            &[&document_id],
        )
        .map_err(|error| database_error("reading deliveries", &error))?;
    let mut deliveries: Vec<DeliveryRecord> = Vec::new();
    for row in rows {
        let recipient: String = row.get(0);
        if deliveries
            .last()
            .is_none_or(|last| last.recipient != recipient)
        {
            deliveries.push(DeliveryRecord {
                document_id: document_id.to_owned(),
                recipient,
                queue_seq: row.get::<_, i64>(1) as u64,
                history: Vec::new(),
            });
        }
        if let Some(code) = row.get::<_, Option<i32>>(2) {
            let delivery = deliveries.last_mut().expect("pushed above");
            delivery.history.push(StatusEntry {
                code: code as u32,
                at_unix_ms: unix_ms(row.get(3)),
                actor: row.get(4),
                reason: row.get(5),
            });
        }
    }
    Ok(deliveries)
}

/// The links of a document, either way, read inside any connection.
pub(crate) fn read_links(
    connection: &mut Connection,
    document_id: &str,
) -> Result<Vec<LinkRecord>, StoreError> {
    let rows = connection
        .query(
            "SELECT earlier, later, business_type FROM links
             WHERE earlier = $1 OR later = $1 ORDER BY earlier, later",
            &[&document_id],
        )
        .map_err(fail("reading links"))?;
    Ok(rows
        .iter()
        .map(|row| LinkRecord {
            earlier: row.get(0),
            later: row.get(1),
            business_type: row.get(2),
        })
        .collect())
}

/// A queue item from `kind, document_id, recipient, entries`.
pub(crate) fn row_queue_item(row: &Row) -> Result<QueueItem, StoreError> {
    let kind: &str = row.get(0);
    let document_id: String = row.get(1);
    let recipient: String = row.get(2);
    match kind {
        "delivery" => Ok(QueueItem::Delivery {
            document_id,
            recipient,
        }),
        _ => Ok(QueueItem::Notices {
            document_id,
            recipient,
            entries: rows::entries_from(&row.get::<_, serde_json::Value>(3))?,
        }),
    }
}

/// A dead letter from `recipient, document_id, sender, queue_owner,
/// expired_at, reason, state, actions`.
pub(crate) fn row_dead_letter(row: &Row) -> Result<DeadLetterRecord, StoreError> {
    Ok(DeadLetterRecord {
        recipient: row.get(0),
        document_id: row.get(1),
        sender: row.get(2),
        queue_owner: row.get(3),
        expired_at_unix_ms: unix_ms(row.get(4)),
        reason: row.get(5),
        state: rows::dead_letter_state(row.get(6))?,
        actions: rows::actions_from(&row.get(7))?,
    })
}

/// A deadline from `kind, deadline, document_id, recipient, sender`.
pub(crate) fn row_watch(row: &Row) -> Result<WatchRecord, StoreError> {
    Ok(WatchRecord {
        kind: rows::deadline_kind(row.get(0))?,
        deadline_unix_ms: unix_ms(row.get(1)),
        document_id: row.get(2),
        recipient: row.get(3),
        sender: row.get(4),
    })
}

pub(crate) fn row_overdue(row: &Row) -> Result<OverdueRecord, StoreError> {
    Ok(OverdueRecord {
        recipient: row.get(0),
        document_id: row.get(1),
        kind: rows::deadline_kind(row.get(2))?,
        deadline_unix_ms: unix_ms(row.get(3)),
        detected_at_unix_ms: unix_ms(row.get(4)),
        sender: row.get(5),
    })
}

pub(crate) fn row_audit(row: &Row) -> Result<AuditEntry, StoreError> {
    let optional = |index: usize, what: &str| -> Result<Option<[u8; 32]>, StoreError> {
        row.get::<_, Option<Vec<u8>>>(index)
            .map(|bytes| rows::sha256_of(&bytes, what))
            .transpose()
    };
    let kind: &str = row.get(2);
    Ok(AuditEntry {
        seq: row.get::<_, i64>(0) as u64,
        at_unix_ms: unix_ms(row.get(1)),
        kind: AuditKind::from_name(kind).ok_or_else(|| StoreError::Corrupt {
            key: "audit_log.kind".into(),
            reason: format!("unknown kind {kind:?}"),
        })?,
        actor: row.get(3),
        document_id: row.get(4),
        recipient: row.get(5),
        status: row.get::<_, i32>(6) as u32,
        reason: row.get(7),
        signed_sha256: optional(8, "audit_log.signed_sha256")?,
        signature: row.get(9),
        certificate_sha256: optional(10, "audit_log.certificate_sha256")?,
        previous_sha256: rows::sha256_of(row.get(11), "audit_log.previous_sha256")?,
        sha256: rows::sha256_of(row.get(12), "audit_log.sha256")?,
    })
}

fn fail(what: &'static str) -> impl Fn(postgres::Error) -> StoreError {
    move |error| database_error(what, &error)
}

impl Reader for PgReader {
    fn document(&self, document_id: &str) -> Result<Option<DocumentRecord>, StoreError> {
        let document_id = document_id.to_owned();
        self.pool
            .run(move |connection| read_document(connection, &document_id))
    }

    fn deliveries(&self, document_id: &str) -> Result<Vec<DeliveryRecord>, StoreError> {
        let document_id = document_id.to_owned();
        self.pool
            .run(move |connection| read_deliveries(connection, &document_id))
    }

    fn links(&self, document_id: &str) -> Result<Vec<LinkRecord>, StoreError> {
        let document_id = document_id.to_owned();
        self.pool
            .run(move |connection| read_links(connection, &document_id))
    }

    fn queue_after(
        &self,
        agency: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, QueueItem)>, StoreError> {
        let agency = agency.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.pool.run(move |connection| {
            connection
                .query(
                    "SELECT kind, document_id, recipient, entries, seq FROM queue_items
                     WHERE owner = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                    &[&agency, &(after.min(i64::MAX as u64) as i64), &limit],
                )
                .map_err(fail("reading a queue"))?
                .iter()
                .map(|row| Ok((row.get::<_, i64>(4) as u64, row_queue_item(row)?)))
                .collect()
        })
    }

    fn oldest_queued_delivery(&self, agency: &str) -> Result<Option<QueueItem>, StoreError> {
        let agency = agency.to_owned();
        self.pool.run(move |connection| {
            connection
                .query_opt(
                    "SELECT kind, document_id, recipient, entries FROM queue_items
                     WHERE owner = $1 AND kind = 'delivery' ORDER BY seq LIMIT 1",
                    &[&agency],
                )
                .map_err(fail("reading a queue"))?
                .map(|row| row_queue_item(&row))
                .transpose()
        })
    }

    fn queue_items(&self) -> Rows<'_, (String, u64, QueueItem)> {
        self.paged(|connection, after| {
            // Keys: owner, a NUL, and the sequence number zero-padded, so they sort as rows do.
            let (owner, seq) = match after.as_deref().and_then(|key| key.split_once('\0')) {
                Some((owner, seq)) => (owner.to_owned(), seq.parse::<i64>().unwrap_or(i64::MAX)),
                None => (String::new(), -1),
            };
            connection
                .query(
                    "SELECT kind, document_id, recipient, entries, owner, seq FROM queue_items
                     WHERE (owner, seq) > ($1, $2) ORDER BY owner, seq LIMIT $3",
                    &[&owner, &seq, &PAGE_ROWS],
                )
                .map_err(fail("reading the queues"))?
                .iter()
                .map(|row| {
                    let owner: String = row.get(4);
                    let seq = row.get::<_, i64>(5);
                    Ok((
                        format!("{owner}\0{seq:020}"),
                        (owner, seq as u64, row_queue_item(row)?),
                    ))
                })
                .collect()
        })
    }

    fn next_queue_seq(&self) -> Result<u64, StoreError> {
        self.pool.run(|connection| {
            let row = connection
                .query_opt("SELECT next_queue_seq FROM truc_meta WHERE id = 1", &[])
                .map_err(fail("reading the next queue sequence number"))?;
            Ok(row.map_or(1, |row| row.get::<_, i64>(0) as u64))
        })
    }

    fn queue_depth(&self, agency: &str) -> Result<QueueDepth, StoreError> {
        let agency = agency.to_owned();
        self.pool.run(move |connection| {
            let row = connection
                .query_opt(
                    "SELECT count(*) FILTER (WHERE kind = 'delivery'),
                            count(*) FILTER (WHERE kind <> 'delivery')
                     FROM queue_items WHERE owner = $1",
                    &[&agency],
                )
                .map_err(fail("counting a queue"))?;
            Ok(row.map_or_else(QueueDepth::default, |row| QueueDepth {
                deliveries: row.get::<_, i64>(0) as usize,
                notices: row.get::<_, i64>(1) as usize,
            }))
        })
    }

    fn documents(&self) -> Rows<'_, DocumentRecord> {
        self.paged(|connection, after| {
            let rows = connection
                .query(
                    "SELECT d.document_id, d.sender, d.document_date, d.subject, d.accepted_at,
                            d.recipients, d.refused, d.attachments, d.document_signature_state,
                            d.content_sha256, d.header, d.signature,
                            d.document_signer_certificate, d.document_signature, c.der
                     FROM documents d JOIN certificates c ON c.sha256 = d.certificate_sha256
                     WHERE $1::text IS NULL OR d.document_id > $1
                     ORDER BY d.document_id LIMIT $2",
                    &[&after, &PAGE_ROWS],
                )
                .map_err(fail("reading documents"))?;
            keyed_page(&rows, row_document, |document| document.document_id.clone())
        })
    }

    fn document_ids(&self) -> Rows<'_, String> {
        self.paged(|connection, after| {
            Ok(connection
                .query(
                    "SELECT document_id FROM documents
                     WHERE $1::text IS NULL OR document_id > $1
                     ORDER BY document_id LIMIT $2",
                    &[&after, &PAGE_ROWS],
                )
                .map_err(fail("reading document ids"))?
                .iter()
                .map(|row| {
                    let id: String = row.get(0);
                    (id.clone(), id)
                })
                .collect())
        })
    }

    fn document_summaries(&self) -> Rows<'_, DocumentSummary> {
        self.paged(|connection, after| {
            connection
                .query(
                    "SELECT document_id, sender, document_date, recipients,
                            document_signature_state
                     FROM documents WHERE $1::text IS NULL OR document_id > $1
                     ORDER BY document_id LIMIT $2",
                    &[&after, &PAGE_ROWS],
                )
                .map_err(fail("reading documents"))?
                .iter()
                .map(|row| {
                    let document_id: String = row.get(0);
                    Ok((
                        document_id.clone(),
                        DocumentSummary {
                            document_id,
                            sender: row.get(1),
                            date_key: rows::date_key(row.get(2)),
                            recipients: row.get(3),
                            document_signature_state: rows::signature_state(row.get(4))?,
                        },
                    ))
                })
                .collect()
        })
    }

    fn counter_entries(&self) -> Result<CounterMap, StoreError> {
        self.pool.run(|connection| {
            let rows = connection
                .query(
                    "SELECT agency, day, sent, received FROM counters ORDER BY agency, day",
                    &[],
                )
                .map_err(fail("reading counters"))?;
            Ok(rows
                .iter()
                .map(|row| {
                    (
                        (row.get::<_, String>(0), rows::date_key(row.get(1))),
                        (row.get::<_, i64>(2) as u64, row.get::<_, i64>(3) as u64),
                    )
                })
                .collect())
        })
    }

    fn report(
        &self,
        from_date_key: u32,
        to_date_key: u32,
        focus: Option<&str>,
    ) -> Result<BTreeMap<String, ReportRow>, StoreError> {
        // Unbounded ends (0, 99999999) become the first and last dates of the calendar.
        let from =
            rows::date(from_date_key.clamp(10101, 99991231)).or_else(|_| rows::date(10101))?;
        let to =
            rows::date(to_date_key.clamp(10101, 99991231)).or_else(|_| rows::date(99991231))?;
        let focus = focus.map(str::to_owned);
        self.pool.run(move |connection| {
            let mut report: BTreeMap<String, ReportRow> = BTreeMap::new();
            let sent = connection
                .query(
                    "SELECT sender, count(*),
                            count(*) FILTER (WHERE $3::text = ANY(recipients)),
                            count(*) FILTER (WHERE $3::text = ANY(recipients)
                                               AND document_signature_state = 'valid')
                     FROM documents WHERE document_date BETWEEN $1 AND $2 GROUP BY sender",
                    &[&from, &to, &focus],
                )
                .map_err(fail("reporting documents sent"))?;
            for row in sent {
                let entry = report.entry(row.get(0)).or_default();
                entry.sent = row.get::<_, i64>(1) as u64;
                entry.sent_to_focus = row.get::<_, i64>(2) as u64;
                entry.sent_to_focus_signed = row.get::<_, i64>(3) as u64;
            }
            let received = connection
                .query(
                    "SELECT d.recipient,
                            count(DISTINCT d.document_id) FILTER (WHERE e.code = 1),
                            coalesce(array_agg(DISTINCT e.code) FILTER (WHERE e.code IS NOT NULL),
                                     '{}')
                     FROM deliveries d JOIN documents doc USING (document_id)
                     LEFT JOIN status_entries e USING (document_id, recipient)
                     WHERE doc.document_date BETWEEN $1 AND $2
                     GROUP BY d.recipient",
                    &[&from, &to],
                )
                .map_err(fail("reporting deliveries"))?;
            for row in received {
                let entry = report.entry(row.get(0)).or_default();
                entry.received = row.get::<_, i64>(1) as u64;
                for code in row.get::<_, Vec<i32>>(2) {
                    entry.statuses_reported |= 1 << (code as u32).min(31);
                }
            }
            let overdue = connection
                .query(
                    "SELECT recipient, count(*) FROM overdue
                     WHERE to_date(split_part(document_id, ',', 2), 'YYYY/MM/DD') BETWEEN $1 AND $2
                     GROUP BY recipient",
                    &[&from, &to],
                )
                .map_err(fail("reporting overdue deliveries"))?;
            for row in overdue {
                report.entry(row.get(0)).or_default().overdue = row.get::<_, i64>(1) as u64;
            }
            // Documents that left for archives: the figures kept for them,
            // and the duplicate index for those sent to the focus.
            let retained = connection
                .query(
                    "SELECT agency, sum(sent)::bigint, sum(received)::bigint,
                            bit_or(statuses), sum(overdue)::bigint
                     FROM retained_figures WHERE day BETWEEN $1 AND $2 GROUP BY agency",
                    &[&from, &to],
                )
                .map_err(fail("reporting archived documents"))?;
            for row in retained {
                let entry = report.entry(row.get(0)).or_default();
                entry.sent += row.get::<_, i64>(1) as u64;
                entry.received += row.get::<_, i64>(2) as u64;
                entry.statuses_reported |= row.get::<_, i32>(3) as u32;
                entry.overdue += row.get::<_, i64>(4) as u64;
            }
            if focus.is_some() {
                let archived = connection
                    .query(
                        "SELECT sender, count(*),
                                count(*) FILTER (WHERE document_signature_state = 'valid')
                         FROM archived_documents
                         WHERE document_date BETWEEN $1 AND $2 AND $3::text = ANY(recipients)
                         GROUP BY sender",
                        &[&from, &to, &focus],
                    )
                    .map_err(fail("reporting archived documents"))?;
                for row in archived {
                    let entry = report.entry(row.get(0)).or_default();
                    entry.sent_to_focus += row.get::<_, i64>(1) as u64;
                    entry.sent_to_focus_signed += row.get::<_, i64>(2) as u64;
                }
            }
            Ok(report)
        })
    }

    fn rebuild_counters(&self) -> Result<CounterMap, StoreError> {
        self.pool.run(|connection| {
            let mut counters = CounterMap::new();
            for row in connection
                .query(
                    "SELECT sender, document_date, count(*) FROM documents
                     GROUP BY sender, document_date",
                    &[],
                )
                .map_err(fail("recounting documents sent"))?
            {
                counters
                    .entry((row.get(0), rows::date_key(row.get(1))))
                    .or_default()
                    .0 = row.get::<_, i64>(2) as u64;
            }
            for row in connection
                .query(
                    "SELECT d.recipient, doc.document_date, count(*)
                     FROM deliveries d JOIN documents doc USING (document_id)
                     WHERE EXISTS (SELECT 1 FROM status_entries e
                                   WHERE e.document_id = d.document_id
                                     AND e.recipient = d.recipient AND e.code = 1)
                     GROUP BY d.recipient, doc.document_date",
                    &[],
                )
                .map_err(fail("recounting deliveries received"))?
            {
                counters
                    .entry((row.get(0), rows::date_key(row.get(1))))
                    .or_default()
                    .1 = row.get::<_, i64>(2) as u64;
            }
            crate::report::add_retained(
                &mut counters,
                super::retention::retained_figures(connection)?,
            );
            Ok(counters)
        })
    }

    fn due_watches(&self, unix_ms: i64, limit: usize) -> Result<DueWatches, StoreError> {
        let until = rows::timestamp(unix_ms);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.pool.run(move |connection| {
            let mut due = DueWatches::default();
            for row in connection
                .query(
                    "SELECT kind, deadline, document_id, recipient, sender, id FROM deadlines
                     WHERE deadline <= $1 ORDER BY deadline, id LIMIT $2",
                    &[&until, &limit],
                )
                .map_err(fail("reading due deadlines"))?
            {
                due.watches.push(row_watch(&row)?);
                due.blocks.push(row.get::<_, i64>(5).to_be_bytes().to_vec());
            }
            Ok(due)
        })
    }

    fn overdue_records(&self, recipient: Option<&str>) -> Rows<'_, OverdueRecord> {
        let recipient = recipient.map(str::to_owned);
        self.paged(move |connection, after| {
            let rows = connection
                .query(
                    "SELECT recipient, document_id, kind, deadline, detected_at, sender
                     FROM overdue
                     WHERE ($1::text IS NULL OR recipient = $1)
                       AND ($2::text IS NULL
                            OR recipient || chr(1) || document_id || chr(1) || kind > $2)
                     ORDER BY recipient || chr(1) || document_id || chr(1) || kind LIMIT $3",
                    &[&recipient, &after, &PAGE_ROWS],
                )
                .map_err(fail("reading overdue deliveries"))?;
            keyed_page(&rows, row_overdue, |record| {
                format!(
                    "{}\u{1}{}\u{1}{}",
                    record.recipient,
                    record.document_id,
                    record.kind.name()
                )
            })
        })
    }

    fn dead_letters(&self, recipient: Option<&str>) -> Rows<'_, DeadLetterRecord> {
        let recipient = recipient.map(str::to_owned);
        self.paged(move |connection, after| {
            let rows = connection
                .query(
                    "SELECT recipient, document_id, sender, queue_owner, expired_at, reason,
                            state, actions
                     FROM dead_letters
                     WHERE ($1::text IS NULL OR recipient = $1)
                       AND ($2::text IS NULL OR recipient || chr(1) || document_id > $2)
                     ORDER BY recipient || chr(1) || document_id LIMIT $3",
                    &[&recipient, &after, &PAGE_ROWS],
                )
                .map_err(fail("reading dead letters"))?;
            keyed_page(&rows, row_dead_letter, |letter| {
                format!("{}\u{1}{}", letter.recipient, letter.document_id)
            })
        })
    }

    fn dead_letter(
        &self,
        document_id: &str,
        recipient: &str,
    ) -> Result<Option<DeadLetterRecord>, StoreError> {
        let (document_id, recipient) = (document_id.to_owned(), recipient.to_owned());
        self.pool.run(move |connection| {
            connection
                .query_opt(
                    "SELECT recipient, document_id, sender, queue_owner, expired_at, reason,
                            state, actions
                     FROM dead_letters WHERE recipient = $1 AND document_id = $2",
                    &[&recipient, &document_id],
                )
                .map_err(fail("reading a dead letter"))?
                .map(|row| row_dead_letter(&row))
                .transpose()
        })
    }

    fn pending_sends(&self, sender: &str, max: usize) -> Result<usize, StoreError> {
        let sender = sender.to_owned();
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.pool.run(move |connection| {
            let row = connection
                .query_opt(
                    "SELECT count(*) FROM (SELECT 1 FROM queue_items
                                           WHERE sender = $1 AND kind = 'delivery' LIMIT $2) t",
                    &[&sender, &max],
                )
                .map_err(fail("counting a sender's backlog"))?;
            Ok(row.map_or(0, |row| row.get::<_, i64>(0) as usize))
        })
    }

    fn blob(&self, sha256: &[u8; 32]) -> Result<Option<BlobRecord>, StoreError> {
        let digest = sha256.to_vec();
        self.pool.run(move |connection| {
            let Some(row) = connection
                .query_opt(
                    "SELECT a.size_bytes,
                            coalesce(array_agg(c.id ORDER BY c.position)
                                     FILTER (WHERE c.id IS NOT NULL), '{}')
                     FROM attachments a LEFT JOIN attachment_chunks c USING (sha256)
                     WHERE a.sha256 = $1 GROUP BY a.size_bytes",
                    &[&digest],
                )
                .map_err(fail("reading an attachment"))?
            else {
                return Ok(None);
            };
            Ok(Some(BlobRecord {
                size_bytes: row.get::<_, i64>(0) as u64,
                extents: row
                    .get::<_, Vec<i64>>(1)
                    .into_iter()
                    .map(Extent::Row)
                    .collect(),
            }))
        })
    }

    fn blob_chunks(&self, sha256: &[u8; 32]) -> Result<Rows<'_, Vec<u8>>, StoreError> {
        let record = self.blob(sha256)?.ok_or_else(|| StoreError::NotFound {
            what: format!("attachment {}", hex::encode(sha256)),
        })?;
        Ok(Box::new(record.extents.into_iter().map(move |extent| {
            let Extent::Row(id) = extent else {
                return Err(StoreError::Corrupt {
                    key: "attachment_chunks".into(),
                    reason: "a chunk of another engine".into(),
                });
            };
            self.pool.run(move |connection| {
                let row = connection
                    .query_opt("SELECT bytes FROM attachment_chunks WHERE id = $1", &[&id])
                    .map_err(fail("reading attachment bytes"))?
                    .ok_or_else(|| StoreError::NotFound {
                        what: format!("attachment chunk {id}"),
                    })?;
                Ok(row.get::<_, Vec<u8>>(0))
            })
        })))
    }

    fn check_room(&self) -> Result<(), StoreError> {
        if self.reachability.writable() {
            Ok(())
        } else {
            Err(StoreError::Unavailable {
                reason: "this hub reaches no writable database primary now".into(),
            })
        }
    }

    fn put_chunk(&self, data: &[u8]) -> Result<Extent, StoreError> {
        let data = data.to_vec();
        self.pool.run(move |connection| {
            // Committed without waiting for the standby: the document's own
            // synchronous commit, later in the same WAL, makes it durable on
            // both; a failover in between loses it, and the send is refused.
            connection
                .batch_execute("BEGIN; SET LOCAL synchronous_commit = off")
                .map_err(fail("storing attachment bytes"))?;
            let stored = connection
                .query_opt(
                    "INSERT INTO attachment_chunks (bytes) VALUES ($1) RETURNING id",
                    &[&data],
                )
                .and_then(|row| {
                    connection.batch_execute("COMMIT")?;
                    Ok(row)
                });
            match stored {
                Ok(Some(row)) => Ok(Extent::Row(row.get(0))),
                Ok(None) => Err(StoreError::Database {
                    reason: "storing attachment bytes returned no id".into(),
                }),
                Err(error) => {
                    let _ = connection.batch_execute("ROLLBACK");
                    Err(database_error("storing attachment bytes", &error))
                }
            }
        })
    }

    fn discard_chunks(&self, extents: &[Extent]) {
        let ids: Vec<i64> = extents
            .iter()
            .filter_map(|extent| match extent {
                Extent::Row(id) => Some(*id),
                Extent::Log(_) => None,
            })
            .collect();
        if ids.is_empty() {
            return;
        }
        let discarded = self.pool.run(move |connection| {
            connection
                .execute(
                    "DELETE FROM attachment_chunks WHERE id = ANY($1) AND sha256 IS NULL",
                    &[&ids],
                )
                .map_err(fail("dropping unused attachment bytes"))
        });
        if let Err(error) = discarded {
            tracing::warn!(%error, "unused attachment bytes stay until the next clean-up");
        }
    }

    fn audit_head(&self) -> Result<AuditHead, StoreError> {
        self.pool.run(|connection| {
            let row = connection
                .query_opt(
                    "SELECT audit_seq, audit_sha256 FROM truc_meta WHERE id = 1",
                    &[],
                )
                .map_err(fail("reading the audit head"))?
                .ok_or_else(|| StoreError::Corrupt {
                    key: "truc_meta".into(),
                    reason: "its one row is missing".into(),
                })?;
            Ok(AuditHead {
                seq: row.get::<_, i64>(0) as u64,
                sha256: rows::sha256_of(row.get(1), "truc_meta.audit_sha256")?,
            })
        })
    }

    fn audit_entries(&self, from_seq: u64) -> Rows<'_, AuditEntry> {
        let from = from_seq.min(i64::MAX as u64) as i64;
        self.paged(move |connection, after| {
            // Keys are sequence numbers, zero-padded so they sort as text.
            let after: i64 = after
                .and_then(|key| key.parse::<i64>().ok())
                .map_or(from - 1, |seq| seq.max(from - 1));
            let rows = connection
                .query(
                    "SELECT seq, at, kind, actor, document_id, recipient, status, reason,
                            signed_sha256, signature, certificate_sha256, previous_sha256, sha256
                     FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&after, &PAGE_ROWS],
                )
                .map_err(fail("reading the audit log"))?;
            keyed_page(&rows, row_audit, |entry| entry.seq.to_string())
        })
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.pool.run(|connection| {
            let row = connection
                .query_opt("SELECT pg_database_size(current_database())", &[])
                .map_err(fail("reading the database's size"))?;
            Ok(row.map_or(0, |row| row.get::<_, i64>(0) as u64))
        })
    }

    fn archived(&self, document_id: &str) -> Result<Option<ArchivedDocument>, StoreError> {
        let document_id = document_id.to_owned();
        self.pool
            .run(move |connection| super::retention::archived(connection, &document_id))
    }

    fn archived_documents(&self) -> Rows<'_, ArchivedDocument> {
        self.paged(|connection, after| {
            super::retention::archived_page(connection, after, PAGE_ROWS)
        })
    }

    fn retained_figures(&self) -> Result<BTreeMap<(String, u32), RetainedFigures>, StoreError> {
        self.pool.run(super::retention::retained_figures)
    }

    fn retention_candidates(
        &self,
        cutoff_unix_ms: i64,
        after: Option<(i64, String)>,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        self.pool.run(move |connection| {
            super::retention::candidates(connection, cutoff_unix_ms, after, limit)
        })
    }

    fn archive_files(&self) -> Result<Vec<ArchiveFile>, StoreError> {
        self.pool.run(super::retention::archive_files)
    }

    fn lease_node(&self, agency: &str, ttl: Duration) -> Result<Option<String>, StoreError> {
        let agency = agency.to_owned();
        let hub = self.hub_name.clone();
        let ttl_ms = ttl.as_millis() as f64;
        self.pool.run(move |connection| {
            let taken = connection
                .query_opt(
                    "INSERT INTO node_leases (agency, hub, acquired_at, expires_at)
                     VALUES ($1, $2, now(), now() + $3 * interval '1 millisecond')
                     ON CONFLICT (agency) DO UPDATE
                     SET hub = EXCLUDED.hub,
                         acquired_at = CASE WHEN node_leases.hub = EXCLUDED.hub
                                            THEN node_leases.acquired_at ELSE now() END,
                         expires_at = EXCLUDED.expires_at
                     WHERE node_leases.hub = EXCLUDED.hub OR node_leases.expires_at < now()
                     RETURNING hub",
                    &[&agency, &hub, &ttl_ms],
                )
                .map_err(fail("taking a node's lease"))?;
            if taken.is_some() {
                return Ok(None);
            }
            let holder = connection
                .query_opt("SELECT hub FROM node_leases WHERE agency = $1", &[&agency])
                .map_err(fail("reading a node's lease"))?;
            Ok(Some(holder.map_or_else(String::new, |row| row.get(0))))
        })
    }

    fn renew_leases(&self, agencies: &[String], ttl: Duration) -> Result<Vec<String>, StoreError> {
        if agencies.is_empty() {
            return Ok(Vec::new());
        }
        let agencies = agencies.to_vec();
        let hub = self.hub_name.clone();
        let ttl_ms = ttl.as_millis() as f64;
        self.pool.run(move |connection| {
            Ok(connection
                .query(
                    "UPDATE node_leases SET expires_at = now() + $3 * interval '1 millisecond'
                     WHERE hub = $1 AND agency = ANY($2) RETURNING agency",
                    &[&hub, &agencies, &ttl_ms],
                )
                .map_err(fail("renewing node leases"))?
                .iter()
                .map(|row| row.get(0))
                .collect())
        })
    }

    fn release_node(&self, agency: &str) -> Result<(), StoreError> {
        let agency = agency.to_owned();
        let hub = self.hub_name.clone();
        self.pool.run(move |connection| {
            connection
                .execute(
                    "DELETE FROM node_leases WHERE agency = $1 AND hub = $2",
                    &[&agency, &hub],
                )
                .map_err(fail("releasing a node's lease"))?;
            Ok(())
        })
    }

    fn node_leases(&self) -> Result<BTreeMap<String, NodeLease>, StoreError> {
        self.pool.run(|connection| {
            Ok(connection
                .query(
                    "SELECT agency, hub, expires_at FROM node_leases WHERE expires_at > now()",
                    &[],
                )
                .map_err(fail("reading node leases"))?
                .iter()
                .map(|row| {
                    (
                        row.get::<_, String>(0),
                        NodeLease {
                            hub: row.get(1),
                            expires_at_unix_ms: unix_ms(row.get::<_, OffsetDateTime>(2)),
                        },
                    )
                })
                .collect())
        })
    }

    fn writable(&self) -> bool {
        self.reachability.writable()
    }

    fn hub_name(&self) -> Option<String> {
        Some(self.hub_name.clone())
    }

    fn database_state(&self) -> Result<Option<crate::DatabaseState>, StoreError> {
        self.pool.run(|connection| {
            let primary = connection
                .query_opt(
                    "SELECT host(inet_server_addr()), inet_server_port(), NOT pg_is_in_recovery()",
                    &[],
                )
                .map_err(fail("reading the database's state"))?;
            let standbys = connection
                .query(
                    "SELECT client_addr::text, application_name, state, sync_state,
                            CASE WHEN pg_is_in_recovery() THEN NULL
                                 ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint
                            END
                     FROM pg_stat_replication ORDER BY application_name",
                    &[],
                )
                .map_err(fail("reading the database's replication"))?;
            Ok(Some(crate::DatabaseState {
                primary: primary
                    .as_ref()
                    .map(|row| {
                        format!(
                            "{}:{}",
                            row.get::<_, Option<String>>(0).unwrap_or_default(),
                            row.get::<_, Option<i32>>(1).unwrap_or_default()
                        )
                    })
                    .unwrap_or_default(),
                writable: primary.is_some_and(|row| row.get(2)),
                standbys: standbys
                    .iter()
                    // Without pg_monitor a role sees the rows with their details NULL.
                    .map(|row| crate::StandbyState {
                        name: row.get::<_, Option<String>>(1).unwrap_or_default(),
                        address: row.get::<_, Option<String>>(0).unwrap_or_default(),
                        state: row.get::<_, Option<String>>(2).unwrap_or_default(),
                        sync_state: row.get::<_, Option<String>>(3).unwrap_or_default(),
                        replay_lag_bytes: row.get::<_, Option<i64>>(4).unwrap_or(0).max(0) as u64,
                    })
                    .collect(),
            }))
        })
    }
}
