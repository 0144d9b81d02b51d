//! Where a replay's hub is: a [`Target`] (addresses and a certificate folder), the directory
//! a hub loads for a plan, and the [`EmbeddedHub`] a replay starts in this process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use truc_domain::{AgencyCode, Limits};
use truc_hub::config::DeliveryConfig;
use truc_hub::{AgencyEntry, Directory, HubSetup};
use truc_node::{AxisClient, HubAddresses};
use truc_pki::PkiPaths;
use truc_store::{Store, StoreOptions};

use super::DriverError;
use crate::plan::Plan;

/// Operator the embedded hub's PKI issues, and the default for `--operator`.
pub const DEFAULT_OPERATOR: &str = "ops";
/// Certificates of an embedded replay: long enough for the longest paced replay.
const EMBEDDED_VALIDITY: Duration = Duration::from_secs(30 * 86_400);
/// Longest wait for a stopped embedded hub to release its data directory.
const STORE_RELEASE_WAIT_MAX: Duration = Duration::from_secs(10);

/// Where the hub is (one address, or several hubs of one store, tried in
/// order) and which certificates reach it.
#[derive(Debug, Clone)]
pub struct Target {
    pub hubs: HubAddresses,
    /// A folder laid out like `truc certs init` makes it: `ca.crt`, `agencies/<code>.{crt,key}`,
    /// `operators/<name>.{crt,key}`.
    pub pki: PkiPaths,
    pub operator: String,
    /// The replay started this hub itself.
    pub embedded: bool,
}

impl Target {
    /// Checks that the folder holds credentials for every unit of the plan and the operator,
    /// naming what is missing.
    pub fn check_certificates(&self, plan: &Plan) -> Result<(), DriverError> {
        let mut missing: Vec<String> = plan
            .units
            .iter()
            .map(|unit| unit.code.to_string())
            .filter(|code| {
                !self.pki.agency_cert(code).is_file() || !self.pki.agency_key(code).is_file()
            })
            .collect();
        let operator_missing = !self.pki.operator_cert(&self.operator).is_file();
        if missing.is_empty() && !operator_missing && self.pki.ca_cert().is_file() {
            return Ok(());
        }
        let count = missing.len();
        missing.truncate(5);
        Err(DriverError::Setup(format!(
            "{} lacks credentials: {}{}{}{}. Make them with `truc replay {} --print-directory FILE` \
             then `truc certs init --dir {} --directory FILE`",
            self.pki.dir.display(),
            if self.pki.ca_cert().is_file() { "" } else { "ca.crt; " },
            if operator_missing {
                format!("operator {}; ", self.operator)
            } else {
                String::new()
            },
            if count > 0 {
                format!("{count} of {} units (", plan.units.len())
            } else {
                String::new()
            },
            if count > 0 {
                format!("{}{})", missing.join(", "), if count > 5 { ", …" } else { "" })
            } else {
                String::new()
            },
            plan.dataset,
            self.pki.dir.display(),
        )))
    }

    pub async fn operator_client(&self) -> Result<AxisClient, DriverError> {
        Ok(AxisClient::connect_hubs(
            &self.hubs,
            &self.pki.trust_roots()?,
            self.pki.operator_credentials(&self.operator)?,
        )
        .await?)
    }
}

/// One line of the directory a hub loads for a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryLine {
    pub code: AgencyCode,
    pub name: String,
    pub connection: truc_hub::ConnectionMode,
}

/// The plan's units as directory entries. Level-1 bodies connect as seed 002 lists them
/// (Phụ lục I direct, Phụ lục II via LGSP; a body in neither or both is direct unless its only
/// listing is LGSP); subordinate units reach the axis through their body's LGSP.
pub fn directory_lines(plan: &Plan) -> Result<Vec<DirectoryLine>, DriverError> {
    use truc_seeds::ConnectionMode as Seed;
    let seed_error = |error: truc_seeds::SeedError| DriverError::Setup(error.to_string());
    let mut modes = std::collections::BTreeMap::new();
    for row in truc_seeds::agencies().map_err(seed_error)? {
        if let Some(mode) = row.connection {
            modes.insert(row.code, mode);
        }
    }
    let mut listed: std::collections::BTreeMap<String, Vec<Seed>> = Default::default();
    for row in truc_seeds::connections_2019().map_err(seed_error)? {
        listed.entry(row.code).or_default().push(row.mode);
    }
    Ok(plan
        .units
        .iter()
        .map(|unit| {
            let code = unit.code.to_string();
            let mode = if unit.level > 1 {
                Seed::Lgsp
            } else if let Some(mode) = modes.get(&code) {
                *mode
            } else if listed
                .get(&code)
                .is_some_and(|modes| modes.iter().all(|m| *m == Seed::Lgsp))
            {
                Seed::Lgsp
            } else {
                Seed::Direct
            };
            DirectoryLine {
                code: unit.code,
                name: unit.name.clone(),
                connection: match mode {
                    Seed::Direct => truc_hub::ConnectionMode::Direct,
                    Seed::Lgsp => truc_hub::ConnectionMode::Lgsp,
                },
            }
        })
        .collect())
}

/// The directory TOML a hub loads (`[[agency]] code name connection`), for a replay against a
/// hub started elsewhere.
pub fn directory_toml(plan: &Plan) -> Result<String, DriverError> {
    let quote = |text: &str| {
        let mut out = String::with_capacity(text.len() + 2);
        out.push('"');
        for character in text.chars() {
            match character {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                other => out.push(other),
            }
        }
        out.push('"');
        out
    };
    let mut out = format!(
        "# The agency directory of the {} replay ({} units), written by `truc replay {} \
         --print-directory`.\n# Load it in the hub's config (`directory = \"...\"`) and issue \
         certificates for it with `truc certs init --dir DIR --directory THIS_FILE`.\n",
        plan.dataset,
        plan.units.len(),
        plan.dataset
    );
    for line in directory_lines(plan)? {
        out.push_str(&format!(
            "\n[[agency]]\ncode = {}\nname = {}\nconnection = \"{}\"\n",
            quote(&line.code.to_string()),
            quote(&line.name),
            match line.connection {
                truc_hub::ConnectionMode::Direct => "direct",
                truc_hub::ConnectionMode::Lgsp => "lgsp",
            }
        ));
    }
    Ok(out)
}

/// A hub started in this process for one replay: a development PKI for every unit and one
/// operator, the plan's units as its directory, and sled in a temporary folder (or a given
/// one, kept afterwards).
pub struct EmbeddedHub {
    /// Holds the PKI (and the data unless `data_dir` was given); removed on drop.
    _root: tempfile::TempDir,
    pub target: Target,
    pub data_dir: PathBuf,
    /// A handle on the hub's store, for its flush counts; dropped when the hub stops.
    store: Option<Store>,
    /// The hub's manual clock, when it runs retention on the plan's dates.
    pub clock: Option<truc_hub::Clock>,
    /// Where its archives go, when it runs retention.
    pub archive_dir: Option<PathBuf>,
    started: Instant,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), truc_hub::RunError>>>,
}

impl EmbeddedHub {
    pub async fn start(plan: &Plan, data_dir: Option<&Path>) -> Result<EmbeddedHub, DriverError> {
        Self::start_with(plan, data_dir, replay_watch(), truc_hub::Observe::default()).await
    }

    /// [`EmbeddedHub::start`] with the given deadlines, expiry and quotas
    /// instead of the replay's (none), to see the replay ride them out.
    pub async fn start_watched(
        plan: &Plan,
        data_dir: Option<&Path>,
        watch: truc_hub::WatchSetup,
    ) -> Result<EmbeddedHub, DriverError> {
        Self::start_with(plan, data_dir, watch, truc_hub::Observe::default()).await
    }

    /// [`EmbeddedHub::start_observed`], with retention: documents whose
    /// every delivery is final leave for archive files `retention_days`
    /// after acceptance, by a manual clock that the replay moves to each
    /// document's historical instant ([`ReplayOptions::clock`]).
    pub async fn start_retained(
        plan: &Plan,
        data_dir: Option<&Path>,
        observe: truc_hub::Observe,
        retention_days: u64,
    ) -> Result<EmbeddedHub, DriverError> {
        let first = plan.documents.first().map_or(0, |d| d.at_unix_ms);
        let clock = truc_hub::Clock::manual(first);
        let mut watch = replay_watch();
        watch.clock = clock.clone();
        watch.retention = truc_hub::RetentionSetup {
            enabled: true,
            period: Duration::from_secs(retention_days.saturating_mul(86_400)),
            // Beside the data; set for real below, once the folder is known.
            archive_dir: PathBuf::new(),
            run_interval: Duration::from_secs(1),
            ..truc_hub::RetentionSetup::default()
        };
        let mut hub = Self::start_with(plan, data_dir, watch, observe).await?;
        hub.clock = Some(clock);
        Ok(hub)
    }

    /// Documents in the archive files, and the files.
    pub fn archive_summary(&self) -> Option<(u64, usize)> {
        let files = self.store.as_ref()?.archive_files().ok()?;
        Some((files.iter().map(|f| f.documents).sum(), files.len()))
    }

    /// [`EmbeddedHub::start`], serving what `observe` asks for (the operator
    /// dashboard, metrics) beside the Axis.
    pub async fn start_observed(
        plan: &Plan,
        data_dir: Option<&Path>,
        observe: truc_hub::Observe,
    ) -> Result<EmbeddedHub, DriverError> {
        Self::start_with(plan, data_dir, replay_watch(), observe).await
    }

    async fn start_with(
        plan: &Plan,
        data_dir: Option<&Path>,
        mut watch: truc_hub::WatchSetup,
        observe: truc_hub::Observe,
    ) -> Result<EmbeddedHub, DriverError> {
        let root = tempfile::Builder::new().prefix("truc-replay-").tempdir()?;
        let data_dir = match data_dir {
            Some(path) => {
                let occupied = path.is_dir() && std::fs::read_dir(path)?.next().is_some();
                if occupied {
                    return Err(DriverError::Setup(format!(
                        "{} is not empty: a replay writes into a fresh data directory (the same \
                         documents would be refused as duplicates)",
                        path.display()
                    )));
                }
                path.to_owned()
            }
            None => root.path().join("data"),
        };
        std::fs::create_dir_all(&data_dir)?;
        let archive_dir = watch.retention.enabled.then(|| {
            let dir = data_dir.with_file_name(format!(
                "{}-archive",
                data_dir
                    .file_name()
                    .map_or("hub".into(), |n| n.to_string_lossy())
            ));
            watch.retention.archive_dir = dir.clone();
            dir
        });
        let agencies: Vec<(String, String)> = plan
            .units
            .iter()
            .map(|unit| (unit.code.to_string(), unit.name.clone()))
            .collect();
        let pki_dir = root.path().join("pki");
        // Valid since the day before the plan's first document too: with
        // retention the hub accepts each document at its historical time,
        // and its archives check the sender's certificate at that time.
        let first_unix_s = plan.documents.first().map_or(0, |d| d.at_unix_ms) / 1000 - 86_400;
        let pki = tokio::task::spawn_blocking(move || {
            truc_pki::init_dev_pki_valid_since(
                &pki_dir,
                &agencies,
                &[DEFAULT_OPERATOR.to_owned()],
                first_unix_s,
                EMBEDDED_VALIDITY,
            )
        })
        .await
        .map_err(|error| DriverError::Setup(error.to_string()))??;
        let store = Store::open(&data_dir, &StoreOptions::default())?;
        let directory =
            Directory::new(directory_lines(plan)?.into_iter().map(|line| AgencyEntry {
                code: line.code,
                name: line.name,
                connection: line.connection,
                // Every replayed unit runs a node of its own.
                relay: false,
                own_node: true,
            }));
        let setup = HubSetup {
            store: store.clone(),
            directory,
            trust: pki.trust_roots()?,
            credentials: pki.hub_credentials()?,
            limits: Limits::default(),
            delivery: DeliveryConfig::default(),
            watch,
            security: Default::default(),
        };
        // Bound before serving, so the nodes can connect as soon as this returns.
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let address = listener.local_addr()?;
        // The PKI is made for this run and thrown away with it: its expiry
        // concerns no one.
        let observe = truc_hub::Observe {
            certificate_warning_days: 0,
            ..observe
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(truc_hub::run_observed(listener, setup, observe, async {
            let _ = stopped.await;
        }));
        Ok(EmbeddedHub {
            _root: root,
            target: Target {
                hubs: HubAddresses::one(address),
                pki,
                operator: DEFAULT_OPERATOR.to_owned(),
                embedded: true,
            },
            data_dir,
            store: Some(store),
            clock: None,
            archive_dir,
            started: Instant::now(),
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Group commits so far: how many, commands written, and the mean time to make each
    /// durable (payload and journal sync). Shows whether the hub's single writer is what a
    /// replay waits on.
    pub fn flush_summary(&self) -> String {
        let Some(store) = &self.store else {
            return String::new();
        };
        let stats = store.flush_stats();
        let flushes = stats.flushes.load(Ordering::Relaxed);
        let commands = stats.commands.load(Ordering::Relaxed);
        let micros = stats.flush_micros.load(Ordering::Relaxed);
        format!(
            "hub store: {} writes in {} group commits ({:.1} writes per group, {:.2} ms to make \
             each durable, {:.0} % of the time syncing)",
            crate::report::group(commands),
            crate::report::group(flushes),
            commands as f64 / flushes.max(1) as f64,
            micros as f64 / 1000.0 / flushes.max(1) as f64,
            micros as f64 / 1e4 / self.started.elapsed().as_secs_f64().max(1e-3),
        )
    }

    /// Stops the hub and waits until it has let go of its port and store, so that the data
    /// directory can be read offline at once.
    pub async fn stop(mut self) -> Result<(), DriverError> {
        self.store = None;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .map_err(|error| DriverError::Setup(error.to_string()))?
                .map_err(|error| DriverError::Setup(error.to_string()))?;
        }
        // The store's lock goes with its last handle, which tasks of finished streams may
        // still hold for a moment after the server returns.
        let data_dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + STORE_RELEASE_WAIT_MAX;
            loop {
                match Store::open(&data_dir, &StoreOptions::default()) {
                    Ok(_) => return Ok(()),
                    Err(error) if Instant::now() >= deadline => return Err(error),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })
        .await
        .map_err(|error| DriverError::Setup(error.to_string()))??;
        Ok(())
    }
}

/// A replay compresses months into minutes on the system clock: feedback
/// deadlines and expiry would measure the replay's speed, not the agencies',
/// and every replayed unit may send as fast as the driver can.
pub fn replay_watch() -> truc_hub::WatchSetup {
    let mut watch = truc_hub::WatchSetup::default();
    watch.deadlines.arrived_within_minutes = 0;
    watch.deadlines.received_within_working_minutes = 0;
    watch.deadlines.due_date = false;
    watch.expiry.ttl_minutes = 0;
    watch.quotas.sends_in_flight_max = u32::MAX;
    watch.quotas.queued_deliveries_max = u64::MAX;
    watch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_lists_every_unit_once_and_parses_as_toml_entries() {
        let plan = crate::plan::plan_2019(1, Some((1, 100))).unwrap();
        let text = directory_toml(&plan).unwrap();
        assert_eq!(text.matches("[[agency]]").count(), plan.units.len());
        let lines = directory_lines(&plan).unwrap();
        assert!(lines
            .iter()
            .filter(|line| line.code.level() > 1)
            .all(|line| line.connection == truc_hub::ConnectionMode::Lgsp));
        assert!(lines
            .iter()
            .any(|line| line.connection == truc_hub::ConnectionMode::Direct));
    }
}
