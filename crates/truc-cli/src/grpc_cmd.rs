//! `truc grpc list` and `truc grpc health`: what generic gRPC tools ask of a
//! hub (server reflection, gRPC health), over the hub's mutual TLS with the
//! PKI's credentials, so that no other tool need be installed.

use std::process::ExitCode;

use anyhow::Context;
use tokio_stream::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1 as reflection;

use crate::connect::Connection;

#[derive(clap::Subcommand)]
pub enum GrpcCommand {
    /// Lists the services the hub serves, through gRPC server reflection.
    #[command(after_help = "Example: truc grpc list --operator ops")]
    List {
        #[command(flatten)]
        connection: Connection,
    },
    /// Asks gRPC health whether the hub serves (exit code 1 unless SERVING).
    #[command(after_help = "Examples:\n  truc grpc health --operator ops\n  \
                      truc grpc health --operator ops --service truc.v1.Axis\n  \
                      truc grpc health --operator ops --wait 30   # a script waiting for a hub it started")]
    Health {
        #[command(flatten)]
        connection: Connection,
        /// The service asked about; "" for the server as a whole.
        #[arg(long, default_value = "")]
        service: String,
        /// Ask again until the hub serves, for at most this many seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 0)]
        wait: u64,
    },
}

pub async fn run(command: GrpcCommand) -> anyhow::Result<ExitCode> {
    match command {
        GrpcCommand::List { connection } => list(connection).await,
        GrpcCommand::Health {
            connection,
            service,
            wait,
        } => health(connection, &service, wait).await,
    }
}

/// Where and as whom to connect: the first hub of `--hub`, with the PKI's files.
struct Endpoint {
    hub: std::net::SocketAddr,
    roots: truc_pki::TrustRoots,
    credentials: truc_pki::Credentials,
}

impl Endpoint {
    fn of(connection: &Connection) -> anyhow::Result<Endpoint> {
        Ok(Endpoint {
            hub: connection.hubs()?.first(),
            credentials: connection.credentials()?,
            roots: connection.roots()?,
        })
    }

    async fn channel(&self) -> Result<tonic::transport::Channel, truc_node::ClientError> {
        truc_node::connect_channel(self.hub, &self.roots, &self.credentials).await
    }
}

/// A mutual-TLS channel to the first hub of `--hub`.
async fn channel(connection: &Connection) -> anyhow::Result<tonic::transport::Channel> {
    Ok(Endpoint::of(connection)?.channel().await?)
}

async fn list(connection: Connection) -> anyhow::Result<ExitCode> {
    let mut client = reflection::server_reflection_client::ServerReflectionClient::new(
        channel(&connection).await?,
    );
    let request = reflection::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            reflection::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .map_err(truc_node::ClientError::from)?
        .into_inner();
    let answer = answers
        .next()
        .await
        .context("the hub ended reflection without an answer")?
        .map_err(truc_node::ClientError::from)?;
    match answer.message_response {
        Some(reflection::server_reflection_response::MessageResponse::ListServicesResponse(
            list,
        )) => {
            for service in list.service {
                println!("{}", service.name);
            }
            Ok(ExitCode::SUCCESS)
        }
        other => anyhow::bail!("reflection answered something else than a list: {other:?}"),
    }
}

/// How often `--wait` asks again.
const WAIT_POLL: std::time::Duration = std::time::Duration::from_millis(200);

async fn health(connection: Connection, service: &str, wait: u64) -> anyhow::Result<ExitCode> {
    let endpoint = Endpoint::of(&connection)?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait);
    let status = loop {
        let asked = async {
            let mut client = HealthClient::new(endpoint.channel().await?);
            let status = client
                .check(HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await
                .map_err(truc_node::ClientError::from)?
                .into_inner()
                .status();
            Ok::<_, truc_node::ClientError>(status)
        }
        .await;
        match asked {
            Ok(ServingStatus::Serving) => break ServingStatus::Serving,
            // Waiting does not mend a certificate the hub refuses.
            Err(error @ truc_node::ClientError::Certificate { .. }) => return Err(error.into()),
            // Not yet listening, or not yet serving: ask again until the deadline.
            Ok(_) | Err(_) if tokio::time::Instant::now() + WAIT_POLL < deadline => {
                tokio::time::sleep(WAIT_POLL).await;
            }
            Ok(status) => break status,
            Err(error) => return Err(error.into()),
        }
    };
    let name = if service.is_empty() {
        "the hub"
    } else {
        service
    };
    println!("{name}: {}", status.as_str_name());
    Ok(if status == ServingStatus::Serving {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
