//! Checking an archive file offline, as `truc audit verify` checks an audit
//! export: every frame against the hash its seal lists, every seal's
//! signature against the hub's certificate and the CA the file carries (or
//! one given), every document's envelope signature against its sender's
//! certificate, every attachment against its digest, the audit chain run
//! entry by entry, and the file's end. The first problem is named: the
//! document altered or missing, the seal, or where the file was cut.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use truc_pki::{PeerRole, TrustRoots};
use truc_store::AuditEntry;

use crate::format::{
    decode, encode, sha256, ArchiveHeader, AuditFrame, CertificateFrame, DocumentFrame, FrameKind,
    FrameRef, Seal, FORMAT, FRAME_HEAD_BYTES,
};

/// The first thing wrong with an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where in the file (bytes from its start).
    pub offset: u64,
    /// The document concerned, when one is.
    pub document_id: Option<String>,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "byte {}: {}", self.offset, self.what)
    }
}

/// What a check found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verification {
    pub period: String,
    pub hub: String,
    /// Seals that checked.
    pub batches: u64,
    pub documents: u64,
    pub attachments: u64,
    pub certificates: u64,
    /// Envelope signatures checked.
    pub signatures_checked: u64,
    pub audit_entries: u64,
    pub audit_first_seq: u64,
    pub audit_last_seq: u64,
    /// Hex SHA-256 of the entry before the first, and of the last.
    pub audit_previous_sha256: String,
    pub audit_last_sha256: String,
    /// Whether the closing seal was found.
    pub closed: bool,
    /// The subject of the hub certificate whose seals verified.
    pub signed_by: Option<String>,
    pub problem: Option<Problem>,
}

fn unix_time(unix_ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(unix_ms.max(0) as u64)
}

/// A frame read and not yet sealed.
struct Pending {
    offset: u64,
    kind: FrameKind,
    sha256: [u8; 32],
    name: String,
}

struct Checker<'a> {
    pinned: Option<&'a TrustRoots>,
    trust: Option<TrustRoots>,
    header_seen: bool,
    certificates: HashMap<[u8; 32], Vec<u8>>,
    attachments: HashSet<[u8; 32]>,
    pending: Vec<Pending>,
    /// The last seal: batch, where it starts, its frame's hash.
    last_seal: Option<(u64, u64, [u8; 32])>,
    /// A seal was read and its end marker is due next.
    seal_due_end: Option<u64>,
    closed: bool,
    /// The next audit entry expected, and the hash it must name.
    audit_next: Option<(u64, [u8; 32])>,
    found: Verification,
}

type Check = Result<(), Problem>;

fn problem(offset: u64, what: impl Into<String>) -> Problem {
    Problem {
        offset,
        document_id: None,
        what: what.into(),
    }
}

impl Checker<'_> {
    fn trust(&self) -> &TrustRoots {
        self.trust.as_ref().expect("set with the header")
    }

    fn frame(&mut self, offset: u64, kind: FrameKind, body: &[u8], digest: [u8; 32]) -> Check {
        if self.closed {
            return Err(problem(
                offset,
                "bytes follow the closing seal: they were added after the archive was closed",
            ));
        }
        if let Some(seal_offset) = self.seal_due_end {
            if kind != FrameKind::SealEnd {
                return Err(problem(
                    offset,
                    "the seal before this is not followed by its end marker: the file is damaged",
                ));
            }
            if body.len() != 8
                || u64::from_be_bytes(body[..8].try_into().expect("8 bytes")) != seal_offset
            {
                return Err(problem(
                    offset,
                    "the end marker does not name the seal before it: it was altered",
                ));
            }
            self.seal_due_end = None;
            self.closed = self.found.closed;
            return Ok(());
        }
        if !self.header_seen && kind != FrameKind::Header {
            return Err(problem(
                offset,
                "the file does not start with an archive header",
            ));
        }
        let name = match kind {
            FrameKind::Header => self.header(offset, body)?,
            FrameKind::Certificate => self.certificate(offset, body)?,
            FrameKind::Attachment => self.attachment(offset, body)?,
            FrameKind::Document => self.document(offset, body)?,
            FrameKind::Audit => self.audit(offset, body)?,
            FrameKind::Seal => return self.seal(offset, body, digest),
            FrameKind::SealEnd => {
                return Err(problem(offset, "an end marker without a seal before it"))
            }
        };
        self.pending.push(Pending {
            offset,
            kind,
            sha256: digest,
            name,
        });
        Ok(())
    }

    fn header(&mut self, offset: u64, body: &[u8]) -> Result<String, Problem> {
        if self.header_seen || offset != 0 {
            return Err(problem(offset, "a second header"));
        }
        let header: ArchiveHeader = decode(body).map_err(|error| {
            problem(
                offset,
                format!("the header does not decode ({error}): it was altered"),
            )
        })?;
        if header.format != FORMAT {
            return Err(problem(
                offset,
                format!("format {:?}; this tool reads {FORMAT}", header.format),
            ));
        }
        self.trust = Some(match self.pinned {
            Some(roots) => roots.clone(),
            None => {
                if header.ca_certificates.is_empty() {
                    return Err(problem(offset, "the header carries no CA certificate"));
                }
                TrustRoots::from_der(&header.ca_certificates)
                    .map_err(|error| problem(offset, format!("the header's CA: {error}")))?
            }
        });
        self.found.period = header.period;
        self.found.hub = header.hub;
        self.header_seen = true;
        Ok(String::new())
    }

    fn certificate(&mut self, offset: u64, body: &[u8]) -> Result<String, Problem> {
        let frame: CertificateFrame = decode(body).map_err(|error| {
            problem(
                offset,
                format!("a certificate frame does not decode ({error}): it was altered"),
            )
        })?;
        if sha256(&frame.der) != frame.sha256 {
            return Err(problem(
                offset,
                "a certificate was altered: its bytes no longer give its SHA-256",
            ));
        }
        self.certificates.insert(frame.sha256, frame.der);
        self.found.certificates += 1;
        Ok(hex::encode(frame.sha256))
    }

    fn attachment(&mut self, offset: u64, body: &[u8]) -> Result<String, Problem> {
        let (Some(digest), Some(bytes)) = (body.get(..32), body.get(32..)) else {
            return Err(problem(
                offset,
                "an attachment frame too short to name its digest",
            ));
        };
        let digest: [u8; 32] = digest.try_into().expect("32 bytes");
        if sha256(bytes) != digest {
            return Err(problem(
                offset,
                format!(
                    "attachment {} was altered: its bytes no longer give its SHA-256",
                    hex::encode(digest)
                ),
            ));
        }
        self.attachments.insert(digest);
        self.found.attachments += 1;
        Ok(hex::encode(digest))
    }

    fn document(&mut self, offset: u64, body: &[u8]) -> Result<String, Problem> {
        let document: DocumentFrame = decode(body).map_err(|error| {
            problem(
                offset,
                format!("a document frame does not decode ({error}): it was altered"),
            )
        })?;
        let id = document.document_id.clone();
        let altered = |what: String| Problem {
            offset,
            document_id: Some(id.clone()),
            what: format!("document {id} was altered: {what}"),
        };
        if sha256(&document.header_bytes) != document.content_sha256 {
            return Err(altered(
                "its signed header no longer gives the digest recorded with it".into(),
            ));
        }
        let certificate = self
            .certificates
            .get(&document.certificate_sha256)
            .ok_or_else(|| {
                altered("the sender's certificate it names is not in the file".into())
            })?;
        let identity = self
            .trust()
            .verify_certificate(certificate, unix_time(document.accepted_at_unix_ms))
            .map_err(|error| Problem {
                // Not an alteration: checked against another CA, or at a
                // time the certificate did not cover.
                offset,
                document_id: Some(id.clone()),
                what: format!(
                    "document {id}: the sender's certificate does not check at its acceptance \
                     ({}, by the hub's clock): {error}",
                    truc_domain::DocumentDate::vietnam_date_of_unix_ms(
                        document.accepted_at_unix_ms
                    )
                    .map(|date| date.iso())
                    .unwrap_or_default()
                ),
            })?;
        match &identity.role {
            PeerRole::Agency { code } if *code == document.sender => {}
            other => {
                return Err(altered(format!(
                    "the certificate names {}, not the sender {}",
                    other.uri(),
                    document.sender
                )))
            }
        }
        let key = truc_pki::certificate_public_key(certificate)
            .map_err(|error| altered(error.to_string()))?;
        truc_domain::verify_envelope(&key, &document.header_bytes, &document.signature)
            .map_err(|error| altered(format!("the envelope signature does not verify: {error}")))?;
        self.found.signatures_checked += 1;
        for (digest, _) in &document.attachments {
            if !self.attachments.contains(digest) {
                return Err(altered(format!(
                    "its attachment {} is not in the file",
                    hex::encode(digest)
                )));
            }
        }
        self.found.documents += 1;
        Ok(id)
    }

    fn audit(&mut self, offset: u64, body: &[u8]) -> Result<String, Problem> {
        let entries: AuditFrame = decode(body).map_err(|error| {
            problem(
                offset,
                format!("audit entries do not decode ({error}): they were altered"),
            )
        })?;
        for entry in &entries {
            self.audit_entry(offset, entry)?;
        }
        Ok(String::new())
    }

    fn audit_entry(&mut self, offset: u64, entry: &AuditEntry) -> Check {
        let seq = entry.seq;
        if entry.compute_sha256() != entry.sha256 {
            return Err(Problem {
                offset,
                document_id: Some(entry.document_id.clone()),
                what: format!("audit entry {seq} was altered: its fields no longer give its hash"),
            });
        }
        match self.audit_next {
            None => {
                self.found.audit_first_seq = seq;
                self.found.audit_previous_sha256 = hex::encode(entry.previous_sha256);
            }
            Some((next, _)) if seq != next => {
                return Err(problem(
                    offset,
                    if seq > next {
                        format!("audit entries {next} to {} were removed", seq - 1)
                    } else {
                        format!("audit entry {seq} is out of place: entry {next} was expected")
                    },
                ))
            }
            Some((_, previous)) if entry.previous_sha256 != previous => {
                return Err(problem(
                    offset,
                    format!(
                    "audit entry {} was altered and its hash rewritten: entry {seq} names another",
                    seq - 1
                ),
                ))
            }
            Some(_) => {}
        }
        self.audit_next = Some((seq + 1, entry.sha256));
        self.found.audit_entries += 1;
        self.found.audit_last_seq = seq;
        self.found.audit_last_sha256 = hex::encode(entry.sha256);
        Ok(())
    }

    fn seal(&mut self, offset: u64, body: &[u8], digest: [u8; 32]) -> Check {
        let (batch, previous_offset, previous_sha256) = self
            .last_seal
            .map_or((1, 0, [0; 32]), |(batch, at, sha)| (batch + 1, at, sha));
        let seal_problem =
            |what: String| problem(offset, format!("the seal of batch {batch}: {what}"));
        let seal: Seal = decode(body).map_err(|error| {
            seal_problem(format!("it does not decode ({error}): it was altered"))
        })?;
        if seal.body.batch != batch
            || seal.body.previous_seal_offset != previous_offset
            || seal.body.previous_seal_sha256 != previous_sha256
        {
            return Err(seal_problem(
                "it does not follow the seal before it: a batch was removed, moved or altered"
                    .into(),
            ));
        }
        compare_frames(batch, &seal.body.frames, &self.pending)?;
        let audit_matches = seal.body.audit_first_seq == self.found.audit_first_seq
            && seal.body.audit_last_seq == self.found.audit_last_seq
            && (self.found.audit_entries == 0
                || (hex::encode(seal.body.audit_previous_sha256)
                    == self.found.audit_previous_sha256
                    && hex::encode(seal.body.audit_last_sha256) == self.found.audit_last_sha256));
        if !audit_matches || seal.body.documents_total != self.found.documents {
            return Err(seal_problem(format!(
                "it counts {} documents and audit entries {} to {}; the file holds {} and {} to {}",
                seal.body.documents_total,
                seal.body.audit_first_seq,
                seal.body.audit_last_seq,
                self.found.documents,
                self.found.audit_first_seq,
                self.found.audit_last_seq
            )));
        }
        let unsigned = |reason: String| {
            seal_problem(format!(
                "the hub's signature does not check ({reason}): the file was rewritten after the hub sealed it"
            ))
        };
        let identity = self
            .trust()
            .verify_hub_certificate(
                &seal.body.hub_certificate,
                unix_time(seal.body.made_at_unix_ms),
            )
            .map_err(|error| unsigned(error.to_string()))?;
        if identity.role != PeerRole::Hub {
            return Err(unsigned(format!("{} is not the hub", identity.role.uri())));
        }
        let key = truc_pki::certificate_public_key(&seal.body.hub_certificate)
            .map_err(|error| unsigned(error.to_string()))?;
        truc_domain::verify_archive_seal(&key, &encode(&seal.body), &seal.signature)
            .map_err(|error| unsigned(error.to_string()))?;
        self.found.signed_by = Some(
            truc_pki::certificate_validity(&seal.body.hub_certificate)
                .map(|validity| validity.subject)
                .unwrap_or_else(|_| identity.role.uri()),
        );
        self.found.batches = batch;
        self.found.closed = seal.body.closed;
        self.last_seal = Some((batch, offset, digest));
        self.seal_due_end = Some(offset);
        self.pending.clear();
        Ok(())
    }
}

/// The frames a seal lists against those read since the seal before it.
fn compare_frames(batch: u64, listed: &[FrameRef], found: &[Pending]) -> Check {
    let describe = |kind: u8, name: &str| {
        let kind = FrameKind::from_byte(kind).map_or("frame", FrameKind::name);
        if name.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind} {name}")
        }
    };
    let document = |kind: u8, name: &str| {
        (kind == FrameKind::Document.byte() && !name.is_empty()).then(|| name.to_owned())
    };
    for (index, listed) in listed.iter().enumerate() {
        let here = found.get(index);
        if here.is_some_and(|f| {
            f.offset == listed.offset && f.kind.byte() == listed.kind && f.sha256 == listed.sha256
        }) {
            continue;
        }
        let what = describe(listed.kind, &listed.name);
        return Err(Problem {
            offset: listed.offset,
            document_id: document(listed.kind, &listed.name),
            what: match here {
                Some(f) if f.offset == listed.offset && f.kind.byte() == listed.kind && f.name == listed.name => {
                    format!("{what} was altered: its bytes no longer give the hash the seal of batch {batch} lists")
                }
                _ if found.iter().any(|f| f.sha256 == listed.sha256) => {
                    format!("{what} was moved: the seal of batch {batch} lists it at byte {}", listed.offset)
                }
                _ => format!("{what} is missing: the seal of batch {batch} lists it at byte {}, and the file no longer holds it", listed.offset),
            },
        });
    }
    if let Some(extra) = found.get(listed.len()) {
        return Err(Problem {
            offset: extra.offset,
            document_id: document(extra.kind.byte(), &extra.name),
            what: format!(
                "{} is not listed by the seal of batch {batch}: it was added to the file",
                describe(extra.kind.byte(), &extra.name)
            ),
        });
    }
    Ok(())
}

/// Checks an archive file. With `pinned_ca`, certificates are checked
/// against it instead of the CA the file carries; with `allow_open`, a file
/// without its closing seal (the period still being written) is no problem.
pub fn verify(
    path: &Path,
    pinned_ca: Option<&TrustRoots>,
    allow_open: bool,
) -> std::io::Result<Verification> {
    let file = File::open(path)?;
    let length = file.metadata()?.len();
    let mut input = BufReader::with_capacity(1 << 20, file);
    let mut checker = Checker {
        pinned: pinned_ca,
        trust: None,
        header_seen: false,
        certificates: HashMap::new(),
        attachments: HashSet::new(),
        pending: Vec::new(),
        last_seal: None,
        seal_due_end: None,
        closed: false,
        audit_next: None,
        found: Verification::default(),
    };
    let mut offset = 0u64;
    let mut outcome: Check = Ok(());
    while offset < length {
        let remaining = length - offset;
        if remaining < FRAME_HEAD_BYTES {
            outcome = Err(cut(&checker, offset, "in the head of a frame"));
            break;
        }
        let mut head = [0u8; FRAME_HEAD_BYTES as usize];
        input.read_exact(&mut head)?;
        let frame_length = u64::from(u32::from_be_bytes(head[..4].try_into().expect("4 bytes")));
        let Some(kind) = FrameKind::from_byte(head[4]) else {
            outcome = Err(problem(
                offset,
                format!("unknown frame kind {}: the file is damaged here", head[4]),
            ));
            break;
        };
        if frame_length == 0 || frame_length - 1 > remaining - FRAME_HEAD_BYTES {
            outcome = Err(cut(
                &checker,
                offset,
                &format!(
                    "in a frame ({}) that needs {} bytes where {} remain",
                    kind.name(),
                    frame_length + 4,
                    remaining
                ),
            ));
            break;
        }
        let mut body = vec![0u8; (frame_length - 1) as usize];
        input.read_exact(&mut body)?;
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(&head);
        context.update(&body);
        let digest: [u8; 32] = context.finish().as_ref().try_into().expect("32 bytes");
        if let Err(found) = checker.frame(offset, kind, &body, digest) {
            outcome = Err(found);
            break;
        }
        offset += 4 + frame_length;
    }
    if outcome.is_ok() {
        outcome = end(&checker, length, allow_open);
    }
    let mut found = checker.found;
    found.problem = outcome.err().map(|problem| named(path, problem));
    Ok(found)
}

/// A document frame too damaged to say its own id is named by the seal
/// after it, which lists every frame with its offset.
fn named(path: &Path, mut problem: Problem) -> Problem {
    if problem.document_id.is_some() || !problem.what.starts_with("a document frame") {
        return problem;
    }
    let Ok(mut reader) = crate::read::ArchiveReader::open(path) else {
        return problem;
    };
    let mut offset = problem.offset;
    while let Ok(frame) = reader.frame_at(offset) {
        if frame.kind == FrameKind::Seal {
            if let Ok(seal) = decode::<Seal>(&frame.body) {
                if let Some(listed) = seal
                    .body
                    .frames
                    .iter()
                    .find(|listed| listed.offset == problem.offset)
                {
                    // What it says already ends "it was altered".
                    problem.what = format!("document {}: {}", listed.name, problem.what);
                    problem.document_id = Some(listed.name.clone());
                }
            }
            break;
        }
        offset += 4 + 1 + frame.body.len() as u64;
    }
    problem
}

/// The file stops inside a frame: what was lost, in the seal's terms.
fn cut(checker: &Checker<'_>, offset: u64, where_: &str) -> Problem {
    let sealed = checker
        .last_seal
        .map_or("no batch was sealed".to_owned(), |(batch, ..)| {
            format!("the last whole batch is {batch}")
        });
    problem(
        offset,
        format!("the file is cut off {where_} ({sealed}; what followed is missing)"),
    )
}

/// What the file's end says.
fn end(checker: &Checker<'_>, length: u64, allow_open: bool) -> Check {
    if !checker.header_seen {
        return Err(problem(0, "the file is empty: no header"));
    }
    if checker.seal_due_end.is_some() {
        return Err(cut(checker, length, "after a seal, before its end marker"));
    }
    if let Some(first) = checker.pending.first() {
        let documents: Vec<&str> = checker
            .pending
            .iter()
            .filter(|p| p.kind == FrameKind::Document)
            .map(|p| p.name.as_str())
            .collect();
        let batch = checker.last_seal.map_or(0, |(batch, ..)| batch) + 1;
        return Err(Problem {
            offset: first.offset,
            document_id: documents.first().map(|id| (*id).to_owned()),
            what: format!(
                "{} frames after the last seal are not sealed ({} documents, first {}): batch {batch} \
                 was cut off before its seal (the hub cuts such a batch off and archives its \
                 documents again) or frames were added",
                checker.pending.len(),
                documents.len(),
                documents.first().copied().unwrap_or("none"),
            ),
        });
    }
    if !checker.found.closed && !allow_open {
        let batch = checker.last_seal.map_or(0, |(batch, ..)| batch);
        return Err(problem(
            length,
            format!(
                "the archive is not closed: it ends after the seal of batch {batch}. If this is the \
                 month still being written, check it with --open; otherwise what followed was cut off"
            ),
        ));
    }
    Ok(())
}
