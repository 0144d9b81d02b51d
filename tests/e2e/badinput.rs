//! The bad-input table: hundreds of ill-formed, oversized, forged and illegal
//! requests sent to one real hub over mutual TLS. Every row must be refused
//! with its gRPC code and a message that names its field, and must leave the
//! stored state exactly as it was; the hub must still serve afterwards.

mod cases;
mod wire;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut};
use http_body_util::BodyExt;
use tokio_stream::StreamExt;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http;
use tonic::transport::Channel;
use tonic::{Code, Status};
use truc_domain::Status as DocStatus;
use truc_proto::v1 as pb;
use truc_testkit::{draft, pdf, TestHub, TestHubOptions, AGENCIES, UNREGISTERED};

pub const G22: &str = AGENCIES[0];
pub const G12: &str = AGENCIES[1];
pub const H41: &str = AGENCIES[2];
pub const G17: &str = AGENCIES[3];
pub const G09: &str = AGENCIES[4];
pub const H01: &str = UNREGISTERED;

/// Whose certificate a row's connection presents.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Who {
    Agency(&'static str),
    /// Reads everything, changes nothing.
    Operator,
    /// Reads, and alone resends and cancels dead letters.
    Administrator,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Send,
    Deliveries,
    MoveStatus,
    GetStatus,
    FetchAttachment,
    Counts,
    Report,
    ExplainRoute,
    ListDocuments,
    ListNodes,
    ListOverdue,
    ListDeadLetters,
    ResendDeadLetter,
    CancelDeadLetter,
}

impl Method {
    fn path(self) -> &'static str {
        match self {
            Method::Send => "/truc.v1.Axis/Send",
            Method::Deliveries => "/truc.v1.Axis/Deliveries",
            Method::MoveStatus => "/truc.v1.Axis/MoveStatus",
            Method::GetStatus => "/truc.v1.Axis/GetStatus",
            Method::FetchAttachment => "/truc.v1.Axis/FetchAttachment",
            Method::Counts => "/truc.v1.Axis/Counts",
            Method::Report => "/truc.v1.Axis/Report",
            Method::ExplainRoute => "/truc.v1.Axis/ExplainRoute",
            Method::ListDocuments => "/truc.v1.Axis/ListDocuments",
            Method::ListNodes => "/truc.v1.Axis/ListNodes",
            Method::ListOverdue => "/truc.v1.Axis/ListOverdue",
            Method::ListDeadLetters => "/truc.v1.Axis/ListDeadLetters",
            Method::ResendDeadLetter => "/truc.v1.Axis/ResendDeadLetter",
            Method::CancelDeadLetter => "/truc.v1.Axis/CancelDeadLetter",
        }
    }
}

/// What a row sends. Messages are bytes so that rows can hold protobuf no
/// encoder would produce.
pub enum Input {
    /// The messages of one `Send` stream.
    Send(Vec<Vec<u8>>),
    /// The messages of one `Deliveries` stream.
    Deliveries(Vec<Vec<u8>>),
    /// The one request message of a unary or server-streaming method.
    Request(Method, Vec<u8>),
    /// A whole HTTP/2 request body, gRPC framing included.
    Body(Method, Vec<u8>),
}

/// One row: what is sent, by whom, and how the hub must refuse it.
pub struct Case {
    pub name: String,
    pub who: Who,
    pub input: Input,
    pub code: Code,
    /// The message must start with `field:`.
    pub field: String,
    /// Text the message must also contain (a nested field, the current state).
    pub details: Vec<String>,
    /// A document id that must still be unknown to the hub after the row.
    pub probe: Option<String>,
}

impl Case {
    pub fn new(
        name: impl Into<String>,
        who: Who,
        input: Input,
        code: Code,
        field: impl Into<String>,
    ) -> Case {
        Case {
            name: name.into(),
            who,
            input,
            code,
            field: field.into(),
            details: Vec::new(),
            probe: None,
        }
    }

    pub fn detail(mut self, text: impl Into<String>) -> Case {
        self.details.push(text.into());
        self
    }

    pub fn probe(mut self, document_id: impl Into<String>) -> Case {
        self.probe = Some(document_id.into());
        self
    }
}

/// What the table is built from: the hub's date, the agencies' keys and the
/// documents already stored before the first row.
pub struct Fixtures {
    /// Today in Vietnam, the hub's idea of "today" for promulgation dates.
    pub today: time::Date,
    /// PKCS#8 Ed25519 keys by agency code, the unregistered agency's included.
    pub keys: BTreeMap<&'static str, Vec<u8>>,
    /// A key certified for the Government Office's code by another CA.
    pub foreign_key: Vec<u8>,
    /// G22 to G12, H41, G17, G09.
    pub f1: String,
    /// G12 to G22, H41, G17, G09.
    pub f2: String,
    /// The bytes of F1's attachment, stored on the hub.
    pub stored_attachment: Vec<u8>,
    /// One delivery in each state: (state, document id, recipient).
    pub deliveries: Vec<(&'static str, String, &'static str)>,
}

/// Passes message bytes through untouched, both ways.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, destination: &mut EncodeBuf<'_>) -> Result<(), Status> {
        destination.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, source: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut bytes = vec![0; source.remaining()];
        source.copy_to_slice(&mut bytes);
        Ok(Some(bytes))
    }
}

/// A channel over the same mutual TLS a node uses, with a given certificate.
async fn connect(hub: &TestHub, who: Who) -> Channel {
    let credentials = match who {
        Who::Agency(code) => hub.pki.agency_credentials(code),
        Who::Operator => hub.pki.operator_credentials(truc_testkit::OPERATOR),
        Who::Administrator => hub
            .pki
            .administrator_credentials(truc_testkit::ADMINISTRATOR),
    }
    .expect("credentials");
    let roots = hub.pki.trust_roots().expect("trust roots");
    truc_node::connect_channel(hub.address, &roots, &credentials)
        .await
        .expect("connects over mutual TLS")
}

/// How the hub answered a row.
enum Outcome {
    Refused(Status),
    /// Anything but a refusal, described.
    Answered(String),
}

async fn first_item(mut stream: tonic::Streaming<Vec<u8>>) -> Outcome {
    match stream.next().await {
        Some(Err(status)) => Outcome::Refused(status),
        Some(Ok(message)) => Outcome::Answered(format!("a {}-byte message", message.len())),
        None => Outcome::Answered("a stream that ended cleanly".into()),
    }
}

async fn run(channel: Channel, address: std::net::SocketAddr, input: &Input) -> Outcome {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    if let Err(error) = grpc.ready().await {
        return Outcome::Answered(format!("a channel that is not ready: {error}"));
    }
    let path = |method: Method| http::uri::PathAndQuery::from_static(method.path());
    match input {
        Input::Send(messages) => {
            let stream = tokio_stream::iter(messages.clone());
            match grpc
                .client_streaming(tonic::Request::new(stream), path(Method::Send), RawCodec)
                .await
            {
                Ok(response) => Outcome::Answered(format!(
                    "an acknowledgement {:?}",
                    <pb::SendResponse as prost::Message>::decode(response.into_inner().as_slice())
                )),
                Err(status) => Outcome::Refused(status),
            }
        }
        Input::Deliveries(messages) => {
            let stream = tokio_stream::iter(messages.clone());
            match grpc
                .streaming(
                    tonic::Request::new(stream),
                    path(Method::Deliveries),
                    RawCodec,
                )
                .await
            {
                Ok(response) => first_item(response.into_inner()).await,
                Err(status) => Outcome::Refused(status),
            }
        }
        Input::Request(Method::FetchAttachment, message) => match grpc
            .server_streaming(
                tonic::Request::new(message.clone()),
                path(Method::FetchAttachment),
                RawCodec,
            )
            .await
        {
            Ok(response) => first_item(response.into_inner()).await,
            Err(status) => Outcome::Refused(status),
        },
        Input::Request(method, message) => match grpc
            .unary(
                tonic::Request::new(message.clone()),
                path(*method),
                RawCodec,
            )
            .await
        {
            Ok(response) => {
                Outcome::Answered(format!("{} bytes of answer", response.into_inner().len()))
            }
            Err(status) => Outcome::Refused(status),
        },
        Input::Body(method, body) => raw_body(channel, address, *method, body.clone()).await,
    }
}

/// Sends a request body as is, framing and all, and reads the gRPC status
/// from the response's headers or trailers.
async fn raw_body(
    mut channel: Channel,
    address: std::net::SocketAddr,
    method: Method,
    body: Vec<u8>,
) -> Outcome {
    use tower::{Service, ServiceExt};
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{address}{}", method.path()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::new(
            bytes::Bytes::from(body),
        )))
        .expect("a request");
    let response = match channel.ready().await {
        Ok(ready) => ready.call(request).await,
        Err(error) => return Outcome::Answered(format!("a channel that is not ready: {error}")),
    };
    let response = match response {
        Ok(response) => response,
        Err(error) => return Outcome::Answered(format!("a transport error: {error}")),
    };
    let (parts, body) = response.into_parts();
    if let Some(status) = Status::from_header_map(&parts.headers) {
        return Outcome::Refused(status);
    }
    match body.collect().await {
        Ok(collected) => match collected.trailers().and_then(Status::from_header_map) {
            Some(status) if status.code() != Code::Ok => Outcome::Refused(status),
            _ => Outcome::Answered(format!("HTTP {} without an error status", parts.status)),
        },
        Err(error) => Outcome::Answered(format!("a body error: {error}")),
    }
}

/// Everything a refused row must leave untouched, read through the public API.
#[derive(Debug, PartialEq)]
struct Snapshot {
    counts: pb::CountsResponse,
    report: pb::ReportResponse,
    documents: Vec<pb::GetStatusResponse>,
}

async fn snapshot(operator: &mut pb::axis_client::AxisClient<Channel>, ids: &[&str]) -> Snapshot {
    let counts = operator
        .counts(pb::CountsRequest::default())
        .await
        .expect("operator counts")
        .into_inner();
    let report = operator
        .report(pb::ReportRequest::default())
        .await
        .expect("operator report")
        .into_inner();
    let mut documents = Vec::new();
    for id in ids {
        documents.push(
            operator
                .get_status(pb::GetStatusRequest {
                    document_id: id.to_string(),
                })
                .await
                .expect("fixture status")
                .into_inner(),
        );
    }
    Snapshot {
        counts,
        report,
        documents,
    }
}

/// Acknowledges the deliveries of `wanted` documents waiting for `agency`,
/// leaving the rest queued, and waits until their arrival is on record.
async fn arrive(hub: &TestHub, agency: &str, wanted: &[&str]) {
    let client = hub.client(agency).await;
    let (acks, mut stream) = client.deliveries(64).await.expect("delivery stream");
    let mut pending: Vec<&str> = wanted.to_vec();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !pending.is_empty() {
        let message = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("deliveries in time")
            .expect("stream open")
            .expect("a hub message");
        if let truc_domain::views::HubItem::Delivery(delivery) = message {
            if let Some(at) = pending.iter().position(|id| *id == delivery.document_id) {
                pending.remove(at);
                acks.ack(vec![delivery.queue_seq]).await.expect("ack sent");
            }
        }
    }
    for id in wanted {
        loop {
            let status = client.get_status(id).await.expect("own delivery status");
            if status.recipients.iter().any(|r| r.current.code() == 1) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{agency} never arrived {id}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Two documents with one delivery in every state of the status machine.
async fn fixtures(hub: &TestHub) -> Fixtures {
    let today = time::OffsetDateTime::now_utc()
        .to_offset(time::UtcOffset::from_hms(7, 0, 0).expect("UTC+7"))
        .date();
    let mut keys = BTreeMap::new();
    for code in AGENCIES.into_iter().chain([H01]) {
        keys.insert(
            code,
            hub.pki
                .agency_credentials(code)
                .expect("agency credentials")
                .key_pkcs8_der
                .clone(),
        );
    }
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let foreign = truc_pki::init_dev_pki(
        elsewhere.path(),
        &[(G22.to_string(), "Impostor".to_string())],
        &[],
        Duration::from_secs(3600),
    )
    .expect("another CA");
    let foreign_key = foreign
        .agency_credentials(G22)
        .expect("foreign credentials")
        .key_pkcs8_der
        .clone();

    let attachment = pdf("vanban.pdf", 1, 1000);
    let truc_node::compose::AttachmentSource::Bytes(stored) = attachment.source.clone() else {
        unreachable!("pdf() makes bytes")
    };
    let f1 = hub
        .client(G22)
        .await
        .send(&draft(G22, &[G12, H41, G17, G09], 1), vec![attachment])
        .await
        .expect("F1 accepted")
        .document_id;
    let f2 = hub
        .client(G12)
        .await
        .send(
            &draft(G12, &[G22, H41, G17, G09], 2),
            vec![pdf("vanban.pdf", 2, 1000)],
        )
        .await
        .expect("F2 accepted")
        .document_id;
    arrive(hub, H41, &[&f1, &f2]).await;
    arrive(hub, G17, &[&f1, &f2]).await;
    arrive(hub, G09, &[&f1]).await;
    arrive(hub, G22, &[&f2]).await;
    let moves = [
        (G17, &f1, DocStatus::Received, ""),
        (G09, &f1, DocStatus::Assigned, ""),
        (G22, &f2, DocStatus::Processing, ""),
        (H41, &f2, DocStatus::Completed, ""),
        (G17, &f2, DocStatus::Rejected, "Sai thẩm quyền"),
    ];
    for (agency, id, status, reason) in moves {
        hub.client(agency)
            .await
            .move_status(id, None, status, reason)
            .await
            .expect("fixture move");
    }
    let deliveries = vec![
        ("queued", f1.clone(), G12),
        ("arrived", f1.clone(), H41),
        ("received", f1.clone(), G17),
        ("assigned", f1.clone(), G09),
        ("processing", f2.clone(), G22),
        ("completed", f2.clone(), H41),
        ("rejected", f2.clone(), G17),
        ("queued", f2.clone(), G09),
    ];
    Fixtures {
        today,
        keys,
        foreign_key,
        f1,
        f2,
        stored_attachment: stored.to_vec(),
        deliveries,
    }
}

fn check(case: &Case, outcome: Outcome) -> Result<(), String> {
    let status = match outcome {
        Outcome::Refused(status) => status,
        Outcome::Answered(what) => return Err(format!("answered with {what}")),
    };
    let message = status.message();
    let mut problems = Vec::new();
    if status.code() != case.code {
        problems.push(format!(
            "code {:?}, expected {:?}",
            status.code(),
            case.code
        ));
    }
    if !message.starts_with(&format!("{}:", case.field)) {
        problems.push(format!("the message does not start with '{}:'", case.field));
    }
    // What the client wrote may be repeated, quoted with escapes, never as
    // it was: a refusal is shown to people and reaches log lines.
    if let Some(raw) = message
        .chars()
        .find(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
    {
        problems.push(format!(
            "the message holds U+{:04X} unescaped",
            u32::from(raw)
        ));
    }
    for detail in &case.details {
        if !message.contains(detail.as_str()) {
            problems.push(format!("the message does not mention '{detail}'"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{} (message: {message:?})", problems.join("; ")))
    }
}

/// Everything stored, read from a stopped hub's data directory: what no
/// refused row may add to, even in part.
#[derive(Debug, PartialEq)]
struct Disk {
    documents: BTreeMap<String, truc_store::DocumentRecord>,
    deliveries: BTreeMap<String, Vec<truc_store::DeliveryRecord>>,
    queues: BTreeMap<&'static str, Vec<(u64, truc_store::QueueItem)>>,
    counters: truc_store::CounterMap,
    blobs: BTreeMap<[u8; 32], truc_store::BlobRecord>,
}

async fn disk(hub: &TestHub) -> Disk {
    let store = hub.stopped_store().await;
    let mut disk = Disk {
        documents: BTreeMap::new(),
        deliveries: BTreeMap::new(),
        queues: BTreeMap::new(),
        counters: store.counter_entries().expect("counters"),
        blobs: BTreeMap::new(),
    };
    assert_eq!(
        disk.counters,
        store.rebuild_counters().expect("rebuilt counters"),
        "live counters must agree with the records"
    );
    for id in store.document_ids() {
        let id = id.expect("document id");
        let record = store.document(&id).expect("read").expect("listed");
        for attachment in &record.attachments {
            let blob = store
                .blob(&attachment.sha256)
                .expect("read")
                .expect("stored");
            disk.blobs.insert(attachment.sha256, blob);
        }
        disk.deliveries
            .insert(id.clone(), store.deliveries(&id).expect("deliveries"));
        disk.documents.insert(id, record);
    }
    for agency in AGENCIES.into_iter().chain([H01]) {
        disk.queues.insert(
            agency,
            store.queue_after(agency, 0, usize::MAX).expect("queue"),
        );
    }
    disk
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_refused_cleanly_and_changes_nothing() {
    bad_input_table(TestHubOptions::default()).await;
}

/// The same table against a hub on PostgreSQL: no refusal writes a row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_refused_cleanly_on_postgres_too() {
    let database = truc_testkit::TestDatabase::start();
    bad_input_table(TestHubOptions {
        postgres_url: Some(database.database("bad_input")),
        ..TestHubOptions::default()
    })
    .await;
}

/// Rows of the bad-input table, as RELIABILITY.md states them.
const TABLE_ROWS: usize = 1_781;

async fn bad_input_table(options: TestHubOptions) {
    let started = Instant::now();
    let mut hub = TestHub::start_with_options(options).await;
    let fixtures = fixtures(&hub).await;
    let table = cases::table(&fixtures);
    let mut names = std::collections::BTreeSet::new();
    for case in &table.cases {
        assert!(
            names.insert(case.name.as_str()),
            "two rows named {}",
            case.name
        );
    }
    // RELIABILITY.md cites this size: a row added or lost changes both.
    assert_eq!(
        table.cases.len(),
        TABLE_ROWS,
        "the table's size changed: update TABLE_ROWS and RELIABILITY.md's bad-input row"
    );
    hub.stop().await;
    let before = disk(&hub).await;
    hub.restart().await;

    let mut channels = BTreeMap::new();
    for who in AGENCIES
        .into_iter()
        .chain([H01])
        .map(Who::Agency)
        .chain([Who::Operator, Who::Administrator])
    {
        channels.insert(who, connect(&hub, who).await);
    }
    let mut operator = pb::axis_client::AxisClient::new(channels[&Who::Operator].clone());
    let fixture_ids = [fixtures.f1.as_str(), fixtures.f2.as_str()];
    let mut baseline = snapshot(&mut operator, &fixture_ids).await;
    assert_eq!(baseline.counts.total_sent, 2);
    assert_eq!(baseline.counts.total_received, 6);

    let mut failures = Vec::new();
    for case in &table.cases {
        let outcome = tokio::time::timeout(
            Duration::from_secs(20),
            run(channels[&case.who].clone(), hub.address, &case.input),
        )
        .await
        .unwrap_or_else(|_| Outcome::Answered("nothing within 20 s".into()));
        if let Err(problem) = check(case, outcome) {
            failures.push(format!("{}: {problem}", case.name));
        }
        let after = snapshot(&mut operator, &fixture_ids).await;
        if after != baseline {
            failures.push(format!(
                "{}: storage changed: {baseline:?} became {after:?}",
                case.name
            ));
            // Later rows are judged against the new state, so that one
            // bad row is reported once rather than for every row after it.
            baseline = after;
        }
        if let Some(id) = &case.probe {
            let probed = operator
                .get_status(pb::GetStatusRequest {
                    document_id: id.clone(),
                })
                .await;
            if !matches!(&probed, Err(status) if status.code() == Code::NotFound) {
                failures.push(format!("{}: {id} is on the axis: {probed:?}", case.name));
            }
        }
    }
    let table_time = started.elapsed();
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        table.cases.len(),
        failures.join("\n")
    );

    // The same hub still serves: a good document is accepted and delivered.
    let good = hub
        .client(G09)
        .await
        .send(&draft(G09, &[H41], 999_999), vec![pdf("cuoi.pdf", 7, 2000)])
        .await
        .expect("the hub still accepts good documents after the table");
    let (_acks, mut stream) = hub
        .client(H41)
        .await
        .deliveries(8)
        .await
        .expect("delivery stream");
    let delivered = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("a delivery in time")
        .expect("stream open")
        .expect("a hub message");
    assert!(
        matches!(&delivered, truc_domain::views::HubItem::Delivery(d) if d.document_id == good.document_id),
        "{delivered:?}"
    );
    drop(stream);

    // On disk, the table left nothing, not even part of a document: what is
    // there is what was there before, and the good document.
    hub.stop().await;
    let mut after = disk(&hub).await;
    let good_record = after
        .documents
        .remove(&good.document_id)
        .expect("the good document is stored");
    after.deliveries.remove(&good.document_id);
    for attachment in &good_record.attachments {
        after.blobs.remove(&attachment.sha256);
    }
    let h41_queue = after.queues.get_mut(H41).expect("H41's queue");
    let good_items = h41_queue.len() - before.queues[H41].len();
    assert_eq!(good_items, 1, "one delivery queued for H41");
    h41_queue.pop();
    let sent = after
        .counters
        .get_mut(&(G09.to_string(), good_record.date_key))
        .expect("G09's counter for today");
    sent.0 -= 1;
    if *sent == (0, 0) {
        after
            .counters
            .remove(&(G09.to_string(), good_record.date_key));
    }
    assert_eq!(after, before, "the table changed what is stored");
    let store = hub.stopped_store().await;
    for digest in &table.refused_digests {
        assert!(
            store.blob(digest).expect("blob lookup").is_none(),
            "an attachment of a refused row was kept"
        );
    }
    println!(
        "bad input: {} rows, all refused cleanly, in {:.1} s with setup ({} attachments of refused rows checked absent)",
        table.cases.len(),
        table_time.as_secs_f64(),
        table.refused_digests.len()
    );
    for (family, rows) in &table.families {
        println!("  {rows:>4}  {family}");
    }
}
