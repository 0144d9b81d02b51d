//! Writing archive files for retention, on the store's writer thread: each
//! batch is appended after cutting the file back to what the store
//! committed, sealed (signed by the hub) and synced before the store lets
//! the documents leave. Certificates and attachments are written once per
//! file, so that each file can be checked and read on its own.

use std::collections::{BTreeSet, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use truc_domain::SigningKey;
use truc_store::{
    crash_point, ArchiveBatch, ArchiveFile, ArchiveSink, ArchivedBundle, AuditEntry, AuditHead,
    BlobSource, StoreError,
};

use crate::format::{
    encode, frame_bytes, sha256, ArchiveHeader, CertificateFrame, DocumentFrame, FrameKind,
    FrameRef, Seal, SealBody, AUDIT_ENTRIES_PER_FRAME, FILE_SUFFIX, FORMAT, FRAME_BYTES_MAX,
    UNCOMMITTED_SUFFIX,
};
use crate::read::ArchiveReader;

/// Why an attachment could not be copied into an archive.
#[derive(Debug, thiserror::Error)]
enum AttachmentError {
    #[error("attachment {name} is too large for one frame")]
    TooLarge { name: String },
    #[error("attachment {name}: {source}")]
    Store { name: String, source: StoreError },
    #[error(
        "attachment {name}: the store holds {written} bytes of the {size_bytes} its document names"
    )]
    Short {
        name: String,
        written: u64,
        size_bytes: u64,
    },
    #[error("writing an attachment: {0}")]
    Write(#[from] std::io::Error),
}

/// What a file holds through its last committed seal, as the next batch
/// needs it.
#[derive(Clone, Debug, Default)]
struct Known {
    name: String,
    committed_bytes: u64,
    last_seal_offset: u64,
    documents_total: u64,
    audit_first_seq: u64,
    audit_last_seq: u64,
    audit_previous_sha256: [u8; 32],
    audit_last_sha256: [u8; 32],
    /// Digests of the certificates and attachments the file holds: 32
    /// bytes each, as a month's file can name half a million attachments.
    certificates: HashSet<[u8; 32]>,
    attachments: HashSet<[u8; 32]>,
}

/// The hub's archive writer.
pub struct ArchiveWriter {
    dir: PathBuf,
    hub: String,
    ca_certificates: Vec<Vec<u8>>,
    hub_certificate: Vec<u8>,
    key: SigningKey,
    /// The file last written, so that a batch need not read its seals again.
    known: Mutex<Option<Known>>,
    /// The system's clock, as seals record it (fixed by tests that compare files).
    seal_clock: fn() -> i64,
}

impl ArchiveWriter {
    /// Writes into `dir` (created if missing), sealing with the hub's
    /// certificate and key; `hub` names the hub in files several hubs
    /// write beside each other ("" for one hub).
    pub fn new(
        dir: &Path,
        hub: &str,
        ca_certificates: Vec<Vec<u8>>,
        hub_certificate: Vec<u8>,
        key: SigningKey,
    ) -> ArchiveWriter {
        ArchiveWriter {
            dir: dir.to_owned(),
            hub: hub.to_owned(),
            ca_certificates,
            hub_certificate,
            key,
            known: Mutex::new(None),
            seal_clock: system_unix_ms,
        }
    }

    /// Seals record `clock()` as the time they were made, instead of the
    /// system's: files written by two runs can then be compared byte for byte.
    pub fn with_seal_clock(mut self, clock: fn() -> i64) -> ArchiveWriter {
        self.seal_clock = clock;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn fail(&self, file: &str, reason: impl std::fmt::Display) -> StoreError {
        StoreError::Archive {
            file: self.dir.join(file).display().to_string(),
            reason: reason.to_string(),
        }
    }

    /// What the file holds through `file.committed_bytes`: from memory if
    /// this writer wrote it last, else from its seals.
    /// The remembered state is taken, not copied: a batch that fails does
    /// not give it back, and the next one reads the seals again.
    fn known(&self, file: &ArchiveFile) -> Result<Known, StoreError> {
        if let Some(known) = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .filter(|k| k.name == file.name && k.committed_bytes == file.committed_bytes)
        {
            return Ok(known);
        }
        let mut known = Known {
            name: file.name.clone(),
            committed_bytes: file.committed_bytes,
            ..Known::default()
        };
        if file.committed_bytes == 0 {
            return Ok(known);
        }
        let path = self.dir.join(&file.name);
        let mut reader = ArchiveReader::open(&path)
            .map_err(|error| self.fail(&file.name, error))?
            .up_to(file.committed_bytes);
        let seals = reader
            .seals()
            .map_err(|error| self.fail(&file.name, error))?;
        let Some((last_offset, last)) = seals.first() else {
            return Err(self.fail(
                &file.name,
                format!(
                    "no seal ends its first {} bytes, which the store committed; \
                     restore the file from a copy",
                    file.committed_bytes
                ),
            ));
        };
        known.last_seal_offset = *last_offset;
        known.documents_total = last.body.documents_total;
        known.audit_first_seq = last.body.audit_first_seq;
        known.audit_last_seq = last.body.audit_last_seq;
        known.audit_previous_sha256 = last.body.audit_previous_sha256;
        known.audit_last_sha256 = last.body.audit_last_sha256;
        for (_, seal) in &seals {
            for frame in &seal.body.frames {
                let digest = || {
                    hex::decode(&frame.name)
                        .ok()
                        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                };
                if frame.kind == FrameKind::Certificate.byte() {
                    known.certificates.extend(digest());
                } else if frame.kind == FrameKind::Attachment.byte() {
                    known.attachments.extend(digest());
                }
            }
        }
        Ok(known)
    }

    /// Opens the file cut back to what the store committed.
    fn open_at_committed(&self, file: &ArchiveFile) -> Result<(File, bool), StoreError> {
        std::fs::create_dir_all(&self.dir).map_err(|error| self.fail(&file.name, error))?;
        let path = self.dir.join(&file.name);
        let existed = path.exists();
        let mut handle = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|error| self.fail(&file.name, error))?;
        let length = handle
            .metadata()
            .map_err(|error| self.fail(&file.name, error))?
            .len();
        if length < file.committed_bytes {
            return Err(self.fail(
                &file.name,
                format!(
                    "{length} bytes, shorter than the {} the store committed: the file was cut or \
                     replaced; restore it from a copy",
                    file.committed_bytes
                ),
            ));
        }
        if length > file.committed_bytes {
            // A batch written before a crash and never committed: its
            // documents are still live and will be archived again.
            tracing::info!(
                file = %file.name,
                uncommitted_bytes = length - file.committed_bytes,
                "cutting off an archive batch the store never committed"
            );
            handle
                .set_len(file.committed_bytes)
                .map_err(|error| self.fail(&file.name, error))?;
        }
        handle
            .seek(SeekFrom::Start(file.committed_bytes))
            .map_err(|error| self.fail(&file.name, error))?;
        Ok((handle, !existed))
    }

    /// Writes the seal and its end marker, syncs, and returns the new state.
    fn seal(
        &self,
        out: &mut FrameWriter,
        known: &mut Known,
        file: &ArchiveFile,
        closed: bool,
        at_unix_ms: i64,
        live_head: (u64, [u8; 32]),
    ) -> Result<ArchiveFile, StoreError> {
        let body = SealBody {
            batch: file.batches + 1,
            previous_seal_sha256: file.last_seal_sha256,
            previous_seal_offset: known.last_seal_offset,
            frames: std::mem::take(&mut out.frames),
            documents_total: known.documents_total,
            audit_first_seq: known.audit_first_seq,
            audit_last_seq: known.audit_last_seq,
            audit_previous_sha256: known.audit_previous_sha256,
            audit_last_sha256: known.audit_last_sha256,
            live_audit_head_seq: live_head.0,
            live_audit_head_sha256: live_head.1,
            closed,
            made_at_unix_ms: (self.seal_clock)(),
            hub_clock_unix_ms: at_unix_ms,
            hub_certificate: self.hub_certificate.clone(),
        };
        let signature = self
            .key
            .sign_archive_seal(&encode(&body))
            .map_err(|error| self.fail(&file.name, format!("cannot sign the seal: {error}")))?;
        let seal_offset = out.offset;
        let seal_sha256 = out
            .frame(FrameKind::Seal, &encode(&Seal { body, signature }), "")
            .map_err(|error| self.fail(&file.name, error))?;
        out.frame(FrameKind::SealEnd, &seal_offset.to_be_bytes(), "")
            .map_err(|error| self.fail(&file.name, error))?;
        out.frames.clear();
        let committed_bytes = out.offset;
        out.sync().map_err(|error| self.fail(&file.name, error))?;
        known.last_seal_offset = seal_offset;
        known.committed_bytes = committed_bytes;
        Ok(ArchiveFile {
            open: !closed,
            committed_bytes,
            batches: file.batches + 1,
            documents: known.documents_total,
            last_seal_sha256: seal_sha256,
            audit_first_seq: known.audit_first_seq,
            audit_last_seq: known.audit_last_seq,
            closed_at_unix_ms: if closed { at_unix_ms } else { 0 },
            ..file.clone()
        })
    }

    fn header(&self, file: &ArchiveFile) -> ArchiveHeader {
        ArchiveHeader {
            format: FORMAT.to_owned(),
            period: file.period.clone(),
            hub: self.hub.clone(),
            created_at_unix_ms: file.created_at_unix_ms,
            ca_certificates: self.ca_certificates.clone(),
        }
    }

    /// Whether `name` is what [`ArchiveSink::file_name`] gives this hub for
    /// some month: another hub's files, and anything else, are left alone.
    fn names_a_file_of_ours(&self, name: &str) -> bool {
        let digits = |bytes: &[u8]| bytes.iter().all(u8::is_ascii_digit);
        let bytes = name.as_bytes();
        // `yyyy-mm` is ASCII, so `name[..7]` cuts on a character boundary.
        bytes.len() >= 7
            && digits(&bytes[..4])
            && bytes[4] == b'-'
            && digits(&bytes[5..7])
            && self.file_name(&name[..7]) == name
    }

    fn remember(&self, known: Known) {
        *self.known.lock().unwrap_or_else(|p| p.into_inner()) = Some(known);
    }

    /// Writes one document's certificate and attachments (those the file
    /// lacks) and then the document; returns where the document starts.
    fn document(
        &self,
        out: &mut FrameWriter,
        known: &mut Known,
        bundle: &ArchivedBundle,
        blobs: &dyn BlobSource,
        name: &str,
    ) -> Result<u64, StoreError> {
        let document = &bundle.document;
        let certificate_sha256 = sha256(&document.sender_certificate);
        let certificate_hex = hex::encode(certificate_sha256);
        if !known.certificates.contains(&certificate_sha256) {
            let frame = CertificateFrame {
                sha256: certificate_sha256,
                der: document.sender_certificate.clone(),
            };
            out.frame(FrameKind::Certificate, &encode(&frame), &certificate_hex)
                .map_err(|error| self.fail(name, error))?;
            known.certificates.insert(certificate_sha256);
        }
        for attachment in &document.attachments {
            if known.attachments.contains(&attachment.sha256) {
                continue;
            }
            let digest_hex = hex::encode(attachment.sha256);
            out.attachment(
                &attachment.sha256,
                attachment.size_bytes,
                blobs,
                &digest_hex,
            )
            .map_err(|reason| self.fail(name, reason))?;
            known.attachments.insert(attachment.sha256);
        }
        let frame = DocumentFrame {
            document_id: document.document_id.clone(),
            sender: document.sender.clone(),
            date_key: document.date_key,
            subject: document.subject.clone(),
            accepted_at_unix_ms: document.accepted_at_unix_ms,
            content_sha256: document.content_sha256,
            header_bytes: document.header_bytes.clone(),
            signature: document.signature.clone(),
            certificate_sha256,
            document_signature: document.document_signature.clone(),
            document_signature_state: document.document_signature_state,
            recipients: document.recipients.clone(),
            refused: document.refused.clone(),
            attachments: document
                .attachments
                .iter()
                .map(|a| (a.sha256, a.size_bytes))
                .collect(),
            deliveries: bundle.deliveries.clone(),
            dead_letters: bundle.dead_letters.clone(),
            overdue: bundle.overdue.clone(),
            links: bundle.links.clone(),
        };
        let offset = out.offset;
        out.frame(FrameKind::Document, &encode(&frame), &document.document_id)
            .map_err(|error| self.fail(name, error))?;
        known.documents_total += 1;
        Ok(offset)
    }

    fn audit(
        &self,
        out: &mut FrameWriter,
        known: &mut Known,
        entries: &[AuditEntry],
        name: &str,
    ) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        if known.audit_first_seq == 0 {
            known.audit_first_seq = first.seq;
            known.audit_previous_sha256 = first.previous_sha256;
        } else if first.seq != known.audit_last_seq + 1 {
            return Err(self.fail(
                name,
                format!(
                    "audit entry {} would follow entry {}: the chain in the file would have a gap",
                    first.seq, known.audit_last_seq
                ),
            ));
        }
        for run in entries.chunks(AUDIT_ENTRIES_PER_FRAME) {
            out.frame(FrameKind::Audit, &encode(&run.to_vec()), "")
                .map_err(|error| self.fail(name, error))?;
        }
        known.audit_last_seq = last.seq;
        known.audit_last_sha256 = last.sha256;
        Ok(())
    }
}

impl ArchiveSink for ArchiveWriter {
    fn file_name(&self, period: &str) -> String {
        if self.hub.is_empty() {
            return format!("{period}{FILE_SUFFIX}");
        }
        // A hub's name as it may appear in a file name.
        let hub: String = self
            .hub
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{period}.{hub}{FILE_SUFFIX}")
    }

    fn append(
        &self,
        file: &ArchiveFile,
        batch: &ArchiveBatch,
        blobs: &dyn BlobSource,
    ) -> Result<(ArchiveFile, Vec<u64>), StoreError> {
        let mut known = self.known(file)?;
        let (handle, created) = self.open_at_committed(file)?;
        let mut out = FrameWriter::new(handle, file.committed_bytes);
        if file.committed_bytes == 0 {
            out.frame(FrameKind::Header, &encode(&self.header(file)), "")
                .map_err(|error| self.fail(&file.name, error))?;
        }
        let mut offsets = Vec::with_capacity(batch.documents.len());
        for bundle in &batch.documents {
            offsets.push(self.document(&mut out, &mut known, bundle, blobs, &file.name)?);
        }
        self.audit(&mut out, &mut known, &batch.audit, &file.name)?;
        out.flush().map_err(|error| self.fail(&file.name, error))?;
        crash_point("archive-written");
        let live_head = (batch.live_audit_head.seq, batch.live_audit_head.sha256);
        let state = self.seal(
            &mut out,
            &mut known,
            file,
            false,
            batch.made_at_unix_ms,
            live_head,
        )?;
        if created {
            sync_dir(&self.dir).map_err(|error| self.fail(&file.name, error))?;
        }
        crash_point("archive-synced");
        self.remember(known);
        Ok((state, offsets))
    }

    fn set_aside_uncommitted(
        &self,
        committed: &BTreeSet<String>,
    ) -> Result<Vec<String>, StoreError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(self.fail("", error)),
        };
        let mut set_aside = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| self.fail("", error))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if committed.contains(&name) || !self.names_a_file_of_ours(&name) {
                continue;
            }
            let aside = format!("{name}{UNCOMMITTED_SUFFIX}");
            std::fs::rename(self.dir.join(&name), self.dir.join(&aside))
                .map_err(|error| self.fail(&name, error))?;
            tracing::warn!(
                file = %name,
                set_aside_as = %aside,
                "an archive file the store never recorded (a first batch written before a \
                 crash) is set aside; its documents are still live and will be archived again"
            );
            set_aside.push(name);
        }
        if !set_aside.is_empty() {
            sync_dir(&self.dir).map_err(|error| self.fail("", error))?;
        }
        Ok(set_aside)
    }

    fn close(
        &self,
        file: &ArchiveFile,
        at_unix_ms: i64,
        live_audit_head: AuditHead,
    ) -> Result<ArchiveFile, StoreError> {
        let mut known = self.known(file)?;
        let (handle, created) = self.open_at_committed(file)?;
        let mut out = FrameWriter::new(handle, file.committed_bytes);
        if file.committed_bytes == 0 {
            out.frame(FrameKind::Header, &encode(&self.header(file)), "")
                .map_err(|error| self.fail(&file.name, error))?;
        }
        let live_head = (live_audit_head.seq, live_audit_head.sha256);
        let state = self.seal(&mut out, &mut known, file, true, at_unix_ms, live_head)?;
        if created {
            sync_dir(&self.dir).map_err(|error| self.fail(&file.name, error))?;
        }
        self.remember(known);
        Ok(state)
    }
}

/// Appends frames, remembering each one's place and hash for the seal.
struct FrameWriter {
    out: BufWriter<File>,
    offset: u64,
    frames: Vec<FrameRef>,
}

impl FrameWriter {
    fn new(file: File, offset: u64) -> FrameWriter {
        FrameWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            offset,
            frames: Vec::new(),
        }
    }

    /// Writes one frame; returns its SHA-256.
    fn frame(&mut self, kind: FrameKind, body: &[u8], name: &str) -> std::io::Result<[u8; 32]> {
        let bytes = frame_bytes(kind, body);
        self.out.write_all(&bytes)?;
        let digest = sha256(&bytes);
        self.record(kind, digest, bytes.len() as u64, name);
        Ok(digest)
    }

    fn record(&mut self, kind: FrameKind, digest: [u8; 32], len: u64, name: &str) {
        if kind != FrameKind::Seal && kind != FrameKind::SealEnd {
            self.frames.push(FrameRef {
                offset: self.offset,
                kind: kind.byte(),
                sha256: digest,
                name: name.to_owned(),
            });
        }
        self.offset += len;
    }

    /// An attachment frame: its digest, then its bytes as the store gives
    /// them, without holding them whole.
    fn attachment(
        &mut self,
        digest: &[u8; 32],
        size_bytes: u64,
        blobs: &dyn BlobSource,
        name: &str,
    ) -> Result<(), AttachmentError> {
        let length = 1 + 32 + size_bytes;
        if length > FRAME_BYTES_MAX {
            return Err(AttachmentError::TooLarge { name: name.into() });
        }
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        let mut head = Vec::with_capacity(37);
        head.extend_from_slice(&(length as u32).to_be_bytes());
        head.push(FrameKind::Attachment.byte());
        head.extend_from_slice(digest);
        self.out.write_all(&head)?;
        context.update(&head);
        let mut written = 0u64;
        let unreadable = |source| AttachmentError::Store {
            name: name.into(),
            source,
        };
        for chunk in blobs.chunks(digest).map_err(unreadable)? {
            let chunk = chunk.map_err(unreadable)?;
            written += chunk.len() as u64;
            if written > size_bytes {
                break;
            }
            self.out.write_all(&chunk)?;
            context.update(&chunk);
        }
        if written != size_bytes {
            return Err(AttachmentError::Short {
                name: name.into(),
                written,
                size_bytes,
            });
        }
        let digest_of_frame: [u8; 32] = context.finish().as_ref().try_into().expect("32 bytes");
        self.record(FrameKind::Attachment, digest_of_frame, 4 + length, name);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }
}

fn system_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Makes a new file's name in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
