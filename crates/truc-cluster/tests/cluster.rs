//! Real PostgreSQL, Patroni and etcd started by the crate: a standalone server's writes, TLS and stop, and a cluster that loses its leader.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use truc_cluster::{
    postgres_error_text, Cluster, ClusterOptions, MemberRole, PostgresOptions, PostgresServer,
};

/// Long enough for a leader key to expire (`ttl` 20 s), another member to
/// be promoted and a standby to follow it, on a loaded two-core machine.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(90);
const REJOIN_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a row committed on the primary may take to be replayed on a replica.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(30);

/// Installs the packages or fails the test saying why: a machine without
/// the packages and without a registry must not pass silently.
fn packages_installed() {
    if let Err(error) = truc_cluster::ensure_packages() {
        panic!("PostgreSQL, Patroni and etcd are needed and could not be installed: {error}");
    }
}

fn connect(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls)
        .unwrap_or_else(|error| panic!("connect to {url}: {}", postgres_error_text(&error)))
}

fn assert_all_gone(pids: &[i32], what: &str) {
    let alive: Vec<i32> = pids
        .iter()
        .copied()
        .filter(|&pid| {
            procfs::process::Process::new(pid)
                .and_then(|process| process.stat())
                .is_ok_and(|stat| stat.state != 'Z' && stat.state != 'X')
        })
        .collect();
    assert!(alive.is_empty(), "{what}: processes still alive: {alive:?}");
}

#[test]
fn standalone_server_takes_a_durable_write_and_leaves_no_process_when_dropped() {
    packages_installed();
    let dir = tempfile::tempdir().unwrap();
    let server = PostgresServer::start(dir.path()).unwrap();

    let url = server.create_database("standalone_write").unwrap();
    let mut client = connect(&url);
    for (setting, expected) in [("fsync", "on"), ("synchronous_commit", "on")] {
        let value: String = client
            .query_one(&format!("SHOW {setting}"), &[])
            .unwrap()
            .get(0);
        assert_eq!(value, expected, "{setting}");
    }
    client
        .batch_execute("CREATE TABLE documents (id text PRIMARY KEY, body text NOT NULL)")
        .unwrap();
    client
        .execute(
            "INSERT INTO documents VALUES ($1, $2)",
            &[&"000.00.00.G22,2026/12/06,1/VPCP", &"Về việc thử"],
        )
        .unwrap();
    let body: String = client
        .query_one(
            "SELECT body FROM documents WHERE id = $1",
            &[&"000.00.00.G22,2026/12/06,1/VPCP"],
        )
        .unwrap()
        .get(0);
    assert_eq!(body, "Về việc thử");

    // The role logs in with its password and not without it.
    let wrong_password = url.replacen("truc:", "truc:wrong", 1);
    let Err(refused) = postgres::Client::connect(&wrong_password, postgres::NoTls) else {
        panic!("a wrong password was accepted");
    };
    assert!(
        postgres_error_text(&refused).contains("password authentication failed"),
        "{}",
        postgres_error_text(&refused)
    );
    // A name that would need quoting never reaches SQL.
    let error = server
        .create_database("x\"; DROP DATABASE truc; --")
        .unwrap_err();
    assert!(error.to_string().starts_with("database name: "), "{error}");

    let pids = server.process_ids();
    assert!(pids.len() > 1, "a postmaster and its backends: {pids:?}");
    drop(client);
    server.stop().unwrap();
    assert_all_gone(&pids, "the stopped standalone server");
}

#[test]
fn standalone_server_serves_tls_that_verifies_against_the_development_ca() {
    packages_installed();
    let dir = tempfile::tempdir().unwrap();
    let server = PostgresServer::start_with(
        dir.path(),
        PostgresOptions {
            tls: true,
            ..PostgresOptions::default()
        },
    )
    .unwrap();
    let ca_path = server.ca_certificate_path().unwrap().to_owned();

    // rustls checks the chain and that the certificate names 127.0.0.1.
    let tls_url = format!("{}?sslmode=require", server.url());
    let mut client = postgres::Client::connect(
        &tls_url,
        rustls_connector(&std::fs::read(&ca_path).unwrap()),
    )
    .unwrap();
    let encrypted: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(encrypted);

    // Another CA's trust is refused.
    let other_pki = tempfile::tempdir().unwrap();
    let other =
        truc_pki::init_dev_pki(other_pki.path(), &[], &[], Duration::from_secs(3600)).unwrap();
    let Err(refused) = postgres::Client::connect(
        &tls_url,
        rustls_connector(&std::fs::read(other.ca_cert()).unwrap()),
    ) else {
        panic!("a server certificate of another CA was trusted");
    };
    let refused = postgres_error_text(&refused);
    assert!(refused.contains("certificate"), "{refused}");

    // libpq (psql) with sslmode=verify-full.
    let psql = truc_cluster::postgres_bin_dir().unwrap().join("psql");
    let url = server.url();
    let password = url
        .strip_prefix("postgresql://truc:")
        .and_then(|rest| rest.split('@').next())
        .unwrap();
    let output = Command::new(psql)
        .env("PGPASSWORD", password)
        .arg(format!(
            "host=127.0.0.1 port={} user=truc dbname=truc sslmode=verify-full sslrootcert={}",
            server.port(),
            ca_path.display()
        ))
        .args([
            "-At",
            "-c",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "t");
}

fn rustls_connector(ca_pem: &[u8]) -> tokio_postgres_rustls::MakeRustlsConnect {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_pemfile::certs(&mut &ca_pem[..]) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

/// The port of the server a client landed on, and whether it is a replica.
fn where_connected(client: &mut postgres::Client) -> (u16, bool) {
    let row = client
        .query_one("SELECT inet_server_port(), pg_is_in_recovery()", &[])
        .unwrap();
    let port: i32 = row.get(0);
    (u16::try_from(port).unwrap(), row.get(1))
}

#[test]
fn cluster_over_tls_keeps_a_committed_row_when_its_leader_is_killed_and_takes_the_member_back() {
    packages_installed();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut cluster = Cluster::start(
        dir.path(),
        ClusterOptions {
            tls: true,
            ..ClusterOptions::default()
        },
    )
    .unwrap();
    let cluster_started_after = started.elapsed();
    let state = cluster.wait_healthy(Duration::ZERO).unwrap();
    let first_leader = state.leader.clone().unwrap();
    let standby = state.synchronous_standby.clone().unwrap();
    assert_ne!(first_leader, standby);
    let ports = cluster.postgres_ports();

    // The multi-host URL lands on the primary, wherever it is in the list.
    let url = cluster.url();
    assert!(url.ends_with("?target_session_attrs=read-write"), "{url}");
    let mut client = connect(&url);
    let (port, in_recovery) = where_connected(&mut client);
    assert!(!in_recovery);
    let first_leader_index = state.member(&first_leader).unwrap().index;
    assert_eq!(port, ports[first_leader_index]);
    // Every member serves TLS under the development CA: rustls, which
    // checks chain and name, reaches the primary through the same hosts.
    let ca_pem = std::fs::read(cluster.ca_certificate_path().unwrap()).unwrap();
    let mut tls_client =
        postgres::Client::connect(&format!("{url}&sslmode=require"), rustls_connector(&ca_pem))
            .unwrap_or_else(|error| panic!("TLS through {url}: {}", postgres_error_text(&error)));
    let encrypted: bool = tls_client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(encrypted);
    assert_eq!(where_connected(&mut tls_client), (port, false));
    drop(tls_client);
    let synchronous_commit: String = client
        .query_one("SHOW synchronous_commit", &[])
        .unwrap()
        .get(0);
    assert_eq!(synchronous_commit, "on");
    // A replica refuses writes: that is what the URL's attribute skips.
    let replica_index = state.member(&standby).unwrap().index;
    let mut replica = connect(&cluster.member_url(replica_index));
    let refused = replica
        .batch_execute("CREATE TABLE refused (id int)")
        .unwrap_err();
    let refused = postgres_error_text(&refused);
    assert!(refused.contains("read-only"), "{refused}");
    drop(replica);

    client
        .batch_execute("CREATE TABLE documents (id text PRIMARY KEY, body text NOT NULL)")
        .unwrap();
    // Committed with synchronous_commit on: the synchronous standby has it
    // on disk before this returns.
    client
        .execute(
            "INSERT INTO documents VALUES ('before-kill', 'acknowledged')",
            &[],
        )
        .unwrap();
    drop(client);

    let killed = cluster.kill_leader().unwrap();
    assert!(killed.was_leader);
    assert_eq!(killed.name, first_leader);
    assert_all_gone(&killed.killed_pids, "the killed leader");
    let failover = cluster
        .wait_for_failover(&killed, FAILOVER_TIMEOUT)
        .unwrap();
    assert_ne!(failover.new_leader, killed.name);

    // The same URL reaches the new primary; the acknowledged row is there
    // and new writes are taken.
    let mut client = connect(&url);
    let state = cluster.state().unwrap();
    let (port, in_recovery) = where_connected(&mut client);
    assert!(!in_recovery);
    assert_eq!(
        Some(port),
        state
            .leader
            .as_deref()
            .and_then(|leader| state.member(leader))
            .map(|leader| ports[leader.index])
    );
    let body: String = client
        .query_one("SELECT body FROM documents WHERE id = 'before-kill'", &[])
        .unwrap()
        .get(0);
    assert_eq!(body, "acknowledged");
    client
        .execute(
            "INSERT INTO documents VALUES ('after-failover', 'accepted')",
            &[],
        )
        .unwrap();
    drop(client);

    // The killed member comes back as a replica of the new leader.
    let restarted = Instant::now();
    cluster.restart_member(killed.index).unwrap();
    let state = cluster.wait_healthy(REJOIN_TIMEOUT).unwrap();
    let rejoined_after = restarted.elapsed();
    let rejoined = state.member(&killed.name).unwrap();
    assert!(
        matches!(
            rejoined.role,
            MemberRole::SynchronousStandby | MemberRole::Replica
        ),
        "{rejoined:?}"
    );
    assert!(rejoined.streaming, "{rejoined:?}");
    // It holds what the new leader took while it was gone.
    let mut member = connect(&cluster.member_url(killed.index));
    let deadline = Instant::now() + REPLAY_TIMEOUT;
    loop {
        let rows = member
            .query("SELECT id FROM documents ORDER BY id", &[])
            .unwrap();
        let ids: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
        if ids == ["after-failover", "before-kill"] {
            break;
        }
        assert!(Instant::now() < deadline, "rejoined member has {ids:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(member);

    // Through the same URL again: the primary, even with a live replica
    // listed before it (the first leader was not first in the list, or
    // the new one is not).
    let mut client = connect(&url);
    let leader_index = state
        .member(state.leader.as_deref().unwrap())
        .unwrap()
        .index;
    assert_eq!(where_connected(&mut client), (ports[leader_index], false));
    assert!(
        first_leader_index > 0 || leader_index > 0,
        "no connection had a replica before the primary in {url}"
    );
    drop(client);

    // With one etcd member down the other two keep a majority: writes go on.
    cluster.kill_etcd(0).unwrap();
    cluster.wait_for_writes(FAILOVER_TIMEOUT).unwrap();
    cluster.restart_etcd(0).unwrap();
    cluster.wait_for_etcd(0, REJOIN_TIMEOUT).unwrap();
    cluster.wait_healthy(REJOIN_TIMEOUT).unwrap();

    eprintln!(
        "cluster timings: started and healthy {:.1} s; new leader {:.1} s and writes accepted {:.1} s after the kill; rejoined and streaming {:.1} s after the restart",
        cluster_started_after.as_secs_f64(),
        failover.leader_elected_after.as_secs_f64(),
        failover.writes_accepted_after.as_secs_f64(),
        rejoined_after.as_secs_f64()
    );
    let pids = cluster.process_ids();
    assert!(
        pids.len() >= 9,
        "etcd, Patroni and postgres processes: {pids:?}"
    );
    drop(cluster);
    assert_all_gone(&pids, "the dropped cluster");
}
