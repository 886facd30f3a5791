//! Command-line interface: flags (clap), then one function per command. `main` only calls
//! [`run`] and turns its result into an exit code.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::config::Plan;
use crate::dag::{render, DagFormat};
use crate::registry::Registry;
use crate::remote::Remote;
use crate::runner::{Engine, Freshness, RunOptions};

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
        /// Stage instances to run at once.
        #[arg(long, short = 'j', default_value_t = 1)]
        jobs: usize,
        /// Upload what this run computes to the remote.
        #[arg(long)]
        push: bool,
    },
    /// Upload the current outputs of STAGE... (default all) to the remote.
    Push { stages: Vec<String> },
    /// Download the outputs of STAGE... (default all) that the remote has.
    Pull { stages: Vec<String> },
    /// What `run` would do and why.
    Status {
        stages: Vec<String>,
        /// Machine-readable: [{"stage", "state", "reasons"}].
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
pub fn run(cli: Cli, argv: &[String]) -> Result<bool> {
    let registry = Registry::builtin();
    let plan = Plan::load(&cli.config, &registry)?;
    if let Command::Dag { dot, mermaid } = cli.command {
        let format = if dot { DagFormat::Dot } else if mermaid { DagFormat::Mermaid } else { DagFormat::Text };
        print!("{}", render(&plan, format));
        return Ok(true);
    }
    let remote_url = cli.remote.clone().or_else(|| plan.remote.clone());
    let mut engine = Engine::new(plan, cli.quiet).context("cannot open the artifact store")?;
    if let Some(url) = remote_url {
        engine.remote = Some(Remote::open(&url, &engine.plan.base_dir)?);
    }
    match cli.command {
        Command::Run { stages, dry_run: true, force, .. } => {
            for s in engine.status(&stages, &force).map_err(anyhow::Error::msg)? {
                match s.state {
                    Freshness::Fresh => println!("{}: fresh", s.stage),
                    Freshness::Stale => println!("{}: would run: {}", s.stage, join_reasons(&s.reasons)),
                }
            }
            Ok(true)
        }
        Command::Run { stages, force, keep_going, jobs, push, .. } => {
            if push && engine.remote.is_none() {
                bail!("--push needs a remote: set `remote:` in the pipeline file or pass --remote URL");
            }
            engine.push = push;
            engine.run(&RunOptions { targets: stages, force, keep_going, jobs }, argv).map_err(anyhow::Error::msg)
        }
        Command::Status { stages, json } => {
            let statuses = engine.status(&stages, &[]).map_err(anyhow::Error::msg)?;
            if json {
                let rows: Vec<serde_json::Value> = statuses
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "stage": s.stage,
                            "state": s.state,
                            "reasons": s.reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for s in &statuses {
                    match s.state {
                        Freshness::Fresh => println!("{}: fresh", s.stage),
                        Freshness::Stale => println!("{}: stale: {}", s.stage, join_reasons(&s.reasons)),
                    }
                }
            }
            Ok(true)
        }
        Command::Show { stage } => {
            let rows = engine.output_dirs(&[stage.clone()]).map_err(anyhow::Error::msg)?;
            let mut any = false;
            for (name, dir, manifest) in rows.into_iter().filter(|(n, ..)| engine.plan.select(&stage).iter().any(|&i| engine.plan.instances[i].name == *n)) {
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
            for s in engine.status(&stages, &[]).map_err(anyhow::Error::msg)? {
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
            let (removed, freed) = engine.gc().map_err(anyhow::Error::msg)?;
            println!("removed {removed} artifacts, freed {}", human_bytes(freed));
            Ok(true)
        }
        Command::Push { stages } => {
            let (n, bytes) = engine.push_all(&stages).map_err(anyhow::Error::msg)?;
            println!("pushed {n} artifacts, uploaded {}", human_bytes(bytes));
            Ok(true)
        }
        Command::Pull { stages } => {
            let n = engine.pull_all(&stages).map_err(anyhow::Error::msg)?;
            println!("pulled {n} artifacts");
            Ok(true)
        }
        Command::Predict { videos, model, json } => crate::predict::predict(&engine, &videos, model.as_deref(), json),
        Command::Runs => {
            print!("{}", crate::runs::list(&engine.store));
            Ok(true)
        }
        Command::Metrics(MetricsCommand::Diff { run_a, run_b, all, json }) => {
            print!("{}", crate::runs::metrics_diff(&engine.store, run_a.as_deref(), run_b.as_deref(), all, json)?);
            Ok(true)
        }
        Command::Dag { .. } => unreachable!("handled above"),
    }
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
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}
