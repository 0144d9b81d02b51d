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

use crate::agent::{inbox_name, ATTACHMENTS_FOLDER};
use crate::compose::raw_from_header;

/// The edXML package of a document written into `inbox` as `folder`.
pub fn package_path(inbox: &Path, document_id: &str) -> PathBuf {
    inbox.join(format!("{}.edxml", inbox_name(document_id)))
}

/// Writes `<document>.edxml` beside the document's folder, unless it is
/// there already (after a crash between the folder and this file, the
/// redelivery writes it).
pub async fn write_document_package(
    inbox: &Path,
    folder: &Path,
    document_id: &str,
    header: &pb::EnvelopeHeader,
) -> Result<(), String> {
    let path = package_path(inbox, document_id);
    if tokio::fs::try_exists(&path)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(());
    }
    let mut raw = raw_from_header(header);
    let mut attachments = Vec::with_capacity(raw.attachments.len());
    for attachment in &raw.attachments {
        let bytes = tokio::fs::read(folder.join(ATTACHMENTS_FOLDER).join(&attachment.name))
            .await
            .map_err(|error| format!("cannot read attachment {}: {error}", attachment.name))?;
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
            truc_edxml::from_envelope(&raw, attachments).map_err(|error| error.to_string())?
        }
    };
    // Base64 of up to 64 MiB of attachments: off the runtime's threads.
    let bytes = tokio::task::spawn_blocking(move || truc_edxml::write_package(&package))
        .await
        .map_err(|error| error.to_string())?
        .map_err(|error| error.to_string())?;
    write_atomically(inbox, &path, &bytes).await
}

/// Writes each entry of a notice about a document this agency sent as an
/// edXML status message. The hub's own codes (overdue, expired) are not
/// edXML statuses: they stay in the notices the node writes today.
pub async fn write_notice_messages(inbox: &Path, notice: &pb::StatusNotice) -> Result<(), String> {
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
            .map_err(|e| e.to_string())?
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
        let bytes = truc_edxml::write_status(&message).map_err(|error| error.to_string())?;
        write_atomically(inbox, &path, &bytes).await?;
    }
    Ok(())
}

/// Hidden name, write, sync, rename, sync the folder.
pub(crate) async fn write_atomically(
    folder: &Path,
    path: &Path,
    bytes: &[u8],
) -> Result<(), String> {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = folder.join(format!(".{name}.tmp"));
    let mut file = tokio::fs::File::create(&temporary)
        .await
        .map_err(|e| e.to_string())?;
    file.write_all(bytes).await.map_err(|e| e.to_string())?;
    file.sync_all().await.map_err(|e| e.to_string())?;
    drop(file);
    tokio::fs::rename(&temporary, path)
        .await
        .map_err(|e| e.to_string())?;
    let directory = tokio::fs::File::open(folder)
        .await
        .map_err(|e| e.to_string())?;
    directory.sync_all().await.map_err(|e| e.to_string())
}
