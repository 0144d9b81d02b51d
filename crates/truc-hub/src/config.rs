//! The hub's configuration: one TOML file, every field with a default,
//! unknown keys refused, paths relative to the file, all checked before any
//! port is bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use truc_domain::Limits;

#[derive(Clone, Debug, Deserialize)]
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
    pub tls: TlsConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// sled's page cache, in MiB. Default 256.
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The CA that issues agency, operator and hub certificates (PEM).
    pub ca_cert: PathBuf,
    /// The hub's certificate (PEM).
    pub cert: PathBuf,
    /// The hub's private key (PEM, PKCS#8), kept outside the repository.
    pub key: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Most unacknowledged items on one node's stream, whatever the node asks.
    pub window_max: u32,
    /// Window used when the node asks for none.
    pub window_default: u32,
    /// Documents whose attachments total at most this many bytes travel
    /// inline in the delivery, saving the node one fetch per attachment.
    pub inline_attachment_bytes_max: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            window_max: 1024,
            window_default: 64,
            inline_attachment_bytes_max: 64 * 1024,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7443))
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data/hub")
}

fn default_cache_mib() -> u64 {
    256
}

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
    /// Reads, resolves relative paths against the file's folder, and checks
    /// everything, reporting every problem at once.
    pub fn load(path: &Path) -> Result<HubConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config: HubConfig = toml::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            message: error.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for field in [
            &mut config.data_dir,
            &mut config.directory,
            &mut config.tls.ca_cert,
            &mut config.tls.cert,
            &mut config.tls.key,
        ] {
            if field.is_relative() {
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
        if self.delivery.window_max == 0 || self.delivery.window_default == 0 {
            problems.push("delivery: window_max and window_default must be at least 1".into());
        }
        if self.limits.chunk_bytes_max == 0 || self.limits.header_bytes_max == 0 {
            problems.push("limits: chunk_bytes_max and header_bytes_max must be at least 1".into());
        }
        problems
    }
}
