//! Flags shared by the commands that talk to a running hub: the hubs, who
//! acts, and the PKI folder, found the way users expect (`--certs`,
//! `TRUC_CERTS`, the config file, then `certs/dev` here or above); and what
//! a refused certificate means, said in terms of those files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use truc_node::{AxisClient, CertificateProblem, ClientError, HubAddresses};
use truc_pki::{Credentials, PkiPaths, TrustRoots};

use crate::usage;

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
    /// The PKI folder made by `truc certs init` (the hub's CA and everyone's
    /// credentials). Without it: TRUC_CERTS, then `certs` in the config file
    /// ($XDG_CONFIG_HOME/truc/truc.toml or ~/.config/truc/truc.toml), then
    /// certs/dev in the current folder or the nearest folder above it.
    #[arg(long, value_name = "DIR")]
    pub certs: Option<PathBuf>,
    /// Act as this agency (its certificate from the PKI folder).
    #[arg(long = "as", value_name = "CODE", conflicts_with_all = ["operator", "administrator"])]
    pub agency: Option<String>,
    /// Act as this operator: reads everything, changes nothing.
    #[arg(long, value_name = "NAME", conflicts_with = "administrator")]
    pub operator: Option<String>,
    /// Act as this administrator: reads like an operator, and resends and
    /// cancels dead letters.
    #[arg(long, value_name = "NAME")]
    pub administrator: Option<String>,
}

/// Where the PKI folder came from, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PkiSource {
    Flag,
    Environment,
    ConfigFile(PathBuf),
    /// `certs/dev` found in this folder or one above it.
    Default,
}

impl std::fmt::Display for PkiSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PkiSource::Flag => f.write_str("given with --certs"),
            PkiSource::Environment => f.write_str("from TRUC_CERTS"),
            PkiSource::ConfigFile(path) => write!(f, "from `certs` in {}", path.display()),
            PkiSource::Default => f.write_str("certs/dev found from the current folder"),
        }
    }
}

/// The PKI folder found, and where from.
#[derive(Clone, Debug)]
pub struct FoundPki {
    pub dir: PathBuf,
    pub source: PkiSource,
}

/// The folder of the default PKI, relative to a checkout's root.
const DEFAULT_PKI: &str = "certs/dev";

/// The client config file: `$XDG_CONFIG_HOME/truc/truc.toml`, else
/// `~/.config/truc/truc.toml`.
pub fn config_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("truc").join("truc.toml"))
}

/// What the client config file may say.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientConfig {
    /// The PKI folder, relative to the file's folder.
    certs: Option<PathBuf>,
}

/// Finds the PKI folder: `flag`, then TRUC_CERTS, then the config file,
/// then `certs/dev` in `from` or the nearest folder above it that has one.
/// Never a new one: when none is found, the error says where it looked.
pub fn find_pki(flag: Option<&Path>, from: &Path) -> anyhow::Result<FoundPki> {
    if let Some(dir) = flag {
        return Ok(FoundPki {
            dir: dir.to_owned(),
            source: PkiSource::Flag,
        });
    }
    if let Some(dir) = std::env::var_os("TRUC_CERTS").filter(|value| !value.is_empty()) {
        return Ok(FoundPki {
            dir: PathBuf::from(dir),
            source: PkiSource::Environment,
        });
    }
    let config = config_file();
    if let Some(path) = config.as_deref().filter(|path| path.is_file()) {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        let parsed: ClientConfig = toml::from_str(&text).map_err(|error| {
            anyhow::anyhow!(
                "{}: {}; the file may only say `certs = \"<PKI folder>\"`",
                path.display(),
                error.message()
            )
        })?;
        if let Some(certs) = parsed.certs {
            let folder = path.parent().unwrap_or(Path::new("."));
            return Ok(FoundPki {
                dir: folder.join(certs),
                source: PkiSource::ConfigFile(path.to_owned()),
            });
        }
    }
    for folder in from.ancestors() {
        let candidate = folder.join(DEFAULT_PKI);
        if PkiPaths::new(&candidate).ca_cert().is_file() {
            // Relative when found here, so that messages stay short.
            let dir = if folder == from {
                PathBuf::from(DEFAULT_PKI)
            } else {
                candidate
            };
            return Ok(FoundPki {
                dir,
                source: PkiSource::Default,
            });
        }
    }
    anyhow::bail!(
        "certs: no PKI folder found. Looked at --certs (not given), TRUC_CERTS (not set), {} and \
         {DEFAULT_PKI}/ca.crt in {} and every folder above it. A hub trusts only the CA it was \
         started with: give the PKI folder of the running hub (the folder of its [tls] ca_cert) \
         with --certs DIR, TRUC_CERTS=DIR or `certs = \"DIR\"` in the config file. If no hub and \
         no PKI exist yet anywhere, `truc certs init` makes them.",
        match &config {
            Some(path) if path.is_file() => format!("{} (no `certs` in it)", path.display()),
            Some(path) => format!("{} (no such file)", path.display()),
            None => "the config file (no HOME)".to_owned(),
        },
        from.display()
    )
}

/// Who acts, and with which files: kept for explaining a refused
/// certificate after the command's call has failed.
#[derive(Clone, Debug)]
struct Acting {
    pki: FoundPki,
    /// The client certificate presented (its file and DER), and whose it is.
    certificate: PathBuf,
    certificate_der: Vec<u8>,
    who: String,
}

static ACTING: Mutex<Option<Acting>> = Mutex::new(None);

impl Connection {
    pub fn agency_code(&self) -> anyhow::Result<truc_domain::AgencyCode> {
        let agency = self
            .agency
            .as_deref()
            .ok_or_else(|| usage("--as: say which agency to act as, e.g. --as 000.00.00.G22"))?;
        agency
            .parse()
            .map_err(|error| usage(format!("--as: {error}")))
    }

    /// The PKI folder, found as [`find_pki`] says.
    pub fn pki(&self) -> anyhow::Result<FoundPki> {
        let here = std::env::current_dir().context("reading the current folder")?;
        find_pki(self.certs.as_deref(), &here)
    }

    pub fn roots(&self) -> anyhow::Result<TrustRoots> {
        let pki = self.pki()?;
        roots_of(&pki)
    }

    /// The acting party's credentials, from the PKI folder.
    pub fn credentials(&self) -> anyhow::Result<Credentials> {
        let pki = self.pki()?;
        let paths = PkiPaths::new(&pki.dir);
        let dir = pki.dir.display();
        let (credentials, certificate, who) =
            match (&self.agency, &self.operator, &self.administrator) {
                (Some(agency), _, _) => {
                    self.agency_code()?;
                    let credentials = paths.agency_credentials(agency).map_err(|error| {
                        anyhow::anyhow!(
                        "--as {agency}: no usable credentials in {dir} ({}): {error}. Issue them \
                         with that folder's CA: `truc certs issue --dir {dir} --agency {agency}`",
                        pki.source
                    )
                    })?;
                    (
                        credentials,
                        paths.agency_cert(agency),
                        format!("agency {agency}"),
                    )
                }
                (None, Some(operator), _) => {
                    let credentials = paths.operator_credentials(operator).map_err(|error| {
                        anyhow::anyhow!(
                            "--operator {operator}: no usable credentials in {dir} ({}): {error}. \
                         Issue them with that folder's CA: `truc certs operator --dir {dir} \
                         --name {operator}`",
                            pki.source
                        )
                    })?;
                    (
                        credentials,
                        paths.operator_cert(operator),
                        format!("operator {operator}"),
                    )
                }
                (None, None, Some(administrator)) => {
                    let credentials =
                        paths
                            .administrator_credentials(administrator)
                            .map_err(|error| {
                                anyhow::anyhow!(
                        "--administrator {administrator}: no usable credentials in {dir} ({}): \
                         {error}. Issue them with that folder's CA: `truc certs administrator \
                         --dir {dir} --name {administrator}`",
                        pki.source
                    )
                            })?;
                    (
                        credentials,
                        paths.administrator_cert(administrator),
                        format!("administrator {administrator}"),
                    )
                }
                (None, None, None) => {
                    return Err(usage(
                        "--as: say who you are: --as <agency code>, --operator <name> or \
                     --administrator <name>",
                    ))
                }
            };
        *ACTING.lock().unwrap_or_else(|p| p.into_inner()) = Some(Acting {
            pki,
            certificate,
            certificate_der: credentials.certificate_der().to_vec(),
            who,
        });
        Ok(credentials)
    }

    /// The hubs of `--hub`, in order.
    pub fn hubs(&self) -> anyhow::Result<HubAddresses> {
        HubAddresses::new(self.hub.iter().copied()).context("--hub")
    }

    pub async fn connect(&self) -> anyhow::Result<AxisClient> {
        let hubs = self.hubs()?;
        let credentials = self.credentials()?;
        let roots = self.roots()?;
        match AxisClient::connect_hubs(&hubs, &roots, credentials).await {
            Ok(client) => Ok(client),
            // Said in terms of the files by `explain`, when the command ends.
            Err(error) if certificate_problem_in(&error).is_some() => Err(error.into()),
            Err(error) => Err(anyhow::Error::new(error).context(format!(
                "hub: no hub answered at {hubs}. Is it running? Start it with `truc hub --config \
                 config/hub.toml`, or give its address with --hub or TRUC_HUB"
            ))),
        }
    }
}

/// The trust roots of a PKI folder, or what to do about a missing CA.
pub fn roots_of(pki: &FoundPki) -> anyhow::Result<TrustRoots> {
    let paths = PkiPaths::new(&pki.dir);
    paths.trust_roots().map_err(|error| {
        anyhow::anyhow!(
            "certs: no CA in {} ({}): {error}. Give the PKI folder the hub was set up with (the \
             folder of its [tls] ca_cert) with --certs DIR or TRUC_CERTS=DIR; a new CA would not \
             be trusted by that hub",
            pki.dir.display(),
            pki.source
        )
    })
}

/// The certificate problem of a client error, also inside "no hub answered".
fn certificate_problem_in(error: &ClientError) -> Option<(Option<SocketAddr>, CertificateProblem)> {
    match error {
        ClientError::Certificate { address, problem } => Some((*address, problem.clone())),
        ClientError::NoHubAnswered(errors) => errors.iter().find_map(certificate_problem_in),
        _ => None,
    }
}

/// A certificate described for a message: its file, subject, and the
/// first bytes of its SHA-256, which tell two development CAs apart.
fn describe_certificate(path: &Path, der: Option<&[u8]>) -> String {
    let described = der.and_then(|der| {
        let validity = truc_pki::certificate_validity(der).ok()?;
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let issuer = if validity.issuer == validity.subject {
            String::new()
        } else {
            format!(", issued by {}", validity.issuer)
        };
        Some(format!(
            "{}{issuer}, SHA-256 {}…",
            validity.subject,
            hex_prefix(digest.as_ref())
        ))
    });
    match described {
        Some(described) => format!("{} ({described})", path.display()),
        None => path.display().to_string(),
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// When a command failed over a certificate, what happened in terms of the
/// files used, and what to do; `None` for any other failure.
pub fn explain(error: &anyhow::Error) -> Option<String> {
    let (address, problem) = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<ClientError>())
        .and_then(certificate_problem_in)?;
    let acting = ACTING.lock().unwrap_or_else(|p| p.into_inner()).clone()?;
    let hub = address.map_or_else(
        || "the hub".to_owned(),
        |address| format!("the hub at {address}"),
    );
    Some(match problem {
        CertificateProblem::HubCertificate { reason } => {
            let ca_path = PkiPaths::new(&acting.pki.dir).ca_cert();
            let roots = TrustRoots::from_pem_file(&ca_path).ok();
            let ca = describe_certificate(
                &ca_path,
                roots
                    .as_ref()
                    .and_then(|roots| roots.certificates_der().next()),
            );
            format!(
            "certificate: {hub} presented a certificate that the CA this client trusts did not \
             issue or does not accept ({reason}). This client trusts {ca}, from the PKI folder {} \
             ({}). The hub and this client use different CAs: give the PKI folder the hub was set \
             up with (the folder of its [tls] ca_cert) with --certs DIR or TRUC_CERTS=DIR. Do not \
             make a new CA: the hub would not trust it either.",
                acting.pki.dir.display(),
                acting.pki.source
            )
        }
        CertificateProblem::OwnCertificate { alert } => format!(
            "certificate: {hub} refused the certificate of {} ({alert}): {}, from the PKI folder \
             {} ({}). The hub trusts another CA, or the certificate expired or was revoked: use \
             credentials issued by the hub's CA (`truc certs issue --dir <the hub's PKI folder> \
             ...`), or give that folder with --certs DIR or TRUC_CERTS=DIR.",
            acting.who,
            describe_certificate(&acting.certificate, Some(&acting.certificate_der)),
            acting.pki.dir.display(),
            acting.pki.source
        ),
    })
}

/// With several hubs, says on stderr which one answered (stdout stays the
/// command's own output, for scripts).
pub fn say_which_hub(client: &AxisClient) {
    if client.hubs().len() > 1 {
        eprintln!("answered by the hub at {}", client.current_hub());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_pki_is_found_from_a_folder_below_it() {
        let root = tempfile::tempdir().unwrap();
        let pki = root.path().join(DEFAULT_PKI);
        std::fs::create_dir_all(&pki).unwrap();
        std::fs::write(pki.join("ca.crt"), "not read here").unwrap();
        let below = root.path().join("crates/truc-cli");
        std::fs::create_dir_all(&below).unwrap();
        if std::env::var_os("TRUC_CERTS").is_none()
            && config_file().is_none_or(|file| !file.is_file())
        {
            let found = find_pki(None, &below).unwrap();
            assert_eq!((found.dir, found.source), (pki.clone(), PkiSource::Default));
            let found = find_pki(None, root.path()).unwrap();
            assert_eq!(found.dir, PathBuf::from(DEFAULT_PKI));
            let nowhere = tempfile::tempdir().unwrap();
            let error = find_pki(None, nowhere.path()).unwrap_err().to_string();
            assert!(error.starts_with("certs: no PKI folder found"), "{error}");
            assert!(error.contains("--certs DIR, TRUC_CERTS=DIR"), "{error}");
        }
        let flagged = find_pki(Some(Path::new("/elsewhere")), &below).unwrap();
        assert_eq!(
            (flagged.dir, flagged.source),
            (PathBuf::from("/elsewhere"), PkiSource::Flag)
        );
    }
}
