//! The PostgreSQL engine, for several hubs on one database kept highly
//! available by Patroni: each group of the rules' changes is one
//! transaction, acknowledged only after COMMIT returns (with
//! `synchronous_commit` on and a synchronous standby, on two machines'
//! disks). Every group first locks the one `truc_meta` row, so groups of all
//! hubs apply one after another and each reads what the one before it
//! wrote. Readers work from a small pool of connections on threads of their
//! own (the synchronous client must not block inside an async runtime); a
//! listener thread turns `NOTIFY truc_queue` into wake-ups of this hub's
//! delivery streams, so a document accepted by one hub reaches a node
//! connected to another at once.

mod connection;
mod reader;
mod retention;
mod rows;
mod schema;
mod writer;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;

use crate::error::StoreError;
use crate::Shared;

pub(crate) use connection::{params, Connection, Pipeline};
pub(crate) use reader::PgReader;
pub(crate) use writer::PgWriter;

/// The channel `NOTIFY` wakes delivery streams on; the payload is the agency.
pub(crate) const QUEUE_CHANNEL: &str = "truc_queue";

/// How to reach the database.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// A libpq-style connection string or URL; it may list several hosts
    /// (`host=a,b,c` or `postgresql://a,b,c/db`) with
    /// `target_session_attrs=read-write`, so a connection finds the primary.
    pub url: String,
    /// The password, read from a file rather than written in the URL.
    pub password: Option<String>,
    /// The CA that issued the database servers' certificates (PEM); when
    /// set, every connection uses TLS and checks the server's certificate
    /// and name (as `sslmode=verify-full`).
    pub ca_cert_pem: Option<Vec<u8>>,
    /// This hub's name, as node leases and operators see it.
    pub hub_name: String,
    /// Connections for readers (delivery streams, status queries, reports).
    pub reader_connections_max: usize,
    /// How long a connection attempt may take before the caller is told
    /// the database is unavailable.
    pub connect_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            url: String::new(),
            password: None,
            ca_cert_pem: None,
            hub_name: "hub".into(),
            reader_connections_max: 8,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A database failure as the store reports it: the connection or the
/// primary lost is `Unavailable` (the caller may retry), anything else
/// `Database`, naming what was being done.
pub(crate) fn database_error(what: &str, error: &postgres::Error) -> StoreError {
    let unavailable = error.is_closed()
        || error.code().is_some_and(|code| {
            let code = code.code();
            // Connection exceptions, a read-only (demoted) server, operator
            // intervention (shutdown, crash recovery), insufficient resources.
            code.starts_with("08")
                || code == "25006"
                || code.starts_with("57P")
                || code.starts_with("53")
        })
        || error.as_db_error().is_none();
    let detail = match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            // The client's own text first, then what lies under it.
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    };
    if unavailable {
        StoreError::Unavailable {
            reason: format!("{what}: {detail}"),
        }
    } else {
        StoreError::Database {
            reason: format!("{what}: {detail}"),
        }
    }
}

/// Settings every truc connection runs with. Acknowledged means committed
/// on the primary and flushed by a synchronous standby, whatever the
/// server's default. Statements are prepared once per connection, and a
/// generic plan chosen while a table was empty (a new database) would scan
/// it whole for ever after: each execution is planned for the table as it
/// is (a fraction of a millisecond, against scans growing with the table).
pub(crate) const SESSION_SETTINGS: &str =
    "SET synchronous_commit = on; SET TIME ZONE 'UTC'; SET plan_cache_mode = force_custom_plan";

/// The connection settings of `options`, without TLS.
pub(crate) fn config(options: &PostgresOptions) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config =
        options.url.parse().map_err(|error| StoreError::Database {
            reason: format!("the [store] url does not parse: {error}"),
        })?;
    config.connect_timeout(options.connect_timeout);
    if let Some(password) = &options.password {
        config.password(password);
    }
    config.application_name(format!("truc hub {}", options.hub_name));
    Ok(config)
}

/// Opens a synchronous client to the primary, with TLS if a CA is given,
/// for the listener and migrations.
pub(crate) fn connect(options: &PostgresOptions) -> Result<Client, StoreError> {
    let mut config = postgres::Config::from(config(options)?);
    let mut client = match &options.ca_cert_pem {
        // With a CA given, never fall back to a plain connection.
        Some(ca_pem) => config
            .ssl_mode(postgres::config::SslMode::Require)
            .connect(tls_connector(ca_pem)?),
        None => config.connect(postgres::NoTls),
    }
    .map_err(|error| database_error("connecting to the database", &error))?;
    client
        .batch_execute(SESSION_SETTINGS)
        .map_err(|error| database_error("setting up the session", &error))?;
    Ok(client)
}

pub(crate) fn tls_connector(
    ca_pem: &[u8],
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    let mut reader = ca_pem;
    for certificate in rustls_pemfile::certs(&mut reader) {
        let certificate = certificate.map_err(|error| StoreError::Database {
            reason: format!("the database CA certificate does not parse: {error}"),
        })?;
        roots
            .add(certificate)
            .map_err(|error| StoreError::Database {
                reason: format!("the database CA certificate is not usable: {error}"),
            })?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| StoreError::Database {
        reason: format!("TLS to the database: {error}"),
    })?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

type Job = Box<dyn FnOnce(&mut Option<Connection>) + Send>;

/// Reader connections, each on a thread of its own; a job runs on
/// whichever is free, and its caller waits for the answer.
pub(crate) struct Pool {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Pool {
    fn start(options: &PostgresOptions) -> Result<Pool, StoreError> {
        let (jobs, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let mut threads = Vec::new();
        for index in 0..options.reader_connections_max.max(1) {
            let receiver = receiver.clone();
            let options = options.clone();
            let thread = std::thread::Builder::new()
                .name(format!("truc-store-pg-read-{index}"))
                .spawn(move || {
                    let mut connection: Option<Connection> = None;
                    loop {
                        let job = {
                            let receiver = receiver.lock().unwrap_or_else(|p| p.into_inner());
                            receiver.recv()
                        };
                        let Ok(job) = job else { return };
                        if connection.as_ref().is_none_or(Connection::is_closed) {
                            connection = Connection::open(&options).ok();
                        }
                        job(&mut connection);
                    }
                })
                .map_err(|error| StoreError::io("starting", Path::new("a reader thread"), error))?;
            threads.push(thread);
        }
        Ok(Pool {
            jobs: Mutex::new(Some(jobs)),
            threads: Mutex::new(threads),
        })
    }

    /// Runs `read` on a pooled connection and waits for its answer.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (answer, answered) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |slot| {
            let result = match slot.as_mut() {
                Some(connection) => {
                    let result = read(connection);
                    if connection.is_closed() {
                        *slot = None;
                    }
                    result
                }
                None => Err(StoreError::Unavailable {
                    reason: "no connection to a writable database primary".into(),
                }),
            };
            let _ = answer.send(result);
        });
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|jobs| jobs.send(job).is_ok())
            .unwrap_or(false);
        if !sent {
            return Err(StoreError::WriterGone);
        }
        answered.recv().map_err(|_| StoreError::WriterGone)?
    }

    fn stop(&self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        for thread in self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = thread.join();
        }
    }
}

/// Whether this hub reaches a writable primary now, kept by the listener
/// (health reports NOT_SERVING while it does not).
#[derive(Default)]
pub(crate) struct Reachability {
    writable: AtomicBool,
    changed: Mutex<Option<Instant>>,
    condvar: Condvar,
}

impl Reachability {
    fn set(&self, writable: bool) {
        if self.writable.swap(writable, Ordering::AcqRel) != writable {
            *self.changed.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            self.condvar.notify_all();
        }
    }

    pub(crate) fn writable(&self) -> bool {
        self.writable.load(Ordering::Acquire)
    }
}

/// Listens for `NOTIFY truc_queue` and wakes this hub's delivery streams;
/// after a lost connection (a failover) it wakes them all, since
/// notifications sent meanwhile are gone. It also says whether the primary
/// is reachable and writable.
fn listen(
    options: PostgresOptions,
    shared: Arc<Shared>,
    reachability: Arc<Reachability>,
    stopping: Arc<AtomicBool>,
) {
    const POLL: Duration = Duration::from_millis(500);
    while !stopping.load(Ordering::Acquire) {
        let mut client = match connect(&options) {
            Ok(client) => client,
            Err(error) => {
                reachability.set(false);
                tracing::debug!(%error, "database listener cannot connect");
                std::thread::sleep(POLL);
                continue;
            }
        };
        if let Err(error) = client.batch_execute(&format!("LISTEN {QUEUE_CHANNEL}")) {
            reachability.set(false);
            tracing::debug!(%error, "database listener cannot listen");
            std::thread::sleep(POLL);
            continue;
        }
        reachability.set(true);
        // Notifications sent while nobody listened are lost: look again.
        shared.notifiers.wake_all();
        let mut last_check = Instant::now();
        loop {
            if stopping.load(Ordering::Acquire) {
                return;
            }
            let mut woken: HashMap<String, ()> = HashMap::new();
            let failed = {
                let mut notifications = client.notifications();
                let mut iter = notifications.timeout_iter(POLL);
                loop {
                    match iter.next() {
                        Ok(Some(notification)) => {
                            woken.insert(notification.payload().to_owned(), ());
                        }
                        Ok(None) => break false,
                        Err(_) => break true,
                    }
                }
            };
            for agency in woken.keys() {
                shared.notifiers.get(agency).notify_one();
            }
            if failed || client.is_closed() {
                reachability.set(false);
                break;
            }
            if last_check.elapsed() >= Duration::from_secs(1) {
                last_check = Instant::now();
                // A demoted primary keeps its connections: ask.
                match client.query_one("SELECT NOT pg_is_in_recovery()", &[]) {
                    Ok(row) => {
                        let writable: bool = row.get(0);
                        reachability.set(writable);
                        if !writable {
                            break;
                        }
                    }
                    Err(_) => {
                        reachability.set(false);
                        break;
                    }
                }
            }
        }
    }
}

/// The engine's background parts, stopped when the store's writer ends.
pub(crate) struct Background {
    stopping: Arc<AtomicBool>,
    listener: Option<std::thread::JoinHandle<()>>,
    pool: Arc<Pool>,
}

impl Background {
    pub(crate) fn stop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        if let Some(listener) = self.listener.take() {
            let _ = listener.join();
        }
        self.pool.stop();
    }
}

/// Opens the PostgreSQL engine: migrates the schema, starts the readers'
/// pool and the listener, and returns the reader and the writer.
pub(crate) fn open(
    options: &PostgresOptions,
    shared: Arc<Shared>,
) -> Result<(Arc<PgReader>, PgWriter), StoreError> {
    // On a thread of its own: the synchronous client cannot run inside
    // an async runtime, and a store may be opened from one.
    let connection = {
        let options = options.clone();
        std::thread::Builder::new()
            .name("truc-store-pg-open".into())
            .spawn(move || -> Result<Connection, StoreError> {
                schema::migrate(&mut connect(&options)?)?;
                Connection::open(&options)
            })
            .map_err(|error| StoreError::io("starting", Path::new("the opening thread"), error))?
            .join()
            .map_err(|_| StoreError::Database {
                reason: "opening the database panicked".into(),
            })??
    };
    let pool = Arc::new(Pool::start(options)?);
    let reachability = Arc::new(Reachability::default());
    reachability.set(true);
    let stopping = Arc::new(AtomicBool::new(false));
    let listener = {
        let options = options.clone();
        let reachability = reachability.clone();
        let stopping = stopping.clone();
        std::thread::Builder::new()
            .name("truc-store-pg-listen".into())
            .spawn(move || listen(options, shared, reachability, stopping))
            .map_err(|error| StoreError::io("starting", Path::new("the listener thread"), error))?
    };
    let reader = Arc::new(PgReader::new(
        pool.clone(),
        reachability,
        options.hub_name.clone(),
    ));
    let writer = PgWriter::new(
        options.clone(),
        connection,
        Background {
            stopping,
            listener: Some(listener),
            pool,
        },
    );
    Ok((reader, writer))
}
