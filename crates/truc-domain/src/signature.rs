//! The canonical signing forms: signatures are over bytes, never over a
//! re-encoding of a structure. An agency key is Ed25519 or ECDSA P-256 with
//! SHA-256; the certificate's key says which, so a signature carries no
//! algorithm of its own. `docs/SIGNING.md` states the forms for other languages.

use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1,
    ECDSA_P256_SHA256_ASN1_SIGNING, ED25519,
};

/// Prefix that keeps an envelope signature from being valid as anything else.
pub const ENVELOPE_CONTEXT: &[u8] = b"truc.envelope.v1\n";
/// Prefix of the document-level signature (the document's own ky so).
pub const DOCUMENT_CONTEXT: &[u8] = b"truc.document.v1\n";
/// Prefix of what the hub signs at the end of an audit export (its first and
/// last entries), so the signature cannot be taken for an envelope's.
pub const AUDIT_EXPORT_CONTEXT: &[u8] = b"truc.audit.export.v1\n";
/// Prefix of what the hub signs to seal a batch of an archive file.
pub const ARCHIVE_SEAL_CONTEXT: &[u8] = b"truc.archive.seal.v1\n";

/// Length of a raw Ed25519 public key (RFC 8032).
pub const ED25519_PUBLIC_KEY_BYTES: usize = 32;
/// Length of an uncompressed P-256 point: 0x04, then x and y of 32 bytes each (SEC 1, 2.3.3).
pub const P256_PUBLIC_KEY_BYTES: usize = 65;
/// The SEC 1 tag of an uncompressed point; compressed points are not accepted.
const SEC1_UNCOMPRESSED_TAG: u8 = 0x04;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature does not verify against the sender's certified key")]
    Mismatch,
    #[error("the private key is not a usable Ed25519 or ECDSA P-256 PKCS#8 key")]
    BadKey,
    #[error("the public key is not a usable {algorithm} key: {reason}")]
    BadPublicKey {
        algorithm: KeyAlgorithm,
        reason: String,
    },
    #[error("the system random source failed while signing")]
    Random,
}

/// The signature algorithms an agency key may use. Both sign the same
/// canonical bytes; only the key and the signature encoding differ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// Ed25519 (RFC 8032): 64-byte signatures.
    #[default]
    Ed25519,
    /// ECDSA over P-256 with SHA-256 (FIPS 186-4): signatures are the ASN.1
    /// DER `Ecdsa-Sig-Value` (RFC 3279), 70 to 72 bytes, as most libraries
    /// produce them. Most agency systems and gRPC stacks hold such keys.
    EcdsaP256Sha256,
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::Ed25519 => "Ed25519",
            KeyAlgorithm::EcdsaP256Sha256 => "ECDSA P-256 SHA-256",
        })
    }
}

/// A certified public key, as read from a certificate's SubjectPublicKeyInfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    Ed25519([u8; ED25519_PUBLIC_KEY_BYTES]),
    /// The uncompressed point; [`PublicKey::ecdsa_p256`] checks its form.
    EcdsaP256([u8; P256_PUBLIC_KEY_BYTES]),
}

impl PublicKey {
    /// An Ed25519 key from its 32 raw bytes.
    pub fn ed25519(key: &[u8]) -> Result<Self, SignatureError> {
        key.try_into()
            .map(PublicKey::Ed25519)
            .map_err(|_| SignatureError::BadPublicKey {
                algorithm: KeyAlgorithm::Ed25519,
                reason: format!("{} bytes, expected {ED25519_PUBLIC_KEY_BYTES}", key.len()),
            })
    }

    /// A P-256 key from its uncompressed SEC 1 point. Whether the point is on
    /// the curve is checked when it verifies, as ring does for every use.
    pub fn ecdsa_p256(point: &[u8]) -> Result<Self, SignatureError> {
        let bad = |reason: String| SignatureError::BadPublicKey {
            algorithm: KeyAlgorithm::EcdsaP256Sha256,
            reason,
        };
        let point: [u8; P256_PUBLIC_KEY_BYTES] = point.try_into().map_err(|_| {
            bad(format!(
                "{} bytes, expected an uncompressed point of {P256_PUBLIC_KEY_BYTES}",
                point.len()
            ))
        })?;
        if point[0] != SEC1_UNCOMPRESSED_TAG {
            return Err(bad(format!(
                "point tag {:#04x}, expected {SEC1_UNCOMPRESSED_TAG:#04x} (uncompressed)",
                point[0]
            )));
        }
        Ok(PublicKey::EcdsaP256(point))
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        match self {
            PublicKey::Ed25519(_) => KeyAlgorithm::Ed25519,
            PublicKey::EcdsaP256(_) => KeyAlgorithm::EcdsaP256Sha256,
        }
    }

    /// The raw key bytes as they stand in the certificate's BIT STRING.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            PublicKey::Ed25519(key) => key,
            PublicKey::EcdsaP256(point) => point,
        }
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        let verified = match self {
            PublicKey::Ed25519(key) => {
                UnparsedPublicKey::new(&ED25519, key).verify(message, signature)
            }
            PublicKey::EcdsaP256(point) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point).verify(message, signature)
            }
        };
        verified.map_err(|_| SignatureError::Mismatch)
    }
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

enum KeyPair {
    Ed25519(Ed25519KeyPair),
    EcdsaP256(EcdsaKeyPair),
}

/// A loaded agency signing key, Ed25519 or ECDSA P-256.
pub struct SigningKey {
    key_pair: KeyPair,
    public_key: PublicKey,
}

impl SigningKey {
    /// Loads an unencrypted PKCS#8 key: Ed25519 (v1 or v2) or ECDSA P-256
    /// (v1 with its public key, as OpenSSL and most libraries write it).
    pub fn from_pkcs8(pkcs8_der: &[u8]) -> Result<Self, SignatureError> {
        if let Ok(key_pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8_der) {
            let public_key = PublicKey::ed25519(key_pair.public_key().as_ref())?;
            return Ok(SigningKey {
                key_pair: KeyPair::Ed25519(key_pair),
                public_key,
            });
        }
        let key_pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            pkcs8_der,
            &SystemRandom::new(),
        )
        .map_err(|_| SignatureError::BadKey)?;
        let public_key = PublicKey::ecdsa_p256(key_pair.public_key().as_ref())?;
        Ok(SigningKey {
            key_pair: KeyPair::EcdsaP256(key_pair),
            public_key,
        })
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.public_key.algorithm()
    }

    pub fn public_key(&self) -> PublicKey {
        self.public_key.clone()
    }

    /// Ed25519 signatures are deterministic; ECDSA ones draw a fresh nonce,
    /// so two signatures of the same header differ and both verify.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignatureError> {
        match &self.key_pair {
            KeyPair::Ed25519(key_pair) => Ok(key_pair.sign(message).as_ref().to_vec()),
            KeyPair::EcdsaP256(key_pair) => key_pair
                .sign(&SystemRandom::new(), message)
                .map(|signature| signature.as_ref().to_vec())
                .map_err(|_| SignatureError::Random),
        }
    }

    pub fn sign_envelope(&self, header_bytes: &[u8]) -> Result<Vec<u8>, SignatureError> {
        self.sign(&envelope_signing_bytes(header_bytes))
    }

    /// Signs `AUDIT_EXPORT_CONTEXT || summary` (the hub, at the end of an audit export).
    pub fn sign_audit_export(&self, summary: &[u8]) -> Result<Vec<u8>, SignatureError> {
        self.sign(&[AUDIT_EXPORT_CONTEXT, summary].concat())
    }

    /// Signs `ARCHIVE_SEAL_CONTEXT || seal` (the hub, sealing a batch of an archive).
    pub fn sign_archive_seal(&self, seal: &[u8]) -> Result<Vec<u8>, SignatureError> {
        self.sign(&[ARCHIVE_SEAL_CONTEXT, seal].concat())
    }

    pub fn sign_document(
        &self,
        document_id: &str,
        digests: &[[u8; 32]],
    ) -> Result<Vec<u8>, SignatureError> {
        self.sign(&document_signing_bytes(document_id, digests))
    }
}

impl std::fmt::Debug for SigningKey {
    // The private key never appears in logs or panic messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

pub fn verify_envelope(
    public_key: &PublicKey,
    header_bytes: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    public_key.verify(&envelope_signing_bytes(header_bytes), signature)
}

pub fn verify_audit_export(
    public_key: &PublicKey,
    summary: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    public_key.verify(&[AUDIT_EXPORT_CONTEXT, summary].concat(), signature)
}

pub fn verify_archive_seal(
    public_key: &PublicKey,
    seal: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    public_key.verify(&[ARCHIVE_SEAL_CONTEXT, seal].concat(), signature)
}

pub fn verify_document(
    public_key: &PublicKey,
    document_id: &str,
    digests: &[[u8; 32]],
    signature: &[u8],
) -> Result<(), SignatureError> {
    public_key.verify(&document_signing_bytes(document_id, digests), signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(algorithm: KeyAlgorithm) -> SigningKey {
        let rng = SystemRandom::new();
        let pkcs8 = match algorithm {
            KeyAlgorithm::Ed25519 => Ed25519KeyPair::generate_pkcs8(&rng).unwrap(),
            KeyAlgorithm::EcdsaP256Sha256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap()
            }
        };
        let key = SigningKey::from_pkcs8(pkcs8.as_ref()).unwrap();
        assert_eq!(key.algorithm(), algorithm);
        key
    }

    const ALGORITHMS: [KeyAlgorithm; 2] = [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256Sha256];

    fn any_algorithm() -> impl Strategy<Value = KeyAlgorithm> {
        prop_oneof![
            Just(KeyAlgorithm::Ed25519),
            Just(KeyAlgorithm::EcdsaP256Sha256)
        ]
    }

    #[test]
    fn envelope_and_document_signatures_do_not_cross() {
        for algorithm in ALGORITHMS {
            let key = key(algorithm);
            let envelope_sig = key.sign_envelope(b"header").unwrap();
            assert!(verify_envelope(&key.public_key(), b"header", &envelope_sig).is_ok());
            let doc_sig = key.sign_document("x", &[[7; 32]]).unwrap();
            assert!(verify_document(&key.public_key(), "x", &[[7; 32]], &doc_sig).is_ok());
            assert!(verify_envelope(&key.public_key(), b"header", &doc_sig).is_err());
            assert!(verify_document(&key.public_key(), "x", &[[8; 32]], &doc_sig).is_err());
        }
    }

    #[test]
    fn ecdsa_signatures_are_der_and_randomised() {
        let key = key(KeyAlgorithm::EcdsaP256Sha256);
        let first = key.sign_envelope(b"header").unwrap();
        let second = key.sign_envelope(b"header").unwrap();
        // SEQUENCE { INTEGER r, INTEGER s }, short-form length.
        assert_eq!(first[0], 0x30);
        assert_eq!(usize::from(first[1]), first.len() - 2);
        // At most 2 × (2 + 33) + 2: r and s may each need a leading zero byte.
        assert!(first.len() <= 72, "{first:?}");
        assert_ne!(first, second, "a fresh nonce per signature");
        assert!(verify_envelope(&key.public_key(), b"header", &second).is_ok());
        assert_eq!(key.public_key().as_bytes().len(), P256_PUBLIC_KEY_BYTES);
        assert_eq!(key.public_key().as_bytes()[0], SEC1_UNCOMPRESSED_TAG);
    }

    #[test]
    fn a_signature_of_one_algorithm_never_passes_as_the_other() {
        let ed25519 = key(KeyAlgorithm::Ed25519);
        let p256 = key(KeyAlgorithm::EcdsaP256Sha256);
        let ed25519_sig = ed25519.sign_envelope(b"header").unwrap();
        let p256_sig = p256.sign_envelope(b"header").unwrap();
        assert_eq!(
            verify_envelope(&p256.public_key(), b"header", &ed25519_sig),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_envelope(&ed25519.public_key(), b"header", &p256_sig),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_public_keys_are_refused_by_name() {
        assert!(PublicKey::ed25519(&[0; 31]).is_err());
        assert!(PublicKey::ecdsa_p256(&[0x04; 64]).is_err());
        // A compressed point (tag 0x02) of the right length is still refused.
        let mut compressed = [0u8; P256_PUBLIC_KEY_BYTES];
        compressed[0] = 0x02;
        let error = PublicKey::ecdsa_p256(&compressed).unwrap_err();
        assert!(error.to_string().contains("uncompressed"), "{error}");
        // Off the curve: well formed, but nothing verifies against it.
        let mut off_curve = [1u8; P256_PUBLIC_KEY_BYTES];
        off_curve[0] = SEC1_UNCOMPRESSED_TAG;
        let signature = key(KeyAlgorithm::EcdsaP256Sha256)
            .sign_envelope(b"h")
            .unwrap();
        assert_eq!(
            verify_envelope(
                &PublicKey::ecdsa_p256(&off_curve).unwrap(),
                b"h",
                &signature
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            SigningKey::from_pkcs8(b"not a key").unwrap_err(),
            SignatureError::BadKey
        );
    }

    proptest! {
        #[test]
        fn any_changed_byte_breaks_the_signature(algorithm in any_algorithm(),
                                                 header in proptest::collection::vec(any::<u8>(), 1..300),
                                                 flip in any::<proptest::sample::Index>(),
                                                 bit in 0u8..8) {
            let key = key(algorithm);
            let signature = key.sign_envelope(&header).unwrap();
            prop_assert!(verify_envelope(&key.public_key(), &header, &signature).is_ok());
            let mut tampered = header.clone();
            let at = flip.index(tampered.len());
            tampered[at] ^= 1 << bit;
            prop_assert!(verify_envelope(&key.public_key(), &tampered, &signature).is_err());
            let other = super::tests::key(algorithm);
            prop_assert!(verify_envelope(&other.public_key(), &header, &signature).is_err());
        }

        #[test]
        fn any_flipped_signature_bit_is_refused(algorithm in any_algorithm(),
                                                header in proptest::collection::vec(any::<u8>(), 0..300),
                                                bit in any::<proptest::sample::Index>()) {
            let key = key(algorithm);
            let mut signature = key.sign_envelope(&header).unwrap();
            let bit = bit.index(signature.len() * 8);
            signature[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_envelope(&key.public_key(), &header, &signature).is_err());
        }

        #[test]
        fn a_signature_cut_or_extended_or_a_header_extended_is_refused(
            algorithm in any_algorithm(),
            header in proptest::collection::vec(any::<u8>(), 0..300),
            cut in any::<proptest::sample::Index>(),
            extra in proptest::collection::vec(any::<u8>(), 1..8),
        ) {
            let key = key(algorithm);
            let signature = key.sign_envelope(&header).unwrap();
            let cut = cut.index(signature.len());
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
