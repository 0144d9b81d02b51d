//! The store on a file system that loses what was not synced
//! (`truc-faultfs`): after a power cut it opens with every acknowledged
//! document, or refuses to open naming the loss; never with less.
//! Skipped, saying so, where FUSE is unavailable.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use truc_faultfs::{CutMode, FaultFs, Operation, Trigger};
use truc_store::records::{DocumentRecord, DocumentSignatureState};
use truc_store::{Store, StoreError, StoreOptions, JOURNAL_DIR};

/// Longest wait for the store's background work that a test waits on.
const WAIT_MAX: Duration = Duration::from_secs(20);

fn document(number: u32) -> DocumentRecord {
    DocumentRecord {
        document_id: format!("000.00.00.G22,2026/12/06,{number}/CUT"),
        sender: "000.00.00.G22".into(),
        date_key: 20261206,
        subject: format!("Văn bản {number}"),
        content_sha256: [number as u8; 32],
        header_bytes: format!("header {number}").into_bytes(),
        signature: vec![1; 64],
        sender_certificate: b"certificate".to_vec(),
        document_signature: None,
        document_signature_state: DocumentSignatureState::Absent,
        accepted_at_unix_ms: 1_000,
        recipients: vec!["000.00.00.H41".into()],
        refused: Vec::new(),
        attachments: Vec::new(),
    }
}

fn options() -> StoreOptions {
    StoreOptions {
        // Only the checkpoints a test asks for.
        checkpoint_interval: Duration::from_secs(3600),
        ..StoreOptions::default()
    }
}

/// A power-cut file system with a durable, empty data directory on it.
fn faulty_data_dir(mount: &Path, test: &str) -> Option<(FaultFs, PathBuf)> {
    let disk = truc_faultfs::mount_or_skip(mount, test)?;
    let data = disk.mountpoint().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::File::open(disk.mountpoint())
        .unwrap()
        .sync_all()
        .unwrap();
    Some((disk, data))
}

/// Stops the power now: every later request of the old store fails.
fn cut_now(disk: &mut FaultFs, mode: CutMode) {
    disk.stop_power();
    disk.power_off();
    disk.cut(mode).unwrap();
}

fn stored(store: &Store) -> usize {
    store.document_ids().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_power_cut_the_marker_still_names_the_acknowledged_groups() {
    let mount = tempfile::tempdir().unwrap();
    let Some((mut disk, data)) = faulty_data_dir(mount.path(), "after_a_power_cut_the_marker")
    else {
        return;
    };
    let store = Store::open(&data, &options()).unwrap();
    for number in 1..=5 {
        store.accept(document(number), Vec::new()).await.unwrap();
    }
    // The marker syncs itself in the background, off the writer's path.
    let deadline = Instant::now() + WAIT_MAX;
    while disk.unsynced("/data/commit-marker") > 0 {
        assert!(
            Instant::now() < deadline,
            "the commit marker was not synced within {WAIT_MAX:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cut_now(&mut disk, CutMode::LoseAll);
    drop(store);
    // The journal held every group (sled none yet): lose it on purpose.
    std::fs::remove_dir_all(data.join(JOURNAL_DIR)).unwrap();
    match Store::open(&data, &options()) {
        Err(StoreError::DataLost { reason, .. }) => assert!(
            reason.contains("hold 0 durable commit(s) but 5 were acknowledged"),
            "{reason}"
        ),
        Err(error) => panic!("refused for another reason: {error}"),
        Ok(store) => panic!("opened with {} of 5 acknowledged documents", stored(&store)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_segments_go_only_once_sled_holds_their_groups_on_the_device() {
    let mount = tempfile::tempdir().unwrap();
    let Some((disk, data)) = faulty_data_dir(mount.path(), "journal_segments_go_only_once") else {
        return;
    };
    let store = Store::open(&data, &options()).unwrap();
    for number in 1..=5 {
        store.accept(document(number), Vec::new()).await.unwrap();
    }
    // The power stops as the checkpoint removes the journal segment it
    // covers; the file system's journal has written that removal out, and
    // nothing of what sled wrote since its last fsync.
    disk.arm(Trigger {
        operation: Operation::Remove,
        path_contains: "/data/journal/".into(),
        skip: 0,
        apply_first: true,
    });
    let checkpoint = tokio::spawn({
        let store = store.clone();
        async move { store.checkpoint().await }
    });
    // Waited for off the runtime: the checkpoint's task needs it meanwhile.
    let hit = tokio::task::spawn_blocking(move || {
        let hit = disk.wait_hit(WAIT_MAX);
        (disk, hit)
    })
    .await
    .unwrap();
    let (mut disk, hit) = hit;
    let hit = hit.expect("the checkpoint removed a journal segment");
    assert!(hit.path.ends_with(".log"), "{hit:?}");
    disk.power_off();
    disk.cut(CutMode::KeepNames).unwrap();
    let _ = checkpoint.await;
    drop(store);
    let store = Store::open(&data, &options()).expect("opens after the cut");
    assert_eq!(stored(&store), 5, "acknowledged documents lost");
    for number in 1..=5 {
        assert!(store
            .document(&document(number).document_id)
            .unwrap()
            .is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_data_directory_cut_before_its_first_checkpoint_opens_with_what_it_acknowledged() {
    let mount = tempfile::tempdir().unwrap();
    let Some(mut disk) = truc_faultfs::mount_or_skip(mount.path(), "a_new_data_directory_cut")
    else {
        return;
    };
    // Neither folder exists: the store makes them, and their names durable.
    let data = disk.mountpoint().join("hub").join("data");
    let store = Store::open(&data, &options()).unwrap();
    store.accept(document(1), Vec::new()).await.unwrap();
    cut_now(&mut disk, CutMode::LoseAll);
    drop(store);
    let store = Store::open(&data, &options()).expect("opens after the cut");
    assert_eq!(stored(&store), 1);
}
