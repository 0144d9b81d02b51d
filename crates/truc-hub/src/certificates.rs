//! Certificate expiry: the hub's own certificate and its CA are checked at
//! start and then twice a day, with a warning ahead of time; a client
//! certificate the handshake refuses (expired, another CA) is logged as a
//! security event naming the certificate, since the client sees only a TLS alert.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use truc_pki::TrustRoots;

/// How often the hub's own certificates are checked again while it runs.
const CHECK_INTERVAL: Duration = Duration::from_secs(12 * 3600);

fn now_unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64)
}

/// RFC 3339 in UTC, or the raw seconds when out of range.
pub(crate) fn format_unix_seconds(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{seconds} s after 1970"))
}

/// Warns about the hub's certificate and each CA certificate that expires
/// within `warning_days`, and logs an error for one already expired.
pub(crate) fn check_own(hub_certificate: &[u8], trust: &TrustRoots, warning_days: u64) {
    let now = now_unix_seconds();
    let certificates = std::iter::once(("hub", hub_certificate))
        .chain(trust.certificates_der().map(|der| ("ca", der)));
    for (identity, der) in certificates {
        let validity = match truc_pki::certificate_validity(der) {
            Ok(validity) => validity,
            Err(error) => {
                tracing::warn!(identity, %error, "cannot read a certificate's expiry");
                continue;
            }
        };
        let not_after = validity.not_after_unix_seconds;
        let left_seconds = not_after - now;
        let expires_at = format_unix_seconds(not_after);
        if left_seconds <= 0 {
            tracing::error!(
                identity,
                subject = %validity.subject,
                %expires_at,
                "certificate expired: the {identity} certificate {} is not valid since {expires_at}; renew it (truc certs hub) and restart",
                validity.subject
            );
        } else if left_seconds < (warning_days as i64).saturating_mul(86_400) {
            tracing::warn!(
                identity,
                subject = %validity.subject,
                %expires_at,
                days_left = left_seconds / 86_400,
                "certificate expires soon: the {identity} certificate {} expires at {expires_at}",
                validity.subject
            );
        }
    }
}

/// Checks the hub's certificates every [`CHECK_INTERVAL`] until the hub stops.
pub(crate) async fn watch_own(
    hub_certificate: Vec<u8>,
    trust: TrustRoots,
    warning_days: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECK_INTERVAL) => check_own(&hub_certificate, &trust, warning_days),
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
    }
}

/// The security event of a client certificate refused during the handshake:
/// who it names, its serial, and since when it is expired if it is.
pub(crate) fn refused_client(certificate: &[u8], error: &rustls::Error) {
    let identity = truc_pki::peer_identity(certificate);
    let (name, serial, not_after) = match &identity {
        Ok(identity) => (
            identity.role.uri(),
            identity.serial_hex.clone(),
            Some(identity.not_after_unix),
        ),
        Err(_) => ("(no truc identity)".to_owned(), String::new(), None),
    };
    let subject = truc_pki::certificate_validity(certificate)
        .map(|validity| validity.subject)
        .unwrap_or_default();
    let expired_since = not_after
        .filter(|not_after| *not_after < now_unix_seconds())
        .map(format_unix_seconds);
    match expired_since {
        Some(since) => tracing::warn!(
            identity = %name,
            %subject,
            serial = %serial,
            expired_since = %since,
            %error,
            "security: client certificate refused: {name} ({subject}, serial {serial}) expired, not valid since {since}"
        ),
        None => tracing::warn!(
            identity = %name,
            %subject,
            serial = %serial,
            %error,
            "security: client certificate refused: {name} ({subject}, serial {serial}): {error}"
        ),
    }
}
