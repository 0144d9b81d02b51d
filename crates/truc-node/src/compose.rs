//! Composing a signed envelope: the header is encoded once, and the
//! signature covers exactly those bytes.

use std::path::PathBuf;

use prost::Message;
use ring::digest::{Context, SHA256};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use truc_domain::views::{DocumentSignature, SignedEnvelope};
use truc_domain::{BusinessType, RawHeader, SigningKey};
use truc_pki::Credentials;
use truc_proto::v1 as pb;

use crate::client::ClientError;

/// Bytes per attachment chunk on the wire.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// The fields a sender fills in; the rest of the header is derived.
#[derive(Clone, Debug, Default)]
pub struct Draft {
    pub from: String,
    pub from_name: String,
    pub to: Vec<String>,
    pub number: String,
    pub notation: String,
    pub place: String,
    /// yyyy-mm-dd
    pub date: String,
    pub document_type: u32,
    pub document_type_name: String,
    pub subject: String,
    pub steering_type: u32,
    pub due_date: String,
    pub priority: u32,
    pub page_count: u32,
    pub response_for: Vec<String>,
    pub business_type: BusinessType,
    pub business_refs: Vec<String>,
    /// Attach the document's own digital signature (by the sending organisation's key).
    pub sign_document: bool,
}

impl Draft {
    /// The document id the hub will give this draft.
    pub fn document_id(&self) -> String {
        format!(
            "{},{},{}/{}",
            self.from,
            self.date.replace('-', "/"),
            self.number,
            self.notation
        )
    }
}

#[derive(Clone, Debug)]
pub enum AttachmentSource {
    File(PathBuf),
    Bytes(bytes::Bytes),
}

#[derive(Clone, Debug)]
pub struct Attachment {
    pub name: String,
    pub media_type: String,
    pub source: AttachmentSource,
}

impl Attachment {
    pub fn bytes(name: &str, media_type: &str, data: impl Into<bytes::Bytes>) -> Self {
        Attachment {
            name: name.to_owned(),
            media_type: media_type.to_owned(),
            source: AttachmentSource::Bytes(data.into()),
        }
    }

    /// A file, named by its own file name, with a media type guessed from its extension.
    pub fn file(path: PathBuf) -> Self {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "attachment".into());
        let media_type = match path.extension().and_then(|e| e.to_str()) {
            Some("pdf") => "application/pdf",
            Some("xml") => "application/xml",
            Some("txt") => "text/plain",
            Some("doc") => "application/msword",
            Some("docx") => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            _ => "application/octet-stream",
        };
        Attachment {
            name,
            media_type: media_type.into(),
            source: AttachmentSource::File(path),
        }
    }
}

/// A signed envelope ready to stream.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub envelope: SignedEnvelope,
    pub attachments: Vec<Attachment>,
    pub document_id: String,
}

async fn digest_of(source: &AttachmentSource) -> Result<([u8; 32], u64), ClientError> {
    let mut context = Context::new(&SHA256);
    let size = match source {
        AttachmentSource::Bytes(bytes) => {
            context.update(bytes);
            bytes.len() as u64
        }
        AttachmentSource::File(path) => {
            let mut file = tokio::fs::File::open(path).await.map_err(|error| {
                ClientError::Draft(format!(
                    "cannot read attachment {}: {error}",
                    path.display()
                ))
            })?;
            let mut buffer = vec![0u8; CHUNK_BYTES];
            let mut size = 0u64;
            loop {
                let read = file.read(&mut buffer).await?;
                if read == 0 {
                    break;
                }
                context.update(&buffer[..read]);
                size += read as u64;
            }
            size
        }
    };
    let mut digest = [0u8; 32];
    digest.copy_from_slice(context.finish().as_ref());
    Ok((digest, size))
}

fn organ(code: &str, name: &str) -> pb::Organ {
    pb::Organ {
        organ_id: code.to_owned(),
        organ_name: name.to_owned(),
        ..Default::default()
    }
}

impl Prepared {
    pub async fn new(
        draft: &Draft,
        attachments: Vec<Attachment>,
        credentials: &Credentials,
    ) -> Result<Prepared, ClientError> {
        let key = SigningKey::from_pkcs8(&credentials.key_pkcs8_der)
            .map_err(|error| ClientError::Draft(error.to_string()))?;
        Self::signed_with(draft, attachments, credentials, &key).await
    }

    /// [`Prepared::new`] with the credentials' key already parsed.
    pub async fn signed_with(
        draft: &Draft,
        attachments: Vec<Attachment>,
        credentials: &Credentials,
        key: &SigningKey,
    ) -> Result<Prepared, ClientError> {
        let mut infos = Vec::with_capacity(attachments.len());
        let mut digests = Vec::with_capacity(attachments.len());
        for attachment in &attachments {
            let (sha256, size) = digest_of(&attachment.source).await?;
            digests.push(sha256);
            infos.push(pb::AttachmentInfo {
                name: attachment.name.clone(),
                media_type: attachment.media_type.clone(),
                size_bytes: size,
                sha256: sha256.to_vec(),
            });
        }
        let header = pb::EnvelopeHeader {
            from: Some(organ(&draft.from, &draft.from_name)),
            to: draft.to.iter().map(|code| organ(code, "")).collect(),
            code: Some(pb::DocumentCode {
                number: draft.number.clone(),
                notation: draft.notation.clone(),
            }),
            promulgation: Some(pb::Promulgation {
                place: draft.place.clone(),
                date: draft.date.clone(),
            }),
            document_type: Some(pb::DocumentType {
                r#type: draft.document_type,
                name: draft.document_type_name.clone(),
            }),
            subject: draft.subject.clone(),
            steering_type: draft.steering_type,
            due_date: draft.due_date.clone(),
            other_info: Some(pb::OtherInfo {
                priority: draft.priority,
                page_count: draft.page_count,
                appendix_count: attachments.len().saturating_sub(1) as u32,
            }),
            response_for: draft.response_for.clone(),
            business_type: draft.business_type.code(),
            business_refs: draft.business_refs.clone(),
            attachments: infos,
        };
        let document_id = draft.document_id();
        let envelope = signed(
            header.encode_to_vec(),
            &document_id,
            &digests,
            draft.sign_document.then_some(credentials),
            key,
        )?;
        Ok(Prepared {
            envelope,
            attachments,
            document_id,
        })
    }

    /// An envelope for a package already mapped to the envelope's fields
    /// (an edXML package or the JSON folder form, through `truc-edxml`):
    /// the header encoded from exactly those fields, so that the same
    /// package always makes the same header bytes, and a resend is the hub's
    /// duplicate rather than a conflict.
    pub fn from_envelope_parts(
        parts: truc_edxml::EnvelopeParts,
        sign_document: bool,
        credentials: &Credentials,
        key: &SigningKey,
    ) -> Result<Prepared, ClientError> {
        let document_id = document_id_of(&parts.header);
        let digests: Vec<[u8; 32]> = parts
            .header
            .attachments
            .iter()
            .map(|attachment| {
                attachment.sha256.as_slice().try_into().map_err(|_| {
                    ClientError::Draft(format!("attachment {} has no SHA-256", attachment.name))
                })
            })
            .collect::<Result<_, _>>()?;
        let envelope = signed(
            pb::EnvelopeHeader::from(parts.header).encode_to_vec(),
            &document_id,
            &digests,
            sign_document.then_some(credentials),
            key,
        )?;
        Ok(Prepared {
            envelope,
            attachments: parts
                .attachments
                .into_iter()
                .map(|attachment| {
                    Attachment::bytes(&attachment.name, &attachment.media_type, attachment.bytes)
                })
                .collect(),
            document_id,
        })
    }

    /// The signed envelope encoded as a send carries it.
    pub fn envelope_bytes(&self) -> Vec<u8> {
        pb::SignedEnvelope::from(self.envelope.clone()).encode_to_vec()
    }

    /// Sends the envelope, then every attachment in chunks (at least one each).
    pub(crate) async fn stream_into(
        self,
        sender: mpsc::Sender<pb::SendRequest>,
    ) -> Result<(), std::io::Error> {
        let part = |part| pb::SendRequest { part: Some(part) };
        if sender
            .send(part(pb::send_request::Part::Envelope(
                pb::SignedEnvelope::from(self.envelope),
            )))
            .await
            .is_err()
        {
            return Ok(());
        }
        for (index, attachment) in self.attachments.into_iter().enumerate() {
            let index = index as u32;
            let chunk = |data: Vec<u8>| {
                part(pb::send_request::Part::Chunk(pb::AttachmentChunk {
                    index,
                    data,
                }))
            };
            match attachment.source {
                AttachmentSource::Bytes(bytes) => {
                    if bytes.is_empty() && sender.send(chunk(Vec::new())).await.is_err() {
                        return Ok(());
                    }
                    for piece in bytes.chunks(CHUNK_BYTES) {
                        if sender.send(chunk(piece.to_vec())).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                AttachmentSource::File(path) => {
                    let mut file = tokio::fs::File::open(&path).await?;
                    let mut first = true;
                    loop {
                        let mut buffer = vec![0u8; CHUNK_BYTES];
                        let read = read_full(&mut file, &mut buffer).await?;
                        if read == 0 && !first {
                            break;
                        }
                        buffer.truncate(read);
                        first = false;
                        if sender.send(chunk(buffer)).await.is_err() {
                            return Ok(());
                        }
                        if read < CHUNK_BYTES {
                            break;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

async fn read_full(file: &mut tokio::fs::File, buffer: &mut [u8]) -> Result<usize, std::io::Error> {
    let mut filled = 0;
    while filled < buffer.len() {
        let read = file.read(&mut buffer[filled..]).await?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    Ok(filled)
}

/// `OrganId,yyyy/MM/dd,Number/Notation` of a header's fields.
pub fn document_id_of(raw: &RawHeader) -> String {
    format!(
        "{},{},{}/{}",
        raw.from
            .as_ref()
            .map(|from| from.organ_id.as_str())
            .unwrap_or_default(),
        raw.promulgation_date.replace('-', "/"),
        raw.code_number,
        raw.code_notation
    )
}

/// The header's bytes as they are signed and sent.
pub fn header_bytes(raw: &RawHeader) -> Vec<u8> {
    pb::EnvelopeHeader::from(raw.clone()).encode_to_vec()
}

/// Header bytes that did not decode.
#[derive(Debug, thiserror::Error)]
#[error("the header does not decode: {0}")]
pub struct HeaderDecodeError(#[source] prost::DecodeError);

/// The header fields of signed header bytes, as sent (nothing checked).
pub fn decode_header(bytes: &[u8]) -> Result<RawHeader, HeaderDecodeError> {
    pb::EnvelopeHeader::decode(bytes)
        .map(RawHeader::from)
        .map_err(HeaderDecodeError)
}

/// The header signed by the sending agency's key, with the document
/// signature over the id and attachments' digests when `signer` is given.
fn signed(
    header: Vec<u8>,
    document_id: &str,
    digests: &[[u8; 32]],
    signer: Option<&Credentials>,
    key: &SigningKey,
) -> Result<SignedEnvelope, ClientError> {
    let failed = |error: truc_domain::SignatureError| ClientError::Draft(error.to_string());
    let signature = key.sign_envelope(&header).map_err(failed)?;
    let document_signature = match signer {
        Some(credentials) => Some(DocumentSignature {
            signer_certificate: credentials.certificate_der().to_vec(),
            signature: key.sign_document(document_id, digests).map_err(failed)?,
        }),
        None => None,
    };
    Ok(SignedEnvelope {
        header,
        signature,
        document_signature,
    })
}
