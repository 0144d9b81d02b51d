//! Where a crash test runs: its folder, the certificates, configuration and logs in it, the
//! hub and node agent processes of this executable started on them, and waiting until a hub
//! answers.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use truc_node::{AxisClient, HubAddresses};
use truc_pki::{PkiPaths, TrustRoots};

use crate::plan::{OPERATOR, RECIPIENTS, SENDERS};

/// Longest wait for the hub process to answer after a start.
const HUB_READY_WAIT_MAX: Duration = Duration::from_secs(60);

/// The folder a run keeps everything in: `--keep`'s, which must be empty, or a temporary
/// one removed at the end unless the run failed.
pub(crate) struct RunFolder {
    path: PathBuf,
    temporary: Option<tempfile::TempDir>,
}

impl RunFolder {
    pub fn create(keep: Option<&PathBuf>, prefix: &str) -> anyhow::Result<RunFolder> {
        match keep {
            Some(path) => {
                std::fs::create_dir_all(path)?;
                if std::fs::read_dir(path)?.next().is_some() {
                    bail!(
                        "{} is not empty: a crash test starts from nothing",
                        path.display()
                    );
                }
                Ok(RunFolder {
                    path: path.clone(),
                    temporary: None,
                })
            }
            None => {
                let temporary = tempfile::Builder::new().prefix(prefix).tempdir()?;
                Ok(RunFolder {
                    path: temporary.path().to_owned(),
                    temporary: Some(temporary),
                })
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the evidence of a failure: a temporary folder moves to `name` in the system's
    /// temporary folder instead of being removed (a `--keep` folder stays where it is).
    pub fn keep_failed(&self, name: &str, what: &str) {
        if self.temporary.is_none() {
            return;
        }
        let kept = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&kept);
        if std::fs::rename(&self.path, &kept).is_ok() {
            eprintln!("{what} kept in {}", kept.display());
        }
    }
}

/// One process of this binary, its output appended to log files that survive restarts.
pub(crate) struct Process {
    child: Child,
}

impl Process {
    fn spawn(args: &[&str], stdout: &Path, stderr: &Path) -> anyhow::Result<Process> {
        let append = |path: &Path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open {}", path.display()))
        };
        let child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdin(Stdio::null())
            .stdout(append(stdout)?)
            .stderr(append(stderr)?)
            .spawn()
            .context("cannot start a truc process")?;
        Ok(Process { child })
    }

    /// Sends SIGKILL without waiting for the process to end (it may be held
    /// in a file system request until the power-cut file system lets go).
    pub fn signal_kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Whether the process has ended (a hub that refused its data exits).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// One hub process of a run: where it listens and its configuration.
pub(crate) struct HubSpec {
    pub name: String,
    pub address: SocketAddr,
    pub config: PathBuf,
}

pub(crate) struct Layout {
    pub root: PathBuf,
    pub pki: PkiPaths,
    /// The first hub's address.
    pub address: SocketAddr,
    /// Every hub of the run: one on the embedded store, several on a database.
    pub hubs: Vec<HubSpec>,
    /// The hub's data directory and the folder of the nodes' inboxes.
    pub data_dir: PathBuf,
    pub inbox_root: PathBuf,
}

impl Layout {
    pub fn inbox(&self, code: &str) -> PathBuf {
        self.inbox_root.join(code)
    }

    /// Every hub's address, in order.
    pub fn hub_addresses(&self) -> HubAddresses {
        HubAddresses::new(self.hubs.iter().map(|hub| hub.address))
            .expect("a layout has at least one hub")
    }

    pub fn start_hub(&self) -> anyhow::Result<Process> {
        self.start_hub_at(0)
    }

    pub fn start_hub_at(&self, index: usize) -> anyhow::Result<Process> {
        let hub = &self.hubs[index];
        let log = if index == 0 {
            "hub".to_owned()
        } else {
            format!("hub-{index}")
        };
        Process::spawn(
            &["hub", "--config", path_str(&hub.config)?],
            &self.root.join(format!("{log}.out")),
            &self.root.join(format!("{log}.log")),
        )
    }

    pub fn start_node(&self, code: &str) -> anyhow::Result<Process> {
        let hubs = self.hub_addresses().to_string();
        let inbox = self.inbox(code);
        Process::spawn(
            &[
                "node",
                "--hub",
                &hubs,
                "--certs",
                path_str(&self.pki.dir)?,
                "--as",
                code,
                "--inbox",
                path_str(&inbox)?,
            ],
            &self.root.join(format!("node-{code}.out")),
            &self.root.join(format!("node-{code}.log")),
        )
    }
}

pub(crate) fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

/// Certificates, configuration and logs in `root`; the hub's data and the
/// inboxes in `disk` (the same folder, or a power-cut file system).
pub(crate) fn setup(root: &Path, disk: &Path) -> anyhow::Result<Layout> {
    let directory = root.join("agencies.toml");
    let mut text = String::new();
    let codes: BTreeSet<&str> = SENDERS.into_iter().chain(RECIPIENTS).collect();
    for code in codes {
        text.push_str(&format!(
            "[[agency]]\ncode = \"{code}\"\nname = \"Cơ quan {code}\"\n\n"
        ));
    }
    std::fs::write(&directory, text)?;
    let agencies: Vec<(String, String)> = SENDERS
        .into_iter()
        .chain(RECIPIENTS)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|code| (code.to_owned(), format!("Cơ quan {code}")))
        .collect();
    let pki = truc_pki::init_dev_pki(
        &root.join("certs"),
        &agencies,
        &[OPERATOR.to_owned()],
        Duration::from_secs(86_400),
    )?;
    // A port free at the moment of asking; the hub binds it again after every restart.
    let address = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let config = root.join("hub.toml");
    let data_dir = disk.join("data");
    let inbox_root = disk.join("inbox");
    std::fs::write(
        &config,
        format!(
            "listen = \"{address}\"\ndata_dir = \"{}\"\ndirectory = \"agencies.toml\"\n\
             [tls]\nca_cert = \"certs/ca.crt\"\ncert = \"certs/hub.crt\"\nkey = \"certs/hub.key\"\n\
             [observe]\nmetrics_listen = \"\"\n",
            path_str(&data_dir)?
        ),
    )?;
    for code in RECIPIENTS {
        truc_node::agent::prepare_inbox(&inbox_root.join(code))?;
    }
    Ok(Layout {
        root: root.to_owned(),
        pki,
        address,
        hubs: vec![HubSpec {
            name: "hub".into(),
            address,
            config,
        }],
        data_dir,
        inbox_root,
    })
}

/// Waits until the (first) hub process answers an operator call.
pub(crate) async fn wait_ready(layout: &Layout, roots: &TrustRoots) -> anyhow::Result<AxisClient> {
    wait_ready_at(layout, roots, 0).await
}

/// Waits until hub `index` answers an operator call.
pub(crate) async fn wait_ready_at(
    layout: &Layout,
    roots: &TrustRoots,
    index: usize,
) -> anyhow::Result<AxisClient> {
    let deadline = Instant::now() + HUB_READY_WAIT_MAX;
    let credentials = layout.pki.operator_credentials(OPERATOR)?;
    let address = layout.hubs[index].address;
    loop {
        if let Ok(client) = AxisClient::connect(address, roots, credentials.clone()).await {
            if client.counts("", "").await.is_ok() {
                return Ok(client);
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "the hub did not answer within {HUB_READY_WAIT_MAX:?} of its start; see {}",
                layout.root.join("hub.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
