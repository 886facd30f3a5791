//! The local executor: runs the instance in this process (built-in stages) or as a child
//! process (`run:` stages), in a private work directory, and publishes it atomically.

use std::time::Instant;

use stage_api::StageInput;

use super::{part_name, Context, Done, Executor, Part, RunError, Task};
use crate::artifact_paths::StorePaths;
use crate::config::Action;
use crate::execute::{execute, Job, JobPart};
use crate::fingerprint::Key;

pub struct Local;

impl Executor for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    fn run(&self, ctx: &Context<'_>, task: &Task<'_>) -> Result<Done, RunError> {
        let instance = &ctx.plan.instances[task.index];
        let name = part_name(&instance.name, task.part);
        let name = name.as_str();
        let part = match task.part {
            Part::Whole => JobPart::Whole,
            Part::Shard(shard) => JobPart::Shard(shard),
            Part::Merge { count } => JobPart::Merge((0..count).map(|i| ctx.store.output_dir(&task.key.shard(i, count))).collect()),
        };
        let started = Instant::now();
        let upstream_dirs: Vec<StageInput> = task
            .upstream
            .iter()
            .map(|(n, m)| {
                let up = &ctx.plan.instances[*n];
                let key = key_of(m).ok_or_else(|| {
                    RunError::setup(format!("the manifest of `{}` holds no valid key (`{}`): run `pipeline verify`", up.name, m.key))
                })?;
                Ok(StageInput {
                    need: up.stage.clone(),
                    instance: up.name.clone(),
                    kind: match &up.action {
                        Action::Builtin(stage) => Some(stage.kind().to_owned()),
                        Action::Shell { .. } => None,
                    },
                    matrix: up.matrix.iter().cloned().collect(),
                    params: up.params.clone(),
                    dir: ctx.store.output_dir(&key),
                })
            })
            .collect::<Result<_, RunError>>()?;
        let work_dir = ctx.store.new_tmp(task.key).map_err(|e| RunError::setup(format!("cannot create a work directory: {e}")))?;
        let resume_dir = ctx.resume.prepare(task.key).map_err(|e| {
            RunError::setup(format!("cannot create the resumable-state folder {}: {e}", ctx.resume.dir(task.key).display()))
        })?;
        match task.part {
            Part::Merge { count } => ctx.reporter.line(&format!("{name}: merging the {count} shards")),
            _ => ctx.reporter.line(&format!("{name}: running")),
        }
        let progress = ctx.reporter.stage(name);
        let job = Job {
            instance: &instance.name,
            part,
            action: &instance.action,
            params: &instance.params,
            upstream: &upstream_dirs,
            base_dir: &ctx.plan.base_dir,
            work_dir: &work_dir,
            threads: task.threads,
            progress: &progress,
            artifacts: &StorePaths::new(&ctx.plan.store_dir, ctx.store, ctx.remote),
            resume_dir: Some(&resume_dir),
        };
        let outcome = execute(&job);
        drop(progress);
        let seconds = started.elapsed().as_secs_f64();
        match outcome {
            Ok(summary) => {
                let manifest = ctx.store.publish(task.key, name, &work_dir, &summary, seconds, task.force).map_err(|e| {
                    // Not published (a full disk, say): the work directory would only hold space.
                    let _ = std::fs::remove_dir_all(&work_dir);
                    RunError::publish(format!("cannot publish the output: {e}"))
                })?;
                // Published: what an interrupted attempt kept is of no use any more.
                let _ = ctx.resume.discard(task.key);
                Ok(Done { manifest, summary, place: String::new() })
            }
            Err(failure) => {
                let _ = std::fs::remove_dir_all(&work_dir);
                ctx.resume.drop_if_empty(task.key);
                Err(RunError::stage(failure.chain()))
            }
        }
    }
}

/// The key a manifest records; `None` for a manifest edited or damaged by hand.
pub fn key_of(manifest: &crate::store::Manifest) -> Option<Key> {
    Key::parse(&manifest.key)
}
