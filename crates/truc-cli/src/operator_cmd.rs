//! `truc route`, `truc documents`, `truc nodes` and `truc recall`: the
//! directory's routes, the document list, the node list, and a sender's recall.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use truc_domain::views::{DocumentFilter, NodeView, StatusCode};
use truc_domain::BusinessType;

use crate::connect::Connection;
use crate::{format_time, usage, TIME_WIDTH};

#[derive(clap::Args)]
pub struct RouteArgs {
    /// The agency code to route, e.g. 000.00.05.H41.
    code: String,
    /// Read this directory file instead of asking the running hub.
    #[arg(long)]
    directory: Option<PathBuf>,
    #[command(flatten)]
    connection: Connection,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn route(args: RouteArgs) -> anyhow::Result<ExitCode> {
    let (node, explanation) = match &args.directory {
        Some(path) => {
            let directory = truc_hub::Directory::load(path)?;
            let code: truc_domain::AgencyCode = args
                .code
                .parse()
                .map_err(|error| anyhow::anyhow!("code: {error}"))?;
            let route = directory.route(&code);
            (
                route.node().map(|n| n.to_string()).unwrap_or_default(),
                route.to_string(),
            )
        }
        None => {
            let client = args.connection.connect().await?;
            let response = client.explain_route(&args.code).await?;
            (response.node, response.explanation)
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({"code": args.code, "node": node, "explanation": explanation})
        );
    } else {
        println!("{explanation}");
    }
    Ok(if node.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(clap::Args)]
pub struct DocumentsArgs {
    #[command(flatten)]
    connection: Connection,
    /// Only documents sent by this agency.
    #[arg(long, default_value = "")]
    sender: String,
    /// Only documents to this recipient.
    #[arg(long, default_value = "")]
    recipient: String,
    /// Only documents with a delivery in this status (arrived, received, …, recall-requested, expired).
    #[arg(long)]
    status: Option<String>,
    /// Only documents with a delivery not yet arrived.
    #[arg(long)]
    queued: bool,
    /// Only documents with a delivery past a feedback deadline and still unanswered.
    #[arg(long)]
    overdue: bool,
    /// First document date, yyyy-mm-dd.
    #[arg(long, default_value = "")]
    from: String,
    /// Last document date, yyyy-mm-dd.
    #[arg(long, default_value = "")]
    to: String,
    /// At most this many documents (default 100).
    #[arg(long, default_value_t = 0)]
    limit: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn documents(args: DocumentsArgs) -> anyhow::Result<ExitCode> {
    let status = match &args.status {
        None => None,
        Some(name) if name == "expired" => Some(StatusCode::Expired),
        Some(name) => truc_domain::Status::from_name(name)
            .map(|s| Some(StatusCode::Status(s)))
            .ok_or_else(|| {
                usage(format!(
                    "--status: '{name}' is not a status name; use arrived, received, assigned, \
                     processing, completed, rejected, recall-requested, recall-agreed, \
                     recall-refused or expired"
                ))
            })?,
    };
    for (flag, date) in [("--from", &args.from), ("--to", &args.to)] {
        if !date.is_empty() {
            crate::check_date(flag, date)?;
        }
    }
    let client = args.connection.connect().await?;
    let response = client
        .list_documents(&DocumentFilter {
            sender: args.sender,
            recipient: args.recipient,
            status,
            queued: args.queued,
            overdue: args.overdue,
            from_date: args.from,
            to_date: args.to,
            limit: args.limit,
        })
        .await?;
    if args.json {
        let documents: Vec<_> = response
            .documents
            .iter()
            .map(|d| {
                serde_json::json!({
                    "document_id": d.document_id,
                    "sender": d.sender,
                    "subject": d.subject,
                    "accepted_at_unix_ms": d.accepted_at_unix_ms,
                    "business_type": business_name(d.business_type),
                    "recipients": d.recipients.iter().map(|r| serde_json::json!({
                        "recipient": r.recipient, "current": r.current.name(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"documents": documents, "truncated": response.truncated})
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<44} {:<8} {:<TIME_WIDTH$} recipients",
        "document", "kind", "accepted"
    );
    for document in &response.documents {
        let recipients: Vec<String> = document
            .recipients
            .iter()
            .map(|r| format!("{} {}", r.recipient, r.current.name()))
            .collect();
        println!(
            "{:<44} {:<8} {:<TIME_WIDTH$} {}",
            document.document_id,
            business_name(document.business_type),
            format_time(document.accepted_at_unix_ms),
            recipients.join(", ")
        );
    }
    println!(
        "{} document(s){}",
        response.documents.len(),
        if response.truncated {
            " (more matched; raise --limit or narrow the filters)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

pub fn business_name(kind: BusinessType) -> &'static str {
    match kind {
        BusinessType::New => "new",
        BusinessType::Revoke => "recall",
        BusinessType::Update => "update",
        BusinessType::Replace => "replace",
    }
}

#[derive(clap::Args)]
pub struct NodesArgs {
    #[command(flatten)]
    connection: Connection,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn nodes(args: NodesArgs) -> anyhow::Result<ExitCode> {
    let client = args.connection.connect().await?;
    let response = client.list_nodes().await?;
    let mode = |node: &NodeView| {
        if node.relay {
            "LGSP relay".to_owned()
        } else if !node.own_node {
            if node.via.is_empty() {
                "no route".to_owned()
            } else {
                format!("via {}", node.via)
            }
        } else if node.connection == "lgsp" {
            "via LGSP".to_owned()
        } else {
            "direct".to_owned()
        }
    };
    if args.json {
        let nodes: Vec<_> = response
            .nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "code": n.organ_id, "name": n.name, "connection": n.connection, "mode": mode(n),
                    "relay": n.relay, "own_node": n.own_node, "via": n.via, "online": n.online,
                    "last_seen_unix_ms": n.last_seen_unix_ms, "queue_depth": n.queue_depth,
                    "queued_documents": n.queued_documents, "queued_notices": n.queued_notices,
                    "oldest_unacked_document_id": n.oldest_unacked_document_id,
                    "oldest_unacked_accepted_at_unix_ms": n.oldest_unacked_accepted_at_unix_ms,
                    "serving_hub": n.serving_hub,
                })
            })
            .collect();
        let database = response.database.as_ref().map(|database| {
            serde_json::json!({
                "primary": database.primary, "writable": database.writable,
                "standbys": database.standbys.iter().map(|s| serde_json::json!({
                    "name": s.name, "address": s.address, "state": s.state,
                    "sync_state": s.sync_state, "replay_lag_bytes": s.replay_lag_bytes,
                })).collect::<Vec<_>>(),
            })
        });
        println!(
            "{}",
            serde_json::json!({
                "nodes": nodes, "answering_hub": response.answering_hub, "database": database,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("hub {}", response.answering_hub);
    if let Some(database) = &response.database {
        println!(
            "database primary {} ({})",
            database.primary,
            if database.writable {
                "writable"
            } else {
                "read-only"
            }
        );
        for standby in &database.standbys {
            println!(
                "  standby {} {} {} {}, {} bytes behind",
                standby.name,
                standby.address,
                standby.state,
                standby.sync_state,
                standby.replay_lag_bytes
            );
        }
    }
    let hub_width = response
        .nodes
        .iter()
        .map(|n| n.serving_hub.len())
        .max()
        .unwrap_or(0)
        .max(3);
    println!(
        "{:<15} {:<20} {:<7} {:<hub_width$} {:<TIME_WIDTH$} {:>9} {:>7}  oldest unacknowledged document",
        "agency", "mode", "online", "hub", "last seen", "documents", "notices"
    );
    for node in &response.nodes {
        let oldest = if node.oldest_unacked_document_id.is_empty() {
            "-".to_owned()
        } else {
            format!(
                "{} (accepted {})",
                node.oldest_unacked_document_id,
                format_time(node.oldest_unacked_accepted_at_unix_ms)
            )
        };
        let count = |value: u64| {
            if node.own_node {
                value.to_string()
            } else {
                "-".to_owned()
            }
        };
        println!(
            "{:<15} {:<20} {:<7} {:<hub_width$} {:<TIME_WIDTH$} {:>9} {:>7}  {}",
            node.organ_id,
            mode(node),
            if node.online { "yes" } else { "no" },
            if node.serving_hub.is_empty() {
                "-"
            } else {
                node.serving_hub.as_str()
            },
            if node.last_seen_unix_ms == 0 {
                "-".to_owned()
            } else {
                format_time(node.last_seen_unix_ms)
            },
            count(node.queued_documents),
            count(node.queued_notices),
            oldest
        );
    }
    println!(
        "documents: deliveries waiting for the node to fetch them; notices: status notices waiting for it"
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct RecallArgs {
    /// The document to recall, `OrganId,yyyy/MM/dd,Number/Notation`.
    document_id: String,
    #[command(flatten)]
    connection: Connection,
    /// Number of the recall notice itself (it is a document of its own).
    #[arg(long)]
    number: String,
    /// Notation of the recall notice, e.g. VPCP-TTĐT.
    #[arg(long)]
    notation: String,
    /// Abstract of the recall (default: "Thu hồi văn bản <id>").
    #[arg(long)]
    subject: Option<String>,
    /// Recipients to recall it from (repeat); default: every recipient.
    #[arg(long = "to")]
    to: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn recall(args: RecallArgs) -> anyhow::Result<ExitCode> {
    let from = args.connection.agency_code()?;
    let client = args.connection.connect().await?;
    let to = if args.to.is_empty() {
        client
            .get_status(&args.document_id)
            .await
            .context("reading the document's recipients")?
            .recipients
            .into_iter()
            .map(|r| r.recipient)
            .collect()
    } else {
        args.to
    };
    let draft = truc_node::Draft {
        from: from.to_string(),
        to,
        number: args.number,
        notation: args.notation,
        place: "Hà Nội".into(),
        date: crate::today_in_vietnam(),
        subject: args
            .subject
            .unwrap_or_else(|| format!("Thu hồi văn bản {}", args.document_id)),
        business_type: BusinessType::Revoke,
        business_refs: vec![args.document_id],
        ..truc_node::Draft::default()
    };
    let response = client.send(&draft, Vec::new()).await?;
    crate::connect::say_which_hub(&client);
    crate::print_send_response(&response, args.json);
    Ok(crate::send_exit_code(&response))
}
