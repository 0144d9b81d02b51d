//! Re-extracts every seed table from the report text and rewrites `seeds/*.csv`.
//!
//! Usage: `cargo run -p truc-seeds --example regenerate [REPORTS_DIR [OUT_DIR]]`; the defaults
//! are `../shared/seeds` and `seeds` relative to the workspace root.

use std::path::PathBuf;

use truc_seeds::{extract, to_csv, SeedError, SEED_001_FILE, SEED_002_FILE};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut args = std::env::args().skip(1);
    let reports = args
        .next()
        .map_or_else(|| workspace.join("../shared/seeds"), PathBuf::from);
    let out = args
        .next()
        .map_or_else(|| workspace.join("seeds"), PathBuf::from);
    let text_001 = std::fs::read_to_string(reports.join(SEED_001_FILE))?;
    let text_002 = std::fs::read_to_string(reports.join(SEED_002_FILE))?;
    let directory = extract::directory(&text_001)?;

    let files: Vec<(&str, Result<String, SeedError>)> = vec![
        (
            "agencies.csv",
            extract::agencies(&text_001, &text_002).and_then(|rows| to_csv("agencies.csv", &rows)),
        ),
        (
            "2019_levels.csv",
            extract::levels_2019(&text_002).and_then(|rows| to_csv("2019_levels.csv", &rows)),
        ),
        (
            "2019_to_government_office.csv",
            extract::to_government_office_2019(&text_002, &directory)
                .and_then(|rows| to_csv("2019_to_government_office.csv", &rows)),
        ),
        (
            "2019_status_feedback.csv",
            extract::status_feedback_2019(&text_002, &directory)
                .and_then(|rows| to_csv("2019_status_feedback.csv", &rows)),
        ),
        (
            "2019_connections.csv",
            extract::connections_2019(&text_002, &directory)
                .and_then(|rows| to_csv("2019_connections.csv", &rows)),
        ),
        (
            "2021_2022_agencies.csv",
            extract::volumes_2021_2022(&text_001)
                .and_then(|rows| to_csv("2021_2022_agencies.csv", &rows)),
        ),
        (
            "2021_2022_totals.csv",
            extract::totals_2021_2022(&text_001)
                .and_then(|rows| to_csv("2021_2022_totals.csv", &rows)),
        ),
    ];
    for (name, text) in files {
        let path = out.join(name);
        std::fs::write(&path, text?)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
