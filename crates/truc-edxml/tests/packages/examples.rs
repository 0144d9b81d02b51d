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

/// A package in a folder beside its attachment files, as large documents
/// travel: the manifest names the files and `AttachmentEncoded` is left out.
#[test]
fn a_package_may_name_its_attachments_as_files_beside_it() {
    let package = super::common::valid_package();
    let text = String::from_utf8(truc_edxml::write_package(&package).unwrap()).unwrap();
    let start = text.find("<AttachmentEncoded>").unwrap();
    let end = text.find("</AttachmentEncoded>").unwrap() + "</AttachmentEncoded>".len();
    let without = format!("{}{}", &text[..start], &text[end..]);
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("goi-tin.edxml"), &without).unwrap();
    let context = super::common::context();
    // Without the files, the manifest's entries are missing.
    let refused = read_entry(folder.path(), &context, None).unwrap_err();
    assert!(refused
        .problems()
        .iter()
        .any(|p| p.element == "edXMLBody/edXMLManifest/Reference[1]/AttachmentName"));
    for attachment in &package.attachments {
        std::fs::write(folder.path().join(&attachment.name), &attachment.bytes).unwrap();
    }
    let checked = read_entry(folder.path(), &context, None).unwrap();
    let Entry::Document { package: read, .. } = checked.entry else {
        panic!("not a document");
    };
    assert_eq!(*read, package);
}
