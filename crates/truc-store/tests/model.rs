//! The store against a plain in-memory model: random sequences of sends,
//! acknowledgements, status moves, checkpoints, graceful reopens, crashes
//! (the data directory as a killed process leaves it) and crashes whose
//! journal tail is then cut. After every step the store must hold exactly
//! what the model holds; a cut into an acknowledged group must be refused at
//! open, naming the loss, and never served. proptest shrinks a failure to
//! its shortest sequence.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use truc_domain::Status;
use truc_store::records::{DocumentRecord, DocumentSignatureState, QueueItem, StatusEntry};
use truc_store::{AcceptOutcome, Store, StoreError, StoreOptions, JOURNAL_DIR};

const SENDERS: [&str; 2] = ["000.00.00.G22", "000.00.00.G12"];
const RECIPIENTS: [&str; 3] = ["000.00.00.H41", "000.00.00.H10", "000.00.00.G12"];
/// What a recipient may ask for after "arrived".
const MOVES: [u32; 5] = [3, 4, 5, 6, 2];
/// Longest wait for a dropped store's writer to let go of its directory.
const REOPEN_WAIT_MAX: Duration = Duration::from_secs(20);

#[derive(Clone, Debug)]
enum Step {
    /// Document `number` to the recipients whose bits are set (never its sender).
    Send {
        number: u8,
        recipients: u8,
    },
    /// The first `count` items of a recipient's queue acknowledged.
    Ack {
        recipient: usize,
        count: u8,
    },
    Move {
        number: u8,
        recipient: usize,
        code: u32,
    },
    Checkpoint,
    /// A graceful stop and a new open.
    Reopen,
    /// The directory as SIGKILL leaves it, opened again.
    Crash,
    /// As `Crash`, with this many bytes cut off the journal's last segment.
    CrashCutTail {
        bytes: u16,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u8..24, 1u8..8).prop_map(|(number, recipients)| Step::Send { number, recipients }),
        4 => (0usize..3, 1u8..6).prop_map(|(recipient, count)| Step::Ack { recipient, count }),
        5 => (0u8..24, 0usize..3, 0usize..5).prop_map(|(number, recipient, code)| Step::Move {
            number,
            recipient,
            code: MOVES[code],
        }),
        1 => Just(Step::Checkpoint),
        1 => Just(Step::Reopen),
        2 => Just(Step::Crash),
        1 => (1u16..600).prop_map(|bytes| Step::CrashCutTail { bytes }),
    ]
}

fn sender_of(number: u8) -> &'static str {
    SENDERS[usize::from(number) % SENDERS.len()]
}

fn recipients_of(number: u8, mask: u8) -> Vec<&'static str> {
    let sender = sender_of(number);
    let chosen: Vec<&'static str> = RECIPIENTS
        .iter()
        .enumerate()
        .filter(|(index, code)| mask & (1 << index) != 0 && **code != sender)
        .map(|(_, code)| *code)
        .collect();
    if chosen.is_empty() {
        vec![RECIPIENTS[0]]
    } else {
        chosen
    }
}

fn document_id(number: u8) -> String {
    format!("{},2026/12/06,{number}/MODEL", sender_of(number))
}

fn document(number: u8, recipients: &[&str]) -> DocumentRecord {
    let header = format!("header {number}").into_bytes();
    DocumentRecord {
        document_id: document_id(number),
        sender: sender_of(number).into(),
        date_key: 20261206,
        subject: format!("Văn bản {number}"),
        content_sha256: [number; 32],
        header_bytes: header,
        signature: vec![number; 64],
        sender_certificate: format!("certificate of {}", sender_of(number)).into_bytes(),
        document_signature: None,
        document_signature_state: DocumentSignatureState::Absent,
        accepted_at_unix_ms: 1_000 + i64::from(number),
        recipients: recipients.iter().map(|code| code.to_string()).collect(),
        refused: Vec::new(),
        attachments: Vec::new(),
    }
}

/// What the store must hold.
#[derive(Clone, Debug, Default)]
struct Model {
    /// Each document's recipients with their status codes, oldest first.
    documents: BTreeMap<String, BTreeMap<String, Vec<u32>>>,
    /// Deliveries whose queue item is not yet acknowledged.
    queued: BTreeSet<(String, String)>,
}

impl Model {
    fn current(&self, id: &str, recipient: &str) -> Option<Option<Status>> {
        let codes = self.documents.get(id)?.get(recipient)?;
        Some(Status::state_of(codes.iter().copied()).expect("known codes"))
    }
}

fn options() -> StoreOptions {
    StoreOptions {
        // Checkpoints only when a step asks: the copies a crash takes must
        // not fall in the middle of one.
        checkpoint_interval: Duration::from_secs(3600),
        checkpoint_bytes: 1 << 40,
        ..StoreOptions::default()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Opens `dir`, waiting while an earlier store there is still letting go of it.
async fn open_when_free(dir: &Path) -> Store {
    let deadline = Instant::now() + REOPEN_WAIT_MAX;
    loop {
        match Store::open(dir, &options()) {
            Ok(store) => return store,
            Err(error) if Instant::now() >= deadline => {
                panic!("{} does not open: {error}", dir.display())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The newest journal segment in `dir`.
fn last_segment(dir: &Path) -> Option<PathBuf> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.join(JOURNAL_DIR))
        .ok()?
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    segments.pop()
}

fn check(store: &Store, model: &Model, after: &Step) {
    let ids: BTreeSet<String> = store.document_ids().map(Result::unwrap).collect();
    let expected: BTreeSet<String> = model.documents.keys().cloned().collect();
    assert_eq!(ids, expected, "documents after {after:?}");
    for (id, recipients) in &model.documents {
        let document = store.document(id).unwrap().expect("document readable");
        assert_eq!(&document.document_id, id);
        let held: BTreeMap<String, Vec<u32>> = store
            .deliveries(id)
            .unwrap()
            .into_iter()
            .map(|d| (d.recipient, d.history.iter().map(|e| e.code).collect()))
            .collect();
        assert_eq!(&held, recipients, "{id} after {after:?}");
    }
    let mut queued = BTreeSet::new();
    for recipient in RECIPIENTS {
        for (_, item) in store.queue_after(recipient, 0, 10_000).unwrap() {
            if let QueueItem::Delivery {
                document_id,
                recipient,
            } = item
            {
                queued.insert((document_id, recipient));
            }
        }
    }
    assert_eq!(queued, model.queued, "queues after {after:?}");
    assert_eq!(
        store.counter_entries().unwrap(),
        store.rebuild_counters().unwrap(),
        "counters after {after:?}"
    );
}

async fn run(steps: Vec<Step>) {
    let root = tempfile::tempdir().unwrap();
    let mut generation = 0u32;
    let mut dir = root.path().join("data-0");
    let mut store = Store::open(&dir, &options()).unwrap();
    let mut model = Model::default();
    let mut old_stores = Vec::new();
    for step in &steps {
        match step {
            Step::Send { number, recipients } => {
                let recipients = recipients_of(*number, *recipients);
                let id = document_id(*number);
                // A resend of the same id keeps the first content, as intake does.
                let recipients = match model.documents.get(&id) {
                    Some(known) => known
                        .keys()
                        .map(|r| *RECIPIENTS.iter().find(|c| **c == r.as_str()).unwrap())
                        .collect(),
                    None => recipients,
                };
                let outcome = store
                    .accept(document(*number, &recipients), Vec::new())
                    .await
                    .unwrap();
                match outcome {
                    AcceptOutcome::Accepted(_) => {
                        assert!(!model.documents.contains_key(&id), "{id} accepted twice");
                        model.documents.insert(
                            id.clone(),
                            recipients
                                .iter()
                                .map(|r| (r.to_string(), Vec::new()))
                                .collect(),
                        );
                        for recipient in recipients {
                            model.queued.insert((id.clone(), recipient.to_string()));
                        }
                    }
                    AcceptOutcome::Duplicate(_) => {
                        assert!(model.documents.contains_key(&id), "{id} is no duplicate")
                    }
                    // The model's store has no retention: nothing is ever archived.
                    AcceptOutcome::Archived(_) => panic!("{id}: archived without retention"),
                }
            }
            Step::Ack { recipient, count } => {
                let agency = RECIPIENTS[*recipient];
                let items = store.queue_after(agency, 0, usize::from(*count)).unwrap();
                let seqs: Vec<u64> = items.iter().map(|(seq, _)| *seq).collect();
                store.ack_all(agency, seqs, 5_000).await.unwrap();
                for (_, item) in items {
                    if let QueueItem::Delivery {
                        document_id,
                        recipient,
                    } = item
                    {
                        model
                            .queued
                            .remove(&(document_id.clone(), recipient.clone()));
                        let history = model
                            .documents
                            .get_mut(&document_id)
                            .and_then(|d| d.get_mut(&recipient))
                            .expect("queued deliveries are modelled");
                        if history.is_empty() {
                            history.push(Status::Arrived.code());
                        }
                    }
                }
            }
            Step::Move {
                number,
                recipient,
                code,
            } => {
                let id = document_id(*number);
                let agency = RECIPIENTS[*recipient];
                let entry = StatusEntry {
                    code: *code,
                    at_unix_ms: 6_000,
                    actor: agency.into(),
                    reason: if *code == 2 {
                        "sai thẩm quyền".into()
                    } else {
                        String::new()
                    },
                };
                let moved = store.move_status(&id, agency, entry).await;
                match model.current(&id, agency) {
                    None => assert!(moved.is_err(), "{id} to {agency} is not in the model"),
                    Some(current) => {
                        // A recipient moving a delivery still queued holds it: arrived first.
                        let current = current.or(Some(Status::Arrived));
                        let next = Status::from_code(*code).unwrap();
                        let legal = Status::check_move(current, next, "sai thẩm quyền").is_ok();
                        assert_eq!(
                            moved.is_ok(),
                            legal,
                            "{id} at {agency} to {code}: {moved:?}"
                        );
                        if legal {
                            let history = model
                                .documents
                                .get_mut(&id)
                                .and_then(|d| d.get_mut(agency))
                                .unwrap();
                            if history.is_empty() {
                                history.push(Status::Arrived.code());
                            }
                            history.push(*code);
                        }
                    }
                }
            }
            Step::Checkpoint => store.checkpoint().await.unwrap(),
            Step::Reopen => {
                store.checkpoint().await.unwrap();
                drop(store);
                store = open_when_free(&dir).await;
            }
            Step::Crash | Step::CrashCutTail { .. } => {
                generation += 1;
                let copy = root.path().join(format!("data-{generation}"));
                copy_dir(&dir, &copy);
                // The old store keeps running on its own directory, as if in
                // another process that the kill ended.
                old_stores.push(store);
                let mut cut_bytes = 0;
                if let Step::CrashCutTail { bytes } = step {
                    let cut = root.path().join(format!("cut-{generation}"));
                    copy_dir(&copy, &cut);
                    if let Some(segment) = last_segment(&cut) {
                        let len = std::fs::metadata(&segment).unwrap().len();
                        // The records after the segment's 8-byte magic.
                        cut_bytes = u64::from(*bytes).min(len.saturating_sub(8));
                        std::fs::OpenOptions::new()
                            .write(true)
                            .open(&segment)
                            .unwrap()
                            .set_len(len - cut_bytes)
                            .unwrap();
                    }
                    if cut_bytes > 0 {
                        // Every record in the journal was acknowledged: the
                        // cut lost one, and the store must say so.
                        match Store::open(&cut, &options()) {
                            Err(StoreError::DataLost { reason, .. }) => {
                                assert!(reason.contains("acknowledged"), "{reason}")
                            }
                            Err(error) => panic!("cut of {cut_bytes} bytes: {error}"),
                            Ok(_) => panic!(
                                "a journal cut by {cut_bytes} bytes opened as if nothing was lost"
                            ),
                        }
                    }
                }
                dir = copy;
                store = Store::open(&dir, &options()).unwrap();
            }
        }
        check(&store, &model, step);
    }
    drop(old_stores);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_store_holds_exactly_what_the_model_holds(steps in proptest::collection::vec(step(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(steps));
    }
}

/// A byte of a stored attachment flipped on disk: the hub refuses to serve
/// it (its CRC no longer matches) instead of handing it to a recipient.
#[tokio::test]
async fn a_damaged_attachment_is_refused_by_the_hub_itself() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &options()).unwrap();
    let bytes = b"%PDF-1.4 van ban so 7 ".repeat(100);
    let sha256 = [7u8; 32];
    let mut record = document(7, &[RECIPIENTS[0]]);
    record.attachments = vec![truc_store::AttachmentRef {
        sha256,
        size_bytes: bytes.len() as u64,
    }];
    let blob = truc_store::PendingBlob {
        sha256,
        size_bytes: bytes.len() as u64,
        extents: Vec::new(),
        inline: Some(bytes.clone()),
    };
    store.accept(record, vec![blob]).await.unwrap();
    store.checkpoint().await.unwrap();
    let read = |store: &Store| -> Result<Vec<u8>, StoreError> {
        store
            .blob_chunks(&sha256)?
            .collect::<Result<Vec<_>, _>>()
            .map(|chunks| chunks.concat())
    };
    assert_eq!(read(&store).unwrap(), bytes);
    let segment = dir
        .path()
        .join(truc_store::PAYLOAD_DIR)
        .join("0000000001.dat");
    let mut on_disk = std::fs::read(&segment).unwrap();
    let at = on_disk
        .windows(bytes.len())
        .position(|window| window == bytes.as_slice())
        .expect("the attachment is in the payload log");
    on_disk[at + 100] ^= 0x20;
    std::fs::write(&segment, &on_disk).unwrap();
    match read(&store) {
        Err(StoreError::Corrupt { reason, .. }) => assert!(reason.contains("CRC"), "{reason}"),
        other => panic!("damaged bytes served: {:?}", other.map(|b| b.len())),
    }
}
