//! The examples of `docs/edxml/` pass `truc edxml check`'s checks, so the
//! page that shows them cannot drift from the code.

use std::path::PathBuf;

use truc_edxml::{read_entry, CheckContext, Entry};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/edxml")
        .join(name)
}

#[test]
fn every_example_passes() {
    let context = CheckContext::new(super::common::today(), None);
    for (name, document) in [
        ("example.edxml", true),
        ("status.edxml", false),
        ("status.json", false),
        ("cong-van-21", true),
    ] {
        let checked = read_entry(&example(name), &context, None)
            .unwrap_or_else(|refused| panic!("{name}: {refused}"));
        assert_eq!(
            matches!(checked.entry, Entry::Document { .. }),
            document,
            "{name}"
        );
    }
}

#[test]
fn the_folder_example_is_the_document_its_header_says() {
    let context = CheckContext::new(super::common::today(), None);
    let checked = read_entry(&example("cong-van-21"), &context, None).unwrap();
    let Entry::Document {
        package,
        sign_document,
    } = checked.entry
    else {
        panic!("not a document");
    };
    assert!(sign_document);
    assert_eq!(
        package.derived_document_id(),
        "000.00.00.G22,2026/11/20,21/VPCP-KSTT"
    );
    assert_eq!(package.header.to.len(), 2);
    assert_eq!(package.attachments[0].content_type, "text/plain");
    assert_eq!(package.header.due_date, "2026/11/30");
}
