//! Setting a hub up: what a running hub needs ([`HubSetup`], [`WatchSetup`]),
//! loaded from a config file and checked before anything listens.

use truc_domain::Limits;
use truc_pki::{Credentials, TrustRoots};
use truc_store::{Store, StoreOptions};

use crate::config::{self, HubConfig};
use crate::{
    calendar, Clock, CrlSetup, Directory, DirectoryReload, RetentionSetup, SecuritySetup,
    SetupError, WorkingCalendar,
};

/// Everything a running hub needs, already loaded and checked.
pub struct HubSetup {
    pub store: Store,
    pub directory: Directory,
    pub trust: TrustRoots,
    pub credentials: Credentials,
    pub limits: Limits,
    pub delivery: config::DeliveryConfig,
    pub watch: WatchSetup,
    /// Revocation list and per-identity connection limits.
    pub security: SecuritySetup,
}

/// Feedback deadlines, expiry, per-agency quotas, retention, and the clock
/// they read.
#[derive(Clone, Debug)]
pub struct WatchSetup {
    pub deadlines: config::DeadlinesConfig,
    pub calendar: WorkingCalendar,
    pub expiry: config::ExpiryConfig,
    pub quotas: config::QuotasConfig,
    pub retention: RetentionSetup,
    pub clock: Clock,
}

impl Default for WatchSetup {
    fn default() -> Self {
        Self {
            deadlines: config::DeadlinesConfig::default(),
            calendar: config::CalendarConfig::default()
                .calendar()
                .expect("the default calendar parses"),
            expiry: config::ExpiryConfig::default(),
            quotas: config::QuotasConfig::default(),
            retention: RetentionSetup::default(),
            clock: Clock::system(),
        }
    }
}

impl WatchSetup {
    /// The watch configuration of a config file, on the system clock.
    pub fn from_config(config: &HubConfig) -> Result<WatchSetup, calendar::CalendarError> {
        Ok(WatchSetup {
            deadlines: config.deadlines.clone(),
            calendar: config.calendar.calendar()?,
            expiry: config.expiry.clone(),
            quotas: config.quotas.clone(),
            retention: RetentionSetup::from_config(&config.retention),
            clock: Clock::system(),
        })
    }

    /// The deadlines of a delivery accepted (or resent) at `at_unix_ms`.
    pub(crate) fn accept_deadlines(
        &self,
        at_unix_ms: i64,
        due_date: Option<&str>,
    ) -> truc_store::AcceptDeadlines {
        let minutes = |m: u64| (m > 0).then(|| at_unix_ms + m as i64 * 60_000);
        truc_store::AcceptDeadlines {
            arrived_unix_ms: minutes(self.deadlines.arrived_within_minutes),
            due_date_unix_ms: due_date
                .filter(|_| self.deadlines.due_date)
                .and_then(|date| self.calendar.end_of_day(date)),
            expiry_unix_ms: minutes(self.expiry.ttl_minutes),
        }
    }

    /// The "received" deadline of a delivery that arrived at `at_unix_ms`.
    pub(crate) fn received_deadline(&self, at_unix_ms: i64) -> Option<i64> {
        let minutes = self.deadlines.received_within_working_minutes;
        (minutes > 0).then(|| self.calendar.add_working_minutes(at_unix_ms, minutes))
    }
}

/// Opens the store the config names: the embedded engine in `data_dir`, or
/// the PostgreSQL database several hubs share.
fn open_store(config: &HubConfig) -> Result<Store, SetupError> {
    let options = StoreOptions {
        cache_bytes: config.cache_mib * 1024 * 1024,
        checkpoint_interval: std::time::Duration::from_secs(config.checkpoint_seconds),
        free_bytes_min: config.free_space_mib_min * 1024 * 1024,
        ..StoreOptions::default()
    };
    match config.store.backend {
        config::StoreBackend::Embedded => {
            std::fs::create_dir_all(&config.data_dir).map_err(|source| {
                SetupError::CreateDataDir {
                    path: config.data_dir.clone(),
                    source,
                }
            })?;
            Store::open(&config.data_dir, &options).map_err(|error| match error {
                truc_store::StoreError::Locked { pid, .. } => SetupError::DataDirInUse {
                    path: config.data_dir.clone(),
                    pid,
                },
                source => SetupError::OpenDataDir {
                    path: config.data_dir.clone(),
                    source,
                },
            })
        }
        config::StoreBackend::Postgres => {
            let read = |path: &std::path::Path,
                        field: &'static str|
             -> Result<Option<Vec<u8>>, SetupError> {
                if path.as_os_str().is_empty() {
                    return Ok(None);
                }
                std::fs::read(path)
                    .map(Some)
                    .map_err(|source| SetupError::ReadStoreFile {
                        field,
                        path: path.to_owned(),
                        source,
                    })
            };
            let password = read(&config.store.password_file, "store.password_file")?.map(|bytes| {
                String::from_utf8_lossy(&bytes)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            });
            let postgres = truc_store::PostgresOptions {
                url: config.store.url.clone(),
                password,
                ca_cert_pem: read(&config.store.ca_cert, "store.ca_cert")?,
                hub_name: if config.store.hub_name.is_empty() {
                    config.listen.to_string()
                } else {
                    config.store.hub_name.clone()
                },
                reader_connections_max: config.store.connections_max as usize,
                ..truc_store::PostgresOptions::default()
            };
            Store::open_postgres(&postgres, &options)
                .map_err(|source| SetupError::OpenDatabase { source })
        }
    }
}

impl HubSetup {
    /// Loads the directory, certificates and store named by a config.
    pub fn from_config(config: &HubConfig) -> Result<HubSetup, SetupError> {
        let directory = Directory::load(&config.directory)?;
        let trust = TrustRoots::from_pem_file(&config.tls.ca_cert).map_err(|source| {
            SetupError::Certificates {
                field: "tls.ca_cert",
                source,
            }
        })?;
        let credentials =
            Credentials::load(&config.tls.cert, &config.tls.key).map_err(|source| {
                // The key's file, or a key that is not the certificate's, is `tls.key`.
                let field = match &source {
                    truc_pki::PkiError::Io { path, .. }
                    | truc_pki::PkiError::Pem { path, .. }
                    | truc_pki::PkiError::PrivateKey { path, .. }
                        if *path == config.tls.key =>
                    {
                        "tls.key"
                    }
                    truc_pki::PkiError::KeyMismatch { .. } => "tls.key",
                    _ => "tls.cert",
                };
                SetupError::Certificates { field, source }
            })?;
        let store = open_store(config)?;
        Ok(HubSetup {
            store,
            directory,
            trust,
            credentials,
            limits: config.limits.clone(),
            delivery: config.delivery.clone(),
            watch: WatchSetup::from_config(config)?,
            security: SecuritySetup {
                crl: (!config.tls.crl.as_os_str().is_empty()).then(|| CrlSetup {
                    path: config.tls.crl.clone(),
                    reload_interval: std::time::Duration::from_secs(config.tls.crl_reload_seconds),
                }),
                connections: config.connections.clone(),
                directory_reload: Some(DirectoryReload {
                    path: config.directory.clone(),
                    interval: std::time::Duration::from_secs(config.directory_reload_seconds),
                    on_sighup: true,
                }),
            },
        })
    }
}
