//! A PostgreSQL server certificate from a development CA made with `truc-pki`, for `sslmode=verify-full`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Result;
use crate::os::ServiceUser;

/// How long the certificates live: far longer than any test or crash test.
const CERTIFICATE_VALIDITY: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// A CA and one server certificate for 127.0.0.1, `localhost` and ::1 (the
/// development PKI's server certificate), readable by the service user.
#[derive(Clone, Debug)]
pub(crate) struct ServerCertificate {
    pub(crate) ca_certificate: PathBuf,
    pub(crate) certificate: PathBuf,
    pub(crate) key: PathBuf,
}

impl ServerCertificate {
    /// Makes a fresh development CA in `pki_dir` and hands the server's
    /// certificate and key to the service user (PostgreSQL refuses a key
    /// file that others may read, or that it does not own).
    pub(crate) fn issue(pki_dir: &Path, user: &ServiceUser) -> Result<Self> {
        // ECDSA P-256, not the PKI's usual Ed25519: libpq binds SCRAM to the
        // TLS channel with a hash of the server certificate named by its
        // signature algorithm, and Ed25519 names none ("could not find
        // digest for NID UNDEF").
        let paths = truc_pki::init_dev_pki_with_key_algorithm(
            pki_dir,
            &[],
            &[],
            CERTIFICATE_VALIDITY,
            truc_pki::KeyAlgorithm::EcdsaP256Sha256,
        )?;
        let certificate = paths.hub_cert();
        let key = paths.hub_key();
        user.own(pki_dir)?;
        user.own(&certificate)?;
        user.own(&key)?;
        Ok(ServerCertificate {
            ca_certificate: paths.ca_cert(),
            certificate,
            key,
        })
    }
}
