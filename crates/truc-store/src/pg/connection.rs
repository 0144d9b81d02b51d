//! One connection to the primary, used from a plain thread: its own
//! single-threaded runtime drives tokio-postgres, its statements are
//! prepared once, and a [`Pipeline`] sends many statements without waiting
//! for each answer, so a group's writes and its COMMIT cost one round trip
//! (every round trip is paid while the group holds the `truc_meta` lock).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use super::{database_error, PostgresOptions};
use crate::error::StoreError;

type Answer<'a> = Pin<Box<dyn Future<Output = Result<Vec<Row>, postgres::Error>> + 'a>>;

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A connection with the statements it has prepared, so each query is one
/// round trip after its first.
pub(crate) struct Connection {
    runtime: tokio::runtime::Runtime,
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl Connection {
    /// Opens a connection with the session settings every truc connection
    /// runs with. Must not be called on an async runtime's thread.
    pub(crate) fn open(options: &PostgresOptions) -> Result<Connection, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| StoreError::Database {
                reason: format!("starting the database connection's runtime: {error}"),
            })?;
        let config = super::config(options)?;
        let client = runtime.block_on(async {
            let client = match &options.ca_cert_pem {
                // With a CA given, never fall back to a plain connection.
                Some(ca_pem) => {
                    let (client, connection) = config
                        .clone()
                        .ssl_mode(tokio_postgres::config::SslMode::Require)
                        .connect(super::tls_connector(ca_pem)?)
                        .await
                        .map_err(|e| database_error("connecting to the database", &e))?;
                    tokio::spawn(connection);
                    client
                }
                None => {
                    let (client, connection) = config
                        .connect(tokio_postgres::NoTls)
                        .await
                        .map_err(|e| database_error("connecting to the database", &e))?;
                    tokio::spawn(connection);
                    client
                }
            };
            client
                .batch_execute(super::SESSION_SETTINGS)
                .await
                .map_err(|error| database_error("setting up the session", &error))?;
            Ok::<_, StoreError>(client)
        })?;
        Ok(Connection {
            runtime,
            client,
            statements: HashMap::new(),
        })
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.runtime.block_on(self.client.prepare(sql))?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// Runs statements without parameters (`BEGIN`, `COMMIT`, …).
    pub(crate) fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.runtime.block_on(self.client.batch_execute(sql))
    }

    pub(crate) fn query(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.runtime.block_on(self.client.query(&statement, params))
    }

    pub(crate) fn query_opt(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.runtime
            .block_on(self.client.query_opt(&statement, params))
    }

    pub(crate) fn execute(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<u64, postgres::Error> {
        let statement = self.statement(sql)?;
        self.runtime
            .block_on(self.client.execute(&statement, params))
    }

    /// Sends every statement of `pipeline` before reading any answer, and
    /// returns each one's rows in order. The first failure is the
    /// pipeline's: in a transaction the statements after it fail too (and a
    /// COMMIT among them rolls back), so nothing of it is half written.
    pub(crate) fn run(&mut self, pipeline: Pipeline<'_>) -> Result<Vec<Vec<Row>>, StoreError> {
        let mut statements = Vec::with_capacity(pipeline.steps.len());
        for step in &pipeline.steps {
            statements.push(
                self.statement(step.sql)
                    .map_err(|error| database_error(step.what, &error))?,
            );
        }
        let client = &self.client;
        let answers: Vec<Answer<'_>> = pipeline
            .steps
            .iter()
            .zip(&statements)
            .map(|(step, statement)| {
                let params: Vec<&(dyn ToSql + Sync)> =
                    step.params.iter().map(|param| &**param as _).collect();
                Box::pin(async move { client.query(statement, &params).await }) as Answer<'_>
            })
            .collect();
        // `join_all` polls each in order before waiting, which is when
        // tokio-postgres sends it: the requests leave in order, together.
        let answers = self
            .runtime
            .block_on(futures_util::future::join_all(answers));
        let mut rows = Vec::with_capacity(answers.len());
        for (step, answer) in pipeline.steps.iter().zip(answers) {
            rows.push(answer.map_err(|error| database_error(step.what, &error))?);
        }
        Ok(rows)
    }
}

/// Statements to send together, each with what it does (for its error) and
/// its parameters, owned or borrowed for `'a`.
#[derive(Default)]
pub(crate) struct Pipeline<'a> {
    steps: Vec<Step<'a>>,
}

struct Step<'a> {
    what: &'static str,
    sql: &'static str,
    params: Vec<Box<dyn ToSql + Sync + 'a>>,
}

impl<'a> Pipeline<'a> {
    /// Adds a statement; its rows are the answer at this position.
    pub(crate) fn push(
        &mut self,
        what: &'static str,
        sql: &'static str,
        params: Vec<Box<dyn ToSql + Sync + 'a>>,
    ) -> usize {
        self.steps.push(Step { what, sql, params });
        self.steps.len() - 1
    }

    /// Adds `other`'s statements after these.
    pub(crate) fn append(&mut self, other: Pipeline<'a>) {
        self.steps.extend(other.steps);
    }
}

/// Boxes a statement's parameters for [`Pipeline::push`].
macro_rules! params {
    ($($param:expr),* $(,)?) => {
        vec![$(Box::new($param) as Box<dyn postgres::types::ToSql + Sync + '_>),*]
    };
}
pub(crate) use params;

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipeline whose third statement fails leaves nothing of the first
    /// two, though they were sent, with the COMMIT, before any answer came.
    #[test]
    fn a_failing_statement_voids_the_whole_pipelined_transaction() {
        truc_cluster::ensure_packages().expect("PostgreSQL is installed");
        let dir = tempfile::tempdir().unwrap();
        let server = truc_cluster::PostgresServer::start(dir.path()).expect("server starts");
        let options = PostgresOptions {
            url: server.url(),
            ..PostgresOptions::default()
        };
        let mut connection = Connection::open(&options).unwrap();
        connection
            .batch_execute("CREATE TABLE pipelined (n integer PRIMARY KEY)")
            .unwrap();
        let insert = "INSERT INTO pipelined (n) SELECT * FROM UNNEST($1::integer[])";

        let mut pipeline = Pipeline::default();
        pipeline.push("opening", "BEGIN", params![]);
        pipeline.push("first", insert, params![vec![1i32, 2]]);
        pipeline.push("second", insert, params![vec![3i32]]);
        pipeline.push("the duplicate", insert, params![vec![2i32]]);
        pipeline.push("committing", "COMMIT", params![]);
        let error = connection.run(pipeline).unwrap_err();
        assert!(
            error.to_string().contains("the duplicate"),
            "the first failure names its statement: {error}"
        );
        let _ = connection.batch_execute("ROLLBACK");
        let count = connection
            .query("SELECT count(*) FROM pipelined", &[])
            .unwrap()[0]
            .get::<_, i64>(0);
        assert_eq!(count, 0, "nothing of the failed transaction is stored");

        // The same without the duplicate commits all of it, in one go.
        let mut pipeline = Pipeline::default();
        pipeline.push("opening", "BEGIN", params![]);
        pipeline.push("first", insert, params![vec![1i32, 2]]);
        pipeline.push("second", insert, params![vec![3i32]]);
        pipeline.push("committing", "COMMIT", params![]);
        let answers = connection.run(pipeline).unwrap();
        assert_eq!(answers.len(), 4);
        let count = connection
            .query("SELECT count(*) FROM pipelined", &[])
            .unwrap()[0]
            .get::<_, i64>(0);
        assert_eq!(count, 3);
    }
}
