//! The hub under test, in its own process: either started here (`truc hub
//! --config …` from the given executable, with a fresh development PKI, a
//! directory of the bench agencies and sled in a temporary folder) or one
//! already running, reached with a certificate folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use truc_node::{AxisClient, HubAddresses};
use truc_pki::PkiPaths;

use crate::error::BenchError;

/// The operator certificate a spawned hub's PKI has, and the default name to
/// look for in a given certificate folder.
pub const DEFAULT_OPERATOR: &str = "ops";
/// Certificates of a spawned hub: longer than any run.
const CERTIFICATE_VALIDITY: Duration = Duration::from_secs(7 * 86_400);
/// Longest wait for a spawned hub to answer.
const READY_WAIT_MAX: Duration = Duration::from_secs(30);
/// Longest wait for the operator's connection (TCP and TLS handshake).
const OPERATOR_CONNECT_MAX: Duration = Duration::from_secs(30);
/// Lines of the hub's log shown when it fails to start.
const LOG_TAIL_LINES: usize = 20;

/// Where the hub is and what the bench may observe of it.
#[derive(Clone, Debug)]
pub struct HubTarget {
    /// The hub, or several hubs of one store tried in order.
    pub hubs: HubAddresses,
    /// Laid out as `truc certs init` makes it.
    pub pki: PkiPaths,
    pub operator: String,
    /// The hub's process, for its peak memory.
    pub pid: Option<u32>,
    /// The hub's data directory, for its bytes on disk.
    pub data_dir: Option<PathBuf>,
    /// True when this bench started the hub (a fresh, empty store).
    pub spawned: bool,
    /// What the hub's acknowledgements mean; `None`: the embedded store's.
    pub durability: Option<String>,
}

impl HubTarget {
    pub async fn operator_client(&self) -> Result<AxisClient, BenchError> {
        let roots = self.pki.trust_roots()?;
        let connecting = AxisClient::connect_hubs(
            &self.hubs,
            &roots,
            self.pki.operator_credentials(&self.operator)?,
        );
        tokio::time::timeout(OPERATOR_CONNECT_MAX, connecting)
            .await
            .map_err(|_| {
                BenchError::Setup(format!(
                    "the hub at {} did not accept a connection within {} s",
                    self.hubs,
                    OPERATOR_CONNECT_MAX.as_secs()
                ))
            })?
            .map_err(BenchError::from)
    }

    /// Names what the certificate folder lacks for `codes` and the operator.
    pub fn check_certificates<'a>(
        &self,
        codes: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), BenchError> {
        let mut missing: Vec<String> = codes
            .into_iter()
            .filter(|code| {
                !self.pki.agency_cert(code).is_file() || !self.pki.agency_key(code).is_file()
            })
            .map(str::to_owned)
            .collect();
        if !self.pki.operator_cert(&self.operator).is_file() {
            missing.push(format!("operator {}", self.operator));
        }
        if !self.pki.ca_cert().is_file() {
            missing.push("ca.crt".to_owned());
        }
        if missing.is_empty() {
            return Ok(());
        }
        let count = missing.len();
        missing.truncate(4);
        Err(BenchError::Setup(format!(
            "{} lacks {count} credentials ({}{}). Make the bench's directory with \
             `truc bench --print-directory > bench-agencies.toml`, load it in the hub's config, \
             and issue certificates with `truc certs init --dir DIR --directory bench-agencies.toml`",
            self.pki.dir.display(),
            missing.join(", "),
            if count > 4 { ", …" } else { "" },
        )))
    }
}

/// What a spawned hub runs with beyond the defaults (the year-in-an-hour
/// run: retention, a fast clock, metrics).
#[derive(Clone, Debug)]
pub struct HubExtras {
    /// Top-level settings (`cache_mib = 16`), one per line, before the first section.
    pub settings: Vec<String>,
    /// Appended to the hub's config file (whole sections).
    pub config: String,
    /// Appended to `truc hub --config …`.
    pub args: Vec<String>,
    /// How long the PKI's certificates are valid.
    pub certificate_validity: Duration,
}

impl Default for HubExtras {
    fn default() -> Self {
        HubExtras {
            settings: Vec::new(),
            config: String::new(),
            args: Vec::new(),
            certificate_validity: CERTIFICATE_VALIDITY,
        }
    }
}

/// A hub process this bench started; killed when dropped.
pub struct SpawnedHub {
    child: Child,
    pub target: HubTarget,
    pub log_path: PathBuf,
    /// Holds the PKI, config and data unless the caller chose a folder to keep.
    _temporary: Option<tempfile::TempDir>,
}

/// Where spawned hubs keep what they accept.
#[derive(Clone, Debug)]
pub enum SpawnStore {
    /// The embedded store in the hub's own data directory.
    Embedded,
    /// A PostgreSQL database the hubs share (a URL that reaches the
    /// primary, and the CA of its servers' certificates, if TLS).
    Postgres {
        url: String,
        ca_cert: Option<PathBuf>,
    },
}

/// The PKI, directory and folders of spawned hubs.
struct Prepared {
    temporary: Option<tempfile::TempDir>,
    root: PathBuf,
    pki: PkiPaths,
}

async fn prepare(
    agencies: &[crate::Agency],
    keep: Option<&Path>,
    validity: Duration,
) -> Result<Prepared, BenchError> {
    let (temporary, root) = match keep {
        Some(path) => {
            if path.exists() && std::fs::read_dir(path)?.next().is_some() {
                return Err(BenchError::Usage(format!(
                    "{} is not empty: the bench starts its hub on a fresh folder",
                    path.display()
                )));
            }
            std::fs::create_dir_all(path)?;
            (None, path.to_owned())
        }
        None => {
            let dir = tempfile::Builder::new().prefix("truc-bench-").tempdir()?;
            let root = dir.path().to_owned();
            (Some(dir), root)
        }
    };
    let pairs: Vec<(String, String)> = agencies
        .iter()
        .map(|a| (a.code.clone(), a.name.clone()))
        .collect();
    let pki_dir = root.join("pki");
    let pki = tokio::task::spawn_blocking(move || {
        truc_pki::init_dev_pki(&pki_dir, &pairs, &[DEFAULT_OPERATOR.to_owned()], validity)
    })
    .await
    .map_err(|error| BenchError::Setup(error.to_string()))??;
    let mut directory = String::new();
    for agency in agencies {
        directory.push_str(&format!(
            "[[agency]]\ncode = \"{}\"\nname = \"{}\"\n\n",
            agency.code, agency.name
        ));
    }
    std::fs::write(root.join("agencies.toml"), directory)?;
    Ok(Prepared {
        temporary,
        root,
        pki,
    })
}

/// Several hub processes of one store, killed when dropped.
pub struct SpawnedHubs {
    pub hubs: Vec<SpawnedHub>,
    /// Every hub's address, for clients that spread over them.
    pub target: HubTarget,
    _temporary: Option<tempfile::TempDir>,
}

impl SpawnedHubs {
    /// Starts `count` hubs on one PostgreSQL database, each with its own
    /// name and port, sharing a development PKI and directory.
    pub async fn start_on_postgres(
        program: &Path,
        agencies: &[crate::Agency],
        keep: Option<&Path>,
        count: usize,
        store: &SpawnStore,
    ) -> Result<SpawnedHubs, BenchError> {
        let prepared = prepare(agencies, keep, CERTIFICATE_VALIDITY).await?;
        let mut hubs = Vec::with_capacity(count);
        for index in 0..count {
            hubs.push(
                SpawnedHub::launch(
                    program,
                    &prepared.root,
                    &prepared.pki,
                    index,
                    store,
                    &HubExtras::default(),
                )
                .await?,
            );
        }
        let target = HubTarget {
            hubs: HubAddresses::new(hubs.iter().map(|hub| hub.target.hubs.first()))
                .map_err(|error| BenchError::Setup(error.to_string()))?,
            ..hubs[0].target.clone()
        };
        Ok(SpawnedHubs {
            hubs,
            target,
            _temporary: prepared.temporary,
        })
    }
}

impl SpawnedHub {
    /// Makes a PKI for `agencies` and the operator, writes the directory and
    /// config, starts `program hub --config …` and waits until it answers.
    pub async fn start(
        program: &Path,
        agencies: &[crate::Agency],
        keep: Option<&Path>,
    ) -> Result<SpawnedHub, BenchError> {
        Self::start_with(program, agencies, keep, &HubExtras::default()).await
    }

    /// [`SpawnedHub::start`], with `extras`.
    pub async fn start_with(
        program: &Path,
        agencies: &[crate::Agency],
        keep: Option<&Path>,
        extras: &HubExtras,
    ) -> Result<SpawnedHub, BenchError> {
        let prepared = prepare(agencies, keep, extras.certificate_validity).await?;
        let mut hub = SpawnedHub::launch(
            program,
            &prepared.root,
            &prepared.pki,
            0,
            &SpawnStore::Embedded,
            extras,
        )
        .await?;
        hub._temporary = prepared.temporary;
        Ok(hub)
    }

    /// Starts hub number `index` of a prepared folder on `store`.
    async fn launch(
        program: &Path,
        root: &Path,
        pki: &PkiPaths,
        index: usize,
        store: &SpawnStore,
        extras: &HubExtras,
    ) -> Result<SpawnedHub, BenchError> {
        let address = free_loopback_address()?;
        let data_dir = root.join(if index == 0 {
            "data".to_owned()
        } else {
            format!("data-{index}")
        });
        // Every other setting keeps the hub's defaults: the bench measures the
        // hub as shipped.
        let store_section = match store {
            SpawnStore::Embedded => String::new(),
            SpawnStore::Postgres { url, ca_cert } => format!(
                "\n[store]\nbackend = \"postgres\"\nurl = \"{url}\"\nhub_name = \"hub-{index}\"\nca_cert = \"{}\"\n",
                ca_cert
                    .as_deref()
                    .map(|path| path.display().to_string())
                    .unwrap_or_default()
            ),
        };
        let config = root.join(if index == 0 {
            "hub.toml".to_owned()
        } else {
            format!("hub-{index}.toml")
        });
        std::fs::write(
            &config,
            format!(
                "listen = \"{address}\"\ndata_dir = \"{}\"\ndirectory = \"agencies.toml\"\n{}\n\
                 [tls]\nca_cert = \"pki/ca.crt\"\ncert = \"pki/hub.crt\"\nkey = \"pki/hub.key\"\n{store_section}{}",
                data_dir.display(),
                extras
                    .settings
                    .iter()
                    .map(|line| format!("{line}\n"))
                    .collect::<String>(),
                extras.config
            ),
        )?;
        let log_path = root.join(if index == 0 {
            "hub.log".to_owned()
        } else {
            format!("hub-{index}.log")
        });
        let log = std::fs::File::create(&log_path)?;
        let child = spawn_hub(program, &config, &extras.args, log)?;
        let pid = child.id();
        let mut hub = SpawnedHub {
            child,
            target: HubTarget {
                hubs: HubAddresses::one(address),
                pki: pki.clone(),
                operator: DEFAULT_OPERATOR.to_owned(),
                pid: Some(pid),
                data_dir: matches!(store, SpawnStore::Embedded).then_some(data_dir),
                spawned: true,
                durability: matches!(store, SpawnStore::Postgres { .. })
                    .then(|| crate::report::CLUSTER_DURABILITY.to_owned()),
            },
            log_path,
            _temporary: None,
        };
        hub.wait_until_ready().await?;
        Ok(hub)
    }

    /// The hub is another process: readiness can only be seen from outside,
    /// by connecting until an operator call is answered.
    async fn wait_until_ready(&mut self) -> Result<(), BenchError> {
        let deadline = Instant::now() + READY_WAIT_MAX;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(BenchError::Setup(format!(
                    "the hub exited at start ({status}); its log {} ends with:\n{}",
                    self.log_path.display(),
                    log_tail(&self.log_path)
                )));
            }
            if let Ok(client) = self.target.operator_client().await {
                if client.counts("", "").await.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(BenchError::Setup(format!(
                    "the hub did not answer on {} within {} s; see {}",
                    self.target.hubs,
                    READY_WAIT_MAX.as_secs(),
                    self.log_path.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the hub (SIGKILL: every acknowledged write is already on disk)
    /// and waits for the process to end.
    pub fn stop(mut self) {
        self.kill();
    }

    /// Stops the process and keeps its folder until dropped.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SpawnedHub {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nobody listens on now. Another process could take it
/// before the hub binds it; the hub then fails to start and says so.
pub(crate) fn free_loopback_address() -> Result<SocketAddr, BenchError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// Starts `program hub --config <config>` with `args`, its output to `log`.
pub(crate) fn spawn_hub(
    program: &Path,
    config: &Path,
    args: &[String],
    log: std::fs::File,
) -> Result<Child, BenchError> {
    Command::new(program)
        .arg("hub")
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .map_err(|error| BenchError::Setup(format!("cannot start {}: {error}", program.display())))
}
