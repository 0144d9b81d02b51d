//! The operator dashboard: a read-only web page on a port of its own that
//! shows what the operator's gRPC calls show (counters, nodes, overdue
//! deliveries, one document's status), refreshed live by the page itself.
//!
//! Authentication is a secret token per hub, read from a file: browsers send
//! it with HTTP Basic authentication (any user name, the token as password)
//! and scripts as `Authorization: Bearer`. The operator's mutual-TLS
//! certificate is not used here because browsers (headless ones above all)
//! cannot present it without a platform key store, and the hub's default
//! Ed25519 certificates are not accepted by browsers' TLS at all. The page is
//! plain HTTP, so the token would cross a network in clear:
//! [`crate::config::ObserveConfig`] accepts only a loopback address, and an
//! operator elsewhere reaches it through an SSH tunnel or a TLS proxy.

mod snapshot;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use ring::digest::{digest, SHA256};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Hub;

/// Browser connections served at once: a few operators, a few tabs each.
const DASHBOARD_CONNECTIONS_MAX: usize = 32;
/// A connection idle or busy for longer than this is dropped.
const DASHBOARD_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Shortest token accepted, in characters: 128 bits as hex.
const TOKEN_CHARS_MIN: usize = 32;
/// Longest document id a lookup accepts, in bytes of the decoded query.
const LOOKUP_ID_BYTES_MAX: usize = 512;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("dashboard/dashboard.css");

/// The dashboard's secret, kept only as its SHA-256 so that comparisons
/// take the same time whatever was presented.
#[derive(Clone)]
pub struct DashboardToken {
    sha256: [u8; 32],
}

impl std::fmt::Debug for DashboardToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DashboardToken(…)")
    }
}

/// The file `truc certs dashboard-token` writes into its folder.
pub const TOKEN_FILE_NAME: &str = "dashboard.token";

/// Why a dashboard token cannot be made or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "the dashboard token has {characters} characters; at least {TOKEN_CHARS_MIN} (make one with `truc certs dashboard-token`)"
    )]
    TooShort { characters: usize },
    /// The file is missing or unreadable: the text says how to make one.
    #[error("cannot read the dashboard token {}: {source}; {}", path.display(), how_to_make(path))]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read, but what it holds is no token.
    #[error("{}: {problem}", path.display())]
    InFile {
        path: PathBuf,
        #[source]
        problem: Box<TokenError>,
    },
    /// ring's error says nothing more than that (`Unspecified`, by design).
    #[error("the system's random source failed")]
    Random,
    /// `write_new` never replaces a token: `source` is `AlreadyExists` when one is there.
    #[error("cannot create {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The command that makes the token `path` names. The token is made once
/// by the operator: name the command, and the folder it writes into.
fn how_to_make(path: &Path) -> String {
    let folder = path
        .parent()
        .filter(|folder| !folder.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let made = if path.file_name() == Some(std::ffi::OsStr::new(TOKEN_FILE_NAME)) {
        String::new()
    } else {
        format!(" and rename it to {}", path.display())
    };
    format!(
        "make one with `truc certs dashboard-token --dir {}`{made}",
        folder.display()
    )
}

impl DashboardToken {
    pub fn new(secret: &str) -> Result<DashboardToken, TokenError> {
        let secret = secret.trim();
        let characters = secret.chars().count();
        if characters < TOKEN_CHARS_MIN {
            return Err(TokenError::TooShort { characters });
        }
        Ok(DashboardToken {
            sha256: sha256(secret.as_bytes()),
        })
    }

    /// Reads the token from a file (surrounding white space ignored).
    pub fn load(path: &Path) -> Result<DashboardToken, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::new(&text).map_err(|problem| TokenError::InFile {
            path: path.to_owned(),
            problem: Box::new(problem),
        })
    }

    /// A fresh random token: 32 bytes as 64 hex characters.
    pub fn generate() -> Result<String, TokenError> {
        use ring::rand::SecureRandom as _;
        let mut bytes = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| TokenError::Random)?;
        Ok(hex::encode(bytes))
    }

    /// Writes a fresh token to `path`, readable by its owner only, and returns it.
    pub fn write_new(path: &Path) -> Result<String, TokenError> {
        let token = Self::generate()?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|source| TokenError::Create {
            path: path.to_owned(),
            source,
        })?;
        std::io::Write::write_all(&mut file, format!("{token}\n").as_bytes()).map_err(
            |source| TokenError::Write {
                path: path.to_owned(),
                source,
            },
        )?;
        Ok(token)
    }

    /// Whether `presented` is the token, in time independent of where they differ.
    fn matches(&self, presented: &[u8]) -> bool {
        let presented = sha256(presented);
        let difference = self
            .sha256
            .iter()
            .zip(presented.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// Where and with which token the hub serves its dashboard.
pub struct DashboardSetup {
    /// Bound by the caller, so that tests can use port 0.
    pub listener: TcpListener,
    pub token: DashboardToken,
}

/// Serves the dashboard on `setup.listener` until the hub stops, then lets go of the port.
pub(crate) async fn serve(hub: Arc<Hub>, setup: DashboardSetup, stopping: watch::Receiver<bool>) {
    let state = Arc::new(State {
        hub,
        token: setup.token,
        snapshots: snapshot::Snapshots::default(),
    });
    let limits = crate::http::Limits {
        name: "dashboard",
        connections_max: DASHBOARD_CONNECTIONS_MAX,
        connection_timeout: DASHBOARD_CONNECTION_TIMEOUT,
    };
    crate::http::serve(setup.listener, limits, stopping, move |request| {
        let state = state.clone();
        async move { state.respond(request).await }
    })
    .await;
}

struct State {
    hub: Arc<Hub>,
    token: DashboardToken,
    snapshots: snapshot::Snapshots,
}

impl State {
    async fn respond(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let Some(operator) = self.authenticated(&request) else {
            let mut response = plain(StatusCode::UNAUTHORIZED, "sign in as an operator\n");
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"truc dashboard\", charset=\"UTF-8\""),
            );
            return response;
        };
        if request.method() != Method::GET {
            let mut response = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "the dashboard is read-only: GET\n",
            );
            response
                .headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static("GET"));
            return response;
        }
        match request.uri().path() {
            "/" => asset("text/html; charset=utf-8", INDEX_HTML),
            "/dashboard.js" => asset("text/javascript; charset=utf-8", DASHBOARD_JS),
            "/dashboard.css" => asset("text/css; charset=utf-8", DASHBOARD_CSS),
            "/api/overview" => match self.snapshots.overview(&self.hub).await {
                Ok(json) => json_response(StatusCode::OK, json),
                Err(error) => error_response(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string()),
            },
            "/api/document" => {
                let id = request
                    .uri()
                    .query()
                    .and_then(|query| query_value(query, "id"))
                    .unwrap_or_default();
                if id.is_empty() || id.len() > LOOKUP_ID_BYTES_MAX {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        &format!("give ?id=<document id> (at most {LOOKUP_ID_BYTES_MAX} bytes)"),
                    );
                }
                let hub = self.hub.clone();
                let looked_up = crate::error::blocking("a document's lookup", move || {
                    snapshot::document(&hub, &operator, &id)
                })
                .await
                .and_then(|looked_up| looked_up);
                match looked_up {
                    Ok(json) => json_response(StatusCode::OK, Bytes::from(json.to_string())),
                    Err(crate::HubError::NotFound { reason, .. }) => {
                        error_response(StatusCode::NOT_FOUND, &reason)
                    }
                    Err(crate::HubError::Invalid { reason, .. }) => {
                        error_response(StatusCode::BAD_REQUEST, &reason)
                    }
                    Err(error) => {
                        error_response(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string())
                    }
                }
            }
            _ => plain(StatusCode::NOT_FOUND, "not part of the dashboard\n"),
        }
    }

    /// The operator's name (the Basic user name, or "dashboard") when the
    /// request carries the token.
    fn authenticated(&self, request: &Request<Incoming>) -> Option<String> {
        let header = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
        let (scheme, credentials) = header.split_once(' ')?;
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return self
                .token
                .matches(credentials.as_bytes())
                .then(|| "dashboard".to_owned());
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':')?;
        self.token.matches(password.as_bytes()).then(|| {
            // The name only labels the lookups; bounded like any short text.
            let user: String = user.chars().take(64).collect();
            if user.is_empty() {
                "dashboard".to_owned()
            } else {
                user
            }
        })
    }
}

/// The value of `name` in a URL query, percent-decoded.
fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| percent_decode(value)).flatten()
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn with_headers(
    mut response: Response<Full<Bytes>>,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Live figures: never from a cache. Everything the page loads is its own.
    headers.insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    headers.insert(
        hyper::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        hyper::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response<Full<Bytes>> {
    with_headers(
        Response::new(Full::new(Bytes::from_static(body.as_bytes()))),
        content_type,
    )
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    with_headers(response, "application/json")
}

fn error_response(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json_response(
        status,
        Bytes::from(serde_json::json!({ "error": message }).to_string()),
    )
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    with_headers(response, "text/plain; charset=utf-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_matches_itself_only() {
        let secret = DashboardToken::generate().unwrap();
        let token = DashboardToken::new(&format!("{secret}\n")).unwrap();
        assert!(token.matches(secret.as_bytes()));
        assert!(!token.matches(&secret.as_bytes()[1..]));
        assert!(!token.matches(b""));
        assert!(matches!(
            DashboardToken::new("short"),
            Err(TokenError::TooShort { characters: 5 })
        ));
    }

    #[test]
    fn token_files_are_named_with_what_is_wrong() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join(TOKEN_FILE_NAME);
        let missing = DashboardToken::load(&path).unwrap_err();
        assert!(
            matches!(&missing, TokenError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
            "{missing:?}"
        );
        assert!(
            missing.to_string().ends_with(&format!(
                "make one with `truc certs dashboard-token --dir {}`",
                folder.path().display()
            )),
            "{missing}"
        );
        std::fs::write(&path, "short\n").unwrap();
        let short = DashboardToken::load(&path).unwrap_err();
        assert!(
            short.to_string().starts_with(&format!(
                "{}: the dashboard token has 5 characters",
                path.display()
            )),
            "{short}"
        );
        std::fs::remove_file(&path).unwrap();
        DashboardToken::write_new(&path).unwrap();
        let again = DashboardToken::write_new(&path).unwrap_err();
        assert!(
            matches!(&again, TokenError::Create { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
            "{again:?}"
        );
    }

    #[test]
    fn queries_are_percent_decoded() {
        let id = "000.00.00.G22,2021/01/04,7816/VPCP-TTĐT";
        let encoded = "000.00.00.G22%2C2021%2F01%2F04%2C7816%2FVPCP-TT%C4%90T";
        assert_eq!(
            query_value(&format!("x=1&id={encoded}"), "id").as_deref(),
            Some(id)
        );
        assert_eq!(query_value("id=%zz", "id"), None);
    }
}
