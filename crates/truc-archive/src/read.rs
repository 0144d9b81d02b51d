//! Reading an archive file: a frame at an offset, the seals from the end
//! back, a document by its id (through the seals' lists, without reading
//! the other documents), and the audit entries the file holds.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use truc_store::AuditEntry;

use crate::format::{
    decode, AuditFrame, CertificateFrame, DocumentFrame, FrameKind, Seal, FRAME_HEAD_BYTES,
    SEAL_END_BYTES,
};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: at byte {offset}: {reason}")]
    Damaged {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("{path}: {what} is not in this archive")]
    NotFound { path: PathBuf, what: String },
}

/// One archive file open for reading.
pub struct ArchiveReader {
    path: PathBuf,
    file: File,
    /// Where reading stops: the file's length, or the committed length.
    end: u64,
}

/// A frame read whole.
pub struct Frame {
    pub offset: u64,
    pub kind: FrameKind,
    pub body: Vec<u8>,
    /// SHA-256 of the whole frame.
    pub sha256: [u8; 32],
}

impl ArchiveReader {
    pub fn open(path: &Path) -> Result<ArchiveReader, ArchiveError> {
        let file = File::open(path).map_err(|source| ArchiveError::Io {
            path: path.to_owned(),
            source,
        })?;
        let end = file
            .metadata()
            .map_err(|source| ArchiveError::Io {
                path: path.to_owned(),
                source,
            })?
            .len();
        Ok(ArchiveReader {
            path: path.to_owned(),
            file,
            end,
        })
    }

    /// Reads only the first `end` bytes (what the store committed).
    pub fn up_to(mut self, end: u64) -> ArchiveReader {
        self.end = self.end.min(end);
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.end
    }

    pub fn is_empty(&self) -> bool {
        self.end == 0
    }

    fn io(&self, source: std::io::Error) -> ArchiveError {
        ArchiveError::Io {
            path: self.path.clone(),
            source,
        }
    }

    pub(crate) fn damaged(&self, offset: u64, reason: impl Into<String>) -> ArchiveError {
        ArchiveError::Damaged {
            path: self.path.clone(),
            offset,
            reason: reason.into(),
        }
    }

    /// The frame starting at `offset`.
    pub fn frame_at(&mut self, offset: u64) -> Result<Frame, ArchiveError> {
        if offset + FRAME_HEAD_BYTES > self.end {
            return Err(self.damaged(offset, "no frame starts here: the file ends first"));
        }
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(|e| self.io(e))?;
        let mut head = [0u8; FRAME_HEAD_BYTES as usize];
        self.file.read_exact(&mut head).map_err(|e| self.io(e))?;
        let length = u64::from(u32::from_be_bytes(head[..4].try_into().expect("4 bytes")));
        let kind = FrameKind::from_byte(head[4])
            .ok_or_else(|| self.damaged(offset, format!("unknown frame kind {}", head[4])))?;
        if length == 0 || offset + 4 + length > self.end {
            return Err(self.damaged(
                offset,
                format!(
                    "a {} frame of {length} bytes runs past the end of the file",
                    kind.name()
                ),
            ));
        }
        let mut body = vec![0u8; (length - 1) as usize];
        self.file.read_exact(&mut body).map_err(|e| self.io(e))?;
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(&head);
        context.update(&body);
        Ok(Frame {
            offset,
            kind,
            body,
            sha256: context.finish().as_ref().try_into().expect("32 bytes"),
        })
    }

    /// The last seal and where it starts, from the end marker that closes
    /// the file (`None`: the file does not end with one).
    pub fn last_seal(&mut self) -> Result<Option<(u64, Seal)>, ArchiveError> {
        if self.end < SEAL_END_BYTES {
            return Ok(None);
        }
        let marker_at = self.end - SEAL_END_BYTES;
        let Ok(marker) = self.frame_at(marker_at) else {
            return Ok(None);
        };
        if marker.kind != FrameKind::SealEnd || marker.body.len() != 8 {
            return Ok(None);
        }
        let seal_at = u64::from_be_bytes(marker.body[..8].try_into().expect("8 bytes"));
        let seal = self.seal_at(seal_at)?;
        Ok(Some((seal_at, seal)))
    }

    pub fn seal_at(&mut self, offset: u64) -> Result<Seal, ArchiveError> {
        let frame = self.frame_at(offset)?;
        if frame.kind != FrameKind::Seal {
            return Err(self.damaged(
                offset,
                "an end marker names this offset, but no seal is here",
            ));
        }
        decode(&frame.body)
            .map_err(|error| self.damaged(offset, format!("the seal does not decode: {error}")))
    }

    /// Every seal, last first, found from the file's end.
    pub fn seals(&mut self) -> Result<Vec<(u64, Seal)>, ArchiveError> {
        let mut seals = Vec::new();
        let Some((mut offset, mut seal)) = self.last_seal()? else {
            return Ok(seals);
        };
        loop {
            let previous = seal.body.previous_seal_offset;
            let first = seal.body.batch <= 1;
            seals.push((offset, seal));
            if first {
                break;
            }
            offset = previous;
            seal = self.seal_at(offset)?;
        }
        Ok(seals)
    }

    /// A document's frame at `offset` (as the duplicate index says).
    pub fn document_at(&mut self, offset: u64) -> Result<DocumentFrame, ArchiveError> {
        let frame = self.frame_at(offset)?;
        if frame.kind != FrameKind::Document {
            return Err(self.damaged(
                offset,
                format!("a {} frame, not a document", frame.kind.name()),
            ));
        }
        decode(&frame.body)
            .map_err(|error| self.damaged(offset, format!("the document does not decode: {error}")))
    }

    /// A document by id, checked against the hash its seal lists.
    pub fn find_document(&mut self, document_id: &str) -> Result<DocumentFrame, ArchiveError> {
        for (_, seal) in self.seals()? {
            if let Some(listed) =
                seal.body.frames.iter().find(|frame| {
                    frame.kind == FrameKind::Document.byte() && frame.name == document_id
                })
            {
                let frame = self.frame_at(listed.offset)?;
                if frame.sha256 != listed.sha256 {
                    return Err(self.damaged(
                        listed.offset,
                        format!("document {document_id} was altered: its bytes no longer give the hash its seal lists"),
                    ));
                }
                return self.document_at(listed.offset);
            }
        }
        Err(ArchiveError::NotFound {
            path: self.path.clone(),
            what: format!("document {document_id}"),
        })
    }

    /// A certificate frame by the certificate's SHA-256.
    pub fn certificate(&mut self, sha256_hex: &str) -> Result<Option<Vec<u8>>, ArchiveError> {
        for (_, seal) in self.seals()? {
            if let Some(listed) = seal.body.frames.iter().find(|frame| {
                frame.kind == FrameKind::Certificate.byte() && frame.name == sha256_hex
            }) {
                let frame = self.frame_at(listed.offset)?;
                let certificate: CertificateFrame = decode(&frame.body).map_err(|error| {
                    self.damaged(
                        listed.offset,
                        format!("the certificate does not decode: {error}"),
                    )
                })?;
                return Ok(Some(certificate.der));
            }
        }
        Ok(None)
    }

    /// The audit entries the file holds that name `document_id`.
    pub fn audit_entries_of(&mut self, document_id: &str) -> Result<Vec<AuditEntry>, ArchiveError> {
        let mut offsets: Vec<u64> = Vec::new();
        for (_, seal) in self.seals()? {
            offsets.extend(
                seal.body
                    .frames
                    .iter()
                    .filter(|frame| frame.kind == FrameKind::Audit.byte())
                    .map(|frame| frame.offset),
            );
        }
        offsets.sort_unstable();
        let mut entries = Vec::new();
        for offset in offsets {
            let frame = self.frame_at(offset)?;
            let run: AuditFrame = decode(&frame.body).map_err(|error| {
                self.damaged(offset, format!("the audit entries do not decode: {error}"))
            })?;
            entries.extend(
                run.into_iter()
                    .filter(|entry| entry.document_id == document_id),
            );
        }
        Ok(entries)
    }
}
