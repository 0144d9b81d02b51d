//! `truc overdue` and `truc dead-letters`: deliveries past a feedback
//! deadline, and deliveries that expired, with the operators' resend and cancel.

use std::process::ExitCode;

use truc_domain::views::{DeadLetter, DeadLetterFilter, OverdueFilter};

use crate::connect::Connection;
use crate::{format_time, TIME_WIDTH};

#[derive(clap::Args)]
pub struct OverdueArgs {
    #[command(flatten)]
    connection: Connection,
    /// Only deliveries to (or sent by) this agency.
    #[arg(long = "agency", default_value = "")]
    of_agency: String,
    /// At most this many rows (0: the hub's default).
    #[arg(long, default_value_t = 0)]
    limit: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// How late, for people: seconds under a minute, else `2 d 3 h 4 min`.
fn lateness(ms: i64) -> String {
    if ms < 60_000 {
        return format!("{} s", ms.max(0) / 1000);
    }
    let minutes = ms / 60_000;
    let (days, hours, minutes) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    match (days, hours) {
        (0, 0) => format!("{minutes} min"),
        (0, _) => format!("{hours} h {minutes} min"),
        _ => format!("{days} d {hours} h {minutes} min"),
    }
}

pub async fn overdue(args: OverdueArgs) -> anyhow::Result<ExitCode> {
    let client = args.connection.connect().await?;
    let response = client
        .list_overdue(&OverdueFilter {
            agency: args.of_agency,
            limit: args.limit,
        })
        .await?;
    if args.json {
        let rows: Vec<_> = response
            .deliveries
            .iter()
            .map(|d| {
                serde_json::json!({
                    "recipient": d.recipient, "document_id": d.document_id, "sender": d.sender,
                    "deadline": d.deadline, "deadline_unix_ms": d.deadline_unix_ms,
                    "late_ms": d.late_ms, "subject": d.subject,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"overdue": rows, "truncated": response.truncated})
            )?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if response.deliveries.is_empty() {
        println!("No overdue deliveries.");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<15} {:<9} {:<TIME_WIDTH$} {:>16}  {:<15} document",
        "recipient", "deadline", "due at", "late", "sender"
    );
    let mut current = "";
    for d in &response.deliveries {
        let recipient = if d.recipient == current {
            ""
        } else {
            current = &d.recipient;
            &d.recipient
        };
        println!(
            "{:<15} {:<9} {:<TIME_WIDTH$} {:>16}  {:<15} {}",
            recipient,
            d.deadline,
            format_time(d.deadline_unix_ms),
            lateness(d.late_ms),
            d.sender,
            d.document_id
        );
    }
    if response.truncated {
        println!("(more rows matched; raise --limit)");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct DeadLettersArgs {
    #[command(subcommand)]
    action: Option<DeadLetterAction>,
    #[command(flatten)]
    connection: Connection,
    /// Only dead letters to (or sent by) this agency.
    #[arg(long = "agency", default_value = "")]
    of_agency: String,
    /// Also those already resent or cancelled.
    #[arg(long)]
    all: bool,
    #[arg(long, default_value_t = 0)]
    limit: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum DeadLetterAction {
    /// Queues a dead letter again with a new time to live (administrators).
    Resend {
        document_id: String,
        recipient: String,
        #[command(flatten)]
        connection: Connection,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Closes a dead letter for good, saying why (administrators).
    Cancel {
        document_id: String,
        recipient: String,
        /// Why it is cancelled; recorded with the administrator's name.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        connection: Connection,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn letter_json(letter: &DeadLetter) -> serde_json::Value {
    serde_json::json!({
        "document_id": letter.document_id, "sender": letter.sender, "recipient": letter.recipient,
        "queue_owner": letter.queue_owner, "expired_at_unix_ms": letter.expired_at_unix_ms,
        "reason": letter.reason, "state": letter.state,
        "actions": letter.actions.iter().map(|a| serde_json::json!({
            "action": a.action, "operator": a.operator, "at_unix_ms": a.at_unix_ms, "reason": a.reason,
        })).collect::<Vec<_>>(),
    })
}

fn print_letter(letter: &DeadLetter) {
    println!(
        "{:<15} {:<9} {:<TIME_WIDTH$} {:<15} {}",
        letter.recipient,
        letter.state,
        format_time(letter.expired_at_unix_ms),
        letter.sender,
        letter.document_id
    );
    for action in &letter.actions {
        println!(
            "{:<15} {} by {} at {}{}",
            "",
            action.action,
            action.operator,
            format_time(action.at_unix_ms),
            if action.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", action.reason)
            }
        );
    }
}

pub async fn dead_letters(args: DeadLettersArgs) -> anyhow::Result<ExitCode> {
    let (letter, json) = match args.action {
        Some(DeadLetterAction::Resend {
            document_id,
            recipient,
            connection,
            json,
        }) => {
            let client = connection.connect().await?;
            (
                client.resend_dead_letter(&document_id, &recipient).await?,
                json,
            )
        }
        Some(DeadLetterAction::Cancel {
            document_id,
            recipient,
            reason,
            connection,
            json,
        }) => {
            let client = connection.connect().await?;
            (
                client
                    .cancel_dead_letter(&document_id, &recipient, &reason)
                    .await?,
                json,
            )
        }
        None => {
            let client = args.connection.connect().await?;
            let response = client
                .list_dead_letters(&DeadLetterFilter {
                    agency: args.of_agency,
                    include_resolved: args.all,
                    limit: args.limit,
                })
                .await?;
            if args.json {
                let rows: Vec<_> = response.dead_letters.iter().map(letter_json).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"dead_letters": rows, "truncated": response.truncated})
                    )?
                );
            } else if response.dead_letters.is_empty() {
                println!("No dead letters.");
            } else {
                println!(
                    "{:<15} {:<9} {:<TIME_WIDTH$} {:<15} document",
                    "recipient", "state", "expired at", "sender"
                );
                for letter in &response.dead_letters {
                    print_letter(letter);
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&letter_json(&letter))?);
    } else {
        print_letter(&letter);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::lateness;

    #[test]
    fn lateness_reads_in_the_largest_units_that_fit() {
        assert_eq!(lateness(5_046), "5 s");
        assert_eq!(lateness(-3), "0 s");
        assert_eq!(lateness(61_000), "1 min");
        assert_eq!(lateness(2 * 3_600_000 + 5 * 60_000), "2 h 5 min");
        assert_eq!(lateness(3 * 86_400_000 + 3_600_000), "3 d 1 h 0 min");
    }
}
