//! The construction: from per-unit targets to documents that realise them exactly.

use std::collections::BTreeMap;

use truc_domain::{AgencyCode, DocumentDate, SplitMix64};

use super::apportion::apportion;
use super::calendar::{schedule, working_days};
use super::{describe, Constraints, FeedbackProfile, Plan, PlanError, PlannedDocument, Unit};

/// Streams of the seed, one per step.
const STREAM_LAYOUT: u64 = 1;
const STREAM_WALK: u64 = 2;
const STREAM_EXTRA_ORDER: u64 = 3;
const STREAM_SIGNING: u64 = 4;
const STREAM_CALENDAR: u64 = 5;

/// Builds documents that realise exactly the targets of `units`: each unit sends `sent`
/// documents and is a recipient of `received` of them.
///
/// # When a plan exists
///
/// Write `s_j`, `r_j` for unit j's targets, `D = Σ s_j` (documents), `R = Σ r_j` (deliveries),
/// `M` for `recipients_max`. Every document needs at least one recipient, recipients are
/// distinct and never the sender, so these are **necessary**, and checked in this order:
///
/// 1. `r_j ≤ D − s_j` for every unit j (it can receive each document of the others at most
///    once; with `D = 0` this says nobody receives);
/// 2. `R ≥ D`;
/// 3. `M ≥ ⌈R / D⌉`.
///
/// With pins (see [`super::Pin`]): a pinned recipient g receives only its pins, so
/// `r_g = Σ pins to g`; each sender's pins fit in its documents; and, writing `s'_k` for k's
/// documents that are not pinned and `R'` for the deliveries of recipients that are not pinned,
/// `s'_k + r'_k ≤ R'` for every k (k's unpinned documents each need a delivery to someone other
/// than k and the pinned recipients). Without pins this last one follows from 1 and 2.
///
/// These are also **sufficient**, apart from a margin on M, by this construction:
///
/// * Step 1, one primary recipient per document. Pinned documents get their pinned recipient.
///   For the `D' = D − P` others, give unit j `y_j ≤ min(r'_j, D' − s'_j)` primaries with
///   `Σ y_j = D'`. Such y exists: if no unit is capped by `D' − s'_j`, `Σ r'_j = R' ≥ D'`
///   (as `R' − D' = R − D`); if one unit k is, the others still have `R' − r'_k ≥ s'_k`; two
///   capped units have `(D' − s'_i) + (D' − s'_k) ≥ D'`. Then a matrix "sender k → primary j"
///   with row sums `s'`, column sums `y` and an empty diagonal exists because
///   `s'_k + y_k ≤ D'` for every k: lay the rows out left to right and the columns right to
///   left in the same unit order. Unit k's row block and column block overlap only if
///   `S_k < D' < S_k + s'_k + y_k` with `S_k = Σ_{i before k} (s'_i + y_i)`, which holds for at
///   most one k, since these intervals are disjoint. Each of that unit's L self-addressed
///   positions swaps its column with a position whose row and column are both other units;
///   there are `D' − s'_k − y_k + L ≥ L` of those.
/// * Step 2, the other `e_j = r'_j − y_j` deliveries. Walk the documents in a shuffled cyclic
///   order with one cursor; each unit in turn takes the next `e_j` documents it may join (not
///   its own, not already its primary). It may join `D − s_j − y_j ≥ e_j` documents (condition
///   1), so it finds them within one lap and never joins one twice.
/// * The cursor moves `W = Σ_{e_j > 0} min(D, e_j + s_j + y_j) ≤ R + D` steps in all, so no
///   document is passed more than `⌈W / D⌉` times and no document has more than
///   `1 + ⌈W / D⌉ ≤ ⌈R / D⌉ + 2` recipients. That bound is computed before step 2 and the
///   table is refused (`PlanError::RecipientsMax`) if M is below it: the construction
///   **guarantees** success when `M ≥ ⌈R / D⌉ + 2`, and refuses some tables with
///   `⌈R / D⌉ ≤ M < ⌈R / D⌉ + 2` that might be feasible. With the hub's default M = 1000 and
///   the published tables (`R / D` about 3 to 4) that gap never matters.
///
/// Documents are then spread over the working days, sent in time order, numbered per sender.
/// Every unit gets [`FeedbackProfile::Full`]; the dataset builders override it.
///
/// Same inputs and seed give the same plan: all randomness comes from a fixed generator.
pub fn build(
    dataset: &str,
    period: (DocumentDate, DocumentDate),
    units: Vec<Unit>,
    seed: u64,
    constraints: &Constraints,
) -> Result<Plan, PlanError> {
    let index = index_units(&units)?;
    let sent: Vec<u64> = units.iter().map(|unit| unit.sent).collect();
    let received: Vec<u64> = units.iter().map(|unit| unit.received).collect();
    let total_sent = checked_sum(&sent, "sent")?;
    let total_received = checked_sum(&received, "received")?;

    check_units(&units, total_sent)?;
    if total_received < total_sent {
        return Err(PlanError::Infeasible {
            unit: "(all units)".into(),
            reason: format!(
                "Σ received ≥ Σ sent fails: {total_received} < {total_sent}; \
                 every document needs at least one recipient"
            ),
        });
    }
    let recipients_max = u64::from(constraints.recipients_max);
    if total_sent > 0 && recipients_max * total_sent < total_received {
        return Err(PlanError::RecipientsMax {
            recipients_max: constraints.recipients_max,
            reason: format!(
                "{total_received} deliveries over {total_sent} documents need {} recipients \
                 on some document",
                total_received.div_ceil(total_sent)
            ),
        });
    }

    let pins = resolve_pins(&units, &index, constraints)?;
    let layout = Layout::new(&units, &pins)?;
    let days = working_days(period)?;
    if total_sent > 0 && days.is_empty() {
        return Err(PlanError::Input(format!(
            "the period {} .. {} has no working day",
            period.0, period.1
        )));
    }

    let rng = SplitMix64::new(seed);
    let primaries = layout.primaries(&mut rng.fork(STREAM_LAYOUT))?;
    let bound = layout.recipients_bound(&primaries.quotas);
    if total_received > total_sent && bound > recipients_max {
        return Err(PlanError::RecipientsMax {
            recipients_max: constraints.recipients_max,
            reason: format!(
                "the construction guarantees at most {bound} recipients per document here \
                 (at most ⌈R/D⌉ + 2 = {}), and only that is accepted",
                total_received.div_ceil(total_sent) + 2
            ),
        });
    }
    let recipients = layout.recipients(
        &primaries,
        &mut rng.fork(STREAM_WALK),
        &mut rng.fork(STREAM_EXTRA_ORDER),
    )?;
    let signed = signing(
        &units,
        constraints,
        &primaries,
        &mut rng.fork(STREAM_SIGNING),
    );
    let documents = finish(
        &units,
        &primaries.senders,
        &recipients,
        &signed,
        &days,
        &mut rng.fork(STREAM_CALENDAR),
    );
    let feedback = units
        .iter()
        .map(|unit| (unit.code, FeedbackProfile::Full))
        .collect();
    Ok(Plan {
        dataset: dataset.to_string(),
        seed,
        period,
        units,
        documents,
        feedback,
    })
}

fn index_units(units: &[Unit]) -> Result<BTreeMap<AgencyCode, u32>, PlanError> {
    if units.len() >= u32::MAX as usize {
        return Err(PlanError::Input(format!(
            "{} units is too many",
            units.len()
        )));
    }
    let mut index = BTreeMap::new();
    for (position, unit) in units.iter().enumerate() {
        if index.insert(unit.code, position as u32).is_some() {
            return Err(PlanError::Input(format!(
                "unit {} is listed twice",
                unit.code
            )));
        }
    }
    Ok(index)
}

/// Sums a column, refusing totals that do not fit the `u32` document and delivery indices.
fn checked_sum(values: &[u64], what: &str) -> Result<u64, PlanError> {
    let total = values
        .iter()
        .try_fold(0u64, |sum, &value| sum.checked_add(value))
        .filter(|&total| total < u64::from(u32::MAX))
        .ok_or_else(|| PlanError::Input(format!("Σ {what} is too large for one plan")))?;
    Ok(total)
}

/// Condition 1: `received_j ≤ D − sent_j`.
fn check_units(units: &[Unit], total_sent: u64) -> Result<(), PlanError> {
    for unit in units {
        let others = total_sent - unit.sent;
        if unit.received > others {
            return Err(PlanError::Infeasible {
                unit: describe(unit),
                reason: format!(
                    "received ≤ Σ sent − sent fails: {} > {total_sent} − {} = {others}; \
                     it can receive each document of the others at most once",
                    unit.received, unit.sent
                ),
            });
        }
    }
    Ok(())
}

/// A pin with unit indices.
struct ResolvedPin {
    sender: u32,
    recipient: u32,
    documents: u64,
    signed: u64,
}

fn resolve_pins(
    units: &[Unit],
    index: &BTreeMap<AgencyCode, u32>,
    constraints: &Constraints,
) -> Result<Vec<ResolvedPin>, PlanError> {
    let mut resolved = Vec::new();
    let mut pairs = BTreeMap::new();
    let mut pinned_from = vec![0u64; units.len()];
    let mut pinned_to: BTreeMap<u32, u64> = BTreeMap::new();
    for pin in &constraints.pins {
        let refuse = |reason: String| PlanError::Pin {
            sender: pin.sender.to_string(),
            recipient: pin.recipient.to_string(),
            reason,
        };
        let sender = *index
            .get(&pin.sender)
            .ok_or_else(|| refuse("the sender is not a unit of the plan".into()))?;
        let recipient = *index
            .get(&pin.recipient)
            .ok_or_else(|| refuse("the recipient is not a unit of the plan".into()))?;
        if sender == recipient {
            return Err(refuse("a unit cannot address itself".into()));
        }
        if pin.signed > pin.documents {
            return Err(refuse(format!(
                "{} signed out of {} documents",
                pin.signed, pin.documents
            )));
        }
        if pairs.insert((sender, recipient), ()).is_some() {
            return Err(refuse("the pair is pinned twice".into()));
        }
        pinned_from[sender as usize] += pin.documents;
        *pinned_to.entry(recipient).or_default() += pin.documents;
        resolved.push(ResolvedPin {
            sender,
            recipient,
            documents: pin.documents,
            signed: pin.signed,
        });
    }
    for (position, unit) in units.iter().enumerate() {
        if pinned_from[position] > unit.sent {
            return Err(PlanError::Infeasible {
                unit: describe(unit),
                reason: format!(
                    "pinned documents ≤ sent fails: {} > {}",
                    pinned_from[position], unit.sent
                ),
            });
        }
    }
    for (&recipient, &documents) in &pinned_to {
        let unit = &units[recipient as usize];
        if documents != unit.received {
            return Err(PlanError::Infeasible {
                unit: describe(unit),
                reason: format!(
                    "a pinned recipient receives only its pins: pinned {documents} ≠ received {}",
                    unit.received
                ),
            });
        }
    }
    Ok(resolved)
}

/// The targets in the form the construction uses.
struct Layout<'units> {
    units: &'units [Unit],
    /// Documents a unit sends that are not pinned.
    free_sent: Vec<u64>,
    /// Deliveries a unit takes outside pins (zero for a pinned recipient).
    free_received: Vec<u64>,
    free_documents: u64,
    /// (sender, recipient, signed) for every pinned document.
    pinned: Vec<(u32, u32, bool)>,
}

/// The result of step 1.
struct Primaries {
    /// Sender of each document: unpinned ones first, then pinned ones.
    senders: Vec<u32>,
    primary: Vec<u32>,
    /// Primaries each unit holds among unpinned documents (`y_j`).
    quotas: Vec<u64>,
    /// Which documents are pinned (by index) and signed by their pin.
    pinned_signed: Vec<Option<bool>>,
}

impl<'units> Layout<'units> {
    fn new(units: &'units [Unit], pins: &[ResolvedPin]) -> Result<Self, PlanError> {
        let mut free_sent: Vec<u64> = units.iter().map(|unit| unit.sent).collect();
        let mut free_received: Vec<u64> = units.iter().map(|unit| unit.received).collect();
        let mut pinned = Vec::new();
        for pin in pins {
            free_sent[pin.sender as usize] -= pin.documents;
            free_received[pin.recipient as usize] = 0;
            for document in 0..pin.documents {
                pinned.push((pin.sender, pin.recipient, document < pin.signed));
            }
        }
        let free_documents: u64 = free_sent.iter().sum();
        let free_deliveries: u64 = free_received.iter().sum();
        for (position, unit) in units.iter().enumerate() {
            let need = free_sent[position] + free_received[position];
            if need > free_deliveries {
                return Err(PlanError::Infeasible {
                    unit: describe(unit),
                    reason: format!(
                        "unpinned sent + received ≤ deliveries outside pins fails: {} + {} > \
                         {free_deliveries}; its unpinned documents need recipients other than \
                         itself and the pinned recipients",
                        free_sent[position], free_received[position]
                    ),
                });
            }
        }
        Ok(Self {
            units,
            free_sent,
            free_received,
            free_documents,
            pinned,
        })
    }

    /// Step 1: a primary recipient for every document.
    fn primaries(&self, rng: &mut SplitMix64) -> Result<Primaries, PlanError> {
        let total = self.free_documents;
        let caps: Vec<u64> = (0..self.units.len())
            .map(|j| self.free_received[j].min(total - self.free_sent[j]))
            .collect();
        let quotas = primary_quotas(&self.free_received, &caps, total)?;

        let mut order: Vec<u32> = (0..self.units.len() as u32).collect();
        rng.shuffle(&mut order);
        let length = total as usize;
        let mut senders = Vec::with_capacity(length + self.pinned.len());
        for &unit in &order {
            senders.extend(std::iter::repeat_n(
                unit,
                self.free_sent[unit as usize] as usize,
            ));
        }
        let mut primary = vec![0u32; length];
        let mut end = length;
        for &unit in &order {
            let start = end - quotas[unit as usize] as usize;
            primary[start..end].fill(unit);
            end = start;
        }
        repair_self_addressing(&senders, &mut primary)?;

        let mut pinned_signed = vec![None; length];
        for &(sender, recipient, signed) in &self.pinned {
            senders.push(sender);
            primary.push(recipient);
            pinned_signed.push(Some(signed));
        }
        Ok(Primaries {
            senders,
            primary,
            quotas,
            pinned_signed,
        })
    }

    /// Most recipients step 2 can put on one document, given the primaries: `1 + ⌈W / D⌉`.
    fn recipients_bound(&self, quotas: &[u64]) -> u64 {
        let documents: u64 = self.units.iter().map(|unit| unit.sent).sum();
        if documents == 0 {
            return 0;
        }
        let walk: u64 = (0..self.units.len())
            .filter(|&j| self.free_received[j] > quotas[j])
            .map(|j| {
                let extra = self.free_received[j] - quotas[j];
                documents.min(extra + self.units[j].sent + quotas[j])
            })
            .sum();
        1 + walk.div_ceil(documents)
    }

    /// Step 2: the other deliveries, then every document's recipients sorted by unit index.
    fn recipients(
        &self,
        primaries: &Primaries,
        walk_rng: &mut SplitMix64,
        order_rng: &mut SplitMix64,
    ) -> Result<Recipients, PlanError> {
        let documents = primaries.senders.len();
        let mut walk: Vec<u32> = (0..documents as u32).collect();
        walk_rng.shuffle(&mut walk);
        let mut takers: Vec<u32> = (0..self.units.len() as u32)
            .filter(|&j| self.free_received[j as usize] > primaries.quotas[j as usize])
            .collect();
        order_rng.shuffle(&mut takers);

        let mut extras: Vec<(u32, u32)> = Vec::new();
        let mut cursor = 0usize;
        for &unit in &takers {
            let wanted = self.free_received[unit as usize] - primaries.quotas[unit as usize];
            let mut taken = 0u64;
            let mut looked = 0usize;
            while taken < wanted {
                if looked == documents {
                    return Err(PlanError::Internal(format!(
                        "{} found only {taken} of {wanted} documents to join in a full lap",
                        self.units[unit as usize].code
                    )));
                }
                let document = walk[cursor];
                cursor = (cursor + 1) % documents;
                looked += 1;
                let position = document as usize;
                if primaries.senders[position] != unit && primaries.primary[position] != unit {
                    extras.push((document, unit));
                    taken += 1;
                }
            }
        }

        // Counting sort of the extra deliveries by document, after each document's primary.
        let mut offsets = vec![0usize; documents + 1];
        for &(document, _) in &extras {
            offsets[document as usize + 1] += 1;
        }
        for position in 0..documents {
            offsets[position + 1] += offsets[position] + 1;
        }
        let mut flat = vec![0u32; offsets[documents]];
        let mut fill: Vec<usize> = offsets[..documents].to_vec();
        for (position, &recipient) in primaries.primary.iter().enumerate() {
            flat[fill[position]] = recipient;
            fill[position] += 1;
        }
        for &(document, recipient) in &extras {
            flat[fill[document as usize]] = recipient;
            fill[document as usize] += 1;
        }
        for position in 0..documents {
            flat[offsets[position]..offsets[position + 1]].sort_unstable();
        }
        Ok(Recipients { offsets, flat })
    }
}

/// Every document's recipients as unit indices, back to back.
struct Recipients {
    offsets: Vec<usize>,
    flat: Vec<u32>,
}

impl Recipients {
    fn of(&self, document: usize) -> &[u32] {
        &self.flat[self.offsets[document]..self.offsets[document + 1]]
    }
}

/// `y_j ≤ caps_j` with `Σ y = total`, close to proportional to `received`: the proportional
/// split never exceeds `received_j` (as `total ≤ Σ received`); what the caps cut off goes to the
/// units with the most room left.
fn primary_quotas(received: &[u64], caps: &[u64], total: u64) -> Result<Vec<u64>, PlanError> {
    let mut quotas = apportion(total, received);
    let mut excess = 0u64;
    for (quota, &cap) in quotas.iter_mut().zip(caps) {
        if *quota > cap {
            excess += *quota - cap;
            *quota = cap;
        }
    }
    if excess > 0 {
        let mut by_room: Vec<usize> = (0..quotas.len()).collect();
        by_room.sort_by_key(|&j| std::cmp::Reverse(caps[j] - quotas[j]));
        for j in by_room {
            let given = excess.min(caps[j] - quotas[j]);
            quotas[j] += given;
            excess -= given;
        }
    }
    if excess > 0 {
        return Err(PlanError::Internal(format!(
            "{excess} primary deliveries found no unit with room"
        )));
    }
    Ok(quotas)
}

/// Removes the self-addressed positions the two opposite layouts leave (all of one unit) by
/// swapping their primary with a position where neither sender nor primary is that unit.
fn repair_self_addressing(senders: &[u32], primary: &mut [u32]) -> Result<(), PlanError> {
    let conflicts: Vec<usize> = (0..primary.len())
        .filter(|&position| senders[position] == primary[position])
        .collect();
    let Some(&first) = conflicts.first() else {
        return Ok(());
    };
    let unit = senders[first];
    if conflicts.iter().any(|&position| senders[position] != unit) {
        return Err(PlanError::Internal(
            "self-addressed positions of more than one unit".into(),
        ));
    }
    let donors: Vec<usize> = (0..primary.len())
        .filter(|&position| senders[position] != unit && primary[position] != unit)
        .take(conflicts.len())
        .collect();
    if donors.len() < conflicts.len() {
        return Err(PlanError::Internal(format!(
            "{} self-addressed positions but only {} to swap with",
            conflicts.len(),
            donors.len()
        )));
    }
    for (&conflict, &donor) in conflicts.iter().zip(&donors) {
        primary.swap(conflict, donor);
    }
    Ok(())
}

/// Whether each document carries its own signature: pinned ones as their pin says, the others
/// drawn with their sender's rate.
fn signing(
    units: &[Unit],
    constraints: &Constraints,
    primaries: &Primaries,
    rng: &mut SplitMix64,
) -> Vec<bool> {
    let rates: Vec<u64> = units
        .iter()
        .map(|unit| {
            let rate = constraints
                .signing
                .per_mille_by_root
                .get(&unit.code.root())
                .copied()
                .unwrap_or(constraints.signing.per_mille_default);
            u64::from(rate.min(1000))
        })
        .collect();
    primaries
        .senders
        .iter()
        .zip(&primaries.pinned_signed)
        .map(|(&sender, pinned)| match pinned {
            Some(signed) => *signed,
            None => rng.below(1000) < rates[sender as usize],
        })
        .collect()
}

/// Dates, times, send order, numbers; then the public form.
fn finish(
    units: &[Unit],
    senders: &[u32],
    recipients: &Recipients,
    signed: &[bool],
    days: &[DocumentDate],
    rng: &mut SplitMix64,
) -> Vec<PlannedDocument> {
    let slots = schedule(days, senders.len(), rng);
    let mut order: Vec<u32> = (0..senders.len() as u32).collect();
    order.sort_unstable_by_key(|&document| (slots[document as usize].1, document));
    let mut numbers = vec![0u32; units.len()];
    order
        .iter()
        .enumerate()
        .map(|(seq, &document)| {
            let position = document as usize;
            let sender = senders[position] as usize;
            numbers[sender] += 1;
            let (day, at_unix_ms) = slots[position];
            PlannedDocument {
                seq: seq as u64,
                sender: units[sender].code,
                recipients: recipients
                    .of(position)
                    .iter()
                    .map(|&recipient| units[recipient as usize].code)
                    .collect(),
                date: days[day as usize],
                at_unix_ms,
                number: numbers[sender],
                document_signed: signed[position],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three units with two documents and two primaries each: the middle one straddles the
    /// midpoint of the two layouts, so two positions are self-addressed and must be swapped.
    #[test]
    fn opposite_layouts_leave_one_straddler_which_the_swap_repairs() {
        let senders = vec![0, 0, 1, 1, 2, 2];
        let mut primary = vec![2, 2, 1, 1, 0, 0];
        repair_self_addressing(&senders, &mut primary).unwrap();
        assert!(senders
            .iter()
            .zip(&primary)
            .all(|(sender, to)| sender != to));
        let mut sorted = primary.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 0, 1, 1, 2, 2]);
    }

    #[test]
    fn quotas_respect_caps_and_add_up() {
        let quotas = primary_quotas(&[10, 10, 1], &[2, 10, 1], 9).unwrap();
        assert_eq!(quotas.iter().sum::<u64>(), 9);
        assert!(quotas[0] <= 2 && quotas[2] <= 1);
    }
}
