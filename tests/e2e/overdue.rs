//! Overdue feedback, expiry into dead letters, the operators' resend and
//! cancel, and per-agency quotas, on a real hub whose clock the test moves.

use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::Code;
use truc_hub::{Clock, WatchSetup};
use truc_node::ClientError;
use truc_testkit::{draft, pdf, TestHub, TestHubOptions};

use crate::recall::{business, fetch};

const G22: &str = truc_testkit::AGENCIES[0];
const G12: &str = truc_testkit::AGENCIES[1];
const G17: &str = truc_testkit::AGENCIES[3];
const G09: &str = truc_testkit::AGENCIES[4];

const MINUTE: Duration = Duration::from_secs(60);

async fn hub_with(configure: impl FnOnce(&mut WatchSetup)) -> TestHub {
    let mut watch = WatchSetup {
        clock: Clock::manual_now(),
        ..WatchSetup::default()
    };
    configure(&mut watch);
    TestHub::start_with_options(TestHubOptions {
        watch,
        ..TestHubOptions::default()
    })
    .await
}

/// Polls until `ready` holds, failing after a bound instead of hanging.
async fn eventually<T, F, Fut>(mut probe: F, ready: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let value = probe().await;
        if ready(&value) {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn overdue(
    client: &truc_node::AxisClient,
    agency: &str,
) -> Vec<truc_domain::views::OverdueDelivery> {
    client
        .list_overdue(&truc_domain::views::OverdueFilter {
            agency: agency.into(),
            limit: 0,
        })
        .await
        .unwrap()
        .deliveries
}

/// The first notice for `document_id` to `recipient` with `status`, from the sender's stream.
async fn notice(
    hub: &TestHub,
    sender: &str,
    document_id: &str,
    recipient: &str,
    status: truc_domain::views::StatusCode,
) -> truc_domain::views::StatusEntry {
    let client = hub.client(sender).await;
    let (_acks, mut stream) = client.deliveries(64).await.unwrap();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let message = stream.next().await.unwrap().unwrap();
            if let truc_domain::views::HubItem::Notice(notice) = message {
                if notice.document_id == document_id && notice.recipient == recipient {
                    if let Some(entry) = notice.entries.iter().find(|e| e.status == status) {
                        return entry.clone();
                    }
                }
            }
        }
    })
    .await;
    found.expect("the sender is told")
}

#[tokio::test]
async fn overdue_feedback_is_found_listed_per_agency_counted_and_told_to_the_sender() {
    let hub = hub_with(|watch| {
        watch.deadlines.arrived_within_minutes = 10;
        watch.deadlines.received_within_working_minutes = 60;
        watch.expiry.ttl_minutes = 0;
    })
    .await;
    let g22 = hub.client(G22).await;
    let document_id = g22
        .send(&draft(G22, &[G12, G17], 1), vec![pdf("a.pdf", 1, 10)])
        .await
        .unwrap()
        .document_id;
    fetch(&hub, G12, &document_id).await;
    let operator = hub.operator().await;
    assert!(overdue(&operator, "").await.is_empty());

    // Eleven minutes on: G17's node never acknowledged, G12's did.
    hub.clock().advance(11 * MINUTE);
    let rows = eventually(|| overdue(&operator, ""), |rows| !rows.is_empty()).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (
            rows[0].recipient.as_str(),
            rows[0].deadline.as_str(),
            rows[0].late_ms
        ),
        (G17, "arrived", 60_000)
    );
    assert_eq!(rows[0].document_id, document_id);
    // Per agency: G12 owes nothing; G17 sees its own row; an outsider sees none.
    assert!(overdue(&operator, G12).await.is_empty());
    assert_eq!(overdue(&operator, G17).await.len(), 1);
    assert_eq!(overdue(&hub.client(G17).await, "").await.len(), 1);
    assert_eq!(overdue(&g22, "").await.len(), 1, "the sender sees it");
    assert!(overdue(&hub.client(G09).await, "").await.is_empty());
    // The document list filters on the same: by recipient, and for agencies.
    let listed = |client: truc_node::AxisClient, recipient: &str| {
        let recipient = recipient.to_owned();
        async move {
            client
                .list_documents(&truc_domain::views::DocumentFilter {
                    overdue: true,
                    recipient,
                    ..Default::default()
                })
                .await
                .unwrap()
                .documents
                .into_iter()
                .map(|d| d.document_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed(operator.clone(), "").await,
        vec![document_id.clone()]
    );
    assert_eq!(
        listed(operator.clone(), G17).await,
        vec![document_id.clone()]
    );
    assert!(listed(operator.clone(), G12).await.is_empty());
    assert_eq!(listed(g22.clone(), "").await, vec![document_id.clone()]);
    assert!(
        listed(hub.client(G12).await, "").await.is_empty(),
        "G12 owes nothing"
    );

    let told = notice(
        &hub,
        G22,
        &document_id,
        G17,
        truc_domain::views::StatusCode::Overdue,
    )
    .await;
    assert_eq!(told.actor, "hub");
    assert!(told.reason.contains("arrived"), "{}", told.reason);

    // Ten days on, G12 has still not reported "received" within the working hour.
    hub.clock().advance(10 * 24 * 60 * MINUTE);
    let rows = eventually(|| overdue(&operator, G12), |rows| !rows.is_empty()).await;
    assert_eq!(rows[0].deadline, "received");
    assert!(rows[0].late_ms > 0);
    // A late answer ends the listing but the report still counts it.
    hub.client(G12)
        .await
        .move_status(&document_id, None, truc_domain::Status::Received, "")
        .await
        .unwrap();
    assert!(overdue(&operator, G12).await.is_empty());
    assert!(listed(operator.clone(), G12).await.is_empty());
    let report = operator.report("", "", "").await.unwrap();
    let overdue_of = |code: &str| {
        report
            .rows
            .iter()
            .find(|r| r.organ_id == code)
            .map_or(0, |r| r.overdue)
    };
    assert_eq!(
        (overdue_of(G12), overdue_of(G17), overdue_of(G22)),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn unacknowledged_deliveries_expire_into_dead_letters_that_operators_resend_or_cancel() {
    let hub = hub_with(|watch| {
        watch.deadlines.arrived_within_minutes = 0;
        watch.deadlines.received_within_working_minutes = 0;
        watch.expiry.ttl_minutes = 30;
    })
    .await;
    let g22 = hub.client(G22).await;
    let document_id = g22
        .send(&draft(G22, &[G12, G17], 2), vec![pdf("b.pdf", 2, 10)])
        .await
        .unwrap()
        .document_id;
    hub.clock().advance(31 * MINUTE);
    let operator = hub.operator().await;
    let list = |client: truc_node::AxisClient, all: bool| async move {
        client
            .list_dead_letters(&truc_domain::views::DeadLetterFilter {
                include_resolved: all,
                ..Default::default()
            })
            .await
            .unwrap()
            .dead_letters
    };
    let letters = eventually(|| list(operator.clone(), false), |l| l.len() == 2).await;
    assert!(letters
        .iter()
        .all(|l| l.state == "open" && l.queue_owner == l.recipient));
    assert!(
        letters[0].reason.contains("30 min"),
        "{}",
        letters[0].reason
    );
    let told = notice(
        &hub,
        G22,
        &document_id,
        G12,
        truc_domain::views::StatusCode::Expired,
    )
    .await;
    assert!(told.reason.contains("time to live"));
    // The sender's status view says where each delivery stands.
    let standing = |client: truc_node::AxisClient| {
        let document_id = document_id.clone();
        async move {
            client
                .get_status(&document_id)
                .await
                .unwrap()
                .recipients
                .into_iter()
                .map(|r| {
                    let letter = r.dead_letter.map(|l| l.state).unwrap_or_default();
                    (r.recipient, r.current.code(), letter)
                })
                .collect::<Vec<_>>()
        }
    };
    let expired = truc_domain::views::StatusCode::EXPIRED;
    let expired_documents = operator
        .list_documents(&truc_domain::views::DocumentFilter {
            status: Some(truc_domain::views::StatusCode::Expired),
            ..Default::default()
        })
        .await
        .unwrap()
        .documents;
    assert_eq!(expired_documents.len(), 1);
    assert_eq!(expired_documents[0].document_id, document_id);
    assert_eq!(
        standing(g22.clone()).await,
        vec![
            (G12.to_owned(), expired, "open".to_owned()),
            (G17.to_owned(), expired, "open".to_owned())
        ]
    );
    // An agency lists its own, and may not resend or cancel.
    let g12 = hub.client(G12).await;
    let own = list(g12.clone(), false).await;
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].recipient, G12);
    let refused = g12.resend_dead_letter(&document_id, G12).await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::PermissionDenied));
    assert!(refused.to_string().contains("certificate"));
    let refused = g22
        .cancel_dead_letter(&document_id, G17, "x")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(Code::PermissionDenied));

    // The operator reads but may not act: that is the administrator's.
    for refused in [
        operator
            .resend_dead_letter(&document_id, G12)
            .await
            .unwrap_err(),
        operator
            .cancel_dead_letter(&document_id, G17, "x")
            .await
            .unwrap_err(),
    ] {
        assert_eq!(refused.code(), Some(Code::PermissionDenied), "{refused}");
        assert!(
            refused.to_string().contains("may read but not"),
            "{refused}"
        );
    }
    let administrator = hub.administrator().await;
    let recorded = format!("administrator:{}", truc_testkit::ADMINISTRATOR);
    // The administrator resends G12's: the node gets it and it arrives.
    let resent = administrator
        .resend_dead_letter(&document_id, G12)
        .await
        .unwrap();
    assert_eq!(resent.state, "resent");
    assert_eq!(
        resent
            .actions
            .iter()
            .map(|a| (a.action.as_str(), a.operator.as_str()))
            .collect::<Vec<_>>(),
        vec![("resent", recorded.as_str())]
    );
    fetch(&hub, G12, &document_id).await;
    // And cancels G17's, saying why; neither can be done twice.
    let cancelled = administrator
        .cancel_dead_letter(&document_id, G17, "Đã gửi bản giấy")
        .await
        .unwrap();
    assert_eq!(cancelled.state, "cancelled");
    assert_eq!(cancelled.actions[0].operator, recorded);
    assert_eq!(cancelled.actions[0].reason, "Đã gửi bản giấy");
    for again in [
        administrator
            .cancel_dead_letter(&document_id, G17, "again")
            .await
            .unwrap_err(),
        administrator
            .resend_dead_letter(&document_id, G17)
            .await
            .unwrap_err(),
        administrator
            .resend_dead_letter(&document_id, G12)
            .await
            .unwrap_err(),
    ] {
        assert_eq!(again.code(), Some(Code::FailedPrecondition), "{again}");
    }
    assert!(list(operator.clone(), false).await.is_empty());
    assert_eq!(list(operator.clone(), true).await.len(), 2);
    assert_eq!(
        standing(g22.clone()).await,
        vec![
            (
                G12.to_owned(),
                truc_domain::Status::Arrived.code() as i32,
                "resent".to_owned()
            ),
            (G17.to_owned(), expired, "cancelled".to_owned())
        ]
    );
    // The record survives a restart: it is stored, not held in memory.
    let mut hub = hub;
    hub.restart().await;
    let operator = hub.operator().await;
    let letters = list(operator, true).await;
    assert_eq!(letters.len(), 2);
    assert!(letters
        .iter()
        .any(|l| l.recipient == G17 && l.state == "cancelled"));
}

#[tokio::test]
async fn a_sender_over_its_queued_deliveries_quota_is_told_when_to_retry() {
    let hub = hub_with(|watch| {
        watch.quotas.queued_deliveries_max = 2;
        watch.quotas.retry_after_seconds = 45;
    })
    .await;
    let g22 = hub.client(G22).await;
    let first = g22
        .send(&draft(G22, &[G12, G17], 3), vec![pdf("c.pdf", 3, 10)])
        .await
        .unwrap()
        .document_id;
    let refused = g22
        .send(&draft(G22, &[G12], 4), vec![pdf("d.pdf", 4, 10)])
        .await
        .unwrap_err();
    let ClientError::Refused(status) = &refused else {
        panic!("{refused}")
    };
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(status.metadata().get("retry-after").unwrap(), "45");
    assert!(
        status.message().starts_with("sender:"),
        "{}",
        status.message()
    );
    assert!(status.message().contains("retry after 45 s"));
    // Another agency is not held back by G22's backlog.
    hub.client(G17)
        .await
        .send(&draft(G17, &[G12], 1), vec![pdf("e.pdf", 5, 10)])
        .await
        .unwrap();
    // Once G12's node acknowledges, G22 may send again; nothing of the refused send was stored.
    fetch(&hub, G12, &first).await;
    let operator = hub.operator().await;
    assert_eq!(
        operator
            .counts("", "")
            .await
            .unwrap()
            .agencies
            .iter()
            .find(|a| a.organ_id == G22)
            .unwrap()
            .sent,
        1
    );
    // The hub recounts a sender's backlog at most once a second: the refusal
    // lifts within that.
    let acknowledged = std::time::Instant::now();
    let second = loop {
        match g22
            .send(&draft(G22, &[G12], 4), vec![pdf("d.pdf", 4, 10)])
            .await
        {
            Ok(accepted) => break accepted.document_id,
            Err(error) if acknowledged.elapsed() < std::time::Duration::from_secs(3) => {
                assert_eq!(error.code(), Some(Code::ResourceExhausted), "{error}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(error) => panic!("still refused 3 s after the acknowledgement: {error}"),
        }
    };

    // A recall withdraws the delivery G17 never fetched: it leaves G22's
    // backlog, while the request to G12, which holds the document, joins it.
    fetch(&hub, G12, &second).await;
    // The hub recounts at most once a second: each send waits out the stale count.
    let send_when_room = |draft: truc_node::Draft, attachments: Vec<truc_node::Attachment>| {
        let g22 = &g22;
        async move {
            let started = std::time::Instant::now();
            loop {
                match g22.send(&draft, attachments.clone()).await {
                    Ok(_) => return,
                    Err(error) if started.elapsed() < std::time::Duration::from_secs(3) => {
                        assert_eq!(error.code(), Some(Code::ResourceExhausted), "{error}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    Err(error) => panic!("still refused after 3 s: {error}"),
                }
            }
        }
    };
    // Backlog 1 (G17's copy of the first): the recall may be sent.
    send_when_room(
        business(
            G22,
            &[G12, G17],
            5,
            truc_domain::BusinessType::Revoke,
            &first,
        ),
        vec![],
    )
    .await;
    // Backlog 1 (the request to G12): one more send fits, the next does not.
    send_when_room(draft(G22, &[G12], 6), vec![pdf("f.pdf", 6, 10)]).await;
    let refused = g22
        .send(&draft(G22, &[G12], 7), vec![pdf("g.pdf", 7, 10)])
        .await
        .expect_err("the backlog is full again");
    assert_eq!(refused.code(), Some(Code::ResourceExhausted), "{refused}");
}
