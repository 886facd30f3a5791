//! `pipeline predict VIDEO... [--model STAGE_OR_DIR] [--json]`: chooses the model and prints
//! what the domain's predictor says. The preprocessing and the model are the domain's
//! ([`Domain::predict`]); this module only resolves names and formats results.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::domain::Domain;
use crate::runner::Engine;

/// The model directory: a folder holding a model, a stage or instance name, or (none given)
/// the current model with the best score (validation accuracy, see [`Domain::model_score`]).
pub fn resolve_model(engine: &Engine, domain: &dyn Domain, model: Option<&str>) -> Result<(String, PathBuf)> {
    if let Some(m) = model {
        let dir = Path::new(m);
        if dir.is_dir() && domain.model_score(dir)?.is_some() {
            return Ok((m.to_owned(), dir.to_path_buf()));
        }
    }
    let targets: Vec<String> = model.map(|m| vec![m.to_owned()]).unwrap_or_default();
    let mut candidates: Vec<(String, PathBuf, f64)> = Vec::new();
    for (name, dir, _) in engine.output_dirs(&targets)? {
        if model.is_some_and(|m| !engine.plan.select(m).iter().any(|&i| engine.plan.instances[i].name == name)) {
            continue;
        }
        let Some(dir) = dir else { continue };
        if let Some(score) = domain.model_score(&dir)? {
            candidates.push((name, dir, score));
        }
    }
    candidates.sort_by(|a, b| b.2.total_cmp(&a.2));
    match (model, candidates.first()) {
        (_, Some((name, dir, _))) => Ok((name.clone(), dir.clone())),
        (Some(m), None) => {
            bail!("`{m}` is neither a model folder nor a trained, up-to-date stage (run `pipeline run {m}` first)")
        }
        (None, None) => bail!("no trained model is up to date: run `pipeline run` first, or pass --model"),
    }
}

/// Runs the prediction and prints it; `Ok(false)` when some video failed.
pub fn predict(engine: &Engine, domain: &dyn Domain, videos: &[PathBuf], model: Option<&str>, json: bool) -> Result<bool> {
    if videos.is_empty() {
        bail!("give at least one video");
    }
    let (name, dir) = resolve_model(engine, domain, model)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let results = domain.predict(&dir, videos, threads)?;
    let ok = results.iter().all(Result::is_ok);
    if json {
        let rows: Vec<serde_json::Value> = results
            .iter()
            .zip(videos)
            .map(|(r, v)| match r {
                Ok(p) => serde_json::json!({
                    "video": p.video,
                    "model": name,
                    "predicted": p.predicted,
                    "probabilities": p.probabilities.iter().map(|(c, x)| (c.clone(), serde_json::json!(x))).collect::<serde_json::Map<_, _>>(),
                }),
                Err(e) => serde_json::json!({"video": v.display().to_string(), "error": e.chain()}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ok);
    }
    eprintln!("model: {name} ({})", dir.display());
    for (r, v) in results.iter().zip(videos) {
        match r {
            Ok(p) => {
                let probs: Vec<String> = p.probabilities.iter().map(|(c, x)| format!("{c} {x:.3}")).collect();
                println!("{}: {}  [{}]", p.video, p.predicted, probs.join(", "));
            }
            Err(e) => eprintln!("{}: error: {}", v.display(), e.chain()),
        }
    }
    Ok(ok)
}
