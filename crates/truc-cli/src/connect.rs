//! Flags shared by the commands that talk to a running hub.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use truc_node::AxisClient;
use truc_pki::{Credentials, PkiPaths, TrustRoots};

#[derive(clap::Args, Debug, Clone)]
pub struct Connection {
    /// The hub's address.
    #[arg(long, default_value = "127.0.0.1:7443", env = "TRUC_HUB")]
    pub hub: SocketAddr,
    /// The PKI folder made by `truc certs init`.
    #[arg(long, default_value = "certs/dev", env = "TRUC_CERTS")]
    pub certs: PathBuf,
    /// Act as this agency (its certificate from the PKI folder).
    #[arg(long = "as", conflicts_with = "operator")]
    pub agency: Option<String>,
    /// Act as this operator (read-only role).
    #[arg(long)]
    pub operator: Option<String>,
}

impl Connection {
    pub fn agency_code(&self) -> anyhow::Result<truc_domain::AgencyCode> {
        let agency = self
            .agency
            .as_deref()
            .context("say which agency to act as with --as <code>, e.g. --as 000.00.00.G22")?;
        agency
            .parse()
            .map_err(|error| anyhow::anyhow!("--as: {error}"))
    }

    pub fn roots(&self) -> anyhow::Result<TrustRoots> {
        PkiPaths::new(&self.certs).trust_roots().with_context(|| {
            format!(
                "no CA in {}; run `truc certs init --dir {}` first",
                self.certs.display(),
                self.certs.display()
            )
        })
    }

    pub fn credentials(&self) -> anyhow::Result<Credentials> {
        let paths = PkiPaths::new(&self.certs);
        match (&self.agency, &self.operator) {
            (Some(agency), _) => paths
                .agency_credentials(agency)
                .with_context(|| format!("no credentials for {agency}; issue them with `truc certs issue --agency {agency}`")),
            (None, Some(operator)) => paths
                .operator_credentials(operator)
                .with_context(|| format!("no credentials for operator {operator}")),
            (None, None) => anyhow::bail!("say who you are: --as <agency code> or --operator <name>"),
        }
    }

    pub async fn connect(&self) -> anyhow::Result<AxisClient> {
        let client = AxisClient::connect(self.hub, &self.roots()?, self.credentials()?)
            .await
            .with_context(|| format!("is the hub running? start it with `truc hub --config config/hub.toml` (tried {})", self.hub))?;
        Ok(client)
    }
}
