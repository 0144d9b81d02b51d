//! The canonical signing forms: signatures are over bytes, never over a
//! re-encoding of a structure.

use ring::signature::{Ed25519KeyPair, UnparsedPublicKey, ED25519};

/// Prefix that keeps an envelope signature from being valid as anything else.
pub const ENVELOPE_CONTEXT: &[u8] = b"truc.envelope.v1\n";
/// Prefix of the document-level signature (the document's own ky so).
pub const DOCUMENT_CONTEXT: &[u8] = b"truc.document.v1\n";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature does not verify against the sender's certified key")]
    Mismatch,
    #[error("the private key is not a usable Ed25519 PKCS#8 key")]
    BadKey,
}

/// The bytes an envelope signature covers: context, then the encoded header.
pub fn envelope_signing_bytes(header_bytes: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(ENVELOPE_CONTEXT.len() + header_bytes.len());
    message.extend_from_slice(ENVELOPE_CONTEXT);
    message.extend_from_slice(header_bytes);
    message
}

/// The bytes a document signature covers: context, the document id, a
/// newline, then every attachment's SHA-256 in header order.
pub fn document_signing_bytes(document_id: &str, attachment_digests: &[[u8; 32]]) -> Vec<u8> {
    let mut message = Vec::with_capacity(
        DOCUMENT_CONTEXT.len() + document_id.len() + 1 + 32 * attachment_digests.len(),
    );
    message.extend_from_slice(DOCUMENT_CONTEXT);
    message.extend_from_slice(document_id.as_bytes());
    message.push(b'\n');
    for digest in attachment_digests {
        message.extend_from_slice(digest);
    }
    message
}

/// A loaded Ed25519 signing key.
pub struct SigningKey(Ed25519KeyPair);

impl SigningKey {
    pub fn from_pkcs8(pkcs8_der: &[u8]) -> Result<Self, SignatureError> {
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8_der)
            .map(Self)
            .map_err(|_| SignatureError::BadKey)
    }

    pub fn sign_envelope(&self, header_bytes: &[u8]) -> Vec<u8> {
        self.0
            .sign(&envelope_signing_bytes(header_bytes))
            .as_ref()
            .to_vec()
    }

    pub fn sign_document(&self, document_id: &str, digests: &[[u8; 32]]) -> Vec<u8> {
        self.0
            .sign(&document_signing_bytes(document_id, digests))
            .as_ref()
            .to_vec()
    }

    pub fn public_key(&self) -> [u8; 32] {
        use ring::signature::KeyPair;
        let mut key = [0u8; 32];
        key.copy_from_slice(self.0.public_key().as_ref());
        key
    }
}

pub fn verify_envelope(
    public_key: &[u8; 32],
    header_bytes: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&envelope_signing_bytes(header_bytes), signature)
        .map_err(|_| SignatureError::Mismatch)
}

pub fn verify_document(
    public_key: &[u8; 32],
    document_id: &str,
    digests: &[[u8; 32]],
    signature: &[u8],
) -> Result<(), SignatureError> {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&document_signing_bytes(document_id, digests), signature)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ring::rand::SystemRandom;

    fn key() -> SigningKey {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        SigningKey::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    #[test]
    fn envelope_and_document_signatures_do_not_cross() {
        let key = key();
        let envelope_sig = key.sign_envelope(b"header");
        assert!(verify_envelope(&key.public_key(), b"header", &envelope_sig).is_ok());
        let doc_sig = key.sign_document("x", &[[7; 32]]);
        assert!(verify_document(&key.public_key(), "x", &[[7; 32]], &doc_sig).is_ok());
        assert!(verify_envelope(&key.public_key(), b"header", &doc_sig).is_err());
        assert!(verify_document(&key.public_key(), "x", &[[8; 32]], &doc_sig).is_err());
    }

    proptest! {
        #[test]
        fn any_changed_byte_breaks_the_signature(header in proptest::collection::vec(any::<u8>(), 1..300),
                                                 flip in any::<proptest::sample::Index>(),
                                                 bit in 0u8..8) {
            let key = key();
            let signature = key.sign_envelope(&header);
            prop_assert!(verify_envelope(&key.public_key(), &header, &signature).is_ok());
            let mut tampered = header.clone();
            let at = flip.index(tampered.len());
            tampered[at] ^= 1 << bit;
            prop_assert!(verify_envelope(&key.public_key(), &tampered, &signature).is_err());
            let other = super::tests::key();
            prop_assert!(verify_envelope(&other.public_key(), &header, &signature).is_err());
        }

        #[test]
        fn any_flipped_signature_bit_is_refused(header in proptest::collection::vec(any::<u8>(), 0..300),
                                                bit in 0usize..512) {
            let key = key();
            let mut signature = key.sign_envelope(&header);
            signature[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_envelope(&key.public_key(), &header, &signature).is_err());
        }

        #[test]
        fn a_signature_cut_or_extended_or_a_header_extended_is_refused(
            header in proptest::collection::vec(any::<u8>(), 0..300),
            cut in 0usize..64,
            extra in proptest::collection::vec(any::<u8>(), 1..8),
        ) {
            let key = key();
            let signature = key.sign_envelope(&header);
            prop_assert!(verify_envelope(&key.public_key(), &header, &signature[..cut]).is_err());
            let mut longer = signature.clone();
            longer.extend_from_slice(&extra);
            prop_assert!(verify_envelope(&key.public_key(), &header, &longer).is_err());
            let mut extended = header.clone();
            extended.extend_from_slice(&extra);
            prop_assert!(verify_envelope(&key.public_key(), &extended, &signature).is_err());
            // Nor does it pass as the document form over the same bytes.
            let as_document = String::from_utf8_lossy(&header);
            prop_assert!(verify_document(&key.public_key(), &as_document, &[], &signature).is_err());
        }
    }
}
