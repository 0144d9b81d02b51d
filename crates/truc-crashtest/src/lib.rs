//! `truc crashtest`: the hub and node agents of the `truc` executable killed with SIGKILL
//! under load (`kills.rs`), their files on a file system that loses power (`powercut.rs`),
//! or two hubs on a PostgreSQL cluster whose primary is killed (`cluster.rs`); then every
//! acknowledged send, delivery and move must be there exactly once. What they share: the
//! plan of documents (`plan.rs`), the run's folder and processes (`layout.rs`), the load
//! (`load.rs`) and the final checks (`check.rs`). The processes are started from the running
//! executable, so only `truc` can call [`run`].

mod args;
mod check;
mod cluster;
mod kills;
mod layout;
mod load;
mod plan;
mod powercut;

use std::process::ExitCode;

use truc_domain::SplitMix64;

pub use args::CrashtestArgs;

/// `truc crashtest` as its flags ask.
pub async fn run(args: CrashtestArgs) -> anyhow::Result<ExitCode> {
    if let Some(data_dir) = &args.check_stopped {
        let documents = plan::plan(args.documents, &mut SplitMix64::new(args.seed));
        for problem in check::check_offline(data_dir, &documents)? {
            println!("{problem}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.power_cut {
        return powercut::run(args).await;
    }
    let folder = layout::RunFolder::create(args.keep.as_ref(), "truc-crash-")?;
    if args.cluster {
        return cluster::run(args, folder.path()).await;
    }
    kills::run(args, &folder).await
}
