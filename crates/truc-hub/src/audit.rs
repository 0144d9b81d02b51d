//! The audit export file and its offline check. An export is JSON lines: a
//! header (period, the hash of the entry before the first, the CA), then
//! each entry preceded by any certificate it needs and, for a send, the
//! signed header bytes, then an end line that the hub signs over the first
//! and last entries. `verify` recomputes the chain, re-checks every envelope
//! signature against the certificates and the CA, and names the first entry
//! altered or removed.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use truc_domain::SigningKey;
use truc_pki::{PeerRole, TrustRoots};
use truc_store::audit::sha256;
use truc_store::{AuditEntry, AuditKind, Store, StoreError};

/// The `format` of the header line.
pub const EXPORT_FORMAT: &str = "truc.audit.export.v1";

/// One line of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportLine {
    Header(ExportHeader),
    Certificate { sha256: String, der: String },
    Entry(ExportEntry),
    End(ExportEnd),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportHeader {
    pub format: String,
    /// The period asked for (0: unbounded).
    pub from_unix_ms: i64,
    pub to_unix_ms: i64,
    pub made_at_unix_ms: i64,
    /// The sequence number of the first entry (the next one when the period is empty).
    pub first_seq: u64,
    /// The hash of the entry before the first (zeros before the very first),
    /// so a period can be checked without what came before it.
    pub previous_sha256: String,
    /// The CA certificates (DER, hex) that issued the agency and hub certificates.
    pub ca_certificates: Vec<String>,
}

/// An entry with every byte field in hex; `header_bytes` (a send's signed
/// header) is not part of the hash: its digest, `signed_sha256`, is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportEntry {
    pub seq: u64,
    pub at_unix_ms: i64,
    pub kind: String,
    pub actor: String,
    pub document_id: String,
    pub recipient: String,
    pub status: u32,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signature: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_sha256: Option<String>,
    pub previous_sha256: String,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_bytes: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportEnd {
    pub entries: u64,
    /// The last entry (`first_seq - 1` and the previous hash when empty).
    pub last_seq: u64,
    pub last_sha256: String,
    /// The hub's certificate (DER, hex) and its signature over [`end_summary`];
    /// both empty when exported offline without the hub's key.
    pub hub_certificate: String,
    pub hub_signature: String,
}

/// What the hub signs: the header's period, time, first sequence number and
/// previous hash, and the end's count, last sequence number and last hash.
pub fn end_summary(header: &ExportHeader, end: &ExportEnd) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(128);
    bytes.extend_from_slice(&header.from_unix_ms.to_be_bytes());
    bytes.extend_from_slice(&header.to_unix_ms.to_be_bytes());
    bytes.extend_from_slice(&header.made_at_unix_ms.to_be_bytes());
    bytes.extend_from_slice(&header.first_seq.to_be_bytes());
    bytes.extend_from_slice(header.previous_sha256.as_bytes());
    bytes.extend_from_slice(&end.entries.to_be_bytes());
    bytes.extend_from_slice(&end.last_seq.to_be_bytes());
    bytes.extend_from_slice(end.last_sha256.as_bytes());
    bytes
}

impl From<&AuditEntry> for ExportEntry {
    fn from(entry: &AuditEntry) -> Self {
        ExportEntry {
            seq: entry.seq,
            at_unix_ms: entry.at_unix_ms,
            kind: entry.kind.name().to_owned(),
            actor: entry.actor.clone(),
            document_id: entry.document_id.clone(),
            recipient: entry.recipient.clone(),
            status: entry.status,
            reason: entry.reason.clone(),
            signed_sha256: entry.signed_sha256.map(hex::encode),
            signature: hex::encode(&entry.signature),
            certificate_sha256: entry.certificate_sha256.map(hex::encode),
            previous_sha256: hex::encode(entry.previous_sha256),
            sha256: hex::encode(entry.sha256),
            header_bytes: None,
        }
    }
}

/// Why an exported entry does not give back the entry it records: the
/// export was altered (or written by something else).
#[derive(Debug, thiserror::Error)]
pub enum EntryFieldError {
    #[error("kind {0:?} is not an audit kind")]
    Kind(String),
    #[error("{field} is not 32 bytes of hex")]
    NotADigest {
        field: &'static str,
        /// None when the hex was good but not 32 bytes long.
        #[source]
        source: Option<hex::FromHexError>,
    },
    #[error("signature is not hex")]
    SignatureNotHex(#[source] hex::FromHexError),
}

fn digest_from_hex(field: &'static str, text: &str) -> Result<[u8; 32], EntryFieldError> {
    let bytes = hex::decode(text).map_err(|source| EntryFieldError::NotADigest {
        field,
        source: Some(source),
    })?;
    bytes.try_into().map_err(|_| EntryFieldError::NotADigest {
        field,
        source: None,
    })
}

impl TryFrom<&ExportEntry> for AuditEntry {
    type Error = EntryFieldError;

    fn try_from(entry: &ExportEntry) -> Result<Self, EntryFieldError> {
        Ok(AuditEntry {
            seq: entry.seq,
            at_unix_ms: entry.at_unix_ms,
            kind: AuditKind::from_name(&entry.kind)
                .ok_or_else(|| EntryFieldError::Kind(entry.kind.clone()))?,
            actor: entry.actor.clone(),
            document_id: entry.document_id.clone(),
            recipient: entry.recipient.clone(),
            status: entry.status,
            reason: entry.reason.clone(),
            signed_sha256: entry
                .signed_sha256
                .as_deref()
                .map(|text| digest_from_hex("signed_sha256", text))
                .transpose()?,
            signature: hex::decode(&entry.signature).map_err(EntryFieldError::SignatureNotHex)?,
            certificate_sha256: entry
                .certificate_sha256
                .as_deref()
                .map(|text| digest_from_hex("certificate_sha256", text))
                .transpose()?,
            previous_sha256: digest_from_hex("previous_sha256", &entry.previous_sha256)?,
            sha256: digest_from_hex("sha256", &entry.sha256)?,
        })
    }
}

/// Why a send's envelope signature does not check against what the export
/// carries: each is an alteration the verification names.
#[derive(Debug, thiserror::Error)]
enum SendProblem {
    #[error("header_bytes is not hex")]
    HeaderBytesNotHex(#[source] hex::FromHexError),
    #[error("the signed header bytes do not match the digest the entry records")]
    DigestMismatch,
    #[error("the certificate it names is not in the export")]
    CertificateMissing,
    #[error("the sender's certificate does not check: {0}")]
    Certificate(#[source] truc_pki::PkiError),
    #[error("the certificate names {named}, not the sender {sender}")]
    NotTheSender { named: String, sender: String },
    #[error("{0}")]
    PublicKey(#[source] truc_pki::PkiError),
    #[error("the envelope signature does not verify: {0}")]
    Signature(#[source] truc_domain::SignatureError),
}

/// Who signs an export: the hub's certificate and key.
pub struct ExportSigner<'a> {
    pub certificate_der: &'a [u8],
    pub key: &'a SigningKey,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
    #[error("cannot sign the export: {0}")]
    Sign(String),
}

/// What an export holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    pub entries: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub signed: bool,
}

fn write_line(out: &mut impl Write, line: &ExportLine) -> Result<(), ExportError> {
    serde_json::to_writer(&mut *out, line).map_err(std::io::Error::other)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Writes the entries recorded in `[from_unix_ms, to_unix_ms]` (0: unbounded)
/// with the certificates that check them: the contiguous run from the first
/// entry at or after `from_unix_ms` up to the first entry after `to_unix_ms`.
pub fn write_export(
    store: &Store,
    trust: &TrustRoots,
    signer: Option<ExportSigner<'_>>,
    from_unix_ms: i64,
    to_unix_ms: i64,
    made_at_unix_ms: i64,
    out: &mut impl Write,
) -> Result<ExportSummary, ExportError> {
    let after_period = |entry: &AuditEntry| to_unix_ms > 0 && entry.at_unix_ms > to_unix_ms;
    let mut entries = store
        .audit_entries(1)
        .skip_while(|entry| entry.as_ref().is_ok_and(|e| e.at_unix_ms < from_unix_ms))
        .peekable();
    let (first_seq, previous_sha256) = match entries.peek() {
        Some(Ok(first)) if !after_period(first) => (first.seq, first.previous_sha256),
        Some(Err(_)) => return Err(entries.next().expect("peeked").unwrap_err().into()),
        // Nothing in the period: the export says where the chain stood.
        _ => {
            let head = store.audit_head()?;
            (head.seq + 1, head.sha256)
        }
    };
    let header = ExportHeader {
        format: EXPORT_FORMAT.to_owned(),
        from_unix_ms,
        to_unix_ms,
        made_at_unix_ms,
        first_seq,
        previous_sha256: hex::encode(previous_sha256),
        ca_certificates: trust.certificates_der().map(hex::encode).collect(),
    };
    write_line(out, &ExportLine::Header(header.clone()))?;
    let mut written_certificates = HashSet::new();
    let mut count = 0u64;
    let (mut last_seq, mut last_sha256) = (first_seq - 1, previous_sha256);
    for entry in entries {
        let entry = entry?;
        if after_period(&entry) {
            break;
        }
        let mut line = ExportEntry::from(&entry);
        if entry.kind == AuditKind::Send {
            if let Some(document) = store.document(&entry.document_id)? {
                let certificate_sha256 = sha256(&document.sender_certificate);
                if written_certificates.insert(certificate_sha256) {
                    write_line(
                        out,
                        &ExportLine::Certificate {
                            sha256: hex::encode(certificate_sha256),
                            der: hex::encode(&document.sender_certificate),
                        },
                    )?;
                }
                line.header_bytes = Some(hex::encode(&document.header_bytes));
            }
        }
        write_line(out, &ExportLine::Entry(line))?;
        count += 1;
        (last_seq, last_sha256) = (entry.seq, entry.sha256);
    }
    let mut end = ExportEnd {
        entries: count,
        last_seq,
        last_sha256: hex::encode(last_sha256),
        hub_certificate: String::new(),
        hub_signature: String::new(),
    };
    if let Some(signer) = &signer {
        let signature = signer
            .key
            .sign_audit_export(&end_summary(&header, &end))
            .map_err(|error| ExportError::Sign(error.to_string()))?;
        end.hub_certificate = hex::encode(signer.certificate_der);
        end.hub_signature = hex::encode(signature);
    }
    write_line(out, &ExportLine::End(end))?;
    out.flush()?;
    Ok(ExportSummary {
        entries: count,
        first_seq,
        last_seq,
        signed: signer.is_some(),
    })
}

/// The first thing wrong with an export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The entry named: altered, or the first of those removed.
    pub seq: Option<u64>,
    /// The line of the file (from 1) where it was found.
    pub line: usize,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

/// The result of checking an export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub entries: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// Sends whose envelope signature was checked.
    pub signatures_checked: u64,
    /// The subject of the hub certificate whose signature over the end verified.
    pub signed_by: Option<String>,
    pub problem: Option<Problem>,
}

fn unix_time(unix_ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(unix_ms.max(0) as u64)
}

struct Checker {
    trust: Option<TrustRoots>,
    certificates: HashMap<[u8; 32], Vec<u8>>,
    header: Option<ExportHeader>,
    expected_seq: u64,
    expected_previous: [u8; 32],
    entries: u64,
    signatures_checked: u64,
    signed_by: Option<String>,
    ended: bool,
}

impl Checker {
    fn trust(&self) -> &TrustRoots {
        self.trust.as_ref().expect("set with the header")
    }

    fn header(&mut self, header: ExportHeader, pinned: Option<&TrustRoots>) -> Result<(), Problem> {
        let problem = |what: String| Problem {
            seq: None,
            line: 1,
            what,
        };
        if header.format != EXPORT_FORMAT {
            return Err(problem(format!(
                "format {:?}; this tool reads {EXPORT_FORMAT}",
                header.format
            )));
        }
        self.trust = Some(match pinned {
            Some(roots) => roots.clone(),
            None => {
                let ders = header
                    .ca_certificates
                    .iter()
                    .map(|text| {
                        hex::decode(text).map_err(|_| problem("a CA certificate is not hex".into()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if ders.is_empty() {
                    return Err(problem("the header carries no CA certificate".into()));
                }
                TrustRoots::from_der(&ders).map_err(|error| problem(error.to_string()))?
            }
        });
        self.expected_seq = header.first_seq;
        self.expected_previous = digest_from_hex("previous_sha256", &header.previous_sha256)
            .map_err(|error| problem(error.to_string()))?;
        self.header = Some(header);
        Ok(())
    }

    fn entry(&mut self, line: usize, exported: &ExportEntry) -> Result<(), Problem> {
        let at = |seq: u64, what: String| Problem {
            seq: Some(seq),
            line,
            what,
        };
        if exported.seq > self.expected_seq {
            let last_removed = exported.seq - 1;
            let which = if last_removed == self.expected_seq {
                format!("entry {} was removed", self.expected_seq)
            } else {
                format!(
                    "entries {} to {last_removed} were removed",
                    self.expected_seq
                )
            };
            return Err(at(
                self.expected_seq,
                format!(
                    "{which}: entry {} follows entry {}",
                    exported.seq,
                    self.expected_seq.saturating_sub(1)
                ),
            ));
        }
        if exported.seq < self.expected_seq {
            return Err(at(
                exported.seq,
                format!(
                    "entry {} is out of place (repeated or moved): entry {} was expected",
                    exported.seq, self.expected_seq
                ),
            ));
        }
        let seq = exported.seq;
        let entry = AuditEntry::try_from(exported)
            .map_err(|reason| at(seq, format!("entry {seq} was altered: {reason}")))?;
        if entry.compute_sha256() != entry.sha256 {
            return Err(at(
                seq,
                format!("entry {seq} was altered: its fields no longer give its recorded hash"),
            ));
        }
        if entry.previous_sha256 != self.expected_previous {
            let header = self.header.as_ref().expect("header first");
            return Err(if seq == header.first_seq {
                Problem {
                    seq: Some(seq),
                    line,
                    what: format!(
                        "entry {seq} does not follow the hash the header gives for the entry before it: the header or entry {seq} was altered"
                    ),
                }
            } else {
                at(
                    seq - 1,
                    format!(
                        "entry {} was altered and its hash rewritten: entry {seq} names another hash before it",
                        seq - 1
                    ),
                )
            });
        }
        if entry.kind == AuditKind::Send {
            self.check_send(&entry, exported)
                .map_err(|reason| at(seq, format!("entry {seq} was altered: {reason}")))?;
            self.signatures_checked += 1;
        }
        self.expected_seq = seq + 1;
        self.expected_previous = entry.sha256;
        self.entries += 1;
        Ok(())
    }

    /// The envelope signature of a send, against the header bytes, the
    /// sender's certificate as it was at the time, and the CA.
    fn check_send(&self, entry: &AuditEntry, exported: &ExportEntry) -> Result<(), SendProblem> {
        let header_bytes = hex::decode(exported.header_bytes.as_deref().unwrap_or_default())
            .map_err(SendProblem::HeaderBytesNotHex)?;
        if Some(sha256(&header_bytes)) != entry.signed_sha256 {
            return Err(SendProblem::DigestMismatch);
        }
        let certificate = entry
            .certificate_sha256
            .and_then(|digest| self.certificates.get(&digest))
            .ok_or(SendProblem::CertificateMissing)?;
        let identity = self
            .trust()
            .verify_certificate(certificate, unix_time(entry.at_unix_ms))
            .map_err(SendProblem::Certificate)?;
        match identity.role {
            PeerRole::Agency { code } if code == entry.actor => {}
            other => {
                return Err(SendProblem::NotTheSender {
                    named: other.uri(),
                    sender: entry.actor.clone(),
                })
            }
        }
        let key = truc_pki::certificate_public_key(certificate).map_err(SendProblem::PublicKey)?;
        truc_domain::verify_envelope(&key, &header_bytes, &entry.signature)
            .map_err(SendProblem::Signature)
    }

    fn end(&mut self, line: usize, end: &ExportEnd) -> Result<(), Problem> {
        let problem = |seq: Option<u64>, what: String| Problem { seq, line, what };
        self.ended = true;
        let last_seq = self.expected_seq - 1;
        if end.last_seq > last_seq {
            return Err(problem(
                Some(last_seq + 1),
                format!(
                    "entries {} to {} were removed from the end: the end says the last is {}",
                    last_seq + 1,
                    end.last_seq,
                    end.last_seq
                ),
            ));
        }
        if end.last_seq < last_seq || end.entries != self.entries {
            return Err(problem(
                None,
                format!(
                    "the end says {} entries up to {}, the file has {} up to {last_seq}: the end was altered",
                    end.entries, end.last_seq, self.entries
                ),
            ));
        }
        if end.last_sha256 != hex::encode(self.expected_previous) {
            return Err(problem(
                Some(last_seq),
                format!("entry {last_seq} was altered and its hash rewritten: the end names another hash"),
            ));
        }
        if end.hub_signature.is_empty() {
            return Ok(());
        }
        let header = self.header.as_ref().expect("header first");
        let unsigned = |reason: String| {
            problem(
                None,
                format!("the hub's signature over the export does not check ({reason}): the export was rewritten after the hub made it"),
            )
        };
        let certificate = hex::decode(&end.hub_certificate)
            .map_err(|_| unsigned("hub_certificate is not hex".into()))?;
        let signature = hex::decode(&end.hub_signature)
            .map_err(|_| unsigned("hub_signature is not hex".into()))?;
        let identity = self
            .trust()
            .verify_hub_certificate(&certificate, unix_time(header.made_at_unix_ms))
            .map_err(|error| unsigned(error.to_string()))?;
        if identity.role != PeerRole::Hub {
            return Err(unsigned(format!("{} is not the hub", identity.role.uri())));
        }
        let key = truc_pki::certificate_public_key(&certificate)
            .map_err(|error| unsigned(error.to_string()))?;
        truc_domain::verify_audit_export(&key, &end_summary(header, end), &signature)
            .map_err(|error| unsigned(error.to_string()))?;
        self.signed_by = Some(
            truc_pki::certificate_validity(&certificate)
                .map(|validity| validity.subject)
                .unwrap_or_else(|_| identity.role.uri()),
        );
        Ok(())
    }
}

/// Checks an export offline. With `pinned_ca`, certificates are checked
/// against it instead of the CA the export carries.
pub fn verify(
    reader: impl BufRead,
    pinned_ca: Option<&TrustRoots>,
) -> Result<Verification, std::io::Error> {
    let mut checker = Checker {
        trust: None,
        certificates: HashMap::new(),
        header: None,
        expected_seq: 1,
        expected_previous: [0; 32],
        entries: 0,
        signatures_checked: 0,
        signed_by: None,
        ended: false,
    };
    let mut problem = None;
    let mut line_number = 0;
    for line in reader.lines() {
        let line = line?;
        line_number += 1;
        if line.trim().is_empty() {
            continue;
        }
        let result = match serde_json::from_str::<ExportLine>(&line) {
            Err(error) => Err(Problem {
                seq: None,
                line: line_number,
                what: format!("not an export line: {error}"),
            }),
            Ok(_) if checker.ended => Err(Problem {
                seq: None,
                line: line_number,
                what: "a line after the end".into(),
            }),
            Ok(ExportLine::Header(header)) if checker.header.is_none() => {
                checker.header(header, pinned_ca)
            }
            Ok(_) if checker.header.is_none() => Err(Problem {
                seq: None,
                line: line_number,
                what: "the export does not start with its header".into(),
            }),
            Ok(ExportLine::Header(_)) => Err(Problem {
                seq: None,
                line: line_number,
                what: "a second header".into(),
            }),
            Ok(ExportLine::Certificate {
                sha256: digest,
                der,
            }) => hex::decode(&der)
                .ok()
                .filter(|der| hex::encode(sha256(der)) == digest)
                .map(|der| {
                    checker.certificates.insert(sha256(&der), der);
                })
                .ok_or_else(|| Problem {
                    seq: None,
                    line: line_number,
                    what: "a certificate whose bytes do not match its digest".into(),
                }),
            Ok(ExportLine::Entry(entry)) => checker.entry(line_number, &entry),
            Ok(ExportLine::End(end)) => checker.end(line_number, &end),
        };
        if let Err(found) = result {
            problem = Some(found);
            break;
        }
    }
    if problem.is_none() && !checker.ended {
        let last = checker.expected_seq.saturating_sub(1);
        problem = Some(Problem {
            seq: Some(checker.expected_seq),
            line: line_number + 1,
            what: if checker.header.is_none() {
                "the file is empty: no header".into()
            } else {
                format!(
                    "the export stops after entry {last} without its end line: what followed was removed or cut off"
                )
            },
        });
    }
    let first_seq = checker.header.as_ref().map_or(0, |h| h.first_seq);
    Ok(Verification {
        entries: checker.entries,
        first_seq,
        last_seq: checker.expected_seq.saturating_sub(1),
        signatures_checked: checker.signatures_checked,
        signed_by: checker.signed_by,
        problem,
    })
}
