//! One standalone PostgreSQL server in a temporary directory, for the store's test suite.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{ClusterError, Result};
use crate::os::{self, ServiceUser};
use crate::sql::{self, APPLICATION_ROLE, SUPERUSER};
use crate::tls::ServerCertificate;

/// How long a server may take to answer after it was started.
pub const POSTGRES_STARTUP_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);

/// How long an immediate shutdown may take before the server is SIGKILLed.
const POSTGRES_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// How a [`PostgresServer`] is started.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// Serve TLS with a certificate for 127.0.0.1 from a fresh development
    /// CA ([`PostgresServer::ca_certificate_path`]). Default: off.
    pub tls: bool,
    /// Default: [`POSTGRES_STARTUP_TIMEOUT_DEFAULT`].
    pub startup_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            tls: false,
            startup_timeout: POSTGRES_STARTUP_TIMEOUT_DEFAULT,
        }
    }
}

/// A PostgreSQL server of its own: data, socket, log and passwords in the
/// directory it was given, listening on a free port of 127.0.0.1, with
/// `fsync` and `synchronous_commit` on. It holds a role `truc` (password
/// authentication, SCRAM) owning a database `truc`; each test may create
/// databases of its own. Dropping it shuts the server down at once
/// (PostgreSQL's immediate mode) and leaves no process behind.
///
/// ```no_run
/// let dir = tempfile::tempdir()?;
/// truc_cluster::ensure_packages()?;
/// let server = truc_cluster::PostgresServer::start(dir.path())?;
/// let url = server.create_database("store_reopens")?;
/// let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct PostgresServer {
    data_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    superuser_password: String,
    application_password: String,
    certificate: Option<ServerCertificate>,
    postmaster: Option<Child>,
}

impl PostgresServer {
    /// Starts a server in `dir` with the default [`PostgresOptions`].
    pub fn start(dir: &Path) -> Result<Self> {
        Self::start_with(dir, PostgresOptions::default())
    }

    /// Starts a server in `dir` (created if missing). When this process is
    /// root, the server runs as the `postgres` user and `dir` is handed to
    /// it, so `dir`'s parents must let that user through (a
    /// `tempfile::tempdir()` under `/tmp` does).
    pub fn start_with(dir: &Path, options: PostgresOptions) -> Result<Self> {
        let bin_dir = os::postgres_bin_dir()?;
        let user = ServiceUser::for_this_process()?;
        user.create_private_dir(dir)?;
        let data_dir = dir.join("data");
        let socket_dir = dir.join("socket");
        user.create_private_dir(&socket_dir)?;
        let log_path = dir.join("postgres.log");
        let superuser_password = os::random_password()?;
        let application_password = os::random_password()?;

        // initdb reads the superuser's password from a file; it goes once
        // the cluster exists.
        let password_file = dir.join("superuser-password");
        user.write_private_file(&password_file, &superuser_password)?;
        let mut initdb = user.command(&bin_dir.join("initdb"), dir);
        initdb
            .arg("--pgdata")
            .arg(&data_dir)
            .args(["--username", SUPERUSER])
            .arg(format!("--pwfile={}", password_file.display()))
            .args(["--auth-host=scram-sha-256", "--auth-local=scram-sha-256"])
            .args(["--encoding=UTF8", "--locale=C.UTF-8"]);
        let initialised = os::run_to_end(initdb, "initdb");
        let _ = std::fs::remove_file(&password_file);
        initialised?;

        let certificate = if options.tls {
            Some(ServerCertificate::issue(&dir.join("pki"), &user)?)
        } else {
            None
        };
        let port = os::free_loopback_ports(1)?[0];
        let mut postgres = user.command(&bin_dir.join("postgres"), dir);
        postgres.arg("-D").arg(&data_dir);
        let mut settings = vec![
            ("listen_addresses", "127.0.0.1".to_owned()),
            ("port", port.to_string()),
            (
                "unix_socket_directories",
                socket_dir.to_string_lossy().into_owned(),
            ),
            // Durable commits, whatever a packaged default says.
            ("fsync", "on".to_owned()),
            ("synchronous_commit", "on".to_owned()),
            ("full_page_writes", "on".to_owned()),
        ];
        if let Some(certificate) = &certificate {
            settings.extend(tls_settings(certificate));
        }
        for (name, value) in settings {
            postgres.arg("-c").arg(format!("{name}={value}"));
        }
        let postmaster = os::spawn_logged(postgres, &log_path, "postgres")?;
        let mut server = PostgresServer {
            data_dir,
            log_path,
            port,
            superuser_password,
            application_password,
            certificate,
            postmaster: Some(postmaster),
        };
        server.wait_until_ready(options.startup_timeout)?;
        let mut superuser = server.superuser_client()?;
        sql::create_application_role(
            &mut superuser,
            &server.application_password,
            "the standalone server",
        )?;
        Ok(server)
    }

    /// The port the server listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgresql://truc:…@127.0.0.1:PORT/truc`: the role `truc` on its own database.
    pub fn url(&self) -> String {
        self.url_of(APPLICATION_ROLE)
    }

    /// Creates a database owned by `truc` and returns its URL. `name` is
    /// lower-case ASCII letters, digits and `_`, starting with a letter or
    /// `_`, at most 63 bytes (PostgreSQL's identifier length).
    pub fn create_database(&self, name: &str) -> Result<String> {
        let mut superuser = self.superuser_client()?;
        sql::create_database(&mut superuser, name, "the standalone server")?;
        Ok(self.url_of(name))
    }

    /// The superuser's URL (`postgres` on database `postgres`), for tests
    /// that must look behind the store's back.
    pub fn superuser_url(&self) -> String {
        format!(
            "postgresql://{SUPERUSER}:{}@127.0.0.1:{}/postgres",
            self.superuser_password, self.port
        )
    }

    /// The development CA's certificate (PEM) when the server serves TLS:
    /// trust it and connect to 127.0.0.1 with `sslmode=verify-full`
    /// (libpq: `sslrootcert=` this path), or with `tokio-postgres-rustls`
    /// and `sslmode=require`, since rustls always checks chain and name.
    pub fn ca_certificate_path(&self) -> Option<&Path> {
        self.certificate
            .as_ref()
            .map(|certificate| certificate.ca_certificate.as_path())
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's log (its stderr).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The postmaster's pid and those of every process it has forked now.
    pub fn process_ids(&self) -> Vec<i32> {
        let Some(postmaster) = &self.postmaster else {
            return Vec::new();
        };
        let postmaster_pid = postmaster.id() as i32;
        let mut pids = os::children_of(postmaster_pid);
        pids.push(postmaster_pid);
        pids
    }

    /// Stops the server at once (immediate shutdown, as `Drop` does) and
    /// says whether it went cleanly or had to be SIGKILLed.
    pub fn stop(mut self) -> Result<()> {
        self.shut_down()
    }

    fn url_of(&self, database: &str) -> String {
        format!(
            "postgresql://{APPLICATION_ROLE}:{}@127.0.0.1:{}/{database}",
            self.application_password, self.port
        )
    }

    fn superuser_client(&self) -> Result<postgres::Client> {
        sql::connect(
            &self.superuser_url(),
            &format!("the standalone server on port {}", self.port),
        )
    }

    fn wait_until_ready(&mut self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(postmaster) = self.postmaster.as_mut() {
                if let Ok(Some(status)) = postmaster.try_wait() {
                    return Err(ClusterError::ExitedEarly {
                        what: format!("postgres on port {}", self.port),
                        status: status.to_string(),
                        logs: os::log_tails(std::slice::from_ref(&self.log_path)),
                    });
                }
            }
            if self.superuser_client().is_ok() {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(ClusterError::Timeout {
                    what: format!("postgres on port {} to accept connections", self.port),
                    waited: started.elapsed(),
                    logs: os::log_tails(std::slice::from_ref(&self.log_path)),
                });
            }
            std::thread::sleep(os::POLL_INTERVAL);
        }
    }

    fn shut_down(&mut self) -> Result<()> {
        let Some(mut postmaster) = self.postmaster.take() else {
            return Ok(());
        };
        let pid = postmaster.id() as i32;
        if let Ok(Some(_)) = postmaster.try_wait() {
            return Ok(());
        }
        // SIGQUIT is PostgreSQL's immediate shutdown: backends quit without
        // a checkpoint, and the postmaster exits only after all of them.
        let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
        let started = Instant::now();
        while started.elapsed() < POSTGRES_SHUTDOWN_TIMEOUT {
            if let Ok(Some(_)) = postmaster.try_wait() {
                return Ok(());
            }
            std::thread::sleep(os::POLL_INTERVAL);
        }
        let killed = os::kill_process_tree(pid, "the standalone server");
        let _ = postmaster.wait();
        killed.map(|_| ())
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", os::log_tails(std::slice::from_ref(&self.log_path)));
        }
        let _ = self.shut_down();
    }
}

/// The settings that make a server serve TLS with `certificate`.
pub(crate) fn tls_settings(certificate: &ServerCertificate) -> Vec<(&'static str, String)> {
    vec![
        ("ssl", "on".to_owned()),
        (
            "ssl_cert_file",
            certificate.certificate.to_string_lossy().into_owned(),
        ),
        (
            "ssl_key_file",
            certificate.key.to_string_lossy().into_owned(),
        ),
    ]
}
