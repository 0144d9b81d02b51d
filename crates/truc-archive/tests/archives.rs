//! Archive files written as retention writes them, sealed by a development
//! hub, then damaged the ways a disk, a person or a crash damages them: a
//! flipped byte, a document removed, a file cut, a seal rewritten, a batch
//! never sealed. The check names each; the writer cuts off what a crash left
//! after the last committed seal.

use std::collections::HashMap;
use std::path::Path;

use truc_archive::format::FrameKind;
use truc_archive::{verify, ArchiveReader, ArchiveWriter};
use truc_store::{
    ArchiveBatch, ArchiveFile, ArchiveSink, ArchivedBundle, AttachmentRef, AuditEntry, AuditHead,
    AuditKind, BlobSource, Chunks, DeliveryRecord, DocumentRecord, DocumentSignatureState,
    StatusEntry, StoreError,
};

const G22: &str = "000.00.00.G22";
const H41: &str = "000.00.00.H41";

struct Fixture {
    _dir: tempfile::TempDir,
    pki: truc_pki::PkiPaths,
    archives: std::path::PathBuf,
    made_at: i64,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let agencies = vec![(G22.to_string(), "Văn phòng Chính phủ".to_string())];
    let pki = truc_pki::init_dev_pki(
        &dir.path().join("pki"),
        &agencies,
        &[],
        std::time::Duration::from_secs(86_400),
    )
    .unwrap();
    let archives = dir.path().join("archive");
    let made_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 1_000;
    Fixture {
        _dir: dir,
        pki,
        archives,
        made_at,
    }
}

fn writer(fixture: &Fixture) -> ArchiveWriter {
    named_writer(fixture, "")
}

/// The writer of a hub called `name` among several.
fn named_writer(fixture: &Fixture, name: &str) -> ArchiveWriter {
    let hub = fixture.pki.hub_credentials().unwrap();
    ArchiveWriter::new(
        &fixture.archives,
        name,
        fixture
            .pki
            .trust_roots()
            .unwrap()
            .certificates_der()
            .map(<[u8]>::to_vec)
            .collect(),
        hub.certificate_der().to_vec(),
        hub.signing_key().unwrap(),
    )
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .try_into()
        .unwrap()
}

/// Attachment bytes by digest, as the store would give them.
struct Blobs(HashMap<[u8; 32], Vec<u8>>);

impl BlobSource for Blobs {
    fn chunks(&self, sha256: &[u8; 32]) -> Result<Chunks<'_>, StoreError> {
        let bytes = self.0.get(sha256).cloned().ok_or(StoreError::NotFound {
            what: "attachment".into(),
        })?;
        // In two pieces, as stored chunks come.
        let (first, second) = bytes.split_at(bytes.len() / 2);
        Ok(Box::new(
            vec![Ok(first.to_vec()), Ok(second.to_vec())].into_iter(),
        ))
    }
}

/// A signed document of G22 to H41 with one attachment, completed.
fn bundle(fixture: &Fixture, number: u32, blobs: &mut Blobs) -> ArchivedBundle {
    let credentials = fixture.pki.agency_credentials(G22).unwrap();
    let header_bytes = format!("signed header of document {number}").into_bytes();
    let attachment = format!("the attachment of document {number}")
        .repeat(40)
        .into_bytes();
    let digest = sha256(&attachment);
    blobs.0.insert(digest, attachment.clone());
    let document_id = format!("{G22},2026/11/22,{number}/VPCP");
    let at = fixture.made_at - 10_000 + i64::from(number);
    ArchivedBundle {
        document: DocumentRecord {
            document_id: document_id.clone(),
            sender: G22.into(),
            date_key: 20261122,
            subject: format!("Về việc {number}"),
            content_sha256: sha256(&header_bytes),
            signature: credentials
                .signing_key()
                .unwrap()
                .sign_envelope(&header_bytes)
                .unwrap(),
            header_bytes,
            sender_certificate: credentials.certificate_der().to_vec(),
            document_signature: None,
            document_signature_state: DocumentSignatureState::Absent,
            accepted_at_unix_ms: at,
            recipients: vec![H41.into()],
            refused: Vec::new(),
            attachments: vec![AttachmentRef {
                sha256: digest,
                size_bytes: attachment.len() as u64,
            }],
        },
        deliveries: vec![DeliveryRecord {
            document_id,
            recipient: H41.into(),
            queue_seq: u64::from(number),
            history: [1, 3, 6]
                .into_iter()
                .map(|code| StatusEntry {
                    code,
                    at_unix_ms: at + i64::from(code),
                    actor: H41.into(),
                    reason: String::new(),
                })
                .collect(),
        }],
        dead_letters: Vec::new(),
        overdue: Vec::new(),
        links: Vec::new(),
    }
}

/// A chain of `count` audit entries after `previous`.
fn chain(previous: Option<&AuditEntry>, count: u64) -> Vec<AuditEntry> {
    let mut entries = Vec::new();
    let (mut seq, mut hash) = previous.map_or((0, [0; 32]), |e| (e.seq, e.sha256));
    for _ in 0..count {
        seq += 1;
        let entry = AuditEntry::chain(
            truc_store::audit::AuditEvent {
                kind: AuditKind::Status,
                at_unix_ms: 1,
                actor: H41.into(),
                document_id: format!("{G22},2026/11/22,{seq}/VPCP"),
                recipient: H41.into(),
                status: 6,
                reason: String::new(),
                signed_sha256: None,
                signature: Vec::new(),
                certificate_sha256: None,
            },
            seq,
            hash,
        );
        hash = entry.sha256;
        entries.push(entry);
    }
    entries
}

fn new_file(fixture: &Fixture) -> ArchiveFile {
    ArchiveFile {
        name: writer(fixture).file_name("2026-11"),
        period: "2026-11".into(),
        hub: String::new(),
        open: true,
        committed_bytes: 0,
        batches: 0,
        documents: 0,
        last_seal_sha256: [0; 32],
        audit_first_seq: 0,
        audit_last_seq: 0,
        created_at_unix_ms: fixture.made_at,
        closed_at_unix_ms: 0,
    }
}

/// Two batches of three documents each, then the closing seal.
fn closed_archive(fixture: &Fixture) -> std::path::PathBuf {
    let writer = writer(fixture);
    let mut blobs = Blobs(HashMap::new());
    let mut file = new_file(fixture);
    let mut audit: Vec<AuditEntry> = Vec::new();
    for batch in 0..2u32 {
        let documents = (1..=3)
            .map(|n| bundle(fixture, batch * 3 + n, &mut blobs))
            .collect();
        let entries = chain(audit.last(), 5);
        audit.extend(entries.clone());
        let (next, offsets) = writer
            .append(
                &file,
                &ArchiveBatch {
                    documents,
                    audit: entries,
                    made_at_unix_ms: fixture.made_at,
                    live_audit_head: AuditHead::default(),
                },
                &blobs,
            )
            .unwrap();
        assert_eq!(offsets.len(), 3);
        file = next;
    }
    let closed = writer
        .close(&file, fixture.made_at, AuditHead::default())
        .unwrap();
    assert!(!closed.open);
    fixture.archives.join(&closed.name)
}

/// Where the frame a seal lists under `name` starts, and its length.
fn frame_of(path: &Path, name: &str) -> (u64, u64) {
    let mut reader = ArchiveReader::open(path).unwrap();
    for (_, seal) in reader.seals().unwrap() {
        if let Some(frame) = seal.body.frames.iter().find(|f| f.name == name) {
            let bytes = reader.frame_at(frame.offset).unwrap();
            return (frame.offset, 5 + bytes.body.len() as u64);
        }
    }
    panic!("no frame named {name}");
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

fn problem(path: &Path, allow_open: bool) -> truc_archive::Problem {
    verify(path, None, allow_open)
        .unwrap()
        .problem
        .expect("the check finds a problem")
}

#[test]
fn a_closed_archive_checks_and_tells_each_documents_story() {
    let fixture = fixture();
    let path = closed_archive(&fixture);
    let checked = verify(&path, None, false).unwrap();
    assert_eq!(checked.problem, None);
    assert_eq!(
        (checked.batches, checked.documents, checked.attachments),
        (3, 6, 6)
    );
    assert_eq!(checked.signatures_checked, 6);
    assert_eq!((checked.audit_first_seq, checked.audit_last_seq), (1, 10));
    assert!(checked.closed);
    assert!(checked.signed_by.is_some());
    let mut reader = ArchiveReader::open(&path).unwrap();
    let story = reader
        .find_document(&format!("{G22},2026/11/22,5/VPCP"))
        .unwrap();
    assert_eq!(story.deliveries[0].history.len(), 3);
    assert!(matches!(
        reader.find_document("000.00.00.G22,2026/11/22,99/VPCP"),
        Err(truc_archive::ArchiveError::NotFound { .. })
    ));
}

#[test]
fn a_flipped_byte_names_the_document_attachment_or_seal_it_fell_in() {
    let fixture = fixture();
    let original = closed_archive(&fixture);
    let copy = |name: &str| {
        let path = original.with_file_name(name);
        std::fs::copy(&original, &path).unwrap();
        path
    };
    // In a status history, which no signature covers: the seal's hash catches it.
    let id = format!("{G22},2026/11/22,2/VPCP");
    let history = copy("history.truca");
    let (offset, length) = frame_of(&history, &id);
    flip(&history, offset + length - 3);
    let found = problem(&history, false);
    assert_eq!(found.document_id.as_deref(), Some(id.as_str()), "{found}");
    assert!(found.what.contains("was altered"), "{found}");
    // In the signed header: the envelope signature no longer verifies.
    let header = copy("header.truca");
    let (offset, _) = frame_of(&header, &id);
    flip(&header, offset + 80);
    let found = problem(&header, false);
    assert_eq!(found.document_id.as_deref(), Some(id.as_str()), "{found}");
    // In an attachment's bytes.
    let attachment = copy("attachment.truca");
    let digest = hex::encode(sha256(
        &format!("the attachment of document {}", 4)
            .repeat(40)
            .into_bytes(),
    ));
    let (offset, length) = frame_of(&attachment, &digest);
    flip(&attachment, offset + length - 1);
    let found = problem(&attachment, false);
    assert!(
        found
            .what
            .contains(&format!("attachment {digest} was altered")),
        "{found}"
    );
    // In a seal: its signature no longer checks.
    let seal = copy("seal.truca");
    let mut reader = ArchiveReader::open(&seal).unwrap();
    let (seal_offset, _) = reader.seals().unwrap()[1];
    flip(&seal, seal_offset + 40);
    let found = problem(&seal, false);
    assert!(found.what.starts_with("the seal of batch 2"), "{found}");
}

#[test]
fn a_removed_document_is_named() {
    let fixture = fixture();
    let path = closed_archive(&fixture);
    let id = format!("{G22},2026/11/22,2/VPCP");
    let (offset, length) = frame_of(&path, &id);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.drain(offset as usize..(offset + length) as usize);
    std::fs::write(&path, bytes).unwrap();
    let found = problem(&path, false);
    assert_eq!(found.document_id.as_deref(), Some(id.as_str()), "{found}");
    assert!(found.what.contains("is missing"), "{found}");
}

#[test]
fn a_cut_file_is_named_wherever_it_was_cut() {
    let fixture = fixture();
    let path = closed_archive(&fixture);
    let length = std::fs::metadata(&path).unwrap().len();
    // In the middle of a frame.
    let id = format!("{G22},2026/11/22,5/VPCP");
    let (offset, _) = frame_of(&path, &id);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(offset + 20).unwrap();
    let found = problem(&path, true);
    assert!(found.what.starts_with("the file is cut off"), "{found}");
    assert!(found.what.contains("the last whole batch is 1"), "{found}");
    // At the end of a batch: whole seals, but not closed.
    let path = closed_archive(&fixture);
    let mut reader = ArchiveReader::open(&path).unwrap();
    let (last_seal, _) = reader.seals().unwrap()[0];
    assert!(last_seal < length);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(last_seal).unwrap();
    let found = problem(&path, false);
    assert!(
        found.what.starts_with("the archive is not closed"),
        "{found}"
    );
    // With --open the two whole batches check.
    assert_eq!(verify(&path, None, true).unwrap().problem, None);
}

#[test]
fn a_batch_a_crash_left_unsealed_is_named_and_cut_off_by_the_next_write() {
    let fixture = fixture();
    let writer = writer(&fixture);
    let mut blobs = Blobs(HashMap::new());
    let first = (1..=2).map(|n| bundle(&fixture, n, &mut blobs)).collect();
    let batch = |documents| ArchiveBatch {
        documents,
        audit: Vec::new(),
        made_at_unix_ms: fixture.made_at,
        live_audit_head: AuditHead::default(),
    };
    let (committed, _) = writer
        .append(&new_file(&fixture), &batch(first), &blobs)
        .unwrap();
    let path = fixture.archives.join(&committed.name);
    // A second batch written and sealed, whose removal the store never
    // committed: the store still says `committed`.
    let second: Vec<ArchivedBundle> = (3..=4).map(|n| bundle(&fixture, n, &mut blobs)).collect();
    writer
        .append(&committed, &batch(second.clone()), &blobs)
        .unwrap();
    // And a crash after a third batch's frames, before its seal: a whole
    // document frame (a copy of the first's) with no seal after it.
    let (offset, length) = frame_of(&path, &format!("{G22},2026/11/22,1/VPCP"));
    let mut bytes = std::fs::read(&path).unwrap();
    let frame = bytes[offset as usize..(offset + length) as usize].to_vec();
    assert_eq!(frame[4], FrameKind::Document.byte());
    bytes.extend_from_slice(&frame);
    std::fs::write(&path, &bytes).unwrap();
    let found = problem(&path, true);
    assert!(found.what.contains("not sealed"), "{found}");
    // The same documents again, from what the store committed: each once.
    let (after, offsets) = writer.append(&committed, &batch(second), &blobs).unwrap();
    let checked = verify(&path, None, true).unwrap();
    assert_eq!(checked.problem, None);
    assert_eq!((checked.documents, checked.batches), (4, 2));
    assert_eq!(after.documents, 4);
    let mut reader = ArchiveReader::open(&path).unwrap();
    assert_eq!(
        reader.document_at(offsets[1]).unwrap().document_id,
        format!("{G22},2026/11/22,4/VPCP")
    );
    // A file shorter than what the store committed is refused, not overwritten.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(after.committed_bytes - 1).unwrap();
    assert!(matches!(
        writer.append(&after, &batch(Vec::new()), &blobs),
        Err(StoreError::Archive { .. })
    ));
}

#[test]
fn a_file_of_another_ca_does_not_check_against_the_pinned_one() {
    let fixture = fixture();
    let path = closed_archive(&fixture);
    let other = self::fixture();
    let found = verify(&path, Some(&other.pki.trust_roots().unwrap()), false)
        .unwrap()
        .problem
        .expect("another CA refuses the file");
    assert!(found.what.contains("certificate"), "{found}");
}

/// Before a new file starts, the hub's own files that its store never
/// recorded are set aside under another name; its recorded files, other
/// hubs' files and anything else in the directory are left as they are.
#[test]
fn only_this_hubs_unrecorded_files_are_set_aside() {
    let fixture = fixture();
    std::fs::create_dir_all(&fixture.archives).unwrap();
    let names = [
        "2026-10.hub-a.truca",
        "2026-11.hub-a.truca",
        "2026-11.hub-b.truca",
        "2026-11.truca",
        "2026-1x.hub-a.truca",
        "notes.txt",
    ];
    for name in names {
        std::fs::write(fixture.archives.join(name), name).unwrap();
    }
    let committed = ["2026-10.hub-a.truca".to_string()].into_iter().collect();
    let set_aside = named_writer(&fixture, "hub-a")
        .set_aside_uncommitted(&committed)
        .unwrap();
    assert_eq!(set_aside, vec!["2026-11.hub-a.truca".to_string()]);
    let mut left: Vec<String> = std::fs::read_dir(&fixture.archives)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "2026-10.hub-a.truca",
            "2026-11.hub-a.truca.uncommitted",
            "2026-11.hub-b.truca",
            "2026-11.truca",
            "2026-1x.hub-a.truca",
            "notes.txt",
        ]
    );
    // Set aside whole: the bytes are kept.
    assert_eq!(
        std::fs::read(fixture.archives.join("2026-11.hub-a.truca.uncommitted")).unwrap(),
        b"2026-11.hub-a.truca"
    );
    // A hub with no name owns the plain month names only.
    let set_aside = writer(&fixture)
        .set_aside_uncommitted(&Default::default())
        .unwrap();
    assert_eq!(set_aside, vec!["2026-11.truca".to_string()]);
}
