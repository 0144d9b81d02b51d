//! What a recipient checks before it believes a delivery: the sender's
//! certificate chains to the axis CA and names the sending agency, and the
//! signature covers exactly the header bytes that arrived.

use prost::Message;
use truc_pki::{PeerRole, TrustRoots};
use truc_proto::v1 as pb;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("delivery carries no envelope")]
    NoEnvelope,
    #[error("sender certificate: {0}")]
    Certificate(String),
    #[error("header: {0}")]
    Header(String),
    #[error("signature does not verify against the sender's certificate")]
    Signature,
    #[error("the header's sender {header} is not the certificate's agency {certificate}")]
    SenderMismatch { header: String, certificate: String },
    #[error("document id {delivered} does not match the header's {derived}")]
    DocumentId { delivered: String, derived: String },
}

/// A delivery whose signature and sender have been checked.
#[derive(Debug, Clone)]
pub struct VerifiedDelivery {
    pub header: pb::EnvelopeHeader,
    pub document_id: String,
}

pub fn verify_delivery(
    delivery: &pb::Delivery,
    roots: &TrustRoots,
) -> Result<VerifiedDelivery, VerifyError> {
    let envelope = delivery.envelope.as_ref().ok_or(VerifyError::NoEnvelope)?;
    let identity = roots
        .verify_certificate(&delivery.sender_certificate, std::time::SystemTime::now())
        .map_err(|error| VerifyError::Certificate(error.to_string()))?;
    let PeerRole::Agency { code } = identity.role else {
        return Err(VerifyError::Certificate("not an agency certificate".into()));
    };
    let key = truc_pki::ed25519_public_key(&delivery.sender_certificate)
        .map_err(|error| VerifyError::Certificate(error.to_string()))?;
    truc_domain::verify_envelope(&key, &envelope.header, &envelope.signature)
        .map_err(|_| VerifyError::Signature)?;
    let header = pb::EnvelopeHeader::decode(envelope.header.as_slice())
        .map_err(|error| VerifyError::Header(error.to_string()))?;
    let from = header
        .from
        .as_ref()
        .map(|f| f.organ_id.clone())
        .unwrap_or_default();
    if from != code {
        return Err(VerifyError::SenderMismatch {
            header: from,
            certificate: code,
        });
    }
    let code_part = header.code.clone().unwrap_or_default();
    let date = header
        .promulgation
        .as_ref()
        .map(|p| p.date.replace('-', "/"))
        .unwrap_or_default();
    let derived = format!("{from},{date},{}/{}", code_part.number, code_part.notation);
    if derived != delivery.document_id {
        return Err(VerifyError::DocumentId {
            delivered: delivery.document_id.clone(),
            derived,
        });
    }
    Ok(VerifiedDelivery {
        header,
        document_id: derived,
    })
}
