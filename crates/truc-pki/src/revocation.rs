//! The certificates a set of revocation lists names, for checking a
//! certificate already accepted by a handshake that came before the list.

use std::collections::HashSet;

use rustls::pki_types::CertificateRevocationListDer;

use crate::identity::parse_certificate;
use crate::PkiError;

/// (issuer name as DER, serial number bytes) of every revoked certificate.
#[derive(Clone, Debug, Default)]
pub struct RevokedCertificates {
    entries: HashSet<(Vec<u8>, Vec<u8>)>,
}

impl RevokedCertificates {
    /// Reads the revoked entries of each list. The lists' signatures are
    /// checked by the TLS verifier on each handshake, not here: this set only
    /// ever refuses more, and it comes from the hub's own configuration.
    pub fn from_crls(crls: &[CertificateRevocationListDer<'_>]) -> Result<Self, PkiError> {
        let mut entries = HashSet::new();
        for (index, crl) in crls.iter().enumerate() {
            let (_, list) =
                <x509_parser::revocation_list::CertificateRevocationList as x509_parser::prelude::FromDer<_>>::from_der(crl)
                    .map_err(|error| PkiError::CertificateParse {
                        reason: format!("revocation list #{}: {error}", index + 1),
                    })?;
            let issuer = list.issuer().as_raw().to_vec();
            for revoked in list.iter_revoked_certificates() {
                entries.insert((issuer.clone(), revoked.raw_serial().to_vec()));
            }
        }
        Ok(Self { entries })
    }

    /// How many certificates the lists revoke.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `cert_der` (issuer and serial) is on one of the lists.
    pub fn contains(&self, cert_der: &[u8]) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        parse_certificate(cert_der).is_ok_and(|certificate| {
            self.entries.contains(&(
                certificate.issuer().as_raw().to_vec(),
                certificate.raw_serial().to_vec(),
            ))
        })
    }
}
