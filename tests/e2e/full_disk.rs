//! A full disk, for real: the hub's data directory on a small tmpfs filled
//! with a ballast file. Needs root (to mount), so it is opt-in:
//! `cargo test -p truc-tests --test e2e full_disk -- --ignored`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::Code;
use truc_domain::Status;
use truc_testkit::{draft, pdf, TestHub, TestHubOptions, AGENCIES};

const G22: &str = AGENCIES[0];
const H41: &str = AGENCIES[2];
const MIB: u64 = 1024 * 1024;
/// Size of each small file system.
const FILESYSTEM_MIB: u64 = 24;
/// The reserve the first hub keeps for acknowledgements and moves.
const RESERVE_BYTES: u64 = 4 * MIB;

/// A tmpfs mounted for the test, unmounted when dropped (also on a panic).
struct Mounted {
    path: PathBuf,
    _folder: tempfile::TempDir,
}

impl Mounted {
    /// A hub keeping its data on this small disk, refusing new documents
    /// below `free_bytes_min` free.
    async fn hub(&self, free_bytes_min: u64) -> TestHub {
        TestHub::start_with_options(TestHubOptions {
            data_dir: Some(self.path.join("data")),
            free_bytes_min,
            ..TestHubOptions::default()
        })
        .await
    }

    fn new() -> Mounted {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("fs");
        std::fs::create_dir(&path).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={FILESYSTEM_MIB}m"),
                "tmpfs",
            ])
            .arg(&path)
            .status()
            .expect("runs mount");
        assert!(
            status.success(),
            "cannot mount a tmpfs at {} (this test needs root)",
            path.display()
        );
        Mounted {
            path,
            _folder: folder,
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // Lazy: a sled thread may still be closing its files.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes a ballast file until the file system has at most `leave_bytes`
/// free (0: until the disk refuses), and returns its path.
fn fill(folder: &Path, leave_bytes: u64) -> PathBuf {
    let path = folder.join("ballast");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![0x5a_u8; 64 * 1024];
    loop {
        let free = fs2::available_space(folder).unwrap();
        if leave_bytes > 0 && free <= leave_bytes {
            break;
        }
        let size = if leave_bytes > 0 {
            block.len().min((free - leave_bytes) as usize).max(1)
        } else {
            block.len()
        };
        if file.write_all(&block[..size]).is_err() {
            break;
        }
    }
    let _ = file.flush();
    path
}

fn assert_full(
    result: Result<truc_domain::views::SendReceipt, truc_node::ClientError>,
    context: &str,
) -> String {
    match result {
        Err(truc_node::ClientError::Refused(status)) => {
            assert_eq!(
                status.code(),
                Code::ResourceExhausted,
                "{context}: {}",
                status.message()
            );
            assert!(
                status.message().starts_with("storage full: "),
                "{context}: {}",
                status.message()
            );
            // The hub marks a full disk for its refusal layer, which logs it
            // as a warning and takes the mark off before the answer leaves.
            assert!(
                status.metadata().get("truc-refusal-cause").is_none(),
                "{context}: {:?}",
                status.metadata()
            );
            status.message().to_owned()
        }
        other => panic!("{context}: expected RESOURCE_EXHAUSTED, got {other:?}"),
    }
}

/// Receives one delivery on `agency`'s stream and acknowledges it.
async fn receive_and_ack(hub: &TestHub, agency: &str) -> String {
    let client = hub.client(agency).await;
    let (acks, mut stream) = client.deliveries(8).await.unwrap();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("a delivery")
            .unwrap()
            .unwrap();
        if let truc_domain::views::HubItem::Delivery(delivery) = message {
            acks.ack(vec![delivery.queue_seq]).await.unwrap();
            // The stream stays open until the hub has recorded the arrival.
            arrived(hub, &delivery.document_id, agency).await;
            return delivery.document_id;
        }
    }
}

/// Waits until the operator sees `document_id` arrived at `recipient`.
async fn arrived(hub: &TestHub, document_id: &str, recipient: &str) {
    let operator = hub.operator().await;
    for _ in 0..1500 {
        let status = operator.get_status(document_id).await.unwrap();
        if status
            .recipients
            .iter()
            .any(|r| r.recipient == recipient && r.current.code() >= 1)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{document_id} never arrived at {recipient}");
}

/// Below the reserve: sends are refused, everything else goes on, and
/// sends are taken again as soon as space returns, without a restart.
#[tokio::test]
#[ignore = "needs root to mount a tmpfs; see RELIABILITY.md"]
async fn full_disk_refuses_sends_serves_the_rest_and_recovers() {
    let disk = Mounted::new();
    let mut hub = disk.hub(RESERVE_BYTES).await;
    let g22 = hub.client(G22).await;
    let first = g22
        .send(&draft(G22, &[H41], 1), vec![pdf("a.pdf", 1, 200_000)])
        .await
        .unwrap();

    // Leave less than the reserve, but not nothing: the disk is nearly full.
    let ballast = fill(&disk.path, RESERVE_BYTES / 2);
    let message = assert_full(
        g22.send(&draft(G22, &[H41], 2), vec![pdf("b.pdf", 2, 200_000)])
            .await,
        "below the reserve",
    );
    eprintln!("refused: {message}");
    // Reads, deliveries, acknowledgements and moves go on.
    let status = g22.get_status(&first.document_id).await.unwrap();
    assert_eq!(status.recipients.len(), 1);
    assert_eq!(receive_and_ack(&hub, H41).await, first.document_id);
    let h41 = hub.client(H41).await;
    h41.move_status(&first.document_id, None, Status::Received, "")
        .await
        .unwrap();
    let bytes = h41
        .fetch_attachment_bytes(&first.document_id, 0)
        .await
        .unwrap();
    assert_eq!(bytes.len(), 200_000);

    // Space returns: the same hub takes sends again.
    std::fs::remove_file(&ballast).unwrap();
    let second = g22
        .send(&draft(G22, &[H41], 2), vec![pdf("b.pdf", 2, 200_000)])
        .await
        .unwrap();
    assert!(!second.duplicate);

    // Nothing was lost or damaged: a restart reads it all back.
    hub.restart().await;
    let operator = hub.operator().await;
    let counts = operator.counts("", "").await.unwrap();
    assert_eq!((counts.total_sent, counts.total_received), (2, 1));
    let history: Vec<i32> = operator
        .get_status(&first.document_id)
        .await
        .unwrap()
        .recipients[0]
        .history
        .iter()
        .map(|entry| entry.status.code())
        .collect();
    assert_eq!(history, [1, 3]);
    hub.stop().await;
    let store = hub.stopped_store().await;
    assert_eq!(
        store.counter_entries().unwrap(),
        store.rebuild_counters().unwrap()
    );
}

/// The disk fills up under the reserve's nose (no reserve here): a send
/// whose bytes do not fit is refused with RESOURCE_EXHAUSTED and leaves
/// nothing behind, reads go on, sends are taken again once space returns
/// without a restart, and the data directory opened afresh holds exactly
/// what was acknowledged.
#[tokio::test]
#[ignore = "needs root to mount a tmpfs; see RELIABILITY.md"]
async fn disk_full_during_a_send_is_refused_cleanly_and_nothing_is_lost() {
    let disk = Mounted::new();
    let mut hub = disk.hub(0).await;
    let g22 = hub.client(G22).await;
    let first = g22
        .send(&draft(G22, &[H41], 1), vec![pdf("a.pdf", 1, 200_000)])
        .await
        .unwrap();

    let ballast = fill(&disk.path, 0);
    let message = assert_full(
        g22.send(&draft(G22, &[H41], 2), vec![pdf("b.pdf", 2, 2_000_000)])
            .await,
        "the disk is full",
    );
    eprintln!("refused: {message}");
    assert!(message.contains("space is freed"), "{message}");
    assert_eq!(
        g22.get_status(&first.document_id)
            .await
            .unwrap()
            .recipients
            .len(),
        1,
        "reads go on"
    );

    // Space returns: the next send is taken, no restart needed.
    std::fs::remove_file(&ballast).unwrap();
    let third = g22
        .send(&draft(G22, &[H41], 3), vec![pdf("c.pdf", 3, 1000)])
        .await
        .unwrap();

    // Opened afresh, as a new process would: exactly the acknowledged two.
    hub.stop().await;
    let copy = tempfile::tempdir().unwrap();
    copy_folder(&disk.path.join("data"), copy.path());
    let store = truc_store::Store::open(copy.path(), &truc_store::StoreOptions::default()).unwrap();
    for sent in [&first, &third] {
        assert!(store.document(&sent.document_id).unwrap().is_some());
    }
    assert_eq!(
        store.document_ids().count(),
        2,
        "the refused document is not there"
    );
    assert_eq!(
        store.counter_entries().unwrap(),
        store.rebuild_counters().unwrap()
    );
    let queued = store.queue_after(H41, 0, 10).unwrap();
    assert_eq!(queued.len(), 2, "both documents still wait for H41");
}

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_folder(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
