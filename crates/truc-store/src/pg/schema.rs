//! The PostgreSQL schema, as numbered migrations the hub applies itself at
//! open: each in its own transaction, under an advisory lock so that hubs
//! starting together apply it once, and recorded in `schema_migrations`.
//! A database of a newer schema than this hub knows is refused. The tables
//! are meant to be read with `psql` (docs/DEPLOY.md has operator queries).

use postgres::Client;

use crate::error::StoreError;

use super::database_error;

/// One migration: its number, what it does, and its SQL.
struct Migration {
    version: i32,
    description: &'static str,
    sql: &'static str,
}

/// Every migration, in order. A released migration is never edited: a
/// change to the schema is a new migration.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "documents, deliveries with their status history, queues, counters, \
                  deadlines, overdue records, dead letters, the audit chain, node leases",
        sql: r#"
-- One row. The writer of each group locks it first, so that groups of
-- every hub apply one after another: the audit chain has one head, queue
-- sequence numbers only grow, and every group reads what the one before
-- it wrote.
CREATE TABLE truc_meta (
    id smallint PRIMARY KEY CHECK (id = 1),
    next_queue_seq bigint NOT NULL,
    audit_seq bigint NOT NULL,
    audit_sha256 bytea NOT NULL
);
INSERT INTO truc_meta VALUES (1, 1, 0, '\x0000000000000000000000000000000000000000000000000000000000000000');

-- Senders' certificates, once per digest.
CREATE TABLE certificates (
    sha256 bytea PRIMARY KEY,
    der bytea NOT NULL
);

-- Identifiers (document ids, agency codes) sort byte by byte (COLLATE "C"),
-- as the embedded engine's keys do, whatever the database's locale.

-- Every accepted document, with the signed envelope exactly as received.
-- The primary key is the permanent duplicate index.
CREATE TABLE documents (
    document_id text COLLATE "C" PRIMARY KEY,
    sender text COLLATE "C" NOT NULL,
    document_date date NOT NULL,
    subject text NOT NULL,
    accepted_at timestamptz NOT NULL,
    recipients text[] NOT NULL,
    refused jsonb NOT NULL,
    attachments jsonb NOT NULL,
    document_signature_state text NOT NULL,
    content_sha256 bytea NOT NULL,
    header bytea NOT NULL,
    signature bytea NOT NULL,
    document_signer_certificate bytea,
    document_signature bytea,
    certificate_sha256 bytea NOT NULL REFERENCES certificates
);
CREATE INDEX documents_by_sender_date ON documents (sender, document_date);
CREATE INDEX documents_by_date ON documents (document_date);

-- Attachments once per digest, their bytes in chunks. A chunk streamed
-- ahead of its document has no attachment until the document is accepted.
CREATE TABLE attachments (
    sha256 bytea PRIMARY KEY,
    size_bytes bigint NOT NULL
);
CREATE TABLE attachment_chunks (
    id bigserial PRIMARY KEY,
    sha256 bytea REFERENCES attachments,
    position integer,
    bytes bytea NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX attachment_chunks_by_attachment ON attachment_chunks (sha256, position);
CREATE INDEX attachment_chunks_unclaimed ON attachment_chunks (stored_at) WHERE sha256 IS NULL;

-- One recipient's copy of a document: where it stands (the last status
-- code, NULL while queued) and the queue item that carries it.
CREATE TABLE deliveries (
    document_id text COLLATE "C" NOT NULL REFERENCES documents,
    recipient text COLLATE "C" NOT NULL,
    queue_seq bigint NOT NULL,
    status integer,
    PRIMARY KEY (document_id, recipient)
);
CREATE INDEX deliveries_by_recipient ON deliveries (recipient, status);

-- Each delivery's status history, in order.
CREATE TABLE status_entries (
    document_id text COLLATE "C" NOT NULL,
    recipient text COLLATE "C" NOT NULL,
    position integer NOT NULL,
    code integer NOT NULL,
    at timestamptz NOT NULL,
    actor text NOT NULL,
    reason text NOT NULL,
    PRIMARY KEY (document_id, recipient, position),
    FOREIGN KEY (document_id, recipient) REFERENCES deliveries
);

-- What waits for each node until it acknowledges it: deliveries, and
-- notices of the statuses its documents reached.
CREATE TABLE queue_items (
    owner text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    kind text NOT NULL CHECK (kind IN ('delivery', 'notices')),
    document_id text COLLATE "C" NOT NULL,
    recipient text COLLATE "C" NOT NULL,
    sender text COLLATE "C" NOT NULL,
    entries jsonb,
    queued_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, seq)
);
CREATE INDEX queue_items_deliveries_by_sender ON queue_items (sender) WHERE kind = 'delivery';

-- Sent and received per agency and document date, changed in the same
-- transaction as the event they count.
CREATE TABLE counters (
    agency text COLLATE "C" NOT NULL,
    day date NOT NULL,
    sent bigint NOT NULL,
    received bigint NOT NULL,
    PRIMARY KEY (agency, day)
);

-- Recalls (1), updates (2) and replaces (3): the later document names the earlier.
CREATE TABLE links (
    earlier text COLLATE "C" NOT NULL,
    later text COLLATE "C" NOT NULL,
    business_type integer NOT NULL,
    PRIMARY KEY (earlier, later)
);
CREATE INDEX links_by_later ON links (later);

-- Deadlines watched on deliveries, found by time.
CREATE TABLE deadlines (
    id bigserial PRIMARY KEY,
    kind text NOT NULL,
    deadline timestamptz NOT NULL,
    document_id text COLLATE "C" NOT NULL,
    recipient text COLLATE "C" NOT NULL,
    sender text COLLATE "C" NOT NULL
);
CREATE INDEX deadlines_by_time ON deadlines (deadline, id);

-- Deliveries that passed a deadline unanswered (kept after a late answer).
CREATE TABLE overdue (
    recipient text COLLATE "C" NOT NULL,
    document_id text COLLATE "C" NOT NULL,
    kind text NOT NULL,
    deadline timestamptz NOT NULL,
    detected_at timestamptz NOT NULL,
    sender text COLLATE "C" NOT NULL,
    PRIMARY KEY (recipient, document_id, kind)
);

-- Deliveries no node acknowledged in time, and what operators did with them.
CREATE TABLE dead_letters (
    recipient text COLLATE "C" NOT NULL,
    document_id text COLLATE "C" NOT NULL,
    sender text COLLATE "C" NOT NULL,
    queue_owner text COLLATE "C" NOT NULL,
    expired_at timestamptz NOT NULL,
    reason text NOT NULL,
    state text NOT NULL,
    actions jsonb NOT NULL,
    PRIMARY KEY (recipient, document_id)
);

-- The tamper-evident log: each entry names the hash of the one before.
CREATE TABLE audit_log (
    seq bigint PRIMARY KEY,
    at timestamptz NOT NULL,
    kind text NOT NULL,
    actor text NOT NULL,
    document_id text COLLATE "C" NOT NULL,
    recipient text COLLATE "C" NOT NULL,
    status integer NOT NULL,
    reason text NOT NULL,
    signed_sha256 bytea,
    signature bytea NOT NULL,
    certificate_sha256 bytea,
    previous_sha256 bytea NOT NULL,
    sha256 bytea NOT NULL
);

-- Which hub pushes each node's queue: at most one at a time, taken over
-- once it expires.
CREATE TABLE node_leases (
    agency text COLLATE "C" PRIMARY KEY,
    hub text COLLATE "C" NOT NULL,
    acquired_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
"#,
    },
    Migration {
        version: 2,
        description: "retention: documents by acceptance time with their send's audit entry, \
                  attachment reference counts, the duplicate index of archived documents, \
                  the report figures kept for them, archive files",
        sql: r#"
-- Retention finds old documents by acceptance time, and lets a document go
-- no earlier than its send's entry of the audit chain.
ALTER TABLE documents ADD COLUMN send_audit_seq bigint;
UPDATE documents d SET send_audit_seq = a.seq
FROM audit_log a WHERE a.kind = 'send' AND a.document_id = d.document_id;
UPDATE documents SET send_audit_seq = 0 WHERE send_audit_seq IS NULL;
ALTER TABLE documents ALTER COLUMN send_audit_seq SET NOT NULL;
CREATE INDEX documents_by_accepted ON documents (accepted_at, document_id);

-- How many documents name each attachment: one that none names goes.
ALTER TABLE attachments ADD COLUMN refs bigint NOT NULL DEFAULT 0;
UPDATE attachments a SET refs = r.n
FROM (SELECT decode(x ->> 'sha256', 'hex') AS sha256, count(*) AS n
      FROM documents d, jsonb_array_elements(d.attachments) x GROUP BY 1) r
WHERE a.sha256 = r.sha256;

-- The permanent duplicate index: what stays of a document that left for an
-- archive file (which file, and where its record starts in it).
CREATE TABLE archived_documents (
    document_id text COLLATE "C" PRIMARY KEY,
    sender text COLLATE "C" NOT NULL,
    document_date date NOT NULL,
    content_sha256 bytea NOT NULL,
    accepted_at timestamptz NOT NULL,
    recipients text[] NOT NULL,
    refused jsonb NOT NULL,
    document_signature_state text NOT NULL,
    archive text NOT NULL,
    archive_offset bigint NOT NULL,
    archived_at timestamptz NOT NULL
);
CREATE INDEX archived_documents_by_date ON archived_documents (document_date);

-- The report figures archived documents gave, per agency and document date
-- (reached: deliveries at each step of arrived, received, assigned,
-- processing, completed, or beyond).
CREATE TABLE retained_figures (
    agency text COLLATE "C" NOT NULL,
    day date NOT NULL,
    sent bigint NOT NULL,
    received bigint NOT NULL,
    statuses integer NOT NULL,
    overdue bigint NOT NULL,
    deliveries bigint NOT NULL,
    reached bigint[] NOT NULL,
    rejected bigint NOT NULL,
    recalled bigint NOT NULL,
    PRIMARY KEY (agency, day)
);

-- Each archive file as committed: a batch written after committed_bytes
-- was never committed, and the next write cuts it off.
CREATE TABLE archive_files (
    name text COLLATE "C" PRIMARY KEY,
    period text NOT NULL,
    hub text COLLATE "C" NOT NULL,
    open boolean NOT NULL,
    committed_bytes bigint NOT NULL,
    batches bigint NOT NULL,
    documents bigint NOT NULL,
    last_seal_sha256 bytea NOT NULL,
    audit_first_seq bigint NOT NULL,
    audit_last_seq bigint NOT NULL,
    created_at timestamptz NOT NULL,
    closed_at timestamptz
);
CREATE UNIQUE INDEX archive_files_one_open_per_hub ON archive_files (hub) WHERE open;
"#,
    },
];

/// The newest schema this hub knows.
pub(crate) const SCHEMA_VERSION: i32 = 2;

/// An arbitrary, fixed advisory-lock key for migrations.
const MIGRATION_LOCK: i64 = 0x7472_7563_0001;

/// Brings the database up to [`SCHEMA_VERSION`], or refuses one that is newer.
pub(crate) fn migrate(client: &mut Client) -> Result<i32, StoreError> {
    let fail = |what: &str, error: postgres::Error| database_error(what, &error);
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version integer PRIMARY KEY,
                 description text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .map_err(|e| fail("creating schema_migrations", e))?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .map_err(|e| fail("waiting for the migration lock", e))?;
    let result = (|| {
        let applied: i32 = client
            .query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )
            .map_err(|e| fail("reading schema_migrations", e))?
            .get(0);
        if applied > SCHEMA_VERSION {
            return Err(StoreError::Corrupt {
                key: "schema_migrations".into(),
                reason: format!(
                    "the database has schema version {applied}; this hub knows up to \
                     {SCHEMA_VERSION}: run a newer hub"
                ),
            });
        }
        for migration in MIGRATIONS.iter().filter(|m| m.version > applied) {
            let mut transaction = client
                .transaction()
                .map_err(|e| fail("starting a migration", e))?;
            transaction
                .batch_execute(migration.sql)
                .map_err(|e| fail(&format!("applying migration {}", migration.version), e))?;
            transaction
                .execute(
                    "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
                    &[&migration.version, &migration.description],
                )
                .map_err(|e| fail("recording a migration", e))?;
            transaction
                .commit()
                .map_err(|e| fail("committing a migration", e))?;
            tracing::info!(
                version = migration.version,
                description = migration.description,
                "database schema migrated"
            );
        }
        Ok(SCHEMA_VERSION)
    })();
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    result
}
