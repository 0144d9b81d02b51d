//! The single writer: every change goes through one thread, whatever the
//! engine. It folds the commands waiting at that moment into one group,
//! runs each through the rules over the engine's view (later commands read
//! what earlier ones staged), has the engine make the group durable in one
//! write, and only then answers the callers and wakes the delivery streams
//! (group commit). A command that fails stages nothing.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::engine::{GroupWriter, Reader};
use crate::error::StoreError;
use crate::records::{ArchiveFile, DeadLetterRecord, DocumentRecord};
use crate::rules::moves::MoveResults;
use crate::rules::{
    AcceptDeadlines, AcceptPlan, AckOutcome, GroupChanges, GroupStart, LapseOutcome, MoveRequest,
    PlannedAcceptResult, RetireOutcome, Rules, WatchBlockId,
};
use crate::sink::{crash_point, ArchiveSink, ReaderBlobs, RetireRequest};
use crate::{Notifiers, PendingBlob, Shared};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

// Commands are moved once through a channel; boxing the large variant would
// only add an allocation per command.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Command {
    Accept {
        document: DocumentRecord,
        blobs: Vec<PendingBlob>,
        plan: AcceptPlan,
        deadlines: AcceptDeadlines,
        reply: oneshot::Sender<PlannedAcceptResult>,
    },
    Ack {
        agency: String,
        queue_seqs: Vec<u64>,
        at_unix_ms: i64,
        received_deadline_unix_ms: Option<i64>,
        reply: Reply<Vec<AckOutcome>>,
    },
    Move {
        moves: Vec<MoveRequest>,
        reply: Reply<MoveResults>,
    },
    Lapse {
        /// Due blocks of deadlines; the rules read them again.
        blocks: Vec<WatchBlockId>,
        at_unix_ms: i64,
        /// Why an expired delivery expired, for its dead letter and the sender.
        expiry_reason: String,
        reply: Reply<LapseOutcome>,
    },
    Resend {
        document_id: String,
        recipient: String,
        operator: String,
        at_unix_ms: i64,
        deadlines: AcceptDeadlines,
        reply: Reply<DeadLetterRecord>,
    },
    Cancel {
        document_id: String,
        recipient: String,
        operator: String,
        at_unix_ms: i64,
        reason: String,
        reply: Reply<DeadLetterRecord>,
    },
    /// Everything written so far into the engine's settled form.
    Checkpoint { reply: Reply<()> },
    /// Records copied from another store (`truc store migrate`), written
    /// as they are, in a group of their own, without the rules.
    Import {
        group: GroupChanges,
        reply: Reply<()>,
    },
    /// Documents that may leave the live store go into an archive, then leave.
    Retire {
        request: RetireRequest,
        sink: Arc<dyn ArchiveSink>,
        reply: Reply<RetireOutcome>,
    },
}

impl Command {
    /// Roughly the payload bytes the command brings into its group's write.
    fn carried_bytes(&self) -> usize {
        match self {
            Command::Accept {
                document, blobs, ..
            } => {
                document.header_bytes.len()
                    + document.signature.len()
                    + document.sender_certificate.len()
                    + blobs
                        .iter()
                        .map(|blob| blob.inline.as_ref().map_or(0, Vec::len))
                        .sum::<usize>()
            }
            _ => 0,
        }
    }

    /// Answers the command with `error` without running it.
    fn refuse(self, error: StoreError) {
        match self {
            Command::Accept { reply, .. } => drop(reply.send(Err(error))),
            Command::Ack { reply, .. } => drop(reply.send(Err(error))),
            Command::Move { reply, .. } => drop(reply.send(Err(error))),
            Command::Lapse { reply, .. } => drop(reply.send(Err(error))),
            Command::Resend { reply, .. } | Command::Cancel { reply, .. } => {
                drop(reply.send(Err(error)))
            }
            Command::Checkpoint { reply } | Command::Import { reply, .. } => {
                drop(reply.send(Err(error)))
            }
            Command::Retire { reply, .. } => drop(reply.send(Err(error))),
        }
    }
}

/// A reply held back until the group it belongs to is durable: called with
/// `None` to answer, or with the error the write failed with.
type Pending = Box<dyn FnOnce(Option<&StoreError>) + Send>;

fn hold<T: Send + 'static>(reply: Reply<T>, result: Result<T, StoreError>) -> Pending {
    Box::new(move |failure| {
        let _ = reply.send(match failure {
            None => result,
            Some(error) => Err(error.again()),
        });
    })
}

/// A group stops taking commands once the payload bytes they bring reach
/// this: records, and the memory holding them, stay a few MiB.
const GROUP_CARRIED_BYTES_MAX: usize = 8 << 20;

/// Most commands folded into one group.
const GROUP_COMMANDS_MAX: usize = 2048;

pub(crate) struct Writer {
    engine: Box<dyn GroupWriter>,
    shared: Arc<Shared>,
    /// Reads attachment bytes for archives.
    reader: Arc<dyn Reader>,
}

impl Writer {
    pub(crate) fn new(
        engine: Box<dyn GroupWriter>,
        shared: Arc<Shared>,
        reader: Arc<dyn Reader>,
    ) -> Self {
        Writer {
            engine,
            shared,
            reader,
        }
    }

    pub(crate) fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut group = Vec::with_capacity(GROUP_COMMANDS_MAX);
        while let Some(first) = commands.blocking_recv() {
            let mut carried = first.carried_bytes();
            group.push(first);
            while group.len() < GROUP_COMMANDS_MAX && carried < GROUP_CARRIED_BYTES_MAX {
                match commands.try_recv() {
                    Ok(command) => {
                        carried += command.carried_bytes();
                        group.push(command);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(&mut group);
        }
        // Every store handle is gone.
        self.engine.close();
    }

    /// Writes copied records as they are, in a group of their own.
    fn import(&mut self, group: GroupChanges, reply: Reply<()>) {
        let result = self.engine.begin(&[]).and_then(|_| {
            let written = self.engine.commit(group, &BTreeSet::new());
            if written.is_err() {
                self.engine.abort();
            }
            written
        });
        let _ = reply.send(result);
    }

    /// Runs a group of commands through the rules and commits their changes
    /// together: one journal record, one sync.
    fn commit_group(&mut self, group: &mut Vec<Command>) {
        if !self.import_first(group) {
            return;
        }
        let Some(start) = self.begin(group) else {
            return;
        };
        let mut pending: Vec<Pending> = Vec::with_capacity(group.len());
        let mut checkpoints = Vec::new();
        let mut retired = false;
        let reader = self.reader.clone();
        let mut rules = Rules::new(self.engine.view(), start);
        for command in group.drain(..) {
            pending.extend(apply(
                &mut rules,
                command,
                &*reader,
                &mut checkpoints,
                &mut retired,
            ));
        }
        let (changes, woken) = rules.finish();
        self.write_group(changes, &woken, pending, checkpoints, retired);
    }

    /// Writes the group's imports, each in a group of its own, ahead of the
    /// rest; whether any other command is left.
    fn import_first(&mut self, group: &mut Vec<Command>) -> bool {
        if group
            .iter()
            .any(|command| matches!(command, Command::Import { .. }))
        {
            let mut rest = Vec::with_capacity(group.len());
            for command in group.drain(..) {
                match command {
                    Command::Import { group, reply } => self.import(group, reply),
                    other => rest.push(other),
                }
            }
            *group = rest;
        }
        !group.is_empty()
    }

    /// Starts the group in the engine, told which documents it sends; on
    /// failure every command is refused.
    fn begin(&mut self, group: &mut Vec<Command>) -> Option<GroupStart> {
        let sent: Vec<&str> = group
            .iter()
            .filter_map(|command| match command {
                Command::Accept { document, .. } => Some(document.document_id.as_str()),
                _ => None,
            })
            .collect();
        let start = self.engine.begin(&sent);
        drop(sent);
        match start {
            Ok(start) => Some(start),
            Err(error) => {
                for command in group.drain(..) {
                    command.refuse(error.again());
                }
                None
            }
        }
    }

    /// Commits the group's changes, then answers its commands and the
    /// checkpoints asked of it, or fails them all.
    fn write_group(
        &mut self,
        changes: GroupChanges,
        woken: &BTreeSet<String>,
        pending: Vec<Pending>,
        checkpoints: Vec<Reply<()>>,
        retired: bool,
    ) {
        let started = std::time::Instant::now();
        match self.engine.commit(changes, woken) {
            Ok(()) => {
                if !pending.is_empty() {
                    self.shared
                        .stats
                        .record_flush(pending.len(), started.elapsed());
                    crate::metrics::group_commit(pending.len(), started.elapsed());
                }
                if retired {
                    crash_point("removed");
                }
                for reply in pending {
                    reply(None);
                }
                self.shared.notifiers.wake(woken);
                if !checkpoints.is_empty() {
                    let result = self.engine.checkpoint_all();
                    for reply in checkpoints {
                        let _ = reply.send(match &result {
                            Ok(()) => Ok(()),
                            Err(error) => Err(StoreError::Corrupt {
                                key: "(checkpoint)".into(),
                                reason: error.to_string(),
                            }),
                        });
                    }
                }
            }
            Err(error) => {
                self.engine.abort();
                for reply in pending {
                    reply(Some(&error));
                }
                for reply in checkpoints {
                    let _ = reply.send(Err(error.again()));
                }
            }
        }
    }
}

/// Runs one command of the group through the rules; its answer waits for
/// the group's commit. A checkpoint is kept for after the commit.
fn apply(
    rules: &mut Rules<'_>,
    command: Command,
    reader: &dyn Reader,
    checkpoints: &mut Vec<Reply<()>>,
    retired: &mut bool,
) -> Option<Pending> {
    Some(match command {
        Command::Checkpoint { reply } => {
            // Once the group is written, so that it covers the group too.
            checkpoints.push(reply);
            return None;
        }
        Command::Import { reply, .. } => {
            // Taken out by `import_first`.
            let _ = reply.send(Err(StoreError::WriterGone));
            return None;
        }
        Command::Accept {
            document,
            blobs,
            plan,
            deadlines,
            reply,
        } => hold(
            reply,
            rules.accept_watched(document, blobs, &plan, deadlines),
        ),
        Command::Ack {
            agency,
            queue_seqs,
            at_unix_ms,
            received_deadline_unix_ms,
            reply,
        } => hold(
            reply,
            rules.ack_all(&agency, &queue_seqs, at_unix_ms, received_deadline_unix_ms),
        ),
        Command::Move { moves, reply } => hold(reply, Ok(rules.move_all(moves))),
        Command::Lapse {
            blocks,
            at_unix_ms,
            expiry_reason,
            reply,
        } => hold(reply, rules.lapse(blocks, at_unix_ms, &expiry_reason)),
        Command::Resend {
            document_id,
            recipient,
            operator,
            at_unix_ms,
            deadlines,
            reply,
        } => hold(
            reply,
            rules.resend(&document_id, &recipient, &operator, at_unix_ms, deadlines),
        ),
        Command::Cancel {
            document_id,
            recipient,
            operator,
            at_unix_ms,
            reason,
            reply,
        } => hold(
            reply,
            rules.cancel(&document_id, &recipient, &operator, at_unix_ms, &reason),
        ),
        Command::Retire {
            request,
            sink,
            reply,
        } => {
            let outcome = retire(rules, &request, &*sink, reader);
            *retired |= outcome.as_ref().is_ok_and(|o| o.archived > 0);
            hold(reply, outcome)
        }
    })
}

/// One retention step: an archive of an earlier period is closed, then the
/// documents that may leave are written into the current one, synced, and
/// only then staged to leave the live store. A failure of the archive
/// stages nothing of this step.
fn retire(
    rules: &mut Rules<'_>,
    request: &RetireRequest,
    sink: &dyn ArchiveSink,
    reader: &dyn Reader,
) -> Result<RetireOutcome, StoreError> {
    let mut closed = None;
    let mut open = rules.open_archive(&request.hub)?;
    if let Some(file) = open.take_if(|file| file.period != request.period) {
        let file = sink.close(&file, request.at_unix_ms, rules.audit_head())?;
        rules.close_archive(file.clone());
        closed = Some(file);
    }
    let planned = rules.plan_retirement(
        &request.candidates,
        request.cutoff_unix_ms,
        request.audit_entries_max,
        request.at_unix_ms,
    )?;
    if planned.batch.is_empty() {
        let outcome = RetireOutcome {
            held: planned.held,
            deferred: planned.deferred,
            file: open,
            closed,
            ..RetireOutcome::default()
        };
        rules.abandon_retirement(planned);
        return Ok(outcome);
    }
    if open.is_none() {
        // A first batch a crash left unrecorded must not stay beside the
        // file about to hold its documents.
        let set_aside = reader.archive_files().and_then(|files| {
            let committed = files
                .into_iter()
                .map(|file| file.name)
                .chain(rules.archive_names_in_group())
                .collect();
            sink.set_aside_uncommitted(&committed)
        });
        if let Err(error) = set_aside {
            rules.abandon_retirement(planned);
            return Err(error);
        }
    }
    let file = open.unwrap_or_else(|| ArchiveFile {
        name: sink.file_name(&request.period),
        period: request.period.clone(),
        hub: request.hub.clone(),
        open: true,
        committed_bytes: 0,
        batches: 0,
        documents: 0,
        last_seal_sha256: [0; 32],
        audit_first_seq: 0,
        audit_last_seq: 0,
        created_at_unix_ms: request.at_unix_ms,
        closed_at_unix_ms: 0,
    });
    match sink.append(&file, &planned.batch, &ReaderBlobs(reader)) {
        Ok((file, offsets)) => {
            let mut outcome = rules.finish_retirement(planned, file, &offsets);
            outcome.closed = closed;
            Ok(outcome)
        }
        Err(error) => {
            rules.abandon_retirement(planned);
            Err(error)
        }
    }
}

impl Notifiers {
    /// Wakes the delivery streams of `agencies` in this process.
    pub(crate) fn wake(&self, agencies: &BTreeSet<String>) {
        for agency in agencies {
            self.get(agency).notify_one();
        }
    }
}
