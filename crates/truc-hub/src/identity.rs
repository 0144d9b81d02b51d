//! Who is calling: read from the client certificate of the TLS session,
//! never from the request.

use tonic::Request;
use truc_domain::{AgencyCode, PublicKey};
use truc_pki::PeerRole;

use crate::error::HubError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    Agency {
        code: AgencyCode,
        certificate: Vec<u8>,
        /// The certificate's key (Ed25519 or ECDSA P-256), which must have signed every envelope sent on this connection.
        public_key: PublicKey,
    },
    /// Reads everything, changes nothing: the role to hand out.
    Operator { name: String },
    /// Reads like an operator, and resends and cancels dead letters.
    Administrator { name: String },
}

impl Caller {
    pub fn from_request<T>(request: &Request<T>) -> Result<Caller, HubError> {
        let unauthenticated = |reason: &str| HubError::Unauthenticated {
            field: "certificate".into(),
            reason: reason.into(),
        };
        let certificates = request
            .peer_certs()
            .ok_or_else(|| unauthenticated("no client certificate on this connection"))?;
        let leaf = certificates
            .first()
            .ok_or_else(|| unauthenticated("no client certificate on this connection"))?;
        let identity =
            truc_pki::peer_identity(leaf).map_err(|error| unauthenticated(&error.to_string()))?;
        match identity.role {
            PeerRole::Agency { code } => {
                let code: AgencyCode = code.parse().map_err(|error| {
                    unauthenticated(&format!("certificate agency code is ill-formed: {error}"))
                })?;
                let public_key = truc_pki::certificate_public_key(leaf)
                    .map_err(|error| unauthenticated(&error.to_string()))?;
                Ok(Caller::Agency {
                    code,
                    certificate: leaf.to_vec(),
                    public_key,
                })
            }
            PeerRole::Operator { name } => Ok(Caller::Operator { name }),
            PeerRole::Administrator { name } => Ok(Caller::Administrator { name }),
            PeerRole::Hub => Err(HubError::denied(
                "certificate",
                "a hub certificate may not call the axis",
            )),
        }
    }

    /// The agency code, or PERMISSION_DENIED for an operator or administrator.
    pub fn agency(&self, action: &str) -> Result<AgencyCode, HubError> {
        match self {
            Caller::Agency { code, .. } => Ok(*code),
            Caller::Operator { name } => Err(HubError::denied(
                "certificate",
                format!("operator '{name}' may read but not {action}"),
            )),
            Caller::Administrator { name } => Err(HubError::denied(
                "certificate",
                format!("administrator '{name}' is not an agency and may not {action}"),
            )),
        }
    }

    /// Operators and administrators read every agency's documents, counts
    /// and nodes; agencies read their own.
    pub fn reads_everything(&self) -> bool {
        matches!(self, Caller::Operator { .. } | Caller::Administrator { .. })
    }

    /// The name recorded for what this caller does: an agency code,
    /// `operator:<name>` or `administrator:<name>`.
    pub fn name(&self) -> String {
        match self {
            Caller::Agency { code, .. } => code.to_string(),
            Caller::Operator { name } => format!("operator:{name}"),
            Caller::Administrator { name } => format!("administrator:{name}"),
        }
    }
}
