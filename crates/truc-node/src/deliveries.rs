//! The one client-side delivery loop: opens the delivery stream, hands each
//! item to the caller's [`DeliveryHandler`], acknowledges what the handler
//! accepts, and after a stream that ended or broke moves on to the next hub
//! and opens another when the handler's reconnection policy says so. The
//! node agent writes into its inbox through it, the replay driver counts and
//! moves statuses, the bench records latencies.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio_stream::StreamExt;
use truc_domain::views::HubItem;
use truc_proto::v1 as pb;

use crate::client::{Acks, AxisClient, ClientError};
use crate::failover::Jitter;

/// What an item of the stream is read as: domain views ([`HubItem`]), or
/// wire messages for a caller that keeps the bytes as they came
/// ([`pb::HubMessage`], the node agent).
pub trait StreamItem: Sized + Send {
    /// `None` for a message this version does not know (one from a newer hub).
    fn from_wire(message: pb::HubMessage) -> Option<Self>;
    /// The queue sequence an acknowledgement names.
    fn queue_seq(&self) -> u64;
}

impl StreamItem for HubItem {
    fn from_wire(message: pb::HubMessage) -> Option<Self> {
        truc_proto::convert::hub_item(message)
    }

    fn queue_seq(&self) -> u64 {
        match self {
            HubItem::Delivery(delivery) => delivery.queue_seq,
            HubItem::Notice(notice) => notice.queue_seq,
        }
    }
}

impl StreamItem for pb::HubMessage {
    fn from_wire(message: pb::HubMessage) -> Option<Self> {
        message.kind.is_some().then_some(message)
    }

    fn queue_seq(&self) -> u64 {
        match &self.kind {
            Some(pb::hub_message::Kind::Delivery(delivery)) => delivery.queue_seq,
            Some(pb::hub_message::Kind::Notice(notice)) => notice.queue_seq,
            // Never asked: `from_wire` keeps only messages with a kind.
            None => 0,
        }
    }
}

/// What the loop does with an item once the handler has seen it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// Acknowledge it: the hub records a delivery arrived, a notice read.
    Ack,
    /// Leave it to the handler: refused (the hub sends it again later), or
    /// acknowledged by the handler itself.
    Hold,
    /// Stop the loop: this node cannot go on.
    Stop,
}

/// How one stream ended.
#[derive(Debug)]
pub enum SessionEnd {
    /// The stream did not open (the client has already tried every hub).
    NotOpened(ClientError),
    /// The hub ended the stream.
    Ended,
    /// The hub stopped taking acknowledgements: its side of the call is over.
    AcksClosed,
    /// The stream broke.
    Broke(ClientError),
    /// The handler failed on an item; it was not acknowledged.
    Failed(ClientError),
}

impl SessionEnd {
    /// Whether the next stream goes to the next hub: one that ended the
    /// stream is stopping, and one that broke it has stopped answering. A hub
    /// that refused something is asked again.
    fn leaves_hub(&self) -> bool {
        match self {
            SessionEnd::NotOpened(_) => false,
            SessionEnd::Ended | SessionEnd::AcksClosed => true,
            SessionEnd::Broke(error) | SessionEnd::Failed(error) => error.is_unreachable(),
        }
    }
}

/// A caller's part of the loop: what to do with each item, and whether to
/// open another stream after one ended.
pub trait DeliveryHandler: Send {
    type Item: StreamItem;

    /// A stream opened on `hub`.
    fn opened(&mut self, hub: SocketAddr) -> impl Future<Output = ()> + Send {
        let _ = hub;
        async {}
    }

    /// One delivery or notice. An error ends the stream without
    /// acknowledging the item ([`SessionEnd::Failed`]).
    fn handle(
        &mut self,
        item: Self::Item,
        acks: &Acks,
    ) -> impl Future<Output = Result<Receipt, ClientError>> + Send;

    /// After a stream ended: how long to wait before opening the next one,
    /// or `None` to stop.
    fn reconnect(&mut self, end: &SessionEnd) -> Option<Duration>;
}

/// How the loop reads one stream.
#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// Unacknowledged items the hub may send at once.
    pub window: u32,
    /// Hold acknowledgements while more items are ready, and send them in
    /// one message: the hub writes them in one durable write.
    pub batch_acks: bool,
}

/// Runs delivery streams on `client`, one after another as `handler`
/// decides, until `shutdown` resolves or the handler stops.
pub async fn run_deliveries<H: DeliveryHandler>(
    client: &AxisClient,
    options: StreamOptions,
    handler: &mut H,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (hub, end) = tokio::select! {
            _ = &mut shutdown => return,
            ended = session(client, options, handler) => match ended {
                Some(ended) => ended,
                None => return,
            },
        };
        if let Some(hub) = hub.filter(|_| end.leaves_hub()) {
            client.move_on_from(hub);
        }
        let Some(wait) = handler.reconnect(&end) else {
            return;
        };
        if !wait.is_zero() {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// One stream from its opening until it ends, and the hub that served it;
/// `None` when the handler stopped.
async fn session<H: DeliveryHandler>(
    client: &AxisClient,
    options: StreamOptions,
    handler: &mut H,
) -> Option<(Option<SocketAddr>, SessionEnd)> {
    let (sender, mut stream) = match client.wire_deliveries(options.window, true).await {
        Ok(opened) => opened,
        Err(error) => return Some((None, SessionEnd::NotOpened(error))),
    };
    let acks = Acks::new(sender);
    let hub = client.current_hub();
    handler.opened(hub).await;
    let mut ready_acks: Vec<u64> = Vec::new();
    let end = loop {
        let next = if ready_acks.is_empty() {
            stream.next().await
        } else {
            match tokio::time::timeout(Duration::ZERO, stream.next()).await {
                Ok(next) => next,
                Err(_) => {
                    if acks.ack(std::mem::take(&mut ready_acks)).await.is_err() {
                        break SessionEnd::AcksClosed;
                    }
                    continue;
                }
            }
        };
        let message = match next {
            None => break SessionEnd::Ended,
            Some(Err(status)) => return Some((Some(hub), SessionEnd::Broke(status.into()))),
            Some(Ok(message)) => message,
        };
        let Some(item) = H::Item::from_wire(message) else {
            continue;
        };
        let seq = item.queue_seq();
        match handler.handle(item, &acks).await {
            Ok(Receipt::Ack) if options.batch_acks => ready_acks.push(seq),
            Ok(Receipt::Ack) => {
                if acks.ack(vec![seq]).await.is_err() {
                    break SessionEnd::AcksClosed;
                }
            }
            Ok(Receipt::Hold) => {}
            Ok(Receipt::Stop) => return None,
            Err(error) => return Some((Some(hub), SessionEnd::Failed(error))),
        }
    };
    // Only a stream that closed in order sends what it held; after an error
    // the hub sends those items again, and receiving them is idempotent.
    if !ready_acks.is_empty() {
        let _ = acks.ack(ready_acks).await;
    }
    Some((Some(hub), end))
}

/// Waits between reconnections: from `first`, doubling up to `max` while
/// streams fail to open, and from `first` again after a stream that opened.
/// Each wait is spread over its second half, so that the nodes of a hub that
/// restarted do not all come back together.
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
    jitter: Jitter,
}

impl Backoff {
    /// `seed` makes one node's waits differ from another's (its certificate).
    pub fn new(first: Duration, max: Duration, seed: &[u8]) -> Self {
        Backoff {
            first,
            max,
            next: first,
            jitter: Jitter::new(seed),
        }
    }

    /// The wait after a stream that `opened` or did not.
    pub fn after(&mut self, opened: bool) -> Duration {
        if opened {
            self.next = self.first;
        }
        let backoff = self.next;
        self.next = (backoff * 2).min(self.max);
        backoff / 2 + backoff.mul_f64(self.jitter.next_unit() / 2.0)
    }
}
