//! One store test suite for both engines: the same operations, the same
//! expected states and figures, against the embedded engine on a temporary
//! directory and the PostgreSQL engine on a real server the test starts. A
//! rule bug shows in both; an engine bug shows as one engine failing, or as
//! the two engines' states after the same operations disagreeing.

use std::collections::BTreeMap;
use std::sync::Arc;

use truc_store::{
    AcceptDeadlines, AcceptOutcome, AcceptPlan, AckOutcome, ArchiveFile, ArchivedDocument,
    AuditEntry, BusinessEffect, BusinessRequest, DeadLetterState, DeadlineKind, DocumentRecord,
    DocumentSignatureState, Extent, PendingBlob, PostgresOptions, QueueItem, RetainedFigures,
    RetireRequest, StatusEntry, Store, StoreError, StoreOptions,
};

const G22: &str = "000.00.00.G22";
const H41: &str = "000.00.00.H41";
const H42: &str = "000.00.00.H42";
/// A unit with no node of its own, reached through H41 (its LGSP relay).
const H41_UNIT: &str = "000.00.05.H41";

/// Where a scenario's store lives, and how to open it again.
enum Place {
    Embedded(tempfile::TempDir),
    Postgres(String),
}

impl Place {
    fn open(&self) -> Store {
        match self {
            Place::Embedded(dir) => {
                // The store just dropped lets go of its directory once its
                // writer has finished.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                loop {
                    match Store::open(dir.path(), &StoreOptions::default()) {
                        Ok(store) => break store,
                        Err(error) if std::time::Instant::now() < deadline => {
                            let _ = error;
                            std::thread::sleep(std::time::Duration::from_millis(20));
                        }
                        Err(error) => panic!("the store opens again: {error}"),
                    }
                }
            }
            Place::Postgres(url) => Store::open_postgres(
                &PostgresOptions {
                    url: url.clone(),
                    reader_connections_max: 2,
                    ..PostgresOptions::default()
                },
                &StoreOptions::default(),
            )
            .unwrap(),
        }
    }
}

/// Makes a fresh place for each scenario.
type Places = Box<dyn Fn(&str) -> Place>;

fn embedded() -> Places {
    Box::new(|_| Place::Embedded(tempfile::tempdir().unwrap()))
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .try_into()
        .unwrap()
}

fn document(number: u32, recipients: &[&str], accepted_at_unix_ms: i64) -> DocumentRecord {
    let header_bytes = format!("header {number}").into_bytes();
    DocumentRecord {
        document_id: format!("{G22},2026/11/22,{number}/VPCP"),
        sender: G22.into(),
        date_key: 20261122,
        subject: format!("Về việc {number}"),
        content_sha256: sha(&header_bytes),
        header_bytes,
        signature: vec![number as u8; 64],
        sender_certificate: b"certificate of G22".to_vec(),
        document_signature: number
            .is_multiple_of(2)
            .then(|| (b"signer".to_vec(), vec![7; 64])),
        document_signature_state: if number.is_multiple_of(2) {
            DocumentSignatureState::Valid
        } else {
            DocumentSignatureState::Absent
        },
        accepted_at_unix_ms,
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        refused: Vec::new(),
        attachments: Vec::new(),
    }
}

fn relayed() -> AcceptPlan {
    AcceptPlan {
        queue_owners: BTreeMap::from([(H41_UNIT.to_string(), H41.to_string())]),
        business: None,
    }
}

fn entry(code: u32, at_unix_ms: i64, actor: &str, reason: &str) -> StatusEntry {
    StatusEntry {
        code,
        at_unix_ms,
        actor: actor.into(),
        reason: reason.into(),
    }
}

fn queue(store: &Store, owner: &str) -> Vec<(u64, QueueItem)> {
    store.queue_after(owner, 0, 1000).unwrap()
}

fn codes(store: &Store, document_id: &str, recipient: &str) -> Vec<u32> {
    store
        .delivery(document_id, recipient)
        .unwrap()
        .unwrap()
        .history
        .iter()
        .map(|entry| entry.code)
        .collect()
}

/// The audit chain verifies entry by entry and ends at the head.
/// The live chain may start after entries that left for an archive.
fn check_audit(store: &Store) -> Vec<AuditEntry> {
    let entries: Vec<AuditEntry> = store.audit_entries(1).map(Result::unwrap).collect();
    let first = entries.first().map_or(1, |entry| entry.seq);
    let mut previous = entries
        .first()
        .map_or([0u8; 32], |entry| entry.previous_sha256);
    for (index, entry) in entries.iter().enumerate() {
        assert_eq!(
            entry.seq,
            first + index as u64,
            "audit sequence has no gaps"
        );
        assert_eq!(
            entry.previous_sha256, previous,
            "entry {} names its predecessor",
            entry.seq
        );
        assert_eq!(
            entry.compute_sha256(),
            entry.sha256,
            "entry {} hashes",
            entry.seq
        );
        previous = entry.sha256;
    }
    let head = store.audit_head().unwrap();
    assert_eq!(head.seq, first + entries.len() as u64 - 1);
    assert_eq!(head.sha256, previous);
    entries
}

fn check_counters(store: &Store) {
    assert_eq!(
        store.counter_entries().unwrap(),
        store.rebuild_counters().unwrap(),
        "live counters equal the counters rebuilt from the records"
    );
}

/// Accept, duplicates, relays, acknowledgements, moves and refusals, then
/// everything again after a reopen.
async fn accept_acknowledge_move(place: &Place) -> Snapshot {
    let store = place.open();
    let first = document(1, &[H41_UNIT, H42], 1_000);
    let id = first.document_id.clone();
    let (outcome, _) = store
        .accept_planned(first.clone(), Vec::new(), relayed())
        .await
        .unwrap();
    assert!(matches!(outcome, AcceptOutcome::Accepted(_)));
    // The same document again is the original; other content under its id is refused.
    let (again, _) = store
        .accept_planned(first.clone(), Vec::new(), relayed())
        .await
        .unwrap();
    match again {
        AcceptOutcome::Duplicate(original) => assert_eq!(original, first),
        other => panic!("a resend is a duplicate, not {other:?}"),
    }
    let mut changed = first.clone();
    changed.header_bytes = b"other content".to_vec();
    changed.content_sha256 = sha(&changed.header_bytes);
    match store.accept(changed, Vec::new()).await {
        Err(StoreError::AlreadyExists {
            accepted_at_unix_ms,
            ..
        }) => assert_eq!(accepted_at_unix_ms, 1_000),
        other => panic!("other content under a stored id is refused, not {other:?}"),
    }
    assert_eq!(store.document(&id).unwrap().unwrap(), first);
    // The unit's delivery waits in its relay's queue.
    let relay_queue = queue(&store, H41);
    assert_eq!(relay_queue.len(), 1);
    assert!(
        matches!(&relay_queue[0].1, QueueItem::Delivery { recipient, .. } if recipient == H41_UNIT)
    );
    assert!(queue(&store, H41_UNIT).is_empty());
    assert_eq!(store.pending_sends(G22, 100).unwrap(), 2);
    // The relay acknowledges: the unit's delivery arrived, the sender is told.
    let outcomes = store
        .ack_all(H41, vec![relay_queue[0].0], 2_000)
        .await
        .unwrap();
    assert!(matches!(&outcomes[..], [AckOutcome::Arrived(entry)] if entry.code == 1));
    assert_eq!(
        store.ack(H41, relay_queue[0].0, 2_001).await.unwrap(),
        AckOutcome::AlreadyDone
    );
    assert_eq!(codes(&store, &id, H41_UNIT), vec![1]);
    let notices = queue(&store, G22);
    assert!(
        matches!(&notices[..], [(_, QueueItem::Notices { recipient, entries, .. })]
        if recipient == H41_UNIT && entries.len() == 1 && entries[0].code == 1)
    );
    // H42 moves before its node acknowledged: the arrival is recorded with the move.
    store
        .move_status(&id, H42, entry(3, 3_000, H42, ""))
        .await
        .unwrap();
    assert_eq!(codes(&store, &id, H42), vec![1, 3]);
    // Backward, and a rejection without a reason, are refused and change nothing.
    let refused = store
        .move_all(vec![
            truc_store::MoveRequest {
                document_id: id.clone(),
                recipient: H42.into(),
                entry: entry(1, 3_100, H42, ""),
            },
            truc_store::MoveRequest {
                document_id: id.clone(),
                recipient: H42.into(),
                entry: entry(2, 3_200, H42, " "),
            },
            truc_store::MoveRequest {
                document_id: id.clone(),
                recipient: H42.into(),
                entry: entry(6, 3_300, H42, ""),
            },
        ])
        .await
        .unwrap();
    assert!(matches!(refused[0], Err(StoreError::IllegalMove(_))));
    assert!(matches!(refused[1], Err(StoreError::IllegalMove(_))));
    assert!(refused[2].is_ok());
    assert_eq!(codes(&store, &id, H42), vec![1, 3, 6]);
    // H42's node acknowledges afterwards: nothing more is recorded.
    let h42_item = queue(&store, H42)[0].0;
    assert_eq!(
        store.ack(H42, h42_item, 4_000).await.unwrap(),
        AckOutcome::AlreadyDone
    );
    assert!(queue(&store, H42).is_empty());
    assert_eq!(store.pending_sends(G22, 100).unwrap(), 0);
    match store
        .move_status(&id, "000.00.00.H43", entry(3, 1, "x", ""))
        .await
    {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("a delivery that does not exist is not found, not {other:?}"),
    }
    check_counters(&store);
    let counts = store.counts(20261122, 20261122).unwrap();
    assert_eq!(counts[G22], (1, 0));
    assert_eq!(counts[H41_UNIT], (0, 1));
    assert_eq!(counts[H42], (0, 1));
    let report = store.report(20261101, 20261130, Some(H42)).unwrap();
    assert_eq!(report[G22].sent, 1);
    assert_eq!(report[G22].sent_to_focus, 1);
    assert_eq!(report[H42].received, 1);
    assert_eq!(report[H42].status_codes(), vec![1, 3, 6]);
    let before = Snapshot::of(&store);
    drop(store);
    let store = place.open();
    let after = Snapshot::of(&store);
    assert_eq!(
        before, after,
        "everything acknowledged is there after a reopen"
    );
    check_audit(&store);
    after
}

/// A recall withdraws what nobody fetched and asks whoever holds it; the
/// documents are linked both ways.
async fn recall(place: &Place) -> Snapshot {
    let store = place.open();
    let earlier = document(11, &[H41, H42], 10_000);
    let earlier_id = earlier.document_id.clone();
    store.accept(earlier, Vec::new()).await.unwrap();
    let h41_item = queue(&store, H41)[0].0;
    store.ack(H41, h41_item, 11_000).await.unwrap();
    let mut recall = document(12, &[H41, H42], 12_000);
    recall.recipients = vec![H41.into(), H42.into()];
    let plan = AcceptPlan {
        queue_owners: BTreeMap::new(),
        business: Some(BusinessRequest {
            business_type: 1,
            references: vec![earlier_id.clone()],
        }),
    };
    let (outcome, effects) = store
        .accept_planned(recall, Vec::new(), plan)
        .await
        .unwrap();
    let AcceptOutcome::Accepted(accepted) = outcome else {
        panic!("the recall is accepted");
    };
    // H42 never had the earlier document: it is not told of the recall.
    assert_eq!(accepted.recipients, vec![H41.to_string()]);
    let effect = |recipient: &str| {
        effects
            .iter()
            .find(|e| e.recipient == recipient)
            .unwrap()
            .effect
            .clone()
    };
    assert_eq!(effect(H41), BusinessEffect::Requested);
    assert_eq!(effect(H42), BusinessEffect::Withdrawn);
    assert_eq!(codes(&store, &earlier_id, H41), vec![1, 13]);
    assert_eq!(codes(&store, &earlier_id, H42), vec![13, 15]);
    // The withdrawn delivery left its queue; H42's node is told, in case it
    // had the document on its way.
    assert!(
        matches!(&queue(&store, H42)[..], [(_, QueueItem::Notices { document_id, recipient, entries })]
            if *document_id == earlier_id && recipient == H42 && entries.len() == 1 && entries[0].code == 15),
        "{:?}",
        queue(&store, H42)
    );
    let links = store.links(&earlier_id).unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].later, accepted.document_id);
    assert_eq!(store.links(&accepted.document_id).unwrap(), links);
    // H41 answers; a second answer is refused.
    store
        .move_status(&earlier_id, H41, entry(15, 13_000, H41, ""))
        .await
        .unwrap();
    assert!(store
        .move_status(&earlier_id, H41, entry(16, 13_100, H41, "đã xử lý"))
        .await
        .is_err());
    // H41's node holds the document: it is told the recall was agreed.
    let told = queue(&store, H41);
    assert!(
        told.iter().any(|(_, item)| matches!(item, QueueItem::Notices { document_id, entries, .. }
            if *document_id == earlier_id && entries.iter().map(|e| e.code).collect::<Vec<_>>() == [15])),
        "{told:?}"
    );
    check_counters(&store);
    check_audit(&store);
    Snapshot::of(&store)
}

/// A recipient moves a document its node never fetched (the arrival is
/// recorded with the move and the queue item stays), then agrees to its
/// recall: the document leaves the queue, so the node never writes it,
/// and the node is told instead.
async fn recall_agreed_before_fetch(place: &Place) -> Snapshot {
    let store = place.open();
    let earlier = document(21, &[H42, H41_UNIT], 20_000);
    let earlier_id = earlier.document_id.clone();
    store
        .accept_planned(earlier, Vec::new(), relayed())
        .await
        .unwrap();
    let h42_item = queue(&store, H42)[0].0;
    let relay_item = queue(&store, H41)[0].0;
    store
        .move_status(&earlier_id, H42, entry(3, 21_000, H42, ""))
        .await
        .unwrap();
    // The relay moves for its unit, which has no node of its own.
    store
        .move_status(&earlier_id, H41_UNIT, entry(3, 21_100, H41, ""))
        .await
        .unwrap();
    assert_eq!(codes(&store, &earlier_id, H42), vec![1, 3]);
    assert_eq!(queue(&store, H42).len(), 1, "a move leaves the item queued");
    assert_eq!(store.pending_sends(G22, 100).unwrap(), 2);
    let recall = document(22, &[H42, H41_UNIT], 22_000);
    let (_, effects) = store
        .accept_planned(
            recall,
            Vec::new(),
            AcceptPlan {
                queue_owners: BTreeMap::from([(H41_UNIT.to_string(), H41.to_string())]),
                business: Some(BusinessRequest {
                    business_type: 1,
                    references: vec![earlier_id.clone()],
                }),
            },
        )
        .await
        .unwrap();
    assert!(effects
        .iter()
        .all(|e| e.effect == BusinessEffect::Requested));
    for (recipient, node, at) in [(H42, H42, 23_000), (H41_UNIT, H41, 23_100)] {
        store
            .move_status(&earlier_id, recipient, entry(15, at, node, ""))
            .await
            .unwrap();
        assert_eq!(codes(&store, &earlier_id, recipient), vec![1, 3, 13, 15]);
        let items = queue(&store, node);
        assert!(
            !items.iter().any(|(_, item)| matches!(item, QueueItem::Delivery { document_id, .. } if *document_id == earlier_id)),
            "the recalled document left {node}'s queue: {items:?}"
        );
        assert!(
            items.iter().any(|(_, item)| matches!(item, QueueItem::Notices { document_id, recipient: told, entries }
                if *document_id == earlier_id && told == recipient && entries[0].code == 15)),
            "{node} is told: {items:?}"
        );
    }
    // Only the recall itself still waits for the two nodes.
    assert_eq!(store.pending_sends(G22, 100).unwrap(), 2);
    // A late acknowledgement of the withdrawn items records nothing.
    assert_eq!(
        store.ack(H42, h42_item, 24_000).await.unwrap(),
        AckOutcome::AlreadyDone
    );
    assert_eq!(
        store.ack(H41, relay_item, 24_000).await.unwrap(),
        AckOutcome::AlreadyDone
    );
    assert_eq!(codes(&store, &earlier_id, H42), vec![1, 3, 13, 15]);
    check_counters(&store);
    check_audit(&store);
    Snapshot::of(&store)
}

/// Deadlines found due become overdue records and dead letters; an
/// operator resends one and cancels another.
async fn deadlines(place: &Place) -> Snapshot {
    let store = place.open();
    let deadlines = AcceptDeadlines {
        arrived_unix_ms: Some(21_000),
        due_date_unix_ms: None,
        expiry_unix_ms: Some(22_000),
    };
    for number in [21, 22] {
        store
            .accept_watched(
                document(number, &[H41, H42], 20_000),
                Vec::new(),
                AcceptPlan::default(),
                deadlines,
            )
            .await
            .unwrap();
    }
    // H41 takes its deliveries in time; H42 never does.
    let items: Vec<u64> = queue(&store, H41).iter().map(|(seq, _)| *seq).collect();
    store
        .ack_watched(H41, items, 20_500, Some(40_000))
        .await
        .unwrap();
    let due = store.due_watches(30_000, 100).unwrap();
    assert_eq!(due.watches.len(), 8, "{:?}", due.watches);
    let outcome = store
        .lapse(due, 30_000, "không ai nhận".into())
        .await
        .unwrap();
    assert_eq!(outcome.met, 4);
    assert_eq!(outcome.overdue.len(), 2);
    assert!(outcome
        .overdue
        .iter()
        .all(|o| o.recipient == H42 && o.kind == DeadlineKind::Arrived));
    assert_eq!(outcome.expired.len(), 2);
    assert!(store.due_watches(30_000, 100).unwrap().is_empty());
    assert_eq!(store.overdue_records(Some(H42)).count(), 2);
    assert_eq!(store.overdue_records(Some(H41)).count(), 0);
    let letters: Vec<_> = store.dead_letters(None).map(Result::unwrap).collect();
    assert_eq!(letters.len(), 2);
    assert!(
        queue(&store, H42).is_empty(),
        "an expired delivery left its queue"
    );
    let resent = &letters[0].document_id;
    let cancelled = &letters[1].document_id;
    let letter = store
        .resend_dead_letter(
            resent,
            H42,
            "operator:ops",
            31_000,
            AcceptDeadlines::default(),
        )
        .await
        .unwrap();
    assert_eq!(letter.state, DeadLetterState::Resent);
    assert_eq!(
        queue(&store, H42).len(),
        1,
        "a resent letter is queued again"
    );
    store
        .cancel_dead_letter(cancelled, H42, "operator:ops", 32_000, "đã gửi bản giấy")
        .await
        .unwrap();
    match store
        .cancel_dead_letter(resent, H42, "operator:ops", 33_000, "again")
        .await
    {
        Err(StoreError::Closed { .. }) => {}
        other => panic!("a letter already resent cannot be cancelled, not {other:?}"),
    }
    assert_eq!(
        store.dead_letter(cancelled, H42).unwrap().unwrap().state,
        DeadLetterState::Cancelled
    );
    // H41's "received" deadline comes due later, unmet.
    let due = store.due_watches(50_000, 100).unwrap();
    let outcome = store.lapse(due, 50_000, "x".into()).await.unwrap();
    assert_eq!(outcome.overdue.len(), 2);
    assert!(outcome
        .overdue
        .iter()
        .all(|o| o.kind == DeadlineKind::Received));
    let report = store.report(20261122, 20261122, None).unwrap();
    assert_eq!(report[H42].overdue, 2);
    assert_eq!(report[H41].overdue, 2);
    check_counters(&store);
    check_audit(&store);
    Snapshot::of(&store)
}

/// Small attachments are stored with their document, large ones streamed
/// ahead; a digest is stored once; bytes read back exactly.
async fn attachments(place: &Place) -> Snapshot {
    let store = place.open();
    let small = b"small attachment".to_vec();
    let large: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let chunks: Vec<&[u8]> = large.chunks(70_000).collect();
    let mut extents = Vec::new();
    for chunk in &chunks {
        extents.push(store.put_chunk(chunk).unwrap());
    }
    let mut first = document(31, &[H41], 30_000);
    first.attachments = vec![
        truc_store::AttachmentRef {
            sha256: sha(&small),
            size_bytes: small.len() as u64,
        },
        truc_store::AttachmentRef {
            sha256: sha(&large),
            size_bytes: large.len() as u64,
        },
    ];
    let blobs = vec![
        PendingBlob {
            sha256: sha(&small),
            size_bytes: small.len() as u64,
            extents: Vec::new(),
            inline: Some(small.clone()),
        },
        PendingBlob {
            sha256: sha(&large),
            size_bytes: large.len() as u64,
            extents: extents.clone(),
            inline: None,
        },
    ];
    store.accept(first, blobs).await.unwrap();
    // A second document with the same large attachment streams it again;
    // the copy is not kept.
    let mut again_extents: Vec<Extent> = Vec::new();
    for chunk in &chunks {
        again_extents.push(store.put_chunk(chunk).unwrap());
    }
    let mut second = document(32, &[H42], 30_500);
    second.attachments = vec![truc_store::AttachmentRef {
        sha256: sha(&large),
        size_bytes: large.len() as u64,
    }];
    store
        .accept(
            second,
            vec![PendingBlob {
                sha256: sha(&large),
                size_bytes: large.len() as u64,
                extents: again_extents,
                inline: None,
            }],
        )
        .await
        .unwrap();
    // A refused send gives its streamed bytes back.
    let discarded = store.put_chunk(b"refused").unwrap();
    store.discard_chunks(&[discarded]);
    let read = |digest: &[u8; 32]| -> Vec<u8> {
        store
            .blob_chunks(digest)
            .unwrap()
            .flat_map(Result::unwrap)
            .collect()
    };
    assert_eq!(read(&sha(&small)), small);
    assert_eq!(read(&sha(&large)), large);
    assert_eq!(
        store.blob(&sha(&large)).unwrap().unwrap().size_bytes,
        large.len() as u64
    );
    assert!(store.blob(&sha(b"never stored")).unwrap().is_none());
    drop(store);
    let store = place.open();
    let read_again: Vec<u8> = store
        .blob_chunks(&sha(&large))
        .unwrap()
        .flat_map(Result::unwrap)
        .collect();
    assert_eq!(read_again, large);
    check_audit(&store);
    Snapshot::of(&store)
}

/// One development PKI for every run of the retention scenario, so that
/// both engines' archives are sealed by the same hub and can be compared.
fn pki() -> &'static truc_pki::PkiPaths {
    &pki_and_time().1
}

/// When the PKI was made (its certificates are valid from then on).
fn pki_made_at_unix_ms() -> i64 {
    pki_and_time().2
}

fn pki_and_time() -> &'static (tempfile::TempDir, truc_pki::PkiPaths, i64) {
    static PKI: std::sync::OnceLock<(tempfile::TempDir, truc_pki::PkiPaths, i64)> =
        std::sync::OnceLock::new();
    PKI.get_or_init(|| {
        let made_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            + 60_000;
        let dir = tempfile::tempdir().unwrap();
        let agencies: Vec<(String, String)> = [G22, H41, H42]
            .iter()
            .map(|code| (code.to_string(), format!("agency {code}")))
            .collect();
        let paths = truc_pki::init_dev_pki(
            dir.path(),
            &agencies,
            &[],
            std::time::Duration::from_secs(86_400),
        )
        .unwrap();
        (dir, paths, made_at)
    })
}

/// A document of G22 with a real envelope signature and G22's certificate,
/// as an archive's check wants it, and one attachment.
fn signed_document(number: u32, recipients: &[&str], accepted_at_unix_ms: i64) -> DocumentRecord {
    let credentials = pki().agency_credentials(G22).unwrap();
    let mut record = document(number, recipients, accepted_at_unix_ms);
    record.signature = credentials
        .signing_key()
        .unwrap()
        .sign_envelope(&record.header_bytes)
        .unwrap();
    record.sender_certificate = credentials.certificate_der().to_vec();
    record.document_signature = None;
    record.document_signature_state = DocumentSignatureState::Absent;
    record
}

fn attach(record: &mut DocumentRecord, bytes: &[u8]) -> PendingBlob {
    record.attachments.push(truc_store::AttachmentRef {
        sha256: sha(bytes),
        size_bytes: bytes.len() as u64,
    });
    PendingBlob {
        sha256: sha(bytes),
        size_bytes: bytes.len() as u64,
        extents: Vec::new(),
        inline: Some(bytes.to_vec()),
    }
}

fn archive_writer(dir: &std::path::Path) -> Arc<truc_archive::ArchiveWriter> {
    let hub = pki().hub_credentials().unwrap();
    let ca = pki()
        .trust_roots()
        .unwrap()
        .certificates_der()
        .map(<[u8]>::to_vec)
        .collect();
    Arc::new(
        truc_archive::ArchiveWriter::new(
            dir,
            "",
            ca,
            hub.certificate_der().to_vec(),
            hub.signing_key().unwrap(),
        )
        .with_seal_clock(sealed_at),
    )
}

/// The seals' time, the same for both engines' archives.
fn sealed_at() -> i64 {
    pki_made_at_unix_ms() + 100_000
}

/// Documents whose every delivery is final leave for an archive once old
/// enough; the others stay. What stays of them answers resends, counts in
/// reports, and says where each one went; the archive checks offline.
async fn retention(place: Place) -> Snapshot {
    // Within the development certificates' validity, the same for both engines.
    let t = |ms: i64| pki_made_at_unix_ms() + ms;
    let store = place.open();
    let archives = tempfile::tempdir().unwrap();
    let shared = b"an attachment two documents share".to_vec();
    // A: completed by both, one of them late to arrive (overdue).
    let mut a = signed_document(41, &[H41, H42], t(40_000));
    let a_unique = attach(&mut a, b"only A has this");
    let a_shared = attach(&mut a, &shared);
    let a_id = a.document_id.clone();
    store
        .accept_watched(
            a.clone(),
            vec![a_unique, a_shared.clone()],
            AcceptPlan::default(),
            AcceptDeadlines {
                arrived_unix_ms: Some(t(40_500)),
                ..AcceptDeadlines::default()
            },
        )
        .await
        .unwrap();
    let due = store.due_watches(t(41_000), 100).unwrap();
    assert_eq!(
        store
            .lapse(due, t(41_000), "x".into())
            .await
            .unwrap()
            .overdue
            .len(),
        2
    );
    for recipient in [H41, H42] {
        let item = queue(&store, recipient)[0].0;
        store.ack(recipient, item, t(42_000)).await.unwrap();
        for code in [3, 6] {
            store
                .move_status(&a_id, recipient, entry(code, t(43_000), recipient, ""))
                .await
                .unwrap();
        }
    }
    // B: shares A's attachment; its recipient is still processing it.
    let mut b = signed_document(42, &[H41], t(40_100));
    attach(&mut b, &shared);
    let b_id = b.document_id.clone();
    store.accept(b, Vec::new()).await.unwrap();
    let item = queue(&store, H41)[0].0;
    store.ack(H41, item, t(42_100)).await.unwrap();
    store
        .move_status(&b_id, H41, entry(5, t(43_100), H41, ""))
        .await
        .unwrap();
    // C: expires into a dead letter that an operator cancels.
    let c = signed_document(43, &[H42], t(40_200));
    let c_id = c.document_id.clone();
    store
        .accept_watched(
            c,
            Vec::new(),
            AcceptPlan::default(),
            AcceptDeadlines {
                expiry_unix_ms: Some(t(40_700)),
                ..AcceptDeadlines::default()
            },
        )
        .await
        .unwrap();
    let due = store.due_watches(t(44_000), 100).unwrap();
    assert_eq!(
        store
            .lapse(due, t(44_000), "không ai nhận".into())
            .await
            .unwrap()
            .expired
            .len(),
        1
    );
    store
        .cancel_dead_letter(&c_id, H42, "operator:ops", t(44_100), "đã gửi bản giấy")
        .await
        .unwrap();
    // D: completed by its recipient before its node acknowledged: still queued.
    let d = signed_document(44, &[H42], t(40_300));
    let d_id = d.document_id.clone();
    store.accept(d, Vec::new()).await.unwrap();
    store
        .move_status(&d_id, H42, entry(6, t(44_200), H42, ""))
        .await
        .unwrap();
    // E recalls R, which its recipient held: agreed, both final.
    let r = signed_document(45, &[H41], t(40_400));
    let r_id = r.document_id.clone();
    store.accept(r, Vec::new()).await.unwrap();
    let item = queue(&store, H41)[0].0;
    store.ack(H41, item, t(44_300)).await.unwrap();
    let e = signed_document(46, &[H41], t(40_450));
    let e_id = e.document_id.clone();
    store
        .accept_planned(
            e,
            Vec::new(),
            AcceptPlan {
                queue_owners: BTreeMap::new(),
                business: Some(BusinessRequest {
                    business_type: 1,
                    references: vec![r_id.clone()],
                }),
            },
        )
        .await
        .unwrap();
    store
        .move_status(&r_id, H41, entry(15, t(44_400), H41, ""))
        .await
        .unwrap();
    let item = queue(&store, H41)
        .into_iter()
        .find(|(_, item)| matches!(item, QueueItem::Delivery { document_id, .. } if *document_id == e_id))
        .unwrap()
        .0;
    store.ack(H41, item, t(44_500)).await.unwrap();
    store
        .move_status(
            &e_id,
            H41,
            entry(2, t(44_600), H41, "không thuộc thẩm quyền"),
        )
        .await
        .unwrap();
    // F: accepted after the cutoff, final, and so still too young.
    let f = signed_document(47, &[H42], t(50_000));
    let f_id = f.document_id.clone();
    store.accept(f, Vec::new()).await.unwrap();
    store
        .move_status(&f_id, H42, entry(2, t(50_100), H42, "trả lại"))
        .await
        .unwrap();

    let counts_before = store.counts(20000101, 20991231).unwrap();
    let report_before = store.report(20000101, 20991231, Some(H42)).unwrap();
    let writer = archive_writer(archives.path());
    let request = |at_unix_ms: i64, period: &str| RetireRequest {
        candidates: store
            .retention_candidates(t(45_000), None, 100)
            .unwrap()
            .into_iter()
            .map(|(_, id)| id)
            .collect(),
        cutoff_unix_ms: t(45_000),
        at_unix_ms,
        period: period.to_owned(),
        hub: String::new(),
        audit_entries_max: 10_000,
    };
    let outcome = store
        .retire(request(t(60_000), "2026-11"), writer.clone())
        .await
        .unwrap();
    // A, C, E and R leave; B and D are held; F is too young to be a candidate.
    assert_eq!((outcome.archived, outcome.held), (4, 2), "{outcome:?}");
    let file = outcome.file.clone().unwrap();
    assert_eq!(file.name, "2026-11.truca");
    for id in [&a_id, &c_id, &e_id, &r_id] {
        assert!(store.document(id).unwrap().is_none(), "{id} left");
        assert_eq!(store.archived(id).unwrap().unwrap().archive, file.name);
    }
    for id in [&b_id, &d_id, &f_id] {
        assert!(store.document(id).unwrap().is_some(), "{id} stays");
    }
    // What stays: counters and the report exactly as before, the live counters
    // still equal to those rebuilt from records and kept figures.
    assert_eq!(store.counts(20000101, 20991231).unwrap(), counts_before);
    assert_eq!(
        store.report(20000101, 20991231, Some(H42)).unwrap(),
        report_before
    );
    check_counters(&store);
    // The shared attachment stays for B; A's own left.
    assert!(store.blob(&sha(&shared)).unwrap().is_some());
    assert!(store.blob(&sha(b"only A has this")).unwrap().is_none());
    // A resend of an archived document is recognised; other content is refused.
    match store.accept(a.clone(), Vec::new()).await.unwrap() {
        AcceptOutcome::Archived(archived) => {
            assert_eq!(archived.accepted_at_unix_ms, t(40_000));
            assert_eq!(archived.recipients, vec![H41.to_string(), H42.to_string()]);
        }
        other => panic!("a resend of an archived document is recognised, not {other:?}"),
    }
    let mut changed = a.clone();
    changed.header_bytes = b"other content".to_vec();
    changed.content_sha256 = sha(&changed.header_bytes);
    assert!(matches!(
        store.accept(changed, Vec::new()).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    // Nothing more is recorded on an archived delivery.
    assert!(matches!(
        store
            .move_status(&a_id, H41, entry(6, t(61_000), H41, ""))
            .await,
        Err(StoreError::Archived { .. })
    ));
    // The live chain starts where the archive's ends.
    let live = check_audit(&store);
    let path = archives.path().join(&file.name);
    let checked = truc_archive::verify(&path, None, true).unwrap();
    assert_eq!(checked.problem, None);
    assert_eq!((checked.documents, checked.batches), (4, 1));
    assert_eq!(checked.signatures_checked, 4);
    assert_eq!(
        hex::encode(live[0].previous_sha256),
        checked.audit_last_sha256,
        "the live chain goes on from the archive's last entry"
    );
    assert_eq!(checked.audit_first_seq, 1);
    // The archive tells A's whole story, found through the duplicate index.
    let mut reader = truc_archive::ArchiveReader::open(&path).unwrap();
    let offset = store.archived(&a_id).unwrap().unwrap().archive_offset;
    let story = reader.document_at(offset).unwrap();
    assert_eq!(story.header_bytes, a.header_bytes);
    assert_eq!(story.overdue.len(), 2);
    assert_eq!(
        story
            .deliveries
            .iter()
            .map(|d| d.history.len())
            .collect::<Vec<_>>(),
        vec![3, 3]
    );
    assert_eq!(reader.find_document(&c_id).unwrap().dead_letters.len(), 1);
    assert!(!reader.audit_entries_of(&a_id).unwrap().is_empty());
    // A new month closes the file; nothing left to archive writes nothing new.
    let outcome = store
        .retire(request(t(70_000), "2026-12"), writer.clone())
        .await
        .unwrap();
    assert_eq!(outcome.archived, 0);
    assert!(outcome.closed.is_some_and(|closed| !closed.open));
    assert_eq!(
        truc_archive::verify(&path, None, false).unwrap().problem,
        None
    );

    let mut snapshot = Snapshot::of(&store);
    drop(store);
    let store = place.open();
    let mut again = Snapshot::of(&store);
    let bytes = std::fs::read(archives.path().join(&file.name)).unwrap();
    snapshot
        .archive_bytes
        .insert(file.name.clone(), bytes.clone());
    again.archive_bytes.insert(file.name.clone(), bytes);
    assert_eq!(snapshot, again, "retention's state is there after a reopen");
    snapshot
}

/// What the store holds, engine-independently, to compare engines.
#[derive(Debug, PartialEq)]
struct Snapshot {
    documents: Vec<DocumentRecord>,
    deliveries: Vec<truc_store::DeliveryRecord>,
    queues: BTreeMap<String, Vec<(u64, QueueItem)>>,
    counters: truc_store::CounterMap,
    audit: Vec<AuditEntry>,
    overdue: Vec<truc_store::OverdueRecord>,
    dead_letters: Vec<truc_store::DeadLetterRecord>,
    archived: Vec<ArchivedDocument>,
    retained: BTreeMap<(String, u32), RetainedFigures>,
    archive_files: Vec<ArchiveFile>,
    report: BTreeMap<String, truc_store::ReportRow>,
    /// The archive files' bytes, by name: the same from either engine.
    archive_bytes: BTreeMap<String, Vec<u8>>,
}

impl Snapshot {
    fn of(store: &Store) -> Snapshot {
        let documents: Vec<DocumentRecord> = store.documents().map(Result::unwrap).collect();
        let deliveries = documents
            .iter()
            .flat_map(|d| store.deliveries(&d.document_id).unwrap())
            .collect();
        let queues = [G22, H41, H42, H41_UNIT]
            .into_iter()
            .map(|agency| (agency.to_string(), queue(store, agency)))
            .collect();
        Snapshot {
            documents,
            deliveries,
            queues,
            counters: store.counter_entries().unwrap(),
            audit: store.audit_entries(1).map(Result::unwrap).collect(),
            overdue: sorted(
                store.overdue_records(None).map(Result::unwrap).collect(),
                |o| (o.recipient.clone(), o.document_id.clone(), o.kind),
            ),
            dead_letters: sorted(
                store.dead_letters(None).map(Result::unwrap).collect(),
                |l| (l.recipient.clone(), l.document_id.clone()),
            ),
            archived: store.archived_documents().map(Result::unwrap).collect(),
            retained: store.retained_figures().unwrap(),
            archive_files: store.archive_files().unwrap(),
            report: store.report(20000101, 20991231, Some(H41)).unwrap(),
            archive_bytes: BTreeMap::new(),
        }
    }
}

fn sorted<T, K: Ord>(mut items: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    items.sort_by_key(key);
    items
}

/// Runs every scenario on fresh places of one engine; their snapshots.
async fn suite(places: Places) -> Vec<Snapshot> {
    vec![
        accept_acknowledge_move(&places("accept_acknowledge_move")).await,
        recall(&places("recall")).await,
        recall_agreed_before_fetch(&places("recall_agreed_before_fetch")).await,
        deadlines(&places("deadlines")).await,
        attachments(&places("attachments")).await,
        retention(places("retention")).await,
    ]
}

/// A PostgreSQL server of the test's own, in a temporary directory.
fn start_postgres() -> (tempfile::TempDir, Arc<truc_cluster::PostgresServer>) {
    truc_cluster::ensure_packages().expect("PostgreSQL is installed");
    let dir = tempfile::tempdir().unwrap();
    let server = truc_cluster::PostgresServer::start(dir.path()).expect("server starts");
    (dir, Arc::new(server))
}

/// Scenarios of the suite, by the name of their database.
const SCENARIOS: [&str; 6] = [
    "accept_acknowledge_move",
    "recall",
    "recall_agreed_before_fetch",
    "deadlines",
    "attachments",
    "retention",
];

/// The database server is started, and databases made, outside the async
/// runtime: its tooling uses the synchronous client.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn both_engines_agree_on_every_scenario() {
    let (_dir, server) = start_postgres();
    let urls: BTreeMap<String, String> = SCENARIOS
        .iter()
        .map(|name| (name.to_string(), server.create_database(name).unwrap()))
        .collect();
    runtime().block_on(async move {
        let embedded = suite(embedded()).await;
        let postgres_snapshots =
            suite(Box::new(move |name| Place::Postgres(urls[name].clone()))).await;
        assert_eq!(embedded.len(), postgres_snapshots.len());
        for (embedded, postgres) in embedded.iter().zip(&postgres_snapshots) {
            assert_eq!(embedded, postgres, "the engines disagree");
        }
    });
}

#[test]
fn two_stores_on_one_database_act_as_one() {
    let (_dir, server) = start_postgres();
    let place = Place::Postgres(server.create_database("two_stores").unwrap());
    runtime().block_on(two_stores(place));
}

async fn two_stores(place: Place) {
    let a = place.open();
    let b = place.open();
    let woken = b.notifier(H41);
    let mut sends = Vec::new();
    for number in 0..40u32 {
        let store = if number.is_multiple_of(2) {
            a.clone()
        } else {
            b.clone()
        };
        sends.push(tokio::spawn(async move {
            store
                .accept(document(100 + number, &[H41, H42], 50_000), Vec::new())
                .await
                .unwrap()
        }));
    }
    for send in sends {
        assert!(matches!(send.await.unwrap(), AcceptOutcome::Accepted(_)));
    }
    // B's delivery stream for H41 was woken by what A accepted.
    tokio::time::timeout(std::time::Duration::from_secs(10), woken.notified())
        .await
        .expect("a store is woken by another's commit");
    // Queue sequence numbers are unique, the chain has no fork, and both see it all.
    let from_a = queue(&a, H41);
    let from_b = queue(&b, H41);
    assert_eq!(from_a.len(), 40);
    assert_eq!(from_a, from_b);
    let mut seqs: Vec<u64> = from_a.iter().map(|(seq, _)| *seq).collect();
    seqs.extend(queue(&a, H42).iter().map(|(seq, _)| *seq));
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 80);
    assert_eq!(check_audit(&a).len(), 40);
    // Both acknowledge the same item: it arrives once.
    let item = from_a[0].0;
    let (left, right) = tokio::join!(a.ack(H41, item, 60_000), b.ack(H41, item, 60_001));
    let outcomes = [left.unwrap(), right.unwrap()];
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, AckOutcome::Arrived(_)))
            .count(),
        1,
        "{outcomes:?}"
    );
    check_counters(&a);
    // One hub leases a node's queue at a time.
    let ttl = std::time::Duration::from_secs(30);
    assert_eq!(a.lease_node(H41, ttl).unwrap(), None);
    assert_eq!(
        a.lease_node(H41, ttl).unwrap(),
        None,
        "a lease is kept by its holder"
    );
    drop(b);
    let other = place.open_as("hub-b");
    assert_eq!(other.lease_node(H41, ttl).unwrap(), Some("hub".to_string()));
    a.release_node(H41).unwrap();
    assert_eq!(other.lease_node(H41, ttl).unwrap(), None);
    assert_eq!(other.node_leases().unwrap()[H41].hub, "hub-b");
}

fn database_url_of(place: &Place) -> String {
    match place {
        Place::Postgres(url) => url.clone(),
        Place::Embedded(_) => unreachable!(),
    }
}

impl Place {
    fn open_as(&self, hub_name: &str) -> Store {
        Store::open_postgres(
            &PostgresOptions {
                url: database_url_of(self),
                hub_name: hub_name.into(),
                reader_connections_max: 2,
                ..PostgresOptions::default()
            },
            &StoreOptions::default(),
        )
        .unwrap()
    }
}

#[test]
fn every_scenario_moves_to_postgres_and_back_unchanged() {
    let (_dir, server) = start_postgres();
    let urls: BTreeMap<String, String> = SCENARIOS
        .iter()
        .map(|name| {
            let name = format!("migrated_{name}");
            (name.clone(), server.create_database(&name).unwrap())
        })
        .collect();
    runtime().block_on(async move {
        for name in SCENARIOS {
            let source = Place::Embedded(tempfile::tempdir().unwrap());
            let expected = match name {
                "accept_acknowledge_move" => accept_acknowledge_move(&source).await,
                "recall" => recall(&source).await,
                "recall_agreed_before_fetch" => recall_agreed_before_fetch(&source).await,
                "deadlines" => deadlines(&source).await,
                _ => attachments(&source).await,
            };
            let database = Place::Postgres(urls[&format!("migrated_{name}")].clone());
            let back = Place::Embedded(tempfile::tempdir().unwrap());
            {
                let (from, to) = (source.open(), database.open());
                let report = truc_store::migrate(&from, &to, |_| {}).await.unwrap();
                assert_eq!(report.documents, expected.documents.len() as u64);
                assert_eq!(Snapshot::of(&to), expected, "{name}: into PostgreSQL");
                // The target must be empty.
                assert!(truc_store::migrate(&from, &to, |_| {}).await.is_err());
            }
            {
                let (from, to) = (database.open(), back.open());
                truc_store::migrate(&from, &to, |_| {}).await.unwrap();
                to.checkpoint().await.unwrap();
                assert_eq!(
                    Snapshot::of(&to),
                    expected,
                    "{name}: back into a data directory"
                );
            }
            // What was copied keeps working: the copy takes the next send.
            let store = back.open();
            store
                .accept(document(900, &[H42], 99_000), Vec::new())
                .await
                .unwrap();
            check_audit(&store);
            check_counters(&store);
        }
    });
}
