//! Several hubs behind one client: the list of addresses, which hub calls go
//! to now, which failures mean "this hub did not answer, ask the next one",
//! and the bounds on asking again (attempts, backoff, a deadline).
//!
//! Hubs are tried in the order given, and a client stays on the hub that
//! answers until it stops answering. The order is the operator's: the
//! nearest hub first, or a different first hub per site to spread the
//! nodes; a client that picked its own starting point would hide that
//! choice, and a failure would be harder to read from the logs.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::Channel;
use truc_domain::SplitMix64;
use truc_proto::v1 as pb;

use crate::client::{connect_tls, ClientError};

/// The hubs a client may use, in order of preference: never empty, each
/// address once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubAddresses(Vec<SocketAddr>);

#[derive(Debug, thiserror::Error)]
pub enum HubAddressError {
    #[error("no hub address was given")]
    Empty,
}

impl HubAddresses {
    /// The addresses in the order given; a repeated address is kept at its
    /// first place only, so that moving on always reaches another hub.
    pub fn new(addresses: impl IntoIterator<Item = SocketAddr>) -> Result<Self, HubAddressError> {
        let mut unique: Vec<SocketAddr> = Vec::new();
        for address in addresses {
            if !unique.contains(&address) {
                unique.push(address);
            }
        }
        if unique.is_empty() {
            return Err(HubAddressError::Empty);
        }
        Ok(HubAddresses(unique))
    }

    pub fn one(address: SocketAddr) -> Self {
        HubAddresses(vec![address])
    }

    pub fn first(&self) -> SocketAddr {
        self.0[0]
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: the list is never empty.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn as_slice(&self) -> &[SocketAddr] {
        &self.0
    }

    pub fn iter(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.0.iter().copied()
    }

    /// The same hubs, starting at the `by`-th: clients given rotations
    /// spread over the hubs while each still knows them all.
    pub fn rotated(&self, by: usize) -> HubAddresses {
        let mut addresses = self.0.clone();
        let len = addresses.len();
        addresses.rotate_left(by % len);
        HubAddresses(addresses)
    }

    fn position(&self, address: SocketAddr) -> Option<usize> {
        self.0.iter().position(|known| *known == address)
    }
}

impl From<SocketAddr> for HubAddresses {
    fn from(address: SocketAddr) -> Self {
        HubAddresses::one(address)
    }
}

/// The comma list of the `--hub` flag and of `TRUC_HUB`: `a:7443,b:7443`.
impl fmt::Display for HubAddresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, address) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{address}")?;
        }
        Ok(())
    }
}

/// Attempts of one call over all hubs, the first included, by default. A
/// call always gets at least one attempt per hub.
pub const ATTEMPTS_MAX_DEFAULT: u32 = 6;
/// First wait before asking a hub this call already asked; it doubles up to
/// [`BACKOFF_MAX_DEFAULT`]. A hub not yet asked is asked at once.
pub const BACKOFF_FIRST_DEFAULT: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX_DEFAULT: Duration = Duration::from_secs(2);
/// No new attempt of a call starts this long after its first.
pub const RETRY_DEADLINE_DEFAULT: Duration = Duration::from_secs(30);
/// Longest TCP connect and TLS handshake with one hub: an address that
/// swallows packets costs this, not the system's minutes of SYN retries.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// HTTP/2 pings on a connection with calls open; a hub that answers none
/// within [`KEEPALIVE_TIMEOUT_DEFAULT`] is taken as gone, so a delivery
/// stream to a machine that vanished ends instead of waiting forever.
pub const KEEPALIVE_INTERVAL_DEFAULT: Duration = Duration::from_secs(20);
pub const KEEPALIVE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(20);

/// How a client moves between hubs and how long it keeps trying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverOptions {
    pub attempts_max: u32,
    pub backoff_first: Duration,
    pub backoff_max: Duration,
    pub retry_deadline: Duration,
    pub connect_timeout: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
}

impl Default for FailoverOptions {
    fn default() -> Self {
        FailoverOptions {
            attempts_max: ATTEMPTS_MAX_DEFAULT,
            backoff_first: BACKOFF_FIRST_DEFAULT,
            backoff_max: BACKOFF_MAX_DEFAULT,
            retry_deadline: RETRY_DEADLINE_DEFAULT,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            keepalive_interval: KEEPALIVE_INTERVAL_DEFAULT,
            keepalive_timeout: KEEPALIVE_TIMEOUT_DEFAULT,
        }
    }
}

/// Whether a status says only that the hub did not answer, so that the
/// request may go to another hub: UNAVAILABLE (from the hub, or made by
/// the client when it could not connect), or a status the client made from
/// a broken connection (it carries the transport error as its source; a
/// status the hub sent never does). Everything else is the hub's answer.
pub fn hub_did_not_answer(status: &tonic::Status) -> bool {
    use std::error::Error;
    match status.code() {
        tonic::Code::Unavailable => true,
        tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::Internal => {
            status.source().is_some()
        }
        _ => false,
    }
}

pub(crate) type Stub = pb::axis_client::AxisClient<Channel>;

/// Largest message either way: attachments travel in chunks well below it.
const MESSAGE_BYTES_MAX: usize = 4 * 1024 * 1024;

pub(crate) fn stub(channel: Channel) -> Stub {
    pb::axis_client::AxisClient::new(channel)
        .max_decoding_message_size(MESSAGE_BYTES_MAX)
        .max_encoding_message_size(MESSAGE_BYTES_MAX)
}

/// The hubs of one client, shared by its clones.
pub(crate) struct Hubs {
    addresses: HubAddresses,
    tls: Arc<rustls::ClientConfig>,
    options: FailoverOptions,
    state: Mutex<State>,
    /// One connection attempt at a time: a burst of calls after a failure
    /// opens one channel to the next hub, not one each.
    connecting: tokio::sync::Mutex<()>,
}

struct State {
    /// The hub calls go to.
    index: usize,
    /// Its channel, once connected.
    stub: Option<Stub>,
    /// Whether the hub has answered a call on this channel (a result or a
    /// refusal); until then, a transport failure may be its refusal of
    /// this client's certificate.
    answered: bool,
    jitter: Jitter,
}

impl Hubs {
    pub(crate) fn new(
        addresses: HubAddresses,
        tls: Arc<rustls::ClientConfig>,
        options: FailoverOptions,
        seed: &[u8],
    ) -> Self {
        Hubs {
            addresses,
            tls,
            options,
            state: Mutex::new(State {
                index: 0,
                stub: None,
                answered: false,
                jitter: Jitter::new(seed),
            }),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn addresses(&self) -> &HubAddresses {
        &self.addresses
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves a consistent state:
        // every change below is a plain assignment.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn current(&self) -> SocketAddr {
        self.addresses.0[self.state().index]
    }

    /// Tries each hub once, in order, and stays on the first that accepts a
    /// connection. With one address its error is returned as it is.
    pub(crate) async fn connect_first(&self) -> Result<(), ClientError> {
        let mut errors = Vec::new();
        for (index, address) in self.addresses.iter().enumerate() {
            match connect_tls(address, &self.tls, &self.options).await {
                Ok(channel) => {
                    let mut state = self.state();
                    state.index = index;
                    state.stub = Some(stub(channel));
                    state.answered = false;
                    return Ok(());
                }
                Err(error) => errors.push(error),
            }
        }
        if errors.len() == 1 {
            return Err(errors.remove(0));
        }
        Err(ClientError::NoHubAnswered(errors))
    }

    /// The current hub's index and channel, connecting first if needed.
    async fn channel(&self) -> (usize, Result<Stub, ClientError>) {
        let ready = |state: &State| state.stub.clone().map(|stub| (state.index, Ok(stub)));
        if let Some(found) = ready(&self.state()) {
            return found;
        }
        let _one_at_a_time = self.connecting.lock().await;
        let index = {
            let state = self.state();
            if let Some(found) = ready(&state) {
                return found;
            }
            state.index
        };
        match connect_tls(self.addresses.0[index], &self.tls, &self.options).await {
            Ok(channel) => {
                let stub = stub(channel);
                let mut state = self.state();
                if state.index == index {
                    state.stub = Some(stub.clone());
                    state.answered = false;
                }
                (index, Ok(stub))
            }
            Err(error) => (index, Err(error)),
        }
    }

    /// Moves calls on to the next hub if they still go to hub `index` (calls
    /// that failed together move once), and lets go of its channel. With
    /// one hub, the next call connects to it again.
    fn move_on_from_index(&self, index: usize) {
        let mut state = self.state();
        if state.index == index {
            state.index = (index + 1) % self.addresses.len();
            state.stub = None;
        }
    }

    pub(crate) fn move_on_from(&self, address: SocketAddr) {
        if let Some(index) = self.addresses.position(address) {
            self.move_on_from_index(index);
        }
    }

    /// Runs `attempt` on the current hub, and again on the next ones while
    /// the hub does not answer, within the attempts and the deadline of the
    /// options. `attempt` is called only with a connected channel; whatever
    /// the hub answered, refusals included, is returned at once.
    pub(crate) async fn call<T, F, Fut>(&self, mut attempt: F) -> Result<T, ClientError>
    where
        F: FnMut(Stub) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let started = Instant::now();
        let hubs = self.addresses.len();
        let attempts_max = self.options.attempts_max.max(hubs as u32).max(1);
        let mut asked = vec![false; hubs];
        let mut backoff = self.options.backoff_first;
        let mut made = 0u32;
        loop {
            let (index, outcome) = match self.channel().await {
                (index, Ok(stub)) => (index, attempt(stub).await),
                (index, Err(error)) => (index, Err(error)),
            };
            made += 1;
            let answered = |state: &mut State| {
                if state.index == index {
                    state.answered = true;
                }
            };
            let error = match outcome {
                Ok(value) => {
                    answered(&mut self.state());
                    return Ok(value);
                }
                Err(error) if !error.is_unreachable() => {
                    answered(&mut self.state());
                    return Err(error);
                }
                Err(error) => error,
            };
            // A refused certificate is the hub's answer, and every hub of
            // one CA gives the same: said at once, never asked again. Under
            // TLS 1.3 it breaks the first call on a connection, as a
            // transport error that no longer says why, so a connection
            // that never carried an answer is asked once more.
            let unproven = {
                let state = self.state();
                state.index == index && !state.answered
            };
            // Only a call that ran on a connection: one that could not
            // connect said why already.
            let on_a_connection = matches!(error, ClientError::Refused(_));
            if on_a_connection && (unproven || crate::client::broken_tls_record(&error)) {
                let address = self.addresses.0[index];
                if let Some(problem) =
                    crate::client::probe_certificate(address, &self.tls, &self.options).await
                {
                    return Err(ClientError::Certificate {
                        address: Some(address),
                        problem,
                    });
                }
            }
            self.move_on_from_index(index);
            asked[index] = true;
            let elapsed = started.elapsed();
            let left = self.options.retry_deadline.saturating_sub(elapsed);
            if made >= attempts_max || left.is_zero() {
                tracing::warn!(
                    hubs = %self.addresses,
                    attempts = made,
                    elapsed_ms = elapsed.as_millis() as u64,
                    %error,
                    "no hub answered; giving up"
                );
                return Err(error);
            }
            let (next, wait) = {
                let mut state = self.state();
                let next = state.index;
                // A hub this call has not asked yet is asked at once; coming
                // back to one waits, spread over the wait's second half so
                // that many clients do not come back together.
                let wait = asked[next]
                    .then(|| backoff / 2 + backoff.mul_f64(state.jitter.next_unit() / 2.0));
                (next, wait)
            };
            tracing::info!(
                hub = %self.addresses.0[index],
                next = %self.addresses.0[next],
                %error,
                "the hub did not answer; asking the next"
            );
            if let Some(wait) = wait {
                tokio::time::sleep(wait.min(left)).await;
                backoff = (backoff * 2).min(self.options.backoff_max);
            }
        }
    }
}

/// A small generator for jitter in waits, seeded per identity and process.
pub(crate) struct Jitter(SplitMix64);

impl Jitter {
    pub(crate) fn new(certificate: &[u8]) -> Self {
        let mut seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64)
            ^ u64::from(std::process::id());
        for &byte in certificate.iter().rev().take(32) {
            seed = (seed ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
        }
        Jitter(SplitMix64::new(seed))
    }

    /// A fraction in [0, 1): the top 53 bits, all an `f64` holds exactly.
    pub(crate) fn next_unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_list_keeps_its_order_and_each_address_once_and_is_never_empty() {
        let hubs = HubAddresses::new([address(2), address(1), address(2), address(3)]).unwrap();
        assert_eq!(hubs.as_slice(), &[address(2), address(1), address(3)]);
        assert_eq!(hubs.to_string(), "127.0.0.1:2,127.0.0.1:1,127.0.0.1:3");
        assert_eq!(HubAddresses::one(address(9)).to_string(), "127.0.0.1:9");
        assert!(matches!(
            HubAddresses::new(Vec::new()),
            Err(HubAddressError::Empty)
        ));
    }

    #[test]
    fn only_a_hub_that_did_not_answer_is_left_for_another() {
        assert!(hub_did_not_answer(&tonic::Status::unavailable("down")));
        // Answers of the hub: never asked again.
        for code in [
            tonic::Code::InvalidArgument,
            tonic::Code::PermissionDenied,
            tonic::Code::AlreadyExists,
            tonic::Code::FailedPrecondition,
            tonic::Code::NotFound,
            tonic::Code::ResourceExhausted,
            tonic::Code::Unauthenticated,
            tonic::Code::Internal,
            tonic::Code::Unknown,
        ] {
            assert!(
                !hub_did_not_answer(&tonic::Status::new(code, "x")),
                "{code:?}"
            );
        }
        // The same codes made by the client from a broken connection.
        let broken = tonic::Status::from_error(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert_eq!(broken.code(), tonic::Code::Unknown);
        assert!(hub_did_not_answer(&broken));
    }

    /// An address nothing listens on: bound, then let go.
    fn dead_address() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    #[tokio::test]
    async fn a_call_no_hub_answers_ends_at_its_attempts_or_at_its_deadline() {
        let folder = tempfile::tempdir().unwrap();
        let agency = "000.00.00.G22".to_string();
        let pki = truc_pki::init_dev_pki(
            folder.path(),
            &[(agency.clone(), "Agency".into())],
            &[],
            Duration::from_secs(3_600),
        )
        .unwrap();
        let hubs = HubAddresses::new([dead_address(), dead_address()]).unwrap();
        let by_attempts = FailoverOptions {
            attempts_max: 3,
            backoff_first: Duration::from_millis(1),
            backoff_max: Duration::from_millis(1),
            retry_deadline: Duration::from_secs(3_600),
            ..FailoverOptions::default()
        };
        let by_deadline = FailoverOptions {
            attempts_max: u32::MAX,
            backoff_first: Duration::from_millis(10),
            backoff_max: Duration::from_millis(10),
            retry_deadline: Duration::from_millis(200),
            ..FailoverOptions::default()
        };
        for options in [by_attempts, by_deadline] {
            let client = crate::AxisClient::lazy(
                &hubs,
                &pki.trust_roots().unwrap(),
                pki.agency_credentials(&agency).unwrap(),
                options.clone(),
            )
            .unwrap();
            // Either bound alone would take an hour without the other.
            let error = tokio::time::timeout(Duration::from_secs(30), client.counts("", ""))
                .await
                .unwrap_or_else(|_| panic!("{options:?} did not bound the call"))
                .unwrap_err();
            assert!(error.is_unreachable(), "{error}");
        }
    }

    #[test]
    fn jitter_stays_in_the_unit_interval() {
        let mut jitter = Jitter::new(b"certificate");
        for _ in 0..1_000 {
            let unit = jitter.next_unit();
            assert!((0.0..1.0).contains(&unit), "{unit}");
        }
    }
}
