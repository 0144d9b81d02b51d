//! The file system through the kernel, as the hub uses it: what was synced
//! survives a power cut, what was not is lost or torn at a sector boundary,
//! names live or die with their directory's sync, and a trigger stops the
//! power at the request it names.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use truc_faultfs::{mount_or_skip, CutMode, Operation, Trigger};

fn sync_dir(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

fn read(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    File::open(path).unwrap().read_to_end(&mut bytes).unwrap();
    bytes
}

#[test]
fn a_synced_write_survives_a_cut_and_an_unsynced_one_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut disk) = mount_or_skip(dir.path(), "a_synced_write_survives") else {
        return;
    };
    let root = disk.mountpoint().to_owned();
    let path = root.join("journal.log");
    let mut file = File::create(&path).unwrap();
    file.write_all(b"acknowledged").unwrap();
    file.sync_data().unwrap();
    sync_dir(&root);
    file.write_all(b" and then not synced").unwrap();
    assert_eq!(read(&path), b"acknowledged and then not synced");
    drop(file);
    let report = disk.cut(CutMode::LoseAll).unwrap();
    assert_eq!(read(&path), b"acknowledged");
    assert_eq!(report.writes_lost, 1, "{report:?}");
    assert_eq!(report.paths, ["/journal.log"]);
    // The new mount takes writes like the old one.
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(b"!").unwrap();
    file.sync_all().unwrap();
    disk.cut(CutMode::LoseAll).unwrap();
    assert_eq!(read(&path), b"acknowledged!");
}

#[test]
fn names_not_synced_in_their_directory_disappear_with_their_data() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut disk) = mount_or_skip(dir.path(), "names_not_synced") else {
        return;
    };
    let root = disk.mountpoint().to_owned();
    std::fs::create_dir(root.join("inbox")).unwrap();
    sync_dir(&root);
    // Data synced, name not: gone.
    let mut file = File::create(root.join("inbox/unnamed")).unwrap();
    file.write_all(b"synced bytes").unwrap();
    file.sync_all().unwrap();
    // A staged file renamed into place, the rename not synced: back to its old name.
    let mut staged = File::create(root.join("inbox/.staged")).unwrap();
    staged.write_all(b"document").unwrap();
    staged.sync_all().unwrap();
    drop((file, staged));
    sync_dir(&root.join("inbox"));
    std::fs::remove_file(root.join("inbox/unnamed")).unwrap();
    std::fs::rename(root.join("inbox/.staged"), root.join("inbox/document")).unwrap();
    // A directory made and filled, its own name never synced.
    std::fs::create_dir(root.join("lost")).unwrap();
    let mut inner = File::create(root.join("lost/file")).unwrap();
    inner.write_all(b"x").unwrap();
    inner.sync_all().unwrap();
    sync_dir(&root.join("lost"));
    drop(inner);
    let report = disk.cut(CutMode::LoseAll).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(root.join("inbox"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [".staged", "unnamed"],
        "the removal and rename undone"
    );
    assert_eq!(read(&root.join("inbox/unnamed")), b"synced bytes");
    assert!(!root.join("lost").exists());
    assert_eq!(report.entries_lost, 3, "{report:?}");
    // Synced, the rename stays.
    std::fs::rename(root.join("inbox/.staged"), root.join("inbox/document")).unwrap();
    sync_dir(&root.join("inbox"));
    disk.cut(CutMode::LoseAll).unwrap();
    assert_eq!(read(&root.join("inbox/document")), b"document");
    assert!(!root.join("inbox/.staged").exists());
}

#[test]
fn torn_writes_keep_a_prefix_cut_at_512_byte_or_4_kib_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut disk) = mount_or_skip(dir.path(), "torn_writes") else {
        return;
    };
    let root = disk.mountpoint().to_owned();
    let path = root.join("segment");
    let (mut torn_at_page, mut torn_at_sector) = (0, 0);
    for seed in 0..60 {
        let file = File::create(&path).unwrap();
        file.write_all_at(&[1; 1000], 0).unwrap();
        file.sync_data().unwrap();
        sync_dir(&root);
        // One write of 20,000 bytes from byte 1,000: its boundaries are at
        // 1,024, 1,536, … and 4,096, 8,192, ….
        file.write_all_at(&[2; 20_000], 1000).unwrap();
        drop(file);
        let report = disk.cut(CutMode::Torn { seed }).unwrap();
        let bytes = read(&path);
        assert_eq!(
            &bytes[..1000],
            &[1; 1000][..],
            "seed {seed}: synced bytes damaged"
        );
        assert!(bytes[1000..].iter().all(|b| *b == 2), "seed {seed}");
        match bytes.len() {
            1000 | 21_000 => {}
            len => {
                assert_eq!(
                    report.writes_torn, 1,
                    "seed {seed}: {len} bytes, {report:?}"
                );
                assert!(len.is_multiple_of(512), "seed {seed}: torn at {len}");
                if len.is_multiple_of(4096) {
                    torn_at_page += 1;
                } else {
                    torn_at_sector += 1;
                }
            }
        }
    }
    assert!(
        torn_at_page > 0 && torn_at_sector > 0,
        "{torn_at_page} writes torn at a page boundary and {torn_at_sector} at a sector one"
    );
}

#[test]
fn a_trigger_stops_the_power_at_the_request_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut disk) = mount_or_skip(dir.path(), "a_trigger_stops_the_power") else {
        return;
    };
    let root = disk.mountpoint().to_owned();
    sync_dir(&root);
    disk.arm(Trigger {
        operation: Operation::Sync,
        path_contains: "/group".into(),
        skip: 1,
        apply_first: false,
    });
    let writer = {
        let root = root.clone();
        std::thread::spawn(move || -> std::io::Result<()> {
            let mut file = File::create(root.join("group"))?;
            for index in 0..3 {
                file.write_all(format!("group {index};").as_bytes())?;
                file.sync_data()?;
            }
            Ok(())
        })
    };
    let hit = disk
        .wait_hit(Duration::from_secs(30))
        .expect("the trigger is hit");
    assert_eq!(hit.path, "/group");
    assert_eq!(hit.operation, Operation::Sync);
    // The writer waits in its second sync until the power is off; then it fails.
    disk.power_off();
    let error = writer
        .join()
        .unwrap()
        .expect_err("the sync after the cut fails");
    assert_eq!(error.raw_os_error(), Some(5), "{error}");
    disk.cut(CutMode::LoseAll).unwrap();
    // The first group was synced, its name was not: nothing is left.
    assert!(!root.join("group").exists());
}

#[test]
fn a_failed_sync_leaves_the_data_unsynced() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut disk) = mount_or_skip(dir.path(), "a_failed_sync") else {
        return;
    };
    let root = disk.mountpoint().to_owned();
    let mut file = File::create(root.join("f")).unwrap();
    sync_dir(&root);
    file.write_all(b"maybe").unwrap();
    disk.fail_next_sync("/f");
    let error = file.sync_data().expect_err("injected");
    assert_eq!(error.raw_os_error(), Some(5));
    drop(file);
    disk.cut(CutMode::LoseAll).unwrap();
    assert_eq!(read(&root.join("f")), b"");
}
