//! Helpers for tests of stage crates: parameters from JSON, inputs, and a runner that calls a
//! stage the way the engine does (resolved parameters, an empty output folder).

use std::path::Path;

use crate::{NoProgress, Params, Progress, SameStore, Stage, StageContext, StageError, StageInput, StageOutcome};

/// JSON object literal to params.
pub fn params(json: serde_json::Value) -> Params {
    match json {
        serde_json::Value::Object(map) => map,
        other => panic!("params must be an object, got {other}"),
    }
}

pub fn input(need: &str, dir: &Path) -> StageInput {
    StageInput { kind: Some(need.to_owned()), ..StageInput::new(need, dir) }
}

/// The context the engine would give a stage reading `inputs` and writing `out`, with base
/// folder `base` and `threads` threads (no progress, the same store, no resume folder).
pub fn context<'a>(params: &'a Params, inputs: &'a [StageInput], out: &'a Path, base: &'a Path, threads: usize) -> StageContext<'a> {
    StageContext { params, inputs, out_dir: out, base_dir: base, progress: &NoProgress, threads, artifacts: &SameStore, resume_dir: None }
}

/// Resolves `params` and runs `stage` into `out` (created empty).
pub fn run_stage(stage: &dyn Stage, params: Params, inputs: &[StageInput], out: &Path) -> Result<StageOutcome, StageError> {
    run_stage_with(stage, params, inputs, out, &NoProgress)
}

/// [`run_stage`] reporting to `progress`.
pub fn run_stage_with(
    stage: &dyn Stage,
    params: Params,
    inputs: &[StageInput],
    out: &Path,
    progress: &dyn Progress,
) -> Result<StageOutcome, StageError> {
    let resolved = stage.resolve_params(&params).map_err(|e| StageError::msg(e.message))?;
    std::fs::create_dir_all(out).unwrap();
    let base = out.parent().unwrap_or(out);
    let ctx = StageContext {
        params: &resolved,
        inputs,
        out_dir: out,
        base_dir: base,
        progress,
        threads: 1,
        artifacts: &SameStore,
        resume_dir: None,
    };
    stage.run(&ctx)
}
