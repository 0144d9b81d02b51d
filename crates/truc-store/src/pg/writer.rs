//! The PostgreSQL engine's writer: one transaction per group, in two round
//! trips. The first takes the lock on `truc_meta` (so groups of all hubs
//! apply one after another, and the rules read what every earlier group
//! wrote) and learns which of the group's documents are new; the rules then
//! read through it, and the second sends the group's changes, a statement
//! per table for the whole group, with the COMMIT in one pipeline.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::Value;
use time::{Date, OffsetDateTime};

use super::reader::{read_deliveries, read_document, row_dead_letter, row_queue_item};
use super::rows::{self, timestamp};
use super::{
    database_error, params, Background, Connection, Pipeline, PostgresOptions, QUEUE_CHANNEL,
};
use crate::audit::AuditEntry;
use crate::audit::{sha256, AuditHead};
use crate::engine::GroupWriter;
use crate::error::StoreError;
use crate::records::{
    ArchiveFile, ArchivedDocument, DeadLetterRecord, DeliveryRecord, DocumentRecord, LinkRecord,
    OverdueRecord, QueueItem, StatusEntry, WatchRecord,
};
use crate::rules::{GroupChanges, GroupStart, View, WatchBlockId};
use crate::Extent;

/// The store's error for a failed statement, naming what it was doing.
fn fail(what: &'static str) -> impl Fn(postgres::Error) -> StoreError {
    move |error| database_error(what, &error)
}

pub(crate) struct PgWriter {
    options: PostgresOptions,
    connection: Option<Connection>,
    /// The first failure inside the open group: the group fails with it.
    group_error: Option<StoreError>,
    /// Documents of the open group's sends that the database does not hold,
    /// and their entries in the duplicate index, learned as the group opens:
    /// a new document costs no round trip of its own.
    absent: HashSet<String>,
    archived: HashMap<String, Option<ArchivedDocument>>,
    background: Background,
}

impl PgWriter {
    pub(crate) fn new(
        options: PostgresOptions,
        connection: Connection,
        background: Background,
    ) -> Self {
        PgWriter {
            options,
            connection: Some(connection),
            group_error: None,
            absent: HashSet::new(),
            archived: HashMap::new(),
            background,
        }
    }

    fn connection(&mut self) -> Result<&mut Connection, StoreError> {
        if self.connection.as_ref().is_none_or(Connection::is_closed) {
            self.connection = None;
            self.connection = Some(Connection::open(&self.options)?);
        }
        Ok(self.connection.as_mut().expect("connected above"))
    }

    /// Runs a read of the open group, remembering its failure for the group.
    fn read<T>(
        &mut self,
        read: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if let Some(error) = &self.group_error {
            return Err(error.again());
        }
        let result = match self.connection.as_mut() {
            Some(connection) => read(connection),
            None => Err(StoreError::Unavailable {
                reason: "the connection to the database was lost".into(),
            }),
        };
        if let Err(error) = &result {
            self.group_error = Some(error.again());
        }
        result
    }
}

impl View for PgWriter {
    fn document(&mut self, document_id: &str) -> Result<Option<DocumentRecord>, StoreError> {
        if self.group_error.is_none() && self.absent.contains(document_id) {
            return Ok(None);
        }
        self.read(|connection| read_document(connection, document_id))
    }

    fn deliveries(&mut self, document_id: &str) -> Result<Option<Vec<DeliveryRecord>>, StoreError> {
        self.read(|connection| {
            let deliveries = read_deliveries(connection, document_id)?;
            Ok((!deliveries.is_empty()).then_some(deliveries))
        })
    }

    fn queue_item(&mut self, owner: &str, seq: u64) -> Result<Option<QueueItem>, StoreError> {
        self.read(|connection| {
            let row = connection
                .query_opt(
                    "SELECT kind, document_id, recipient, entries FROM queue_items
                     WHERE owner = $1 AND seq = $2",
                    &[&owner, &(seq as i64)],
                )
                .map_err(|error| database_error("reading a queue item", &error))?;
            row.map(|row| row_queue_item(&row)).transpose()
        })
    }

    fn dead_letter(
        &mut self,
        recipient: &str,
        document_id: &str,
    ) -> Result<Option<DeadLetterRecord>, StoreError> {
        self.read(|connection| {
            let row = connection
                .query_opt(
                    "SELECT recipient, document_id, sender, queue_owner, expired_at, reason,
                            state, actions
                     FROM dead_letters WHERE recipient = $1 AND document_id = $2",
                    &[&recipient, &document_id],
                )
                .map_err(|error| database_error("reading a dead letter", &error))?;
            row.map(|row| row_dead_letter(&row)).transpose()
        })
    }

    fn watch_block(
        &mut self,
        block: &WatchBlockId,
    ) -> Result<Option<Vec<WatchRecord>>, StoreError> {
        let Some(id) = <[u8; 8]>::try_from(block.as_slice())
            .ok()
            .map(i64::from_be_bytes)
        else {
            return Ok(None);
        };
        self.read(|connection| {
            let row = connection
                .query_opt(
                    "SELECT kind, deadline, document_id, recipient, sender
                     FROM deadlines WHERE id = $1",
                    &[&id],
                )
                .map_err(|error| database_error("reading a deadline", &error))?;
            row.map(|row| super::reader::row_watch(&row).map(|watch| vec![watch]))
                .transpose()
        })
    }

    fn room_for_documents(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn blob_refs(&mut self, sha256: &[u8; 32]) -> Result<Option<u64>, StoreError> {
        self.read(|connection| super::retention::blob_refs(connection, sha256))
    }

    fn archived(&mut self, document_id: &str) -> Result<Option<ArchivedDocument>, StoreError> {
        if self.group_error.is_none() {
            if let Some(known) = self.archived.get(document_id) {
                return Ok(known.clone());
            }
        }
        self.read(|connection| super::retention::archived(connection, document_id))
    }

    fn overdue_of(
        &mut self,
        recipient: &str,
        document_id: &str,
    ) -> Result<Vec<OverdueRecord>, StoreError> {
        self.read(|connection| super::retention::overdue_of(connection, recipient, document_id))
    }

    fn links(&mut self, document_id: &str) -> Result<Vec<LinkRecord>, StoreError> {
        self.read(|connection| super::reader::read_links(connection, document_id))
    }

    fn audit_oldest(
        &mut self,
        before_unix_ms: i64,
        through_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(|connection| {
            super::retention::audit_oldest(connection, before_unix_ms, through_seq, limit)
        })
    }

    fn send_seq(
        &mut self,
        document_id: &str,
        _accepted_at_unix_ms: i64,
    ) -> Result<Option<u64>, StoreError> {
        self.read(|connection| super::retention::send_seq(connection, document_id))
    }

    fn open_archive(&mut self, hub: &str) -> Result<Option<ArchiveFile>, StoreError> {
        self.read(|connection| super::retention::open_archive(connection, hub))
    }
}

impl GroupWriter for PgWriter {
    fn begin(&mut self, sent: &[&str]) -> Result<GroupStart, StoreError> {
        self.group_error = None;
        self.absent.clear();
        self.archived.clear();
        let connection = self.connection()?;
        // One round trip: the lock, and (read under it, so no other hub can
        // store one of them before this group commits) which of the sends'
        // documents are stored or in the duplicate index.
        let mut pipeline = Pipeline::default();
        pipeline.push("starting a group", "BEGIN", params![]);
        pipeline.push(
            "starting a group",
            "SELECT next_queue_seq, audit_seq, audit_sha256 FROM truc_meta
             WHERE id = 1 FOR UPDATE",
            params![],
        );
        if !sent.is_empty() {
            pipeline.push(
                "looking up documents",
                "SELECT document_id FROM documents WHERE document_id = ANY($1)",
                params![sent],
            );
            pipeline.push(
                "reading the duplicate index",
                super::retention::ARCHIVED_ANY,
                params![sent],
            );
        }
        let answers = match connection.run(pipeline) {
            Ok(answers) => answers,
            Err(error) => {
                if connection.is_closed() {
                    self.connection = None;
                } else {
                    let _ = connection.batch_execute("ROLLBACK");
                }
                return Err(error);
            }
        };
        let Some(row) = answers[1].first() else {
            let _ = connection.batch_execute("ROLLBACK");
            return Err(StoreError::Corrupt {
                key: "truc_meta".into(),
                reason: "its one row is missing".into(),
            });
        };
        let next_queue_seq: i64 = row.get(0);
        let audit_seq: i64 = row.get(1);
        let audit_sha256: Vec<u8> = row.get(2);
        let start = GroupStart {
            next_queue_seq: next_queue_seq as u64,
            audit_head: AuditHead {
                seq: audit_seq as u64,
                sha256: rows::sha256_of(&audit_sha256, "truc_meta.audit_sha256")?,
            },
        };
        if !sent.is_empty() {
            let held: HashSet<String> = answers[2].iter().map(|row| row.get(0)).collect();
            self.absent = sent
                .iter()
                .filter(|id| !held.contains(**id))
                .map(|id| (*id).to_owned())
                .collect();
            self.archived = sent.iter().map(|id| ((*id).to_owned(), None)).collect();
            for row in &answers[3] {
                let archived = super::retention::row_archived(row)?;
                self.archived
                    .insert(archived.document_id.clone(), Some(archived));
            }
        }
        Ok(start)
    }

    fn view(&mut self) -> &mut dyn View {
        self
    }

    fn commit(&mut self, group: GroupChanges, woken: &BTreeSet<String>) -> Result<(), StoreError> {
        if let Some(error) = self.group_error.take() {
            self.abort();
            return Err(error);
        }
        let Some(connection) = self.connection.as_mut() else {
            return Err(StoreError::Unavailable {
                reason: "the connection to the database was lost".into(),
            });
        };
        // Every write and the COMMIT leave together: one round trip under
        // the lock, besides the commit's wait for the standby.
        let written = write_group(connection, group, woken);
        if written.is_err() {
            self.abort();
        }
        written
    }

    fn abort(&mut self) {
        if let Some(connection) = self.connection.as_mut() {
            if connection.batch_execute("ROLLBACK").is_err() || connection.is_closed() {
                self.connection = None;
            }
        }
    }

    fn checkpoint_all(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn close(&mut self) {
        self.background.stop();
    }
}

/// Writes one group's changes inside the open transaction and commits it:
/// the statements, a table each for the whole group, and the COMMIT are
/// sent together.
fn write_group(
    connection: &mut Connection,
    group: GroupChanges,
    woken: &BTreeSet<String>,
) -> Result<(), StoreError> {
    let GroupChanges {
        mut changes,
        audit,
        next_queue_seq,
        send_seqs,
    } = group;
    // Owned rows, before the pipeline borrows from the rest.
    let retention = super::retention::write(&mut changes)?;
    let mut pipeline = Pipeline::default();

    write_certificates(&mut pipeline, &changes.documents);
    write_attachments(connection, &mut pipeline, &changes.blobs)?;
    write_documents(&mut pipeline, &changes.documents, &send_seqs)?;
    write_deliveries(&mut pipeline, &changes.deliveries);
    write_queue(&mut pipeline, &changes.queue);
    write_counters(&mut pipeline, &changes.counters)?;
    write_links(&mut pipeline, &changes.links);
    write_deadlines(&mut pipeline, &changes.watches, &changes.watch_blocks_done);
    write_overdue(&mut pipeline, &changes.overdue);
    write_dead_letters(&mut pipeline, &changes.dead_letters);
    pipeline.append(retention);
    write_audit(&mut pipeline, &audit);
    write_meta(&mut pipeline, &audit, next_queue_seq);
    wake_streams(&mut pipeline, woken);
    pipeline.push("committing", "COMMIT", params![]);
    connection.run(pipeline).map(drop)
}

/// Certificates, once per digest.
fn write_certificates(pipeline: &mut Pipeline<'_>, documents: &[DocumentRecord]) {
    let mut certificate_digests = Vec::new();
    let mut certificates = Vec::new();
    let mut seen = HashSet::new();
    for document in documents {
        let digest = sha256(&document.sender_certificate);
        if seen.insert(digest) {
            certificate_digests.push(digest.to_vec());
            certificates.push(document.sender_certificate.clone());
        }
    }
    if !certificates.is_empty() {
        pipeline.push(
            "storing certificates",
            "INSERT INTO certificates (sha256, der)
                 SELECT * FROM UNNEST($1::bytea[], $2::bytea[]) ON CONFLICT DO NOTHING",
            params![certificate_digests, certificates],
        );
    }
}

/// The new documents, a row each with the sequence number of its send
/// entry.
fn write_documents(
    pipeline: &mut Pipeline<'_>,
    documents: &[DocumentRecord],
    send_seqs: &HashMap<String, u64>,
) -> Result<(), StoreError> {
    if documents.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::new();
    let mut senders = Vec::new();
    let mut dates: Vec<Date> = Vec::new();
    let mut subjects = Vec::new();
    let mut accepted: Vec<OffsetDateTime> = Vec::new();
    let mut recipients = Vec::new();
    let mut refused: Vec<Value> = Vec::new();
    let mut attachments: Vec<Value> = Vec::new();
    let mut states = Vec::new();
    let mut contents = Vec::new();
    let mut headers = Vec::new();
    let mut signatures = Vec::new();
    let mut signers: Vec<Option<Vec<u8>>> = Vec::new();
    let mut document_signatures: Vec<Option<Vec<u8>>> = Vec::new();
    let mut certificate_shas = Vec::new();
    let mut send_audit_seqs = Vec::new();
    for document in documents {
        send_audit_seqs.push(
            send_seqs
                .get(&document.document_id)
                .map_or(0, |seq| *seq as i64),
        );
        ids.push(document.document_id.clone());
        senders.push(document.sender.clone());
        dates.push(rows::date(document.date_key)?);
        subjects.push(document.subject.clone());
        accepted.push(timestamp(document.accepted_at_unix_ms));
        recipients.push(document.recipients.join(","));
        refused.push(rows::refused_json(&document.refused));
        attachments.push(rows::attachments_json(&document.attachments));
        states.push(rows::signature_state_name(
            document.document_signature_state,
        ));
        contents.push(document.content_sha256.to_vec());
        headers.push(document.header_bytes.clone());
        signatures.push(document.signature.clone());
        signers.push(document.document_signature.as_ref().map(|(c, _)| c.clone()));
        document_signatures.push(document.document_signature.as_ref().map(|(_, s)| s.clone()));
        certificate_shas.push(sha256(&document.sender_certificate).to_vec());
    }
    pipeline.push(
        "storing documents",
        "INSERT INTO documents (document_id, sender, document_date, subject, accepted_at,
                     recipients, refused, attachments, document_signature_state, content_sha256,
                     header, signature, document_signer_certificate, document_signature,
                     certificate_sha256, send_audit_seq)
                 SELECT d, s, dt, subj, acc, string_to_array(r, ','), rf, att, st, c, h, sig, sc,
                        ds, cs, sq
                 FROM UNNEST($1::text[], $2::text[], $3::date[], $4::text[], $5::timestamptz[],
                             $6::text[], $7::jsonb[], $8::jsonb[], $9::text[], $10::bytea[],
                             $11::bytea[], $12::bytea[], $13::bytea[], $14::bytea[], $15::bytea[],
                             $16::bigint[])
                      AS u(d, s, dt, subj, acc, r, rf, att, st, c, h, sig, sc, ds, cs, sq)",
        params![
            ids,
            senders,
            dates,
            subjects,
            accepted,
            recipients,
            refused,
            attachments,
            states,
            contents,
            headers,
            signatures,
            signers,
            document_signatures,
            certificate_shas,
            send_audit_seqs
        ],
    );
    Ok(())
}

/// The day's sent and received counts, added to what is stored.
fn write_counters(
    pipeline: &mut Pipeline<'_>,
    counters: &std::collections::BTreeMap<(String, u32), (u64, u64)>,
) -> Result<(), StoreError> {
    if counters.is_empty() {
        return Ok(());
    }
    let mut agencies = Vec::new();
    let mut days: Vec<Date> = Vec::new();
    let mut sent = Vec::new();
    let mut received = Vec::new();
    for ((agency, date_key), (s, r)) in counters {
        agencies.push(agency.clone());
        days.push(rows::date(*date_key)?);
        sent.push(*s as i64);
        received.push(*r as i64);
    }
    pipeline.push(
        "counting",
        "INSERT INTO counters (agency, day, sent, received)
                 SELECT * FROM UNNEST($1::text[], $2::date[], $3::bigint[], $4::bigint[])
                 ON CONFLICT (agency, day) DO UPDATE
                 SET sent = counters.sent + EXCLUDED.sent,
                     received = counters.received + EXCLUDED.received",
        params![agencies, days, sent, received],
    );
    Ok(())
}

/// Links from a recall, update or replace to the document it names.
fn write_links<'a>(pipeline: &mut Pipeline<'a>, links: &'a [LinkRecord]) {
    for link in links {
        pipeline.push(
            "linking documents",
            "INSERT INTO links (earlier, later, business_type) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            params![&link.earlier, &link.later, &link.business_type],
        );
    }
}

/// Deadlines set, and the blocks of deadlines settled.
fn write_deadlines<'a>(
    pipeline: &mut Pipeline<'a>,
    watches: &'a [WatchRecord],
    blocks_done: &[WatchBlockId],
) {
    if !watches.is_empty() {
        let kinds: Vec<&str> = watches.iter().map(|w| w.kind.name()).collect();
        let deadlines: Vec<OffsetDateTime> = watches
            .iter()
            .map(|w| timestamp(w.deadline_unix_ms))
            .collect();
        let documents: Vec<&str> = watches.iter().map(|w| w.document_id.as_str()).collect();
        let recipients: Vec<&str> = watches.iter().map(|w| w.recipient.as_str()).collect();
        let senders: Vec<&str> = watches.iter().map(|w| w.sender.as_str()).collect();
        pipeline.push(
            "setting deadlines",
            "INSERT INTO deadlines (kind, deadline, document_id, recipient, sender)
                 SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::text[],
                                      $5::text[])",
            params![kinds, deadlines, documents, recipients, senders],
        );
    }
    if !blocks_done.is_empty() {
        let ids: Vec<i64> = blocks_done
            .iter()
            .filter_map(|block| <[u8; 8]>::try_from(block.as_slice()).ok())
            .map(i64::from_be_bytes)
            .collect();
        pipeline.push(
            "settling deadlines",
            "DELETE FROM deadlines WHERE id = ANY($1)",
            params![ids],
        );
    }
}

/// Deliveries found overdue.
fn write_overdue<'a>(pipeline: &mut Pipeline<'a>, overdue: &'a [OverdueRecord]) {
    for record in overdue {
        pipeline.push(
            "recording an overdue delivery",
            "INSERT INTO overdue (recipient, document_id, kind, deadline, detected_at, sender)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (recipient, document_id, kind) DO UPDATE
                 SET deadline = EXCLUDED.deadline, detected_at = EXCLUDED.detected_at",
            params![
                &record.recipient,
                &record.document_id,
                record.kind.name(),
                timestamp(record.deadline_unix_ms),
                timestamp(record.detected_at_unix_ms),
                &record.sender
            ],
        );
    }
}

/// Dead letters, new or with a new state.
fn write_dead_letters<'a>(
    pipeline: &mut Pipeline<'a>,
    dead_letters: &'a HashMap<(String, String), DeadLetterRecord>,
) {
    for letter in dead_letters.values() {
        pipeline.push(
            "recording a dead letter",
            "INSERT INTO dead_letters (recipient, document_id, sender, queue_owner,
                     expired_at, reason, state, actions)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (recipient, document_id) DO UPDATE
                 SET state = EXCLUDED.state, actions = EXCLUDED.actions",
            params![
                &letter.recipient,
                &letter.document_id,
                &letter.sender,
                &letter.queue_owner,
                timestamp(letter.expired_at_unix_ms),
                &letter.reason,
                letter.state.name(),
                rows::actions_json(&letter.actions)
            ],
        );
    }
}

/// The group's audit entries, a column each.
fn write_audit<'a>(pipeline: &mut Pipeline<'a>, audit: &'a [AuditEntry]) {
    if audit.is_empty() {
        return;
    }
    let seqs: Vec<i64> = audit.iter().map(|e| e.seq as i64).collect();
    let at: Vec<OffsetDateTime> = audit.iter().map(|e| timestamp(e.at_unix_ms)).collect();
    let kinds: Vec<&str> = audit.iter().map(|e| e.kind.name()).collect();
    let actors: Vec<&str> = audit.iter().map(|e| e.actor.as_str()).collect();
    let documents: Vec<&str> = audit.iter().map(|e| e.document_id.as_str()).collect();
    let recipients: Vec<&str> = audit.iter().map(|e| e.recipient.as_str()).collect();
    let statuses: Vec<i32> = audit.iter().map(|e| e.status as i32).collect();
    let reasons: Vec<&str> = audit.iter().map(|e| e.reason.as_str()).collect();
    let signed: Vec<Option<Vec<u8>>> = audit
        .iter()
        .map(|e| e.signed_sha256.map(|s| s.to_vec()))
        .collect();
    let signatures: Vec<&[u8]> = audit.iter().map(|e| e.signature.as_slice()).collect();
    let certificates: Vec<Option<Vec<u8>>> = audit
        .iter()
        .map(|e| e.certificate_sha256.map(|s| s.to_vec()))
        .collect();
    let previous: Vec<Vec<u8>> = audit.iter().map(|e| e.previous_sha256.to_vec()).collect();
    let hashes: Vec<Vec<u8>> = audit.iter().map(|e| e.sha256.to_vec()).collect();
    pipeline.push(
        "appending to the audit log",
        "INSERT INTO audit_log (seq, at, kind, actor, document_id, recipient, status,
                     reason, signed_sha256, signature, certificate_sha256, previous_sha256, sha256)
                 SELECT * FROM UNNEST($1::bigint[], $2::timestamptz[], $3::text[], $4::text[],
                     $5::text[], $6::text[], $7::integer[], $8::text[], $9::bytea[], $10::bytea[],
                     $11::bytea[], $12::bytea[], $13::bytea[])",
        params![
            seqs,
            at,
            kinds,
            actors,
            documents,
            recipients,
            statuses,
            reasons,
            signed,
            signatures,
            certificates,
            previous,
            hashes
        ],
    );
}

/// The next queue sequence number and, when the group audited anything,
/// the head of the audit chain.
fn write_meta(pipeline: &mut Pipeline<'_>, audit: &[AuditEntry], next_queue_seq: u64) {
    let audit_head = audit.last().map(|entry| AuditHead {
        seq: entry.seq,
        sha256: entry.sha256,
    });
    match audit_head {
        Some(head) => pipeline.push(
            "moving the group's counters",
            "UPDATE truc_meta SET next_queue_seq = $1, audit_seq = $2, audit_sha256 = $3
             WHERE id = 1",
            params![next_queue_seq as i64, head.seq as i64, head.sha256.to_vec()],
        ),
        None => pipeline.push(
            "moving the group's counters",
            "UPDATE truc_meta SET next_queue_seq = $1 WHERE id = 1",
            params![next_queue_seq as i64],
        ),
    };
}

/// Wakes the delivery streams of the agencies in `woken`.
fn wake_streams<'a>(pipeline: &mut Pipeline<'a>, woken: &'a BTreeSet<String>) {
    if !woken.is_empty() {
        let agencies: Vec<&str> = woken.iter().map(String::as_str).collect();
        pipeline.push(
            "waking delivery streams",
            "SELECT pg_notify($1, agency) FROM UNNEST($2::text[]) AS agency",
            params![QUEUE_CHANNEL, agencies],
        );
    }
}

/// Attachments the group's documents name: each digest once. Small ones
/// bring their bytes; large ones were streamed into chunks that now get
/// their attachment. A digest stored already leaves the new bytes unused.
fn write_attachments<'a>(
    connection: &mut Connection,
    pipeline: &mut Pipeline<'a>,
    blobs: &'a [crate::PendingBlob],
) -> Result<(), StoreError> {
    if blobs.is_empty() {
        return Ok(());
    }
    if blobs.iter().all(|blob| blob.inline.is_some()) {
        // Bytes only for the digests this statement inserts.
        let mut digests = Vec::with_capacity(blobs.len());
        let mut sizes = Vec::with_capacity(blobs.len());
        let mut bytes = Vec::with_capacity(blobs.len());
        let mut seen = HashSet::new();
        for blob in blobs {
            if let (true, Some(inline)) = (seen.insert(blob.sha256), &blob.inline) {
                digests.push(blob.sha256.to_vec());
                sizes.push(blob.size_bytes as i64);
                bytes.push(inline.as_slice());
            }
        }
        pipeline.push(
            "storing attachments",
            "WITH new AS (
                 INSERT INTO attachments (sha256, size_bytes)
                 SELECT * FROM UNNEST($1::bytea[], $2::bigint[]) ON CONFLICT DO NOTHING
                 RETURNING sha256)
             INSERT INTO attachment_chunks (sha256, position, bytes)
             SELECT u.d, 0, u.b FROM UNNEST($1::bytea[], $3::bytea[]) AS u(d, b)
             JOIN new ON new.sha256 = u.d",
            params![digests, sizes, bytes],
        );
        return Ok(());
    }
    // Streamed bytes must all be claimed before the COMMIT is sent, so
    // these statements go one by one.
    let mut first: HashMap<[u8; 32], &crate::PendingBlob> = HashMap::new();
    let mut unused: Vec<i64> = Vec::new();
    for blob in blobs {
        match first.entry(blob.sha256) {
            std::collections::hash_map::Entry::Occupied(_) => unused.extend(row_ids(&blob.extents)),
            std::collections::hash_map::Entry::Vacant(vacant) => {
                vacant.insert(blob);
            }
        }
    }
    let digests: Vec<Vec<u8>> = first.keys().map(|d| d.to_vec()).collect();
    let sizes: Vec<i64> = first.values().map(|b| b.size_bytes as i64).collect();
    let inserted: HashSet<Vec<u8>> = connection
        .query(
            "INSERT INTO attachments (sha256, size_bytes)
             SELECT * FROM UNNEST($1::bytea[], $2::bigint[]) ON CONFLICT DO NOTHING
             RETURNING sha256",
            &[&digests, &sizes],
        )
        .map_err(fail("storing attachments"))?
        .into_iter()
        .map(|row| row.get::<_, Vec<u8>>(0))
        .collect();
    let mut inline_digests = Vec::new();
    let mut inline_bytes = Vec::new();
    let mut claimed_ids = Vec::new();
    let mut claimed_digests = Vec::new();
    let mut claimed_positions = Vec::new();
    for (digest, blob) in &first {
        if !inserted.contains(digest.as_slice()) {
            unused.extend(row_ids(&blob.extents));
            continue;
        }
        match &blob.inline {
            Some(bytes) => {
                inline_digests.push(digest.to_vec());
                inline_bytes.push(bytes.clone());
            }
            None => {
                for (position, id) in row_ids(&blob.extents).enumerate() {
                    claimed_ids.push(id);
                    claimed_digests.push(digest.to_vec());
                    claimed_positions.push(position as i32);
                }
            }
        }
    }
    if !inline_digests.is_empty() {
        connection
            .execute(
                "INSERT INTO attachment_chunks (sha256, position, bytes)
                 SELECT d, 0, b FROM UNNEST($1::bytea[], $2::bytea[]) AS u(d, b)",
                &[&inline_digests, &inline_bytes],
            )
            .map_err(fail("storing attachment bytes"))?;
    }
    if !claimed_ids.is_empty() {
        let claimed = connection
            .execute(
                "UPDATE attachment_chunks c SET sha256 = u.d, position = u.p
                 FROM UNNEST($1::bigint[], $2::bytea[], $3::integer[]) AS u(id, d, p)
                 WHERE c.id = u.id AND c.sha256 IS NULL",
                &[&claimed_ids, &claimed_digests, &claimed_positions],
            )
            .map_err(fail("claiming streamed attachment bytes"))?;
        if claimed != claimed_ids.len() as u64 {
            // Streamed with asynchronous commits, which a failover may lose:
            // the document cannot be stored without them.
            return Err(StoreError::Unavailable {
                reason: format!(
                    "{} of {} streamed attachment chunks were lost (a database failover while \
                     the document was sent); send it again",
                    claimed_ids.len() as u64 - claimed,
                    claimed_ids.len()
                ),
            });
        }
    }
    if !unused.is_empty() {
        connection
            .execute(
                "DELETE FROM attachment_chunks WHERE id = ANY($1) AND sha256 IS NULL",
                &[&unused],
            )
            .map_err(fail("dropping unused attachment bytes"))?;
    }
    Ok(())
}

fn row_ids(extents: &[Extent]) -> impl Iterator<Item = i64> + '_ {
    extents.iter().filter_map(|extent| match extent {
        Extent::Row(id) => Some(*id),
        Extent::Log(_) => None,
    })
}

/// New deliveries and new status entries are inserted; changed deliveries
/// get their queue item and current status.
fn write_deliveries<'a>(
    pipeline: &mut Pipeline<'a>,
    deliveries: &'a HashMap<String, crate::rules::DeliveriesChange>,
) {
    let mut new = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut changed = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut entries: EntryColumns<'_> = Default::default();
    for change in deliveries.values() {
        for (index, delivery) in change.records.iter().enumerate() {
            let status: Option<i32> = delivery.history.last().map(|entry| entry.code as i32);
            let from = if change.is_new(index) {
                new.0.push(delivery.document_id.as_str());
                new.1.push(delivery.recipient.as_str());
                new.2.push(delivery.queue_seq as i64);
                new.3.push(status);
                0
            } else {
                changed.0.push(delivery.document_id.as_str());
                changed.1.push(delivery.recipient.as_str());
                changed.2.push(delivery.queue_seq as i64);
                changed.3.push(status);
                change.stored[index]
            };
            for (position, entry) in delivery.history.iter().enumerate().skip(from) {
                push_entry(&mut entries, delivery, position, entry);
            }
        }
    }
    if !new.0.is_empty() {
        pipeline.push(
            "storing deliveries",
            "INSERT INTO deliveries (document_id, recipient, queue_seq, status)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::integer[])",
            params![new.0, new.1, new.2, new.3],
        );
    }
    if !changed.0.is_empty() {
        pipeline.push(
            "moving deliveries",
            "UPDATE deliveries d SET queue_seq = u.q, status = u.s
                 FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::integer[]) AS u(d, r, q, s)
                 WHERE d.document_id = u.d AND d.recipient = u.r",
            params![changed.0, changed.1, changed.2, changed.3],
        );
    }
    if !entries.0.is_empty() {
        pipeline.push(
            "recording statuses",
            "INSERT INTO status_entries (document_id, recipient, position, code, at, actor,
                     reason)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::integer[], $4::integer[],
                                      $5::timestamptz[], $6::text[], $7::text[])",
            params![entries.0, entries.1, entries.2, entries.3, entries.4, entries.5, entries.6],
        );
    }
}

/// Status entries, a column each: document id, recipient, position, code,
/// time, actor, reason.
type EntryColumns<'a> = (
    Vec<&'a str>,
    Vec<&'a str>,
    Vec<i32>,
    Vec<i32>,
    Vec<OffsetDateTime>,
    Vec<&'a str>,
    Vec<&'a str>,
);

fn push_entry<'a>(
    entries: &mut EntryColumns<'a>,
    delivery: &'a DeliveryRecord,
    position: usize,
    entry: &'a StatusEntry,
) {
    entries.0.push(&delivery.document_id);
    entries.1.push(&delivery.recipient);
    entries.2.push(position as i32);
    entries.3.push(entry.code as i32);
    entries.4.push(timestamp(entry.at_unix_ms));
    entries.5.push(&entry.actor);
    entries.6.push(&entry.reason);
}

/// Queue items put, a column each: owner, seq, kind, document id,
/// recipient, sender, notice entries.
type QueueColumns<'a> = (
    Vec<&'a str>,
    Vec<i64>,
    Vec<&'a str>,
    Vec<&'a str>,
    Vec<&'a str>,
    Vec<&'a str>,
    Vec<Option<Value>>,
);

fn write_queue<'a>(
    pipeline: &mut Pipeline<'a>,
    queue: &'a std::collections::BTreeMap<(String, u64), Option<QueueItem>>,
) {
    let mut put: QueueColumns<'_> = Default::default();
    let mut taken: (Vec<&str>, Vec<i64>) = Default::default();
    for ((owner, seq), item) in queue {
        match item {
            None => {
                taken.0.push(owner);
                taken.1.push(*seq as i64);
            }
            Some(item) => {
                let (kind, document_id, recipient, entries) = match item {
                    QueueItem::Delivery {
                        document_id,
                        recipient,
                    } => ("delivery", document_id, recipient, None),
                    QueueItem::Notice {
                        document_id,
                        recipient,
                        entry,
                    } => (
                        "notices",
                        document_id,
                        recipient,
                        Some(rows::entries_json(std::slice::from_ref(entry))),
                    ),
                    QueueItem::Notices {
                        document_id,
                        recipient,
                        entries,
                    } => (
                        "notices",
                        document_id,
                        recipient,
                        Some(rows::entries_json(entries)),
                    ),
                };
                put.0.push(owner);
                put.1.push(*seq as i64);
                put.2.push(kind);
                put.3.push(document_id);
                put.4.push(recipient);
                put.5.push(truc_domain::sender_of_id(document_id));
                put.6.push(entries);
            }
        }
    }
    if !put.0.is_empty() {
        pipeline.push(
            "queueing",
            "INSERT INTO queue_items (owner, seq, kind, document_id, recipient, sender, entries)
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                                      $6::text[], $7::jsonb[])",
            params![put.0, put.1, put.2, put.3, put.4, put.5, put.6],
        );
    }
    if !taken.0.is_empty() {
        pipeline.push(
            "taking queue items",
            "DELETE FROM queue_items q USING UNNEST($1::text[], $2::bigint[]) AS u(o, s)
                 WHERE q.owner = u.o AND q.seq = u.s",
            params![taken.0, taken.1],
        );
    }
}
