//! What a recipient checks before it believes a delivery: the sender's
//! certificate chains to the axis CA and names the sending agency, and the
//! signature covers exactly the header bytes that arrived.

use prost::Message;
use truc_domain::views::Delivery;
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
    pub header: truc_domain::RawHeader,
    pub document_id: String,
}

/// [`VerifiedDelivery`] with the header as it came off the wire, for the
/// node agent, which writes it into the inbox as is.
#[derive(Debug, Clone)]
pub(crate) struct WireVerified {
    pub header: pb::EnvelopeHeader,
    pub document_id: String,
}

pub fn verify_delivery(
    delivery: &Delivery,
    roots: &TrustRoots,
) -> Result<VerifiedDelivery, VerifyError> {
    let envelope = delivery.envelope.as_ref().ok_or(VerifyError::NoEnvelope)?;
    let verified = verify_parts(
        &delivery.document_id,
        &envelope.header,
        &envelope.signature,
        &delivery.sender_certificate,
        roots,
    )?;
    Ok(VerifiedDelivery {
        header: verified.header.into(),
        document_id: verified.document_id,
    })
}

pub(crate) fn verify_wire(
    delivery: &pb::Delivery,
    roots: &TrustRoots,
) -> Result<WireVerified, VerifyError> {
    let envelope = delivery.envelope.as_ref().ok_or(VerifyError::NoEnvelope)?;
    verify_parts(
        &delivery.document_id,
        &envelope.header,
        &envelope.signature,
        &delivery.sender_certificate,
        roots,
    )
}

fn verify_parts(
    document_id: &str,
    header_bytes: &[u8],
    signature: &[u8],
    sender_certificate: &[u8],
    roots: &TrustRoots,
) -> Result<WireVerified, VerifyError> {
    let identity = roots
        .verify_certificate(sender_certificate, std::time::SystemTime::now())
        .map_err(|error| VerifyError::Certificate(error.to_string()))?;
    let PeerRole::Agency { code } = identity.role else {
        return Err(VerifyError::Certificate("not an agency certificate".into()));
    };
    // The certificate's key type (Ed25519 or ECDSA P-256) decides how the signature is checked.
    let key = truc_pki::certificate_public_key(sender_certificate)
        .map_err(|error| VerifyError::Certificate(error.to_string()))?;
    truc_domain::verify_envelope(&key, header_bytes, signature)
        .map_err(|_| VerifyError::Signature)?;
    let header = pb::EnvelopeHeader::decode(header_bytes)
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
    // The names become files in the inbox: the hub's rule, checked again here.
    truc_domain::check_attachment_names(header.attachments.iter().map(|a| a.name.as_str()))
        .map_err(|(index, error)| {
            VerifyError::Header(format!("attachments[{index}].name: {error}"))
        })?;
    let code_part = header.code.clone().unwrap_or_default();
    let date = header
        .promulgation
        .as_ref()
        .map(|p| p.date.replace('-', "/"))
        .unwrap_or_default();
    let derived = format!("{from},{date},{}/{}", code_part.number, code_part.notation);
    if derived != document_id {
        return Err(VerifyError::DocumentId {
            delivered: document_id.to_owned(),
            derived,
        });
    }
    Ok(WireVerified {
        header,
        document_id: derived,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::{Attachment, Draft, Prepared};

    async fn signed_delivery(
        key_algorithm: truc_pki::KeyAlgorithm,
    ) -> (Delivery, TrustRoots, tempfile::TempDir) {
        signed_delivery_of(key_algorithm, "a.pdf").await
    }

    async fn signed_delivery_of(
        key_algorithm: truc_pki::KeyAlgorithm,
        attachment_name: &str,
    ) -> (Delivery, TrustRoots, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let agencies = vec![
            ("000.00.00.G22".to_string(), "VPCP".to_string()),
            ("000.00.00.H41".to_string(), "Nghệ An".to_string()),
        ];
        let pki = truc_pki::init_dev_pki_with_key_algorithm(
            &dir.path().join("pki"),
            &agencies,
            &[],
            std::time::Duration::from_secs(3600),
            key_algorithm,
        )
        .unwrap();
        let draft = Draft {
            from: "000.00.00.G22".into(),
            to: vec!["000.00.00.H41".into()],
            number: "1".into(),
            notation: "VPCP".into(),
            date: "2024-01-02".into(),
            subject: "x".into(),
            ..Draft::default()
        };
        let credentials = pki.agency_credentials("000.00.00.G22").unwrap();
        let prepared = Prepared::new(
            &draft,
            vec![Attachment::bytes(
                attachment_name,
                "application/pdf",
                vec![1u8; 10],
            )],
            &credentials,
        )
        .await
        .unwrap();
        let delivery = Delivery {
            document_id: prepared.document_id.clone(),
            envelope: Some(prepared.envelope),
            sender_certificate: credentials.certificate_der().to_vec(),
            recipient: "000.00.00.H41".into(),
            ..Default::default()
        };
        (delivery, pki.trust_roots().unwrap(), dir)
    }

    /// A delivery signed by its sender, but with a name the hub would have
    /// refused (a hub of another build, or a compromised one), is not
    /// written into the inbox.
    #[tokio::test]
    async fn a_signed_delivery_with_a_name_against_the_rule_is_refused() {
        for name in [
            "van\nban.pdf",
            "van\tban.pdf",
            "hoadon\u{202e}fdp.exe",
            "NUL.txt",
            "vanban.pdf:evil.exe",
            "../vanban.pdf",
        ] {
            let (delivery, roots, _dir) =
                signed_delivery_of(truc_pki::KeyAlgorithm::Ed25519, name).await;
            let refused = verify_delivery(&delivery, &roots).unwrap_err();
            assert!(
                matches!(&refused, VerifyError::Header(reason) if reason.starts_with("attachments[0].name:")),
                "{name:?}: {refused}"
            );
        }
    }

    #[tokio::test]
    async fn a_genuine_delivery_verifies_and_any_tampering_is_caught() {
        for key_algorithm in [
            truc_pki::KeyAlgorithm::Ed25519,
            truc_pki::KeyAlgorithm::EcdsaP256Sha256,
        ] {
            genuine_and_tampered(key_algorithm).await;
        }
    }

    async fn genuine_and_tampered(key_algorithm: truc_pki::KeyAlgorithm) {
        let (delivery, roots, dir) = signed_delivery(key_algorithm).await;
        assert_eq!(
            verify_delivery(&delivery, &roots).unwrap().document_id,
            "000.00.00.G22,2024/01/02,1/VPCP"
        );

        let mut tampered = delivery.clone();
        let header = &mut tampered.envelope.as_mut().unwrap().header;
        let last = header.len() - 1;
        header[last] ^= 0x01;
        assert_eq!(
            verify_delivery(&tampered, &roots).unwrap_err(),
            VerifyError::Signature
        );

        // The recipient's own certificate is genuine, but not the sender's.
        let pki = truc_pki::PkiPaths::new(dir.path().join("pki"));
        let mut wrong_sender = delivery.clone();
        wrong_sender.sender_certificate = pki
            .agency_credentials("000.00.00.H41")
            .unwrap()
            .certificate_der()
            .to_vec();
        assert_eq!(
            verify_delivery(&wrong_sender, &roots).unwrap_err(),
            VerifyError::Signature
        );

        let mut renamed = delivery.clone();
        renamed.document_id = "000.00.00.G22,2024/01/02,2/VPCP".into();
        assert!(matches!(
            verify_delivery(&renamed, &roots),
            Err(VerifyError::DocumentId { .. })
        ));

        let other_ca = tempfile::tempdir().unwrap();
        let foreign = truc_pki::init_dev_pki(
            other_ca.path(),
            &[],
            &[],
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
        assert!(matches!(
            verify_delivery(&delivery, &foreign.trust_roots().unwrap()),
            Err(VerifyError::Certificate(_))
        ));
    }
}
