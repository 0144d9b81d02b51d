//! Patroni's side: each member's configuration file, and the cluster's state read from its REST API.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::tls::ServerCertificate;

/// The role names Patroni is given to create at bootstrap.
pub(crate) const REPLICATION_ROLE: &str = "replicator";
pub(crate) const REWIND_ROLE: &str = "rewinder";

/// What one member's configuration says; the rest is the same for all.
pub(crate) struct MemberConfig<'a> {
    pub(crate) scope: &'a str,
    pub(crate) name: &'a str,
    pub(crate) rest_port: u16,
    pub(crate) postgres_port: u16,
    pub(crate) etcd_client_ports: &'a [u16],
    pub(crate) bin_dir: &'a Path,
    pub(crate) member_dir: &'a Path,
    pub(crate) data_dir: &'a Path,
    pub(crate) postgres_log_dir: &'a Path,
    pub(crate) socket_dir: &'a Path,
    pub(crate) superuser_password: &'a str,
    pub(crate) replication_password: &'a str,
    pub(crate) rewind_password: &'a str,
    pub(crate) ttl_seconds: u32,
    pub(crate) loop_wait_seconds: u32,
    pub(crate) retry_timeout_seconds: u32,
    pub(crate) certificate: Option<&'a ServerCertificate>,
}

/// The member's Patroni configuration. Patroni reads YAML; JSON is written
/// because it is YAML too (a flow-style document) and `serde_json` escapes
/// every value, so no path or password can break the file.
pub(crate) fn member_config(config: &MemberConfig<'_>) -> String {
    let path = |path: &Path| path.to_string_lossy().into_owned();
    let mut local_parameters = json!({
        "unix_socket_directories": path(config.socket_dir),
        // PostgreSQL's own log beside Patroni's, for the tails shown on failure.
        "logging_collector": "on",
        "log_directory": path(config.postgres_log_dir),
        "log_filename": "postgresql.log",
    });
    if let Some(certificate) = config.certificate {
        for (name, value) in crate::server::tls_settings(certificate) {
            local_parameters[name] = Value::String(value);
        }
    }
    let etcd_hosts: Vec<String> = config
        .etcd_client_ports
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect();
    let document = json!({
        "scope": config.scope,
        "name": config.name,
        "restapi": {
            "listen": format!("127.0.0.1:{}", config.rest_port),
            "connect_address": format!("127.0.0.1:{}", config.rest_port),
        },
        "etcd3": { "hosts": etcd_hosts },
        "bootstrap": {
            "dcs": {
                "ttl": config.ttl_seconds,
                "loop_wait": config.loop_wait_seconds,
                "retry_timeout": config.retry_timeout_seconds,
                "maximum_lag_on_failover": 1_048_576,
                // A commit returns only once a synchronous standby has it,
                // and with no standby commits wait rather than go unreplicated:
                // an acknowledged write survives the loss of any one machine.
                "synchronous_mode": true,
                "synchronous_mode_strict": true,
                "postgresql": {
                    // A killed primary comes back as a replica of the new one.
                    "use_pg_rewind": true,
                    "use_slots": true,
                    "parameters": {
                        "synchronous_commit": "on",
                        "fsync": "on",
                        "full_page_writes": "on",
                        // pg_rewind needs hint bits in the WAL.
                        "wal_log_hints": "on",
                        "wal_level": "replica",
                        "hot_standby": "on",
                        "max_wal_senders": 10,
                        "max_replication_slots": 10,
                        "wal_keep_size": "128MB",
                        // A standby told to follow a new primary retries its
                        // WAL receiver after this long (PostgreSQL's default is
                        // 5 s); strict synchronous mode takes no write until it has.
                        "wal_retrieve_retry_interval": "1s",
                    },
                },
            },
            "initdb": [{ "encoding": "UTF8" }, { "locale": "C.UTF-8" }, "data-checksums"],
        },
        "postgresql": {
            "listen": format!("127.0.0.1:{}", config.postgres_port),
            "connect_address": format!("127.0.0.1:{}", config.postgres_port),
            "data_dir": path(config.data_dir),
            "bin_dir": path(config.bin_dir),
            "pgpass": path(&config.member_dir.join("pgpass")),
            "authentication": {
                "superuser": { "username": crate::sql::SUPERUSER, "password": config.superuser_password },
                "replication": { "username": REPLICATION_ROLE, "password": config.replication_password },
                "rewind": { "username": REWIND_ROLE, "password": config.rewind_password },
            },
            "parameters": local_parameters,
            // Only loopback, only with a password (SCRAM).
            "pg_hba": [
                format!("host replication {REPLICATION_ROLE} 127.0.0.1/32 scram-sha-256"),
                "host all all 127.0.0.1/32 scram-sha-256",
            ],
        },
    });
    // A `Value` always serialises.
    serde_json::to_string_pretty(&document).unwrap_or_default()
}

/// `GET /cluster`: every member as the DCS sees it.
#[derive(Debug, Deserialize)]
pub(crate) struct ClusterJson {
    pub(crate) members: Vec<MemberJson>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct MemberJson {
    pub(crate) name: String,
    pub(crate) role: String,
    #[serde(default)]
    pub(crate) state: String,
    #[serde(default)]
    pub(crate) timeline: Option<u64>,
    /// Bytes behind the leader, or `"unknown"`.
    #[serde(default)]
    pub(crate) lag: Option<Value>,
}

/// `GET /patroni` on the leader: its WAL senders, one per replica.
#[derive(Debug, Deserialize)]
pub(crate) struct LeaderJson {
    #[serde(default)]
    pub(crate) replication: Vec<ReplicationJson>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ReplicationJson {
    /// The replica's member name (Patroni sets it as `application_name`).
    pub(crate) application_name: String,
    pub(crate) state: String,
    pub(crate) sync_state: String,
}

/// Paths of a member's logs, for the tails printed on failure.
pub(crate) fn member_logs(patroni_log: &Path, postgres_log_dir: &Path) -> Vec<PathBuf> {
    vec![
        patroni_log.to_owned(),
        postgres_log_dir.join("postgresql.log"),
    ]
}
