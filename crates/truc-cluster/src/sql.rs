//! The few SQL statements this crate runs: the application's role and databases, and a probe write.

use std::time::Duration;

use crate::error::{ClusterError, Result};

/// The superuser every server is made with.
pub(crate) const SUPERUSER: &str = "postgres";
/// The role the hub's store connects as, and the name of its database.
pub const APPLICATION_ROLE: &str = "truc";

/// PostgreSQL's identifier length in bytes (NAMEDATALEN − 1).
const IDENTIFIER_BYTES_MAX: usize = 63;

/// How long this crate's own connections may take to open: a server on
/// loopback answers at once or not at all.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens a connection from a URL, with [`CONNECT_TIMEOUT`].
pub(crate) fn connect(url: &str, what: &str) -> Result<postgres::Client> {
    let sql_error = |source| ClusterError::Sql {
        what: what.to_owned(),
        source,
    };
    let mut config: postgres::Config = url.parse().map_err(sql_error)?;
    config.connect_timeout(CONNECT_TIMEOUT);
    config.connect(postgres::NoTls).map_err(sql_error)
}

/// Creates the role `truc` with `password` (stored as SCRAM, PostgreSQL's
/// default) and its database `truc`; `pg_monitor` lets it read the
/// replication state the hubs report, as docs/DEPLOY.md sets it up.
pub(crate) fn create_application_role(
    superuser: &mut postgres::Client,
    password: &str,
    what: &str,
) -> Result<()> {
    check_identifier("password", password)?;
    superuser
        .batch_execute(&format!(
            "CREATE ROLE {APPLICATION_ROLE} LOGIN PASSWORD '{password}';
             GRANT pg_monitor TO {APPLICATION_ROLE}"
        ))
        .map_err(|source| ClusterError::Sql {
            what: what.to_owned(),
            source,
        })?;
    create_database(superuser, APPLICATION_ROLE, what)
}

/// Creates a database owned by `truc`.
pub(crate) fn create_database(
    superuser: &mut postgres::Client,
    name: &str,
    what: &str,
) -> Result<()> {
    check_identifier("database name", name)?;
    superuser
        .batch_execute(&format!(
            "CREATE DATABASE \"{name}\" OWNER {APPLICATION_ROLE}"
        ))
        .map_err(|source| ClusterError::Sql {
            what: what.to_owned(),
            source,
        })
}

/// Names and passwords are pasted into SQL, so they are limited to what
/// never needs quoting: lower-case ASCII letters, digits and `_`, not
/// starting with a digit.
fn check_identifier(field: &'static str, value: &str) -> Result<()> {
    let reason = if value.is_empty() {
        Some("it is empty".to_owned())
    } else if value.len() > IDENTIFIER_BYTES_MAX {
        Some(format!(
            "it is {} bytes, more than PostgreSQL's {IDENTIFIER_BYTES_MAX}",
            value.len()
        ))
    } else if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        Some(format!(
            "{bad:?} is not a lower-case ASCII letter, a digit or '_'"
        ))
    } else if value.starts_with(|c: char| c.is_ascii_digit()) && field != "password" {
        Some("it starts with a digit".to_owned())
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ClusterError::InvalidArgument { field, reason }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::check_identifier;

    #[test]
    fn identifiers_that_would_need_quoting_are_refused_with_the_field_named() {
        for (value, accepted) in [
            ("store_reopens", true),
            ("_x9", true),
            ("", false),
            ("9lives", false),
            ("Upper", false),
            ("a\"; DROP DATABASE truc; --", false),
            ("tên", false),
            (&"a".repeat(64), false),
        ] {
            let result = check_identifier("database name", value);
            assert_eq!(result.is_ok(), accepted, "{value:?}: {result:?}");
            if let Err(error) = result {
                assert!(error.to_string().starts_with("database name: "), "{error}");
            }
        }
    }
}
