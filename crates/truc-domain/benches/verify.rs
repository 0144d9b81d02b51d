//! Ed25519 verification one at a time (ring, what the hub does for every
//! envelope) against batch verification (ed25519-dalek's `verify_batch`), on
//! the same messages in one run: `cargo bench -p truc-domain --bench verify`.
//!
//! The messages are envelope signing bytes (`envelope_signing_bytes`) of
//! about 2,400 bytes, the size of a real signed header and envelope, signed
//! by truc-domain's own `SigningKey` (ring). Two sets: one key per agency (60
//! agencies, message i signed by agency i mod 60) and one key for all. Each
//! round times every variant once, in an order rotated from round to round,
//! so that what else the machine does falls on all of them alike; the table
//! gives each variant's median over the rounds, in µs per signature.
//!
//! What batching means for the checks (ed25519-dalek 2.x, its README and
//! docs.rs):
//!
//! - A batch answers for the whole batch only: one bad signature fails it
//!   and says not which. To refuse each bad envelope on its own, a failed
//!   batch must be verified again one at a time. The variant "64, one bad,
//!   then each with ring" measures that cost.
//! - ring's single verification is cofactorless: it recomputes R from
//!   [s]B - [k]A and compares the encodings byte for byte. dalek's `verify`
//!   does the same; `verify_strict` also refuses small-order R and A (weak
//!   keys). `verify_batch` checks a random linear combination of the
//!   cofactorless equations (coefficients of 128 bits derived from the
//!   inputs), decompresses each R instead of comparing its encoding, and
//!   does no weak-key check. For honestly made signatures all agree; for
//!   crafted ones with a small-order part (weak key, torsion in R) the batch
//!   may accept what ring refuses, and whether it does depends on the rest
//!   of the batch (dalek's README: "a 21% chance that one fails and the
//!   other succeeds"). A batch in front of ring is therefore not the same
//!   acceptance rule unless the keys are checked for weakness beforehand
//!   (`VerifyingKey::is_weak`, once per certificate).
//! - The dalek variants take keys already decompressed (`VerifyingKey`, as
//!   a hub would keep one per agency), except the one named so; ring
//!   decompresses the key on every call, which is part of its cost here as
//!   it is in the hub.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use ring::signature::{Ed25519KeyPair, UnparsedPublicKey, ED25519};
use truc_domain::{envelope_signing_bytes, PublicKey, SigningKey, SplitMix64};

/// Signatures per measurement: a multiple of every batch size.
const MESSAGES: usize = 256;
/// Header bytes signed; with the context prefix about 2,400 bytes.
const HEADER_BYTES: usize = 2_380;
const AGENCIES: usize = 60;
const BATCH_SIZES: [usize; 5] = [1, 4, 16, 64, 256];
const ROUNDS: usize = 25;
/// Passes over the messages per measurement (about 20–40 ms each, unloaded).
const PASSES: usize = 2;

struct Set {
    name: &'static str,
    messages: Vec<Vec<u8>>,
    /// Raw key and signature bytes, as the hub has them (certificate, envelope).
    ring_keys: Vec<[u8; 32]>,
    raw_signatures: Vec<Vec<u8>>,
    dalek_keys: Vec<VerifyingKey>,
    dalek_signatures: Vec<Signature>,
}

fn signing_key() -> SigningKey {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .expect("a fresh Ed25519 key");
    SigningKey::from_pkcs8(pkcs8.as_ref()).expect("the key just made")
}

fn make_set(name: &'static str, agencies: usize, rng: &mut SplitMix64) -> Set {
    let keys: Vec<SigningKey> = (0..agencies).map(|_| signing_key()).collect();
    let mut set = Set {
        name,
        messages: Vec::new(),
        ring_keys: Vec::new(),
        raw_signatures: Vec::new(),
        dalek_keys: Vec::new(),
        dalek_signatures: Vec::new(),
    };
    for i in 0..MESSAGES {
        let header: Vec<u8> = (0..HEADER_BYTES).map(|_| rng.next_u64() as u8).collect();
        let key = &keys[i % agencies];
        let signature = key.sign_envelope(&header).expect("signed");
        let PublicKey::Ed25519(public) = key.public_key() else {
            unreachable!("an Ed25519 key")
        };
        set.messages.push(envelope_signing_bytes(&header));
        set.dalek_keys
            .push(VerifyingKey::from_bytes(&public).expect("a valid key"));
        set.dalek_signatures
            .push(Signature::from_slice(&signature).expect("64 bytes"));
        set.ring_keys.push(public);
        set.raw_signatures.push(signature);
    }
    set
}

#[derive(Clone, Copy, Debug)]
enum Variant {
    Ring,
    DalekVerify,
    /// `verify` with the key decompressed on every call, as ring does.
    DalekVerifyKeyEachTime,
    DalekStrict,
    Batch(usize),
    /// Batches of 64 each holding one bad signature, found again one at a
    /// time with ring after the batch fails.
    BatchBadThenRing,
}

impl Variant {
    fn label(self) -> String {
        match self {
            Variant::Ring => "ring, one at a time".into(),
            Variant::DalekVerify => "dalek `verify`, one at a time".into(),
            Variant::DalekVerifyKeyEachTime => {
                "dalek `verify`, one at a time, key decompressed each time".into()
            }
            Variant::DalekStrict => "dalek `verify_strict`, one at a time".into(),
            Variant::Batch(n) => format!("dalek `verify_batch` of {n}"),
            Variant::BatchBadThenRing => "batch of 64 with one bad, then each with ring".into(),
        }
    }
}

fn ring_ok(set: &Set, i: usize, message: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, &set.ring_keys[i])
        .verify(message, &set.raw_signatures[i])
        .is_ok()
}

/// Verifies every message of the set once; returns how many were refused.
fn run(variant: Variant, set: &Set, bad: &[Vec<u8>]) -> usize {
    let mut refused = 0;
    match variant {
        Variant::Ring => {
            for (i, message) in set.messages.iter().enumerate() {
                refused += usize::from(!ring_ok(set, i, black_box(message)));
            }
        }
        Variant::DalekVerify => {
            for (i, message) in set.messages.iter().enumerate() {
                let ok = set.dalek_keys[i]
                    .verify(black_box(message), &set.dalek_signatures[i])
                    .is_ok();
                refused += usize::from(!ok);
            }
        }
        Variant::DalekVerifyKeyEachTime => {
            for (i, message) in set.messages.iter().enumerate() {
                let ok = VerifyingKey::from_bytes(black_box(&set.ring_keys[i]))
                    .and_then(|key| key.verify(black_box(message), &set.dalek_signatures[i]))
                    .is_ok();
                refused += usize::from(!ok);
            }
        }
        Variant::DalekStrict => {
            for (i, message) in set.messages.iter().enumerate() {
                let ok = set.dalek_keys[i]
                    .verify_strict(black_box(message), &set.dalek_signatures[i])
                    .is_ok();
                refused += usize::from(!ok);
            }
        }
        Variant::Batch(n) => {
            let messages: Vec<&[u8]> = set.messages.iter().map(Vec::as_slice).collect();
            for start in (0..MESSAGES).step_by(n) {
                let range = start..start + n;
                let ok = ed25519_dalek::verify_batch(
                    black_box(&messages[range.clone()]),
                    &set.dalek_signatures[range.clone()],
                    &set.dalek_keys[range],
                )
                .is_ok();
                refused += usize::from(!ok) * n;
            }
        }
        Variant::BatchBadThenRing => {
            // `bad` is the set's messages with one byte changed in message
            // 7 of every 64: its signature no longer matches.
            let messages: Vec<&[u8]> = bad.iter().map(Vec::as_slice).collect();
            for start in (0..MESSAGES).step_by(64) {
                let range = start..start + 64;
                let ok = ed25519_dalek::verify_batch(
                    black_box(&messages[range.clone()]),
                    &set.dalek_signatures[range.clone()],
                    &set.dalek_keys[range.clone()],
                )
                .is_ok();
                if !ok {
                    for i in range {
                        refused += usize::from(!ring_ok(set, i, messages[i]));
                    }
                }
            }
        }
    }
    refused
}

fn main() {
    let mut rng = SplitMix64::new(0x7275_6321);
    let sets = [
        make_set("60 agency keys", AGENCIES, &mut rng),
        make_set("one key", 1, &mut rng),
    ];
    let bads: Vec<Vec<Vec<u8>>> = sets
        .iter()
        .map(|set| {
            let mut bad = set.messages.clone();
            for start in (0..MESSAGES).step_by(64) {
                bad[start + 7][100] ^= 1;
            }
            bad
        })
        .collect();

    let mut variants = vec![
        Variant::Ring,
        Variant::DalekVerify,
        Variant::DalekVerifyKeyEachTime,
        Variant::DalekStrict,
    ];
    variants.extend(BATCH_SIZES.map(Variant::Batch));
    variants.push(Variant::BatchBadThenRing);

    // Every variant must accept the good sets whole and refuse exactly the
    // changed messages, before anything is timed.
    for (set, bad) in sets.iter().zip(&bads) {
        for &variant in &variants {
            let expected = match variant {
                Variant::BatchBadThenRing => MESSAGES / 64,
                _ => 0,
            };
            assert_eq!(
                run(variant, set, bad),
                expected,
                "{variant:?} on {}",
                set.name
            );
        }
        let messages: Vec<&[u8]> = bad.iter().map(Vec::as_slice).collect();
        for start in (0..MESSAGES).step_by(64) {
            let range = start..start + 64;
            let batch = ed25519_dalek::verify_batch(
                &messages[range.clone()],
                &set.dalek_signatures[range.clone()],
                &set.dalek_keys[range],
            );
            assert!(batch.is_err(), "a batch holding a bad signature fails");
        }
    }

    // (set, variant) -> µs per signature, one per round.
    let cells: Vec<(usize, Variant)> = (0..sets.len())
        .flat_map(|s| variants.iter().map(move |&v| (s, v)))
        .collect();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); cells.len()];
    let started = Instant::now();
    for round in 0..ROUNDS {
        for k in 0..cells.len() {
            let c = (k + round * 5) % cells.len();
            let (s, variant) = cells[c];
            let t = Instant::now();
            for _ in 0..PASSES {
                black_box(run(variant, &sets[s], &bads[s]));
            }
            samples[c].push(per_signature(t.elapsed()));
        }
    }

    println!(
        "Ed25519 verification of {MESSAGES} messages of {} bytes, µs per signature, \
         median of {ROUNDS} interleaved rounds ({PASSES} passes each); min–max in brackets; {:.1} s",
        sets[0].messages[0].len(),
        started.elapsed().as_secs_f64()
    );
    println!();
    println!("| variant | {} | {} |", sets[0].name, sets[1].name);
    println!("|---|---|---|");
    for (v, &variant) in variants.iter().enumerate() {
        let cell = |s: usize| {
            let mut xs = samples[s * variants.len() + v].clone();
            xs.sort_by(f64::total_cmp);
            format!(
                "{:.1} [{:.1}–{:.1}]",
                xs[xs.len() / 2],
                xs[0],
                xs[xs.len() - 1]
            )
        };
        println!("| {} | {} | {} |", variant.label(), cell(0), cell(1));
    }
}

fn per_signature(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1e6 / (MESSAGES * PASSES) as f64
}
