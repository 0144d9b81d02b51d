//! The hub's configuration: one TOML file, every field with a default,
//! unknown keys refused, paths relative to the file, all checked before any
//! port is bound.
//!
//! Environment overrides: `TRUC_HUB__` followed by the key's path in
//! capitals, with a double underscore between a section and its key
//! (`TRUC_HUB__LISTEN`, `TRUC_HUB__DELIVERY__WINDOW_MAX`,
//! `TRUC_HUB__OBSERVE__METRICS_LISTEN`). A variable replaces the file's
//! value before the whole is checked, so a variable that names no key, or
//! whose value does not fit its key, is an error like a bad file.
//! [`HubConfig::to_commented_toml`] prints the result with every key, what it
//! is for, and its default; `config/hub.toml` is exactly that output.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use truc_domain::Limits;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// Address the gRPC server listens on. Default 127.0.0.1:7443.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// sled data directory. Default `data/hub` beside the config file.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The registered agencies (a TOML file of `[[agency]]` entries).
    pub directory: PathBuf,
    /// How often the directory file is read again; a changed file is in
    /// force for every call from then on. Default 5.
    #[serde(default = "default_directory_reload_seconds")]
    pub directory_reload_seconds: u64,
    /// sled's page cache, in MiB. Default 64.
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u64,
    /// Seconds between checkpoints of the journal into the tree. Default 1.
    #[serde(default = "default_checkpoint_seconds")]
    pub checkpoint_seconds: u64,
    /// New documents are refused (RESOURCE_EXHAUSTED) while the data
    /// directory's file system has less free space than this, in MiB. Default 256.
    #[serde(default = "default_free_space_mib_min")]
    pub free_space_mib_min: u64,
    pub tls: TlsConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub observe: ObserveConfig,
    #[serde(default)]
    pub deadlines: DeadlinesConfig,
    #[serde(default)]
    pub calendar: CalendarConfig,
    #[serde(default)]
    pub expiry: ExpiryConfig,
    #[serde(default)]
    pub quotas: QuotasConfig,
    #[serde(default)]
    pub connections: ConnectionsConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
}

/// Which storage engine the hub runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// The journal and sled in `data_dir`: one hub, nothing to install.
    #[default]
    Embedded,
    /// A PostgreSQL database that several hubs share (kept highly
    /// available by Patroni; see docs/DEPLOY.md).
    Postgres,
}

/// Where the hub keeps what it accepts.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// The PostgreSQL connection string (`backend = "postgres"`).
    pub url: String,
    /// A file holding the database password, so that none is written here.
    pub password_file: PathBuf,
    /// The CA of the database servers' certificates (PEM): connections use
    /// TLS and check the server's certificate and name. Empty for none.
    pub ca_cert: PathBuf,
    /// This hub's name in node leases and `truc nodes`; empty: its listen address.
    pub hub_name: String,
    /// Database connections for reads (delivery streams, queries, reports).
    pub connections_max: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Embedded,
            url: String::new(),
            password_file: PathBuf::new(),
            ca_cert: PathBuf::new(),
            hub_name: String::new(),
            connections_max: 8,
        }
    }
}

/// When documents leave the live store for signed archive files.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    pub enabled: bool,
    /// Days after acceptance (the hub's clock) before a document whose
    /// every delivery is final leaves the live store.
    pub period_days: u64,
    /// Where the archive files are written; relative to the config file.
    pub archive_dir: PathBuf,
    /// How often retention looks for documents to archive.
    pub run_interval_seconds: u64,
    /// Most documents written and removed in one durable step.
    pub documents_per_batch_max: u32,
    /// Most documents one run examines (the next run goes on from there).
    pub documents_per_run_max: u32,
    /// Most audit entries one batch takes into the archive.
    pub audit_entries_per_batch_max: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            period_days: 90,
            archive_dir: PathBuf::from("data/archive"),
            run_interval_seconds: 600,
            documents_per_batch_max: 500,
            documents_per_run_max: 200_000,
            audit_entries_per_batch_max: 20_000,
        }
    }
}

/// Bounds on what one certificate may hold open at once.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// Most TLS connections open at once under one certificate identity.
    pub per_identity_max: u32,
    /// Most concurrent gRPC calls (HTTP/2 streams) on one connection.
    pub streams_per_connection_max: u32,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self {
            per_identity_max: 8,
            streams_per_connection_max: 64,
        }
    }
}

/// Feedback deadlines the hub watches; 0 turns one off.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadlinesConfig {
    /// Minutes (wall-clock) from acceptance to "arrived" (01).
    pub arrived_within_minutes: u64,
    /// Working minutes from arrival to "received" (03) or any later status.
    pub received_within_working_minutes: u64,
    /// Watch the header's due date: completed (or otherwise final) by the
    /// end of that working day.
    pub due_date: bool,
    /// How often the watcher looks for deadlines that passed.
    pub watch_interval_seconds: u64,
}

impl Default for DeadlinesConfig {
    fn default() -> Self {
        Self {
            arrived_within_minutes: 15,
            received_within_working_minutes: 540,
            due_date: true,
            watch_interval_seconds: 30,
        }
    }
}

/// Working days and hours in local time; working-time deadlines count only these.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalendarConfig {
    /// Local time's offset from UTC (Vietnam: +420, no daylight saving).
    pub utc_offset_minutes: i64,
    pub working_days: String,
    pub working_hours: String,
    /// ISO dates, comma-separated.
    pub holidays: String,
}

impl Default for CalendarConfig {
    fn default() -> Self {
        Self {
            utc_offset_minutes: 420,
            working_days: "Mon,Tue,Wed,Thu,Fri".into(),
            working_hours: "07:30-16:30".into(),
            holidays: String::new(),
        }
    }
}

impl CalendarConfig {
    pub fn calendar(
        &self,
    ) -> Result<crate::calendar::WorkingCalendar, crate::calendar::CalendarError> {
        crate::calendar::WorkingCalendar::parse(
            self.utc_offset_minutes,
            &self.working_days,
            &self.working_hours,
            &self.holidays,
        )
    }
}

/// How long a delivery may wait unacknowledged before it is a dead letter.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpiryConfig {
    /// Minutes from acceptance (or an operator's resend); 0: never expires.
    pub ttl_minutes: u64,
}

impl Default for ExpiryConfig {
    fn default() -> Self {
        Self {
            ttl_minutes: 3 * 24 * 60,
        }
    }
}

/// Per-agency limits, so that one agency cannot starve the others.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotasConfig {
    /// Most sends one agency may have in progress at once.
    pub sends_in_flight_max: u32,
    /// Most deliveries of one sender's documents waiting unacknowledged in queues.
    pub queued_deliveries_max: u64,
    /// The wait a queued-deliveries refusal suggests (the `retry-after`
    /// metadata), in seconds; sends-in-progress refusals suggest 1 s.
    pub retry_after_seconds: u64,
}

impl Default for QuotasConfig {
    fn default() -> Self {
        Self {
            sends_in_flight_max: 16,
            queued_deliveries_max: 200_000,
            retry_after_seconds: 30,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The CA that issues agency, operator and hub certificates (PEM).
    pub ca_cert: PathBuf,
    /// The hub's certificate (PEM).
    pub cert: PathBuf,
    /// The hub's private key (PEM, PKCS#8), kept outside the repository.
    pub key: PathBuf,
    /// A certificate revocation list of the CA (PEM or DER); empty for none.
    #[serde(default)]
    pub crl: PathBuf,
    /// How often the hub looks at the CRL file and, when it changed, reloads
    /// it for new connections.
    #[serde(default = "default_crl_reload_seconds")]
    pub crl_reload_seconds: u64,
}

fn default_crl_reload_seconds() -> u64 {
    10
}

fn default_directory_reload_seconds() -> u64 {
    5
}

fn default_free_space_mib_min() -> u64 {
    256
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Most unacknowledged items on one node's stream, whatever the node asks.
    pub window_max: u32,
    /// Window used when the node asks for none.
    pub window_default: u32,
    /// Most bytes of unacknowledged messages on one node's stream: a node
    /// that stops reading costs the hub at most this much memory.
    pub window_bytes_max: u64,
    /// Documents whose attachments total at most this many bytes travel
    /// inline in the delivery, saving the node one fetch per attachment.
    pub inline_attachment_bytes_max: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            window_max: 1024,
            window_default: 64,
            window_bytes_max: 8 * 1024 * 1024,
            inline_attachment_bytes_max: 64 * 1024,
        }
    }
}

/// Operators' tooling. Health and reflection need no settings: they are
/// always served on `listen`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObserveConfig {
    /// Where to serve Prometheus metrics over plain HTTP; written `""`
    /// (the default) for none.
    #[serde(
        serialize_with = "address_or_empty",
        deserialize_with = "empty_or_address"
    )]
    pub metrics_listen: Option<SocketAddr>,
    /// Where to serve the operator dashboard over plain HTTP; a loopback
    /// address only, as the token would otherwise cross a network in clear.
    /// `""` (the default) for none.
    #[serde(
        serialize_with = "address_or_empty",
        deserialize_with = "empty_or_address"
    )]
    pub dashboard_listen: Option<SocketAddr>,
    /// The file holding the dashboard's token (`truc certs dashboard-token`
    /// makes one); required with `dashboard_listen`.
    pub dashboard_token_file: PathBuf,
    /// Days ahead of the hub's or the CA's certificate expiry to start warning.
    pub certificate_warning_days: u64,
}

impl Default for ObserveConfig {
    fn default() -> Self {
        Self {
            metrics_listen: None,
            dashboard_listen: None,
            dashboard_token_file: PathBuf::new(),
            certificate_warning_days: 30,
        }
    }
}

fn address_or_empty<S: Serializer>(
    address: &Option<SocketAddr>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match address {
        Some(address) => serializer.collect_str(address),
        None => serializer.serialize_str(""),
    }
}

fn empty_or_address<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not an address like 127.0.0.1:9464 (or \"\" for none)"
        ))
    })
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7443))
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data/hub")
}

fn default_cache_mib() -> u64 {
    16
}

fn default_checkpoint_seconds() -> u64 {
    1
}

/// Environment variables that override keys start with this.
pub const ENV_PREFIX: &str = "TRUC_HUB__";
/// Between a section and its key in a variable's name.
const ENV_SEPARATOR: &str = "__";

/// Every key, in the order `--print-config` prints it, with what it is for.
/// A test checks that this lists exactly the keys the structs above accept.
const KEYS: &[(&str, &str)] = &[
    (
        "listen",
        "Address the gRPC server listens on (mutual TLS 1.3 only).",
    ),
    (
        "data_dir",
        "sled data directory (created if missing; locked while the hub runs).",
    ),
    (
        "directory",
        "The registered agencies: a TOML file of [[agency]] entries. Only\n\
         agencies listed here may act on the axis: a certificate of the CA\n\
         for a code not listed is refused (PERMISSION_DENIED), and a unit\n\
         without a node of its own may not send, receive or move statuses.",
    ),
    (
        "directory_reload_seconds",
        "How often the directory file is read again (at least 1), and at\n\
         once on SIGHUP. A changed file is in force for every call from then\n\
         on: a code removed from it can no longer act, and its delivery\n\
         stream ends. A file that does not load leaves the one in force.",
    ),
    (
        "cache_mib",
        "sled page cache, in MiB. Recent changes are served from memory\nuntil a checkpoint writes them into the tree, so the tree's pages\nneed little cache. The hub's memory grows until the cache is full\n(about 1.3 times this); raise it for hubs that read many older records.",
    ),
    (
        "checkpoint_seconds",
        "How often changes made durable in the journal are written into the\n\
         tree (at least 1). Shorter: smaller, smoother checkpoints and a\n\
         shorter read-back after a crash; longer: more changes to one record\n\
         folded into one write.",
    ),
    (
        "free_space_mib_min",
        "Below this much free space (MiB) on the data directory's file system,\n\
         new documents are refused with RESOURCE_EXHAUSTED; reads, deliveries,\n\
         acknowledgements and status moves go on in the space left. 0: no check.",
    ),
    (
        "tls.ca_cert",
        "The CA that issues hub, agency and operator certificates (PEM).",
    ),
    ("tls.cert", "The hub's certificate (PEM)."),
    (
        "tls.key",
        "The hub's private key (PEM, PKCS#8); never committed.",
    ),
    (
        "tls.crl",
        "The CA's certificate revocation list (PEM or DER); \"\" for none.\n\
         A revoked client certificate fails the handshake.",
    ),
    (
        "tls.crl_reload_seconds",
        "How often the CRL file is checked; a changed file applies to new\n\
         connections and calls without a restart.",
    ),
    (
        "limits.header_bytes_max",
        "Largest encoded envelope header, in bytes.",
    ),
    ("limits.recipients_max", "Most recipients on one document."),
    (
        "limits.attachments_max",
        "Most attachments on one document.",
    ),
    (
        "limits.document_bytes_max",
        "Largest total of attachment bytes on one document.",
    ),
    (
        "limits.chunk_bytes_max",
        "Largest attachment chunk in one stream message, in bytes.",
    ),
    (
        "limits.subject_chars_max",
        "Longest subject, in characters.",
    ),
    (
        "limits.text_chars_max",
        "Longest short text field (names, places), in characters.",
    ),
    (
        "limits.references_max",
        "Most document ids in response_for or business_refs.",
    ),
    (
        "limits.reason_chars_max",
        "Longest status reason, in characters.",
    ),
    (
        "limits.future_days_max",
        "How many days past today (Vietnam time) a promulgation date may be.",
    ),
    (
        "limits.moves_per_call_max",
        "Most status moves in one MoveStatuses call.",
    ),
    (
        "limits.acks_per_message_max",
        "Most queue items one acknowledgement message may name (at least 256: nodes merge waiting acknowledgements up to that).",
    ),
    (
        "limits.list_rows_max",
        "Most documents one ListDocuments call returns.",
    ),
    (
        "delivery.window_max",
        "Most unacknowledged items on one node's stream, whatever the node asks.",
    ),
    (
        "delivery.window_default",
        "Window used when a node asks for none.",
    ),
    (
        "delivery.window_bytes_max",
        "Most bytes of unacknowledged messages on one node's stream: a node\n\
         that stops reading costs the hub at most this much memory (at least\n\
         one message is always sent, however large).",
    ),
    (
        "delivery.inline_attachment_bytes_max",
        "Documents whose attachments total at most this many bytes travel\n\
         inline in the delivery instead of being fetched separately.",
    ),
    (
        "observe.metrics_listen",
        "Where to serve Prometheus metrics (plain HTTP, GET /metrics);\n\
         \"\" serves none. gRPC health (grpc.health.v1.Health) and server\n\
         reflection are always on `listen`, under the same mutual TLS.",
    ),
    (
        "observe.dashboard_listen",
        "Where to serve the operator dashboard (plain HTTP, a read-only web page\n\
         with live counters, nodes, overdue deliveries and document lookup);\n\
         \"\" serves none. Loopback addresses only: reach it from elsewhere\n\
         through an SSH tunnel or a TLS proxy.",
    ),
    (
        "observe.dashboard_token_file",
        "The file holding the dashboard's secret token (`truc certs\n\
         dashboard-token` writes one, readable by its owner only); browsers\n\
         sign in with any user name and the token as password. Never committed.",
    ),
    (
        "observe.certificate_warning_days",
        "Days before the hub's or the CA's certificate expires from which the\n\
         hub warns (at start and twice a day); an expired one is logged as an error.",
    ),
    (
        "deadlines.arrived_within_minutes",
        "Minutes from acceptance by which a recipient's node must acknowledge\n\
         (status 01, arrived); 0: not watched.",
    ),
    (
        "deadlines.received_within_working_minutes",
        "Working minutes (see [calendar]) from arrival by which the recipient\n\
         must report \"received\" (03) or a later status; 0: not watched.",
    ),
    (
        "deadlines.due_date",
        "Watch the header's due date: completed (06) or otherwise final by the\n\
         end of that working day.",
    ),
    (
        "deadlines.watch_interval_seconds",
        "How often the watcher looks for deadlines that passed.",
    ),
    (
        "calendar.utc_offset_minutes",
        "Local time's offset from UTC in minutes (Vietnam: 420, no daylight saving).",
    ),
    (
        "calendar.working_days",
        "Working days, comma-separated: Mon, Tue, Wed, Thu, Fri, Sat, Sun.",
    ),
    (
        "calendar.working_hours",
        "Working hours in local time, start-end.",
    ),
    (
        "calendar.holidays",
        "Days not worked, as ISO dates, comma-separated (e.g. \"2025-09-01,2025-09-02\").",
    ),
    (
        "expiry.ttl_minutes",
        "Minutes a delivery may wait unacknowledged (from acceptance or a\n\
         resend) before it expires into a dead letter; 0: never.",
    ),
    (
        "quotas.sends_in_flight_max",
        "Most sends one agency may have in progress at once; more are\n\
         refused with RESOURCE_EXHAUSTED and a retry-after hint.",
    ),
    (
        "quotas.queued_deliveries_max",
        "Most deliveries of one sender's documents waiting unacknowledged;\n\
         a send beyond it is refused with RESOURCE_EXHAUSTED.",
    ),
    (
        "quotas.retry_after_seconds",
        "The wait suggested (`retry-after` metadata) when a sender's queued\n\
         deliveries are over quota; a refusal for sends in progress, which\n\
         end within moments, suggests 1 second.",
    ),
    (
        "connections.per_identity_max",
        "Most TLS connections one certificate identity may hold open; a\n\
         connection beyond it is closed after the handshake.",
    ),
    (
        "connections.streams_per_connection_max",
        "Most concurrent gRPC calls on one connection (HTTP/2 streams).",
    ),
    (
        "store.backend",
        "\"embedded\": the journal and sled in data_dir, one hub, nothing to\n\
         install. \"postgres\": a PostgreSQL database several hubs share, kept\n\
         highly available by Patroni (docs/DEPLOY.md); data_dir, cache_mib,\n\
         checkpoint_seconds and free_space_mib_min are then unused.",
    ),
    (
        "store.url",
        "The PostgreSQL connection string. List every member so that a\n\
         connection finds the primary after a failover, e.g.\n\
         \"postgresql://truc@db1:5432,db2:5432,db3:5432/truc?target_session_attrs=read-write\".\n\
         An acknowledgement waits for COMMIT, which the database's synchronous\n\
         standby must have flushed too.",
    ),
    (
        "store.password_file",
        "A file holding the database password (its first line); \"\" when\n\
         the password is in the URL or none is needed.",
    ),
    (
        "store.ca_cert",
        "The CA of the database servers' certificates (PEM): connections use\n\
         TLS and check each server's certificate and name. \"\" for plain\n\
         connections (loopback only).",
    ),
    (
        "store.hub_name",
        "This hub's name in node leases, `truc nodes` and the dashboard;\n\
         \"\" for its listen address. Each hub on one database needs its own.",
    ),
    (
        "store.connections_max",
        "Database connections for reads (delivery streams, queries, reports);\n\
         the writer has one more of its own, and the listener another.",
    ),
    (
        "retention.enabled",
        "Whether documents leave the live store for archive files. false:\n\
         the hub keeps everything in the live store.",
    ),
    (
        "retention.period_days",
        "A document whose every delivery is final (completed, rejected,\n\
         recall agreed, or expired and cancelled by an operator) leaves the\n\
         live store this many days after it was accepted, by the hub's clock.\n\
         Counters, reports and the duplicate check stay exact, and `truc\n\
         status` of an archived document names the archive that holds it.",
    ),
    (
        "retention.archive_dir",
        "Where the archive files are written, one per month (yyyy-mm.truca),\n\
         each batch sealed with the hub's signature and synced before its\n\
         documents leave. Closed files may be moved to other storage; the hub\n\
         needs only the one still open. Check one with `truc archive verify`.",
    ),
    (
        "retention.run_interval_seconds",
        "How often retention looks for documents to archive (and closes the\n\
         previous month's file).",
    ),
    (
        "retention.documents_per_batch_max",
        "Most documents written, synced and removed in one step; the store\n\
         takes no other write while a batch is synced.",
    ),
    (
        "retention.documents_per_run_max",
        "Most documents one run examines; the next run goes on from there.",
    ),
    (
        "retention.audit_entries_per_batch_max",
        "Most entries of the audit chain one batch takes into the archive.",
    ),
];

/// The comment above each section.
const SECTIONS: &[(&str, &str)] = &[
    (
        "tls",
        "Mutual TLS: every party's certificate comes from this CA.",
    ),
    (
        "limits",
        "What one envelope may carry; refusals name the limit.",
    ),
    ("delivery", "Delivery streams to agency nodes."),
    ("observe", "Operators' tooling."),
    ("deadlines", "Status feedback deadlines the hub watches."),
    ("calendar", "Working time, for working-time deadlines."),
    (
        "expiry",
        "Deliveries no node acknowledges in time become dead letters.",
    ),
    (
        "quotas",
        "Per-agency limits, so that one agency cannot starve the others.",
    ),
    (
        "connections",
        "Per-identity connection limits, so that one client cannot exhaust the hub.",
    ),
    ("store", "Where the hub keeps what it accepts."),
    (
        "retention",
        "Documents whose deliveries are all final leave the live store for signed archives.",
    ),
];

const HEADER: &str = "\
# truc hub configuration, as `truc hub --print-config` prints it: every key
# with what it is for and its default. Unknown keys are an error. Relative
# paths are relative to this file's folder.
#
# Every key can be overridden by an environment variable: TRUC_HUB__ and the
# key's path in capitals, with a double underscore between section and key,
# e.g. TRUC_HUB__LISTEN or TRUC_HUB__DELIVERY__WINDOW_MAX. A TRUC_HUB__
# variable that names no key is an error.
#
# Make the certificates first: `truc certs init --dir certs/dev`.
";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: invalid configuration:\n  - {}", problems.join("\n  - "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

impl HubConfig {
    /// Reads the file with the process's `TRUC_HUB__*` overrides, resolves
    /// relative paths against the file's folder, and checks everything,
    /// reporting every problem at once.
    pub fn load(path: &Path) -> Result<HubConfig, ConfigError> {
        Self::load_with_env(path, std::env::vars_os())
    }

    /// [`HubConfig::load`] with the given environment instead of the process's.
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<HubConfig, ConfigError> {
        let mut config = Self::read_with_env(path, env)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for field in [
            &mut config.data_dir,
            &mut config.directory,
            &mut config.tls.ca_cert,
            &mut config.tls.cert,
            &mut config.tls.key,
            &mut config.observe.dashboard_token_file,
            &mut config.tls.crl,
            &mut config.store.password_file,
            &mut config.store.ca_cert,
            &mut config.retention.archive_dir,
        ] {
            // An empty path means "none", not this folder.
            if field.is_relative() && !field.as_os_str().is_empty() {
                *field = base.join(&*field);
            }
        }
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            })
        }
    }

    /// The file with the overrides of `env` applied, paths as written and
    /// nothing checked beyond types and key names: what `--print-config` shows.
    pub fn read_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<HubConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let parse_error = |message: String| ConfigError::Parse {
            path: path.to_owned(),
            message,
        };
        let overrides = env_overrides(env);
        if overrides.is_empty() {
            // Straight from the text, so that errors point at a line.
            return toml::from_str(&text).map_err(|error| parse_error(error.to_string()));
        }
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|error| parse_error(error.to_string()))?;
        let problems = apply_overrides(&mut table, overrides);
        if !problems.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            });
        }
        toml::Value::Table(table).try_into().map_err(|error| {
            let message = error.to_string().trim_end().replace('\n', " ");
            parse_error(format!(
                "{message} (with the {ENV_PREFIX}* overrides applied)"
            ))
        })
    }

    /// Everything wrong with the configuration, as sentences.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, file) in [
            ("directory", &self.directory),
            ("tls.ca_cert", &self.tls.ca_cert),
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
        ] {
            if !file.is_file() {
                problems.push(format!(
                    "{name}: {} does not exist (make a development PKI with `truc certs init`)",
                    file.display()
                ));
            }
        }
        if !self.tls.crl.as_os_str().is_empty() && !self.tls.crl.is_file() {
            problems.push(format!(
                "tls.crl: {} does not exist (\"\" for no revocation list)",
                self.tls.crl.display()
            ));
        }
        if self.tls.crl_reload_seconds == 0 {
            problems.push("tls.crl_reload_seconds: must be at least 1".into());
        }
        if self.directory_reload_seconds == 0 {
            problems.push("directory_reload_seconds: must be at least 1".into());
        }
        if self.checkpoint_seconds == 0 {
            problems.push("checkpoint_seconds: must be at least 1".into());
        }
        if self.store.backend == StoreBackend::Postgres && self.store.url.trim().is_empty() {
            problems.push(
                "store.url: backend = \"postgres\" needs the database's connection string, \
                 e.g. \"postgresql://truc@db1,db2,db3/truc?target_session_attrs=read-write\""
                    .into(),
            );
        }
        for (name, file) in [
            ("store.password_file", &self.store.password_file),
            ("store.ca_cert", &self.store.ca_cert),
        ] {
            if !file.as_os_str().is_empty() && !file.is_file() {
                problems.push(format!(
                    "{name}: {} does not exist (\"\" for none)",
                    file.display()
                ));
            }
        }
        if self.store.connections_max == 0 {
            problems.push("store.connections_max: must be at least 1".into());
        }
        let retention = &self.retention;
        if retention.enabled {
            if retention.period_days == 0 {
                problems.push(
                    "retention.period_days: must be at least 1 (enabled = false keeps everything)"
                        .into(),
                );
            }
            if retention.archive_dir.as_os_str().is_empty() {
                problems.push("retention.archive_dir: required while retention is enabled".into());
            }
            if retention.run_interval_seconds == 0
                || retention.documents_per_batch_max == 0
                || retention.documents_per_run_max == 0
                || retention.audit_entries_per_batch_max == 0
            {
                problems.push(
                    "retention: run_interval_seconds, documents_per_batch_max, \
                     documents_per_run_max and audit_entries_per_batch_max must be at least 1"
                        .into(),
                );
            }
        }
        if self.connections.per_identity_max == 0
            || self.connections.streams_per_connection_max == 0
        {
            problems.push(
                "connections: per_identity_max and streams_per_connection_max must be at least 1"
                    .into(),
            );
        }
        if self.delivery.window_max == 0
            || self.delivery.window_default == 0
            || self.delivery.window_bytes_max == 0
        {
            problems.push(
                "delivery: window_max, window_default and window_bytes_max must be at least 1"
                    .into(),
            );
        }
        if self.limits.acks_per_message_max < truc_domain::MERGED_ACKS_MAX {
            problems.push(format!(
                "limits.acks_per_message_max: must be at least {}, the most a node merges into one acknowledgement",
                truc_domain::MERGED_ACKS_MAX
            ));
        }
        if self.limits.chunk_bytes_max == 0 || self.limits.header_bytes_max == 0 {
            problems.push("limits: chunk_bytes_max and header_bytes_max must be at least 1".into());
        }
        if let Err(problem) = self.calendar.calendar() {
            problems.push(problem.to_string());
        }
        if self.deadlines.watch_interval_seconds == 0 {
            problems.push("deadlines.watch_interval_seconds: must be at least 1".into());
        }
        if self.quotas.sends_in_flight_max == 0 || self.quotas.queued_deliveries_max == 0 {
            problems.push(
                "quotas: sends_in_flight_max and queued_deliveries_max must be at least 1".into(),
            );
        }
        if self
            .observe
            .metrics_listen
            .is_some_and(|metrics| metrics == self.listen)
        {
            problems.push(format!(
                "observe.metrics_listen: {} is already `listen`; give metrics a port of their own",
                self.listen
            ));
        }
        if let Some(dashboard) = self.observe.dashboard_listen {
            if !dashboard.ip().is_loopback() {
                problems.push(format!(
                    "observe.dashboard_listen: {dashboard} is not a loopback address; the dashboard is plain HTTP, so serve it on 127.0.0.1 and reach it through an SSH tunnel or a TLS proxy"
                ));
            }
            if dashboard == self.listen || Some(dashboard) == self.observe.metrics_listen {
                problems.push(format!(
                    "observe.dashboard_listen: {dashboard} is already taken by `listen` or `metrics_listen`; give the dashboard a port of its own"
                ));
            }
            let token = &self.observe.dashboard_token_file;
            if token.as_os_str().is_empty() {
                problems.push("observe.dashboard_token_file: required with dashboard_listen (make one with `truc certs dashboard-token`)".into());
            } else if let Err(problem) = crate::dashboard::DashboardToken::load(token) {
                problems.push(format!("observe.dashboard_token_file: {problem}"));
            }
        }
        problems
    }

    /// This configuration as commented TOML: every key, what it is for, its
    /// default and its environment variable.
    pub fn to_commented_toml(&self) -> String {
        let values = toml::Table::try_from(self).expect("the configuration serializes to TOML");
        let defaults = defaults();
        let mut out = String::from(HEADER);
        let mut section = "";
        for (key, doc) in KEYS {
            let (key_section, name) = key.split_once('.').unwrap_or(("", key));
            if key_section != section {
                section = key_section;
                let about = SECTIONS
                    .iter()
                    .find(|(name, _)| *name == section)
                    .map_or("", |(_, about)| about);
                out.push_str(&format!("\n# {about}\n[{section}]\n"));
            } else {
                out.push('\n');
            }
            for line in doc.lines() {
                out.push_str(&format!("# {}\n", line.trim_start()));
            }
            let default = match lookup(&defaults, key) {
                Some(value) => format!("Default: {value}."),
                None => "Required.".to_owned(),
            };
            out.push_str(&format!("# {default} Environment: {}.\n", env_name(key)));
            let value = lookup(&values, key).expect("every documented key has a value");
            out.push_str(&format!("{name} = {value}\n"));
        }
        out
    }
}

/// The value of a dotted key in a table of sections.
fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    match key.split_once('.') {
        Some((section, name)) => table.get(section)?.as_table()?.get(name),
        None => table.get(key),
    }
}

/// The defaults, read from the serde defaults themselves so that they
/// cannot drift; the required keys are left out.
fn defaults() -> toml::Table {
    let required_only = "directory = \"\"\n[tls]\nca_cert = \"\"\ncert = \"\"\nkey = \"\"\n";
    let config: HubConfig =
        toml::from_str(required_only).expect("the required keys alone make a configuration");
    let mut table = toml::Table::try_from(config).expect("the defaults serialize to TOML");
    table.remove("directory");
    if let Some(tls) = table.get_mut("tls").and_then(toml::Value::as_table_mut) {
        for required in ["ca_cert", "cert", "key"] {
            tls.remove(required);
        }
    }
    table
}

/// The variable that overrides `key`: `delivery.window_max` → `TRUC_HUB__DELIVERY__WINDOW_MAX`.
fn env_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.replace('.', ENV_SEPARATOR).to_ascii_uppercase()
    )
}

/// The `TRUC_HUB__*` variables of `env`, sorted by name so that problems
/// come out in a stable order.
fn env_overrides(env: impl IntoIterator<Item = (OsString, OsString)>) -> Vec<(String, OsString)> {
    let mut overrides: Vec<(String, OsString)> = env
        .into_iter()
        .filter_map(|(name, value)| {
            let name = name.to_string_lossy().into_owned();
            name.starts_with(ENV_PREFIX).then_some((name, value))
        })
        .collect();
    overrides.sort();
    overrides
}

/// Puts each override into `table`, typed like the key's default (text for
/// keys without one); returns what could not be applied.
fn apply_overrides(table: &mut toml::Table, overrides: Vec<(String, OsString)>) -> Vec<String> {
    let defaults = defaults();
    let mut problems = Vec::new();
    for (name, value) in overrides {
        let Some((key, _)) = KEYS.iter().find(|(key, _)| env_name(key) == name) else {
            problems.push(format!(
                "{name} names no configuration key; `truc hub --print-config` lists each key's variable"
            ));
            continue;
        };
        let Some(text) = value.to_str() else {
            problems.push(format!("{name}: the value is not UTF-8"));
            continue;
        };
        let value = match lookup(&defaults, key) {
            Some(toml::Value::Integer(_)) => match text.trim().parse::<i64>() {
                Ok(number) => toml::Value::Integer(number),
                Err(_) => {
                    problems.push(format!("{name}: {text:?} is not a whole number"));
                    continue;
                }
            },
            Some(toml::Value::Boolean(_)) => match text.trim().parse::<bool>() {
                Ok(flag) => toml::Value::Boolean(flag),
                Err(_) => {
                    problems.push(format!("{name}: {text:?} is not true or false"));
                    continue;
                }
            },
            _ => toml::Value::String(text.to_owned()),
        };
        let (section, key_name) = match key.split_once('.') {
            Some((section_name, key_name)) => {
                let section = table
                    .entry(section_name)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                match section.as_table_mut() {
                    Some(section) => (section, key_name),
                    None => {
                        problems.push(format!(
                            "{name}: the file's `{section_name}` is not a section"
                        ));
                        continue;
                    }
                }
            }
            None => (&mut *table, *key),
        };
        section.insert(key_name.to_owned(), value);
    }
    problems
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(name, value)| (name.into(), value.into()))
            .collect()
    }

    fn example_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/hub.toml")
    }

    /// A config file with the required keys, in a temporary folder.
    fn minimal(extra: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.toml");
        std::fs::write(
            &path,
            format!(
                "directory = \"agencies.toml\"\n{extra}\n[tls]\nca_cert = \"ca.crt\"\ncert = \"hub.crt\"\nkey = \"hub.key\"\n"
            ),
        )
        .unwrap();
        (dir, path)
    }

    /// Every dotted key a table holds.
    fn keys_of(table: &toml::Table) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        for (name, value) in table {
            match value.as_table() {
                Some(section) => keys.extend(section.keys().map(|key| format!("{name}.{key}"))),
                None => {
                    keys.insert(name.clone());
                }
            }
        }
        keys
    }

    #[test]
    fn the_documented_keys_are_exactly_the_accepted_ones() {
        let (_dir, path) = minimal("");
        let config = HubConfig::read_with_env(&path, env(&[])).unwrap();
        let accepted = keys_of(&toml::Table::try_from(&config).unwrap());
        let documented: BTreeSet<String> = KEYS.iter().map(|(key, _)| key.to_string()).collect();
        assert_eq!(documented, accepted);
        for (section, _) in SECTIONS {
            assert!(KEYS
                .iter()
                .any(|(key, _)| key.starts_with(&format!("{section}."))));
        }
    }

    #[test]
    fn the_example_file_is_what_print_config_prints_for_it() {
        let config = HubConfig::read_with_env(&example_path(), env(&[])).unwrap();
        let printed = config.to_commented_toml();
        let file = std::fs::read_to_string(example_path()).unwrap();
        assert_eq!(
            file, printed,
            "config/hub.toml is out of step; regenerate it with `truc hub --config config/hub.toml --print-config`"
        );
    }

    #[test]
    fn printed_configuration_reads_back_the_same() {
        let (_dir, path) = minimal("cache_mib = 7\n[observe]\nmetrics_listen = \"127.0.0.1:9464\"");
        let config = HubConfig::read_with_env(&path, env(&[])).unwrap();
        let printed = config.to_commented_toml();
        assert!(printed.contains("\ncache_mib = 7\n"), "{printed}");
        assert!(printed.contains("# Default: 16. Environment: TRUC_HUB__CACHE_MIB.\n"));
        assert!(printed.contains("# Required. Environment: TRUC_HUB__TLS__KEY.\n"));
        std::fs::write(&path, &printed).unwrap();
        let again = HubConfig::read_with_env(&path, env(&[])).unwrap();
        assert_eq!(again.to_commented_toml(), printed);
        assert_eq!(again.observe.metrics_listen, "127.0.0.1:9464".parse().ok());
    }

    #[test]
    fn environment_variables_override_keys_of_every_kind() {
        let (dir, path) = minimal("[delivery]\nwindow_max = 9");
        let config = HubConfig::read_with_env(
            &path,
            env(&[
                ("TRUC_HUB__LISTEN", "0.0.0.0:8443"),
                ("TRUC_HUB__DELIVERY__WINDOW_MAX", "17"),
                ("TRUC_HUB__LIMITS__RECIPIENTS_MAX", "5"),
                ("TRUC_HUB__OBSERVE__METRICS_LISTEN", "127.0.0.1:9999"),
                ("TRUC_HUB__TLS__KEY", "/run/secrets/hub.key"),
                ("UNRELATED", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(config.listen, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(
            config.delivery.window_max, 17,
            "the variable beats the file"
        );
        assert_eq!(
            config.delivery.window_default, 64,
            "untouched keys keep their default"
        );
        assert_eq!(config.limits.recipients_max, 5);
        assert_eq!(config.observe.metrics_listen, "127.0.0.1:9999".parse().ok());
        assert_eq!(config.tls.key, PathBuf::from("/run/secrets/hub.key"));

        // A relative path from a variable is relative to the file, like the file's own.
        let loaded = HubConfig::load_with_env(&path, env(&[("TRUC_HUB__DATA_DIR", "elsewhere")]));
        let Err(ConfigError::Invalid { problems, .. }) = loaded else {
            panic!("the certificates do not exist, so loading must fail: {loaded:?}");
        };
        assert!(
            problems[0].contains(&dir.path().display().to_string()),
            "{problems:?}"
        );

        // Below what nodes merge into one acknowledgement, merged ones would be refused.
        let loaded = HubConfig::load_with_env(
            &path,
            env(&[("TRUC_HUB__LIMITS__ACKS_PER_MESSAGE_MAX", "100")]),
        );
        let Err(ConfigError::Invalid { problems, .. }) = loaded else {
            panic!("{loaded:?}");
        };
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("limits.acks_per_message_max: must be at least 256")),
            "{problems:?}"
        );
    }

    #[test]
    fn unknown_variables_and_ill_typed_values_are_all_reported() {
        let (_dir, path) = minimal("");
        let error = HubConfig::read_with_env(
            &path,
            env(&[
                ("TRUC_HUB__LISTN", "0.0.0.0:1"),
                ("TRUC_HUB__DELIVERY__WINDOW_MAX", "many"),
                ("TRUC_HUB__TLS", "x"),
            ]),
        )
        .unwrap_err();
        let ConfigError::Invalid { problems, .. } = error else {
            panic!("expected the problems listed, got {error}");
        };
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0]
            .starts_with("TRUC_HUB__DELIVERY__WINDOW_MAX: \"many\" is not a whole number"));
        assert!(problems[1].starts_with("TRUC_HUB__LISTN names no configuration key"));
        assert!(problems[2].starts_with("TRUC_HUB__TLS names no configuration key"));

        // A value of the right kind that does not fit is refused when the whole is read.
        let error = HubConfig::read_with_env(&path, env(&[("TRUC_HUB__LISTEN", "not an address")]))
            .unwrap_err();
        assert!(matches!(error, ConfigError::Parse { .. }), "{error}");
        let error = HubConfig::read_with_env(
            &path,
            env(&[("TRUC_HUB__OBSERVE__METRICS_LISTEN", "localhost")]),
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("\"localhost\" is not an address"),
            "{error}"
        );
    }

    #[test]
    fn unknown_keys_in_the_file_are_still_refused() {
        let (_dir, path) = minimal("[observe]\nmetrics_port = 9464");
        let error = HubConfig::read_with_env(&path, env(&[])).unwrap_err();
        assert!(
            error.to_string().contains("unknown field `metrics_port`"),
            "{error}"
        );
        // Also when an override sends the text through the other path.
        let error =
            HubConfig::read_with_env(&path, env(&[("TRUC_HUB__CACHE_MIB", "1")])).unwrap_err();
        assert!(
            error.to_string().contains("unknown field `metrics_port`"),
            "{error}"
        );
    }

    #[test]
    fn retention_periods_and_limits_of_zero_are_named_unless_retention_is_off() {
        let (dir, path) = minimal(
            "[retention]\nperiod_days = 0\ndocuments_per_batch_max = 0\narchive_dir = \"\"",
        );
        let problems = HubConfig::read_with_env(&path, env(&[]))
            .unwrap()
            .problems();
        for field in [
            "retention.period_days: must be at least 1",
            "retention.archive_dir: required",
            "retention: run_interval_seconds, documents_per_batch_max",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(field)),
                "{field}: {problems:?}"
            );
        }
        let off =
            HubConfig::read_with_env(&path, env(&[("TRUC_HUB__RETENTION__ENABLED", "false")]))
                .unwrap()
                .problems();
        assert!(off.iter().all(|p| !p.starts_with("retention")), "{off:?}");
        // By default the archives are beside the hub's data (data/hub).
        let config = HubConfig::read_with_env(&minimal("").1, env(&[])).unwrap();
        assert_eq!(config.retention.archive_dir, PathBuf::from("data/archive"));
        drop(dir);
    }

    #[test]
    fn the_dashboard_needs_a_loopback_address_and_a_token() {
        let (dir, path) = minimal("[observe]\ndashboard_listen = \"0.0.0.0:8080\"");
        let config = HubConfig::read_with_env(&path, env(&[])).unwrap();
        let problems = config.problems();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("is not a loopback address")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("observe.dashboard_token_file: required")),
            "{problems:?}"
        );

        let token = dir.path().join("dashboard.token");
        crate::dashboard::DashboardToken::write_new(&token).unwrap();
        let config = HubConfig::read_with_env(
            &path,
            env(&[
                ("TRUC_HUB__OBSERVE__DASHBOARD_LISTEN", "127.0.0.1:8080"),
                (
                    "TRUC_HUB__OBSERVE__DASHBOARD_TOKEN_FILE",
                    token.to_str().unwrap(),
                ),
            ]),
        )
        .unwrap();
        assert!(
            !config.problems().iter().any(|p| p.starts_with("observe.")),
            "{:?}",
            config.problems()
        );
    }

    #[test]
    fn metrics_on_the_axis_port_is_a_problem() {
        let (_dir, path) = minimal("");
        let config = HubConfig::read_with_env(
            &path,
            env(&[("TRUC_HUB__OBSERVE__METRICS_LISTEN", "127.0.0.1:7443")]),
        )
        .unwrap();
        assert!(config
            .problems()
            .iter()
            .any(|problem| problem.starts_with("observe.metrics_listen")));
    }
}
