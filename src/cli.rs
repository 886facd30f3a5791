//! Command-line interface: flags (clap), then one function per command. `main` only calls
//! [`run`] and turns its result into an exit code.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{ConfigError, ExecutorKind, Plan};
use crate::dag::{render, DagFormat};
use crate::domain::Domain;
use crate::executor::job_note;
use crate::executor::slurm::Slurm;
use crate::fingerprint::Key;
use crate::remote::Remote;
use crate::runlog::RunRecord;
use crate::runner::{Engine, Freshness, RunOptions, TransferError};

#[derive(Debug, Parser)]
#[command(name = "pipeline", version, about = "Run a pipeline.yaml: only what went stale is redone, and you are told why")]
pub struct Cli {
    /// The pipeline file.
    #[arg(long, short = 'c', global = true, default_value = "pipeline.yaml")]
    pub config: PathBuf,
    /// Print only errors and results.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// The shared remote cache (overrides `remote:` in the pipeline file).
    #[arg(long, global = true, value_name = "URL")]
    pub remote: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the stale stages (all, or STAGE... and what they need).
    Run {
        stages: Vec<String>,
        /// Say what would run and why, run nothing.
        #[arg(long)]
        dry_run: bool,
        /// Rerun these stages even if fresh (repeatable).
        #[arg(long, value_name = "STAGE")]
        force: Vec<String>,
        /// After a failure, go on with stages that do not depend on it.
        #[arg(long)]
        keep_going: bool,
        /// Stage instances to run at once, whatever their `cpus`. Default: locally, as many as
        /// their stages' `executor.resources.STAGE.cpus` fit in this machine's cores (a stage
        /// without `cpus` takes them all); on a cluster, every ready one.
        #[arg(long, short = 'j')]
        jobs: Option<usize>,
        /// Upload what this run computes to the remote.
        #[arg(long)]
        push: bool,
        /// Where stale instances run (overrides `executor: {kind: ...}` in the pipeline file).
        #[arg(long, value_enum, value_name = "KIND")]
        executor: Option<ExecutorArg>,
    },
    /// Compute one task whose spec is in the remote and push its result (what a cluster job
    /// runs; it uses a private store, never the workspace's).
    ExecTask {
        key: String,
        /// Compute only shard I (from 0) of N of a data-parallel stage, e.g. `--shard 2/8`
        /// (a job array passes `$SLURM_ARRAY_TASK_ID/8`).
        #[arg(long, value_name = "I/N", value_parser = parse_shard)]
        shard: Option<stage_api::Shard>,
        /// The worker's store (default: a temporary directory, removed afterwards).
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
    },
    /// Upload the current outputs of STAGE... (default all) to the remote.
    Push { stages: Vec<String> },
    /// Download the outputs of STAGE... (default all) that the remote has.
    Pull { stages: Vec<String> },
    /// What `run` would do and why.
    Status {
        stages: Vec<String>,
        /// Machine-readable: [{"stage", "state", "reasons" (text), "why" (objects)}].
        #[arg(long)]
        json: bool,
    },
    /// The stage graph.
    Dag {
        #[arg(long, conflicts_with = "mermaid")]
        dot: bool,
        #[arg(long)]
        mermaid: bool,
    },
    /// Where a stage's output is.
    Show { stage: String },
    /// Re-hash the outputs of the current stages and compare them with their manifests.
    Verify { stages: Vec<String> },
    /// Remove artifacts no current stage refers to.
    Gc,
    /// The recorded runs, oldest first.
    Runs,
    /// Predict the emotion in VIDEO... with a trained model (same preprocessing as in training).
    Predict {
        #[arg(required = true)]
        videos: Vec<PathBuf>,
        /// A train stage or instance name, or a folder with model.json (default: the current
        /// model with the best validation accuracy).
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Metrics of earlier runs.
    #[command(subcommand)]
    Metrics(MetricsCommand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExecutorArg {
    Local,
    Slurm,
    Kubernetes,
}

#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// The change in every metric between two runs (default: the previous and the latest run
    /// with metrics). Runs are named by id or id prefix (see `pipeline runs`).
    Diff {
        run_a: Option<String>,
        run_b: Option<String>,
        /// Also list metrics that did not change.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command; `Ok(false)` means "ran, but something failed" (exit status 1).
pub fn run(cli: Cli, argv: &[String], domain: &dyn Domain) -> Result<bool> {
    let registry = domain.registry();
    let plan = Plan::load(&cli.config, &registry)?;
    if let Command::Dag { dot, mermaid } = cli.command {
        let format = if dot {
            DagFormat::Dot
        } else if mermaid {
            DagFormat::Mermaid
        } else {
            DagFormat::Text
        };
        print!("{}", render(&plan, format));
        return Ok(true);
    }
    let remote_url = cli.remote.clone().or_else(|| plan.remote.clone());
    if let Command::ExecTask { key, store, shard } = &cli.command {
        return exec_task(&plan, remote_url.as_deref(), key, *shard, store.as_deref(), cli.quiet);
    }
    let mut engine = Engine::new(plan, cli.quiet).context("cannot open the artifact store")?;
    if let Some(url) = remote_url {
        engine.remote = Some(Remote::open(&url, &engine.plan.base_dir)?);
    }
    match cli.command {
        Command::Run { stages, dry_run: true, force, .. } => {
            for s in engine.status(&stages, &force)? {
                match s.state {
                    Freshness::Fresh => println!("{}: fresh", s.stage),
                    Freshness::Stale => println!("{}: would run: {}", s.stage, join_reasons(&s.reasons)),
                }
            }
            Ok(true)
        }
        Command::Run { stages, force, keep_going, jobs, push, executor, .. } => {
            if push && engine.remote.is_none() {
                bail!("--push needs a remote: set `remote:` in the pipeline file or pass --remote URL");
            }
            engine.push = push;
            let run_id = RunRecord::new_id();
            let kind = match executor {
                Some(ExecutorArg::Local) => ExecutorKind::Local,
                Some(ExecutorArg::Slurm) => ExecutorKind::Slurm,
                Some(ExecutorArg::Kubernetes) => ExecutorKind::Kubernetes,
                None => engine.plan.executor.kind,
            };
            match kind {
                ExecutorKind::Local => {}
                ExecutorKind::Slurm => use_slurm(&mut engine, &run_id)?,
                ExecutorKind::Kubernetes => use_kubernetes(&mut engine, &run_id)?,
            }
            engine.run(&RunOptions { targets: stages, force, keep_going, jobs, run_id: Some(run_id) }, argv).map_err(anyhow::Error::from)
        }
        Command::Status { stages, json } => {
            let statuses = engine.status(&stages, &[])?;
            if json {
                let rows: Vec<serde_json::Value> = statuses
                    .iter()
                    .map(|s| {
                        let mut row = serde_json::json!({
                            "stage": s.stage,
                            "state": s.state,
                            "reasons": s.reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
                            // The same reasons as data: the enum's fields, tagged by `reason`.
                            "why": s.reasons,
                        });
                        // Only where a cluster job was submitted for the instance's key.
                        if let Some(note) = stale_job_note(&engine, s) {
                            row["job"] = note.into();
                        }
                        row
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for s in &statuses {
                    match s.state {
                        Freshness::Fresh => println!("{}: fresh", s.stage),
                        Freshness::Stale => println!("{}: stale: {}", s.stage, join_reasons(&s.reasons)),
                    }
                    if let Some(note) = stale_job_note(&engine, s) {
                        println!("  {note}");
                    }
                }
            }
            Ok(true)
        }
        Command::Show { stage } => {
            let rows = engine.output_dirs(std::slice::from_ref(&stage))?;
            let mut any = false;
            for (name, dir, manifest) in
                rows.into_iter().filter(|(n, ..)| engine.plan.select(&stage).iter().any(|&i| engine.plan.instances[i].name == *n))
            {
                any = true;
                match (dir, manifest) {
                    (Some(dir), Some(m)) => {
                        println!("{name}: {}", dir.display());
                        println!("  key {}  {} files, {} bytes, computed in {:.1} s", m.key, m.files.len(), m.total_size(), m.seconds);
                        if !m.summary.is_empty() {
                            println!("  {}", m.summary);
                        }
                    }
                    _ => println!("{name}: stale (no current output; run `pipeline run {name}`)"),
                }
            }
            if !any {
                bail!("no stage named `{stage}`");
            }
            Ok(true)
        }
        Command::Verify { stages } => {
            let mut ok = true;
            for s in engine.status(&stages, &[])? {
                let Some(key) = s.key.filter(|_| s.state == Freshness::Fresh) else { continue };
                let bad = engine.store.verify(&key)?;
                if bad.is_empty() {
                    println!("{}: ok", s.stage);
                } else {
                    ok = false;
                    println!("{}: {} files differ from the manifest: {}", s.stage, bad.len(), bad.join(", "));
                }
            }
            Ok(ok)
        }
        Command::Gc => {
            let (removed, freed) = engine.gc()?;
            println!("removed {removed} artifacts, freed {}", human_bytes(freed));
            Ok(true)
        }
        Command::Push { stages } => match engine.push_all(&stages) {
            Ok((n, bytes)) => {
                println!("pushed {n} artifacts, uploaded {}", human_bytes(bytes));
                Ok(true)
            }
            Err(e) => transfer_failed(e),
        },
        Command::Pull { stages } => match engine.pull_all(&stages) {
            Ok(n) => {
                println!("pulled {n} artifacts");
                Ok(true)
            }
            Err(e) => transfer_failed(e),
        },
        Command::Predict { videos, model, json } => crate::predict::predict(&engine, domain, &videos, model.as_deref(), json),
        Command::Runs => {
            print!("{}", crate::runs::list(&engine.store, domain));
            Ok(true)
        }
        Command::Metrics(MetricsCommand::Diff { run_a, run_b, all, json }) => {
            print!("{}", crate::runs::metrics_diff(&engine.store, domain, run_a.as_deref(), run_b.as_deref(), all, json)?);
            Ok(true)
        }
        Command::Dag { .. } | Command::ExecTask { .. } => unreachable!("handled above"),
    }
}

/// A failed `push` or `pull`: a usage error is an error (exit status 2); a failed transfer is
/// said on stderr and is exit status 1, like a failed stage.
fn transfer_failed(e: TransferError) -> Result<bool> {
    match e {
        TransferError::Usage(message) => Err(anyhow::Error::msg(message)),
        TransferError::Failed(message) => {
            eprintln!("error: {message}");
            Ok(false)
        }
    }
}

/// Hands the engine's stale instances to Slurm for this run; Ctrl-C cancels the run's jobs.
fn use_slurm(engine: &mut Engine, run_id: &str) -> Result<()> {
    let remote = needs_remote(engine, "slurm")?;
    // Fail once, before anything is computed, rather than once per task.
    if let Err(e) = std::process::Command::new("sbatch").arg("--version").output() {
        bail!("the slurm executor cannot run `sbatch` ({e}): install Slurm's client commands or put them on PATH");
    }
    let slurm = Slurm::new(engine.plan.executor.clone(), run_id, remote.url(), &engine.plan.config_file, &engine.store)
        .context("cannot set up the slurm executor")?;
    use_cluster(engine, std::sync::Arc::new(slurm), "cancelling the slurm jobs of this run")
}

/// The remote a cluster executor exchanges tasks and results through; a configuration error
/// without one.
fn needs_remote<'a>(engine: &'a Engine, kind: &str) -> Result<&'a Remote> {
    engine.remote.as_ref().ok_or_else(|| {
        ConfigError::new(&engine.plan.config_file, engine.plan.executor.position, format!("the {kind} executor needs a remote cache"))
            .with_hint("jobs exchange inputs and results through it (no shared filesystem is assumed): set `remote:` in the pipeline file or pass --remote URL")
            .into()
    })
}

/// Makes `executor` the engine's; Ctrl-C (SIGTERM, SIGHUP) cancels what it submitted.
fn use_cluster(engine: &mut Engine, executor: std::sync::Arc<dyn crate::executor::Executor>, on_ctrl_c: &'static str) -> Result<()> {
    let on_interrupt = executor.clone();
    ctrlc::set_handler(move || {
        eprintln!("interrupted: {on_ctrl_c}");
        on_interrupt.cancel_all();
        std::process::exit(130);
    })
    .context("cannot install the Ctrl-C handler")?;
    engine.executor = executor;
    Ok(())
}

/// Hands the engine's stale instances to Kubernetes, one Job each; Ctrl-C deletes the run's Jobs.
#[cfg(feature = "kubernetes")]
fn use_kubernetes(engine: &mut Engine, run_id: &str) -> Result<()> {
    use crate::config::executor::{KUBERNETES_IMAGE_HINT, KUBERNETES_NEEDS_IMAGE};
    let remote = needs_remote(engine, "kubernetes")?;
    // `image:` is checked with the file for `kind: kubernetes`; `--executor kubernetes` gets here.
    if engine.plan.executor.image.is_none() {
        return Err(ConfigError::new(&engine.plan.config_file, engine.plan.executor.position, KUBERNETES_NEEDS_IMAGE)
            .with_hint(KUBERNETES_IMAGE_HINT)
            .into());
    }
    let kubernetes = crate::executor::kubernetes::Kubernetes::new(engine.plan.executor.clone(), run_id, remote.url(), &engine.plan)
        .map_err(|e| anyhow::anyhow!("the kubernetes executor: {e}"))?;
    use_cluster(engine, std::sync::Arc::new(kubernetes), "deleting the kubernetes jobs of this run")
}

#[cfg(not(feature = "kubernetes"))]
fn use_kubernetes(_engine: &mut Engine, _run_id: &str) -> Result<()> {
    bail!("the kubernetes executor: {}", crate::executor::NO_KUBERNETES)
}

/// A `--shard` value that is not `I/N` with I < N.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a shard: write I/N, with I counted from 0 and less than N (e.g. 2/8)")]
struct NotAShard(String);

/// `I/N` with I < N (shard I, counted from 0, of N).
fn parse_shard(text: &str) -> Result<stage_api::Shard, NotAShard> {
    let bad = || NotAShard(text.to_owned());
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (index, count): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if index >= count {
        return Err(bad());
    }
    Ok(stage_api::Shard { index, count })
}

/// `pipeline exec-task KEY`, run by a cluster job.
fn exec_task(
    plan: &Plan,
    remote_url: Option<&str>,
    key: &str,
    shard: Option<stage_api::Shard>,
    store: Option<&std::path::Path>,
    quiet: bool,
) -> Result<bool> {
    let Some(url) = remote_url else { bail!("exec-task needs a remote: pass --remote URL") };
    let key = Key::parse(key).with_context(|| format!("`{key}` is not a cache key (64 lower-case hex digits)"))?;
    let remote = Remote::open(url, &plan.base_dir)?;
    let reporter = crate::progress::Reporter::new(quiet);
    // Without --store: a scratch store, removed at the end, and also when the job is cancelled
    // (scancel sends SIGTERM, which skips destructors).
    let scratch = match store {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("pipeline-task-").tempdir().context("cannot create a scratch store")?),
    };
    if let Some(dir) = &scratch {
        let path = dir.path().to_path_buf();
        ctrlc::set_handler(move || {
            let _ = std::fs::remove_dir_all(&path);
            eprintln!("exec-task: interrupted; removed the scratch store {}", path.display());
            std::process::exit(143);
        })
        .context("cannot install the signal handler")?;
    }
    let store_dir = store.or(scratch.as_ref().map(|d| d.path())).expect("one of the two is set");
    match crate::executor::task::exec_task(plan, &remote, &key, shard, store_dir, &reporter) {
        Ok(line) => {
            eprintln!("{line}");
            Ok(true)
        }
        Err(failure) => {
            if scratch.is_some() {
                // scancel and requeue signal every process of the job at once: the stage's
                // command may die of it before the handler above has run. Give the handler a
                // moment, so an interrupted task leaves as one (exit 143), not as a failure.
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            eprintln!("{failure}");
            Ok(false)
        }
    }
}

/// Where the last job for a stale instance's key runs, if one was submitted.
fn stale_job_note(engine: &Engine, status: &crate::runner::InstanceStatus) -> Option<String> {
    let key = status.key.as_ref().filter(|_| status.state == Freshness::Stale)?;
    job_note(&engine.store, key)
}

fn join_reasons(reasons: &[crate::dirty::DirtyReason]) -> String {
    reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(all(test, not(feature = "kubernetes")))]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_without_the_feature_says_how_to_build_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pipeline.yaml");
        std::fs::write(&file, "executor: {kind: kubernetes, image: reg/pipeline:1}\nstages:\n  a:\n    run: \"true\"\n").unwrap();
        let plan = Plan::load(&file, &crate::registry::Registry::from_stages(Vec::new())).unwrap();
        let mut engine = Engine::new(plan, true).unwrap();
        let err = super::use_kubernetes(&mut engine, "1-2").unwrap_err().to_string();
        assert_eq!(
            err,
            "the kubernetes executor: this binary was built without the `kubernetes` feature (cargo build --features kubernetes)"
        );
        // A file that asks for it is still valid (`status`, `dag` and `--executor local` work).
        assert_eq!(engine.plan.executor.kind, crate::config::ExecutorKind::Kubernetes);
    }
}
