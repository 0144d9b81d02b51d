//! The inbox in edXML, beside what the node writes today: each received
//! document also as one self-contained package, `<document>.edxml`, built
//! from the verified folder (its signed header and the attachments whose
//! digests were checked); each notice about a document this agency sent as
//! a status message, `<document>__<recipient>__<code>__<ms>.status.edxml`.
//! Each file is written under a hidden name, synced and renamed, so a
//! document system that imports `*.edxml` never reads half a file; and a
//! file already there is left as it is, so a redelivery writes nothing twice.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;
use truc_proto::v1 as pb;

use crate::agent::{inbox_name, sync_dir, InboxError, ATTACHMENTS_FOLDER};

/// The edXML package of a document written into `inbox` as `folder`.
pub fn package_path(inbox: &Path, document_id: &str) -> PathBuf {
    inbox.join(format!("{}.edxml", inbox_name(document_id)))
}

/// Writes `<document>.edxml` beside the document's folder, unless it is
/// there already (after a crash between the folder and this file, the
/// redelivery writes it).
pub(crate) async fn write_document_package(
    inbox: &Path,
    folder: &Path,
    document_id: &str,
    header: &pb::EnvelopeHeader,
) -> Result<(), InboxError> {
    let path = package_path(inbox, document_id);
    if tokio::fs::try_exists(&path)
        .await
        .map_err(InboxError::io("look for", &path))?
    {
        return Ok(());
    }
    let mut raw = truc_domain::RawHeader::from(header.clone());
    let mut attachments = Vec::with_capacity(raw.attachments.len());
    for attachment in &raw.attachments {
        let file = folder.join(ATTACHMENTS_FOLDER).join(&attachment.name);
        let bytes = tokio::fs::read(&file)
            .await
            .map_err(InboxError::io("read", &file))?;
        attachments.push(bytes);
    }
    let package = match truc_edxml::from_envelope(&raw, attachments.clone()) {
        Ok(package) => package,
        Err(error) => {
            // The sender signed extra data this node cannot read: the
            // document still goes in, that file as an ordinary attachment.
            tracing::warn!(%document_id, %error, "edXML extra data unreadable; kept as an attachment");
            if let Some(last) = raw.attachments.last_mut() {
                last.media_type = "application/json".into();
            }
            truc_edxml::from_envelope(&raw, attachments).map_err(|source| InboxError::Package {
                document_id: document_id.to_owned(),
                source,
            })?
        }
    };
    // Base64 of up to 64 MiB of attachments: off the runtime's threads.
    let bytes = tokio::task::spawn_blocking(move || truc_edxml::write_package(&package)).await??;
    write_atomically(inbox, &path, &bytes).await
}

/// Writes each entry of a notice about a document this agency sent as an
/// edXML status message. The hub's own codes (overdue, expired) are not
/// edXML statuses: they stay in the notices the node writes today.
pub(crate) async fn write_notice_messages(
    inbox: &Path,
    notice: &pb::StatusNotice,
) -> Result<(), InboxError> {
    for entry in &notice.entries {
        let Ok(code) = u32::try_from(entry.status) else {
            continue;
        };
        if truc_domain::Status::from_code(code).is_err() {
            continue;
        }
        let name = format!(
            "{}__{}__{code:02}__{}.status.edxml",
            inbox_name(&notice.document_id),
            inbox_name(&notice.recipient),
            entry.at_unix_ms
        );
        let path = inbox.join(name);
        if tokio::fs::try_exists(&path)
            .await
            .map_err(InboxError::io("look for", &path))?
        {
            continue;
        }
        let message = truc_edxml::notice_message(
            &notice.document_id,
            &notice.recipient,
            code,
            entry.at_unix_ms,
            &entry.reason,
        );
        let bytes = truc_edxml::write_status(&message)?;
        write_atomically(inbox, &path, &bytes).await?;
    }
    Ok(())
}

/// Hidden name, write, sync, rename, sync the folder.
pub(crate) async fn write_atomically(
    folder: &Path,
    path: &Path,
    bytes: &[u8],
) -> Result<(), InboxError> {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = folder.join(format!(".{name}.tmp"));
    let mut file = tokio::fs::File::create(&temporary)
        .await
        .map_err(InboxError::io("create", &temporary))?;
    file.write_all(bytes)
        .await
        .map_err(InboxError::io("write", &temporary))?;
    file.sync_all()
        .await
        .map_err(InboxError::io("sync", &temporary))?;
    drop(file);
    tokio::fs::rename(&temporary, path)
        .await
        .map_err(InboxError::io("rename into place", path))?;
    sync_dir(folder).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_write_names_the_file_and_keeps_the_system_error() {
        let folder = tempfile::tempdir().unwrap();
        let missing = folder.path().join("gone");
        let error = write_atomically(&missing, &missing.join("a.edxml"), b"<edXML/>")
            .await
            .unwrap_err();
        let InboxError::Io { op, path, source } = &error else {
            panic!("not a file error: {error}");
        };
        assert_eq!((*op, path), ("create", &missing.join(".a.edxml.tmp")));
        // A full disk or a refused permission is told apart the same way.
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        assert!(
            error
                .to_string()
                .starts_with(&format!("cannot create {}: ", path.display())),
            "{error}"
        );
    }
}
