//! Flags shared by the commands that talk to a running hub.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use truc_node::{AxisClient, HubAddresses};
use truc_pki::{Credentials, PkiPaths, TrustRoots};

#[derive(clap::Args, Debug, Clone)]
pub struct Connection {
    /// The hub's address. Several hubs of one store: repeat the flag or give
    /// a comma list (`--hub 10.0.0.1:7443,10.0.0.2:7443`); they are tried in
    /// order, and a call the hub does not answer goes to the next.
    #[arg(
        long,
        value_name = "ADDR",
        value_delimiter = ',',
        default_value = "127.0.0.1:7443",
        env = "TRUC_HUB"
    )]
    pub hub: Vec<SocketAddr>,
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

    /// The hubs of `--hub`, in order.
    pub fn hubs(&self) -> anyhow::Result<HubAddresses> {
        HubAddresses::new(self.hub.iter().copied()).context("--hub")
    }

    pub async fn connect(&self) -> anyhow::Result<AxisClient> {
        let hubs = self.hubs()?;
        let client = AxisClient::connect_hubs(&hubs, &self.roots()?, self.credentials()?)
            .await
            .with_context(|| format!("is the hub running? start it with `truc hub --config config/hub.toml` (tried {hubs})"))?;
        Ok(client)
    }
}

/// With several hubs, says on stderr which one answered (stdout stays the
/// command's own output, for scripts).
pub fn say_which_hub(client: &AxisClient) {
    if client.hubs().len() > 1 {
        eprintln!("answered by the hub at {}", client.current_hub());
    }
}
