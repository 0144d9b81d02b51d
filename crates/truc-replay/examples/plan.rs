//! Builds one dataset's plan and prints its size and shape: `cargo run --release -p truc-replay
//! --example plan -- 2021 [seed] [numerator denominator]`.

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let dataset = arguments.first().map(String::as_str).unwrap_or("2021");
    let seed = arguments
        .get(1)
        .map(|text| text.parse())
        .transpose()?
        .unwrap_or(1);
    let scale = match (arguments.get(2), arguments.get(3)) {
        (Some(numerator), Some(denominator)) => Some((numerator.parse()?, denominator.parse()?)),
        _ => None,
    };
    let started = Instant::now();
    let plan = match dataset {
        "2019" => truc_replay::plan_2019(seed, scale)?,
        "2021" => truc_replay::plan_2021(seed, scale)?,
        "2022" => truc_replay::plan_2022(seed, scale)?,
        other => return Err(format!("unknown dataset {other}").into()),
    };
    let built = started.elapsed();
    let (sent, received) = plan.totals();
    let widest = plan
        .documents
        .iter()
        .map(|document| document.recipients.len())
        .max()
        .unwrap_or(0);
    let signed = plan
        .documents
        .iter()
        .filter(|document| document.document_signed)
        .count();
    println!(
        "dataset {} seed {} period {} .. {}",
        plan.dataset, plan.seed, plan.period.0, plan.period.1
    );
    println!(
        "units {}  documents {sent}  deliveries {received}",
        plan.units.len()
    );
    println!("most recipients on one document {widest}  signed documents {signed}");
    println!(
        "built in {:.2} s; {} bytes per document plus its recipients",
        built.as_secs_f64(),
        std::mem::size_of::<truc_replay::PlannedDocument>()
    );
    if std::env::var_os("PLAN_SKIP_VERIFY").is_some() {
        return Ok(());
    }
    let started = Instant::now();
    plan.verify(truc_replay::Constraints::default().recipients_max)?;
    println!("verified in {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}
