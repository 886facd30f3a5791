//! `pipeline runs` and `pipeline metrics diff`: looking back at earlier runs.
//!
//! A stage has metrics when its output holds the domain's metrics file at the top
//! ([`Domain::metrics_file`]; the evaluate stage writes one). A run's metrics are those of every instance in its record (fresh or ran), so
//! `metrics diff` compares what two runs produced, like `dvc metrics diff`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::domain::Domain;
use crate::fingerprint::Key;
use crate::runlog::RunRecord;
use crate::store::Store;

/// One line per recorded run, oldest first.
pub fn list(store: &Store, domain: &dyn Domain) -> String {
    let mut text = String::new();
    for r in RunRecord::all(&store.runs_dir()) {
        let count = |s: &str| r.stages.iter().filter(|x| x.state == s).count();
        let metrics = metric_files(store, domain, &r).len();
        text.push_str(&format!(
            "{}  {:<9}  {} ran, {} fresh, {} failed  {} with metrics\n",
            r.id,
            r.state,
            count("ran"),
            count("fresh") + count("reused"),
            count("failed"),
            metrics
        ));
    }
    if text.is_empty() {
        text.push_str("no runs recorded yet\n");
    }
    text
}

/// (instance, metrics file) of every instance of a run whose output has metrics.
fn metric_files(store: &Store, domain: &dyn Domain, run: &RunRecord) -> Vec<(String, PathBuf)> {
    run.stages
        .iter()
        .filter_map(|s| {
            let key = Key::parse(s.key.as_deref()?)?;
            let file = store.output_dir(&key).join(domain.metrics_file());
            file.is_file().then(|| (s.instance.clone(), file))
        })
        .collect()
}

/// Finds a run by id or unique id prefix, or `None` for the `n`-th latest run with metrics.
fn pick<'a>(runs: &'a [RunRecord], store: &Store, domain: &dyn Domain, id: Option<&str>, nth_latest: usize) -> Result<&'a RunRecord> {
    match id {
        Some(id) => {
            let found: Vec<&RunRecord> = runs.iter().filter(|r| r.id.starts_with(id)).collect();
            match found.as_slice() {
                [one] => Ok(one),
                [] => bail!("no run `{id}` (see `pipeline runs`)"),
                _ => bail!("`{id}` names {} runs; give more of the id", found.len()),
            }
        }
        None => runs
            .iter()
            .rev()
            .filter(|r| !metric_files(store, domain, r).is_empty())
            .nth(nth_latest)
            .with_context(|| format!("fewer than {} runs with metrics recorded", nth_latest + 1)),
    }
}

/// Copies a run's metrics files to `dir/<instance>/<metrics file>`.
fn gather(store: &Store, domain: &dyn Domain, run: &RunRecord, dir: &Path) -> Result<()> {
    for (instance, file) in metric_files(store, domain, run) {
        let target = dir.join(instance.replace('/', "_"));
        std::fs::create_dir_all(&target)?;
        std::fs::copy(&file, target.join(domain.metrics_file())).with_context(|| format!("reading {}", file.display()))?;
    }
    Ok(())
}

/// `pipeline metrics diff [A] [B]`: B defaults to the latest run with metrics, A to the latest
/// one before B.
pub fn metrics_diff(store: &Store, domain: &dyn Domain, a: Option<&str>, b: Option<&str>, all: bool, json: bool) -> Result<String> {
    let runs = RunRecord::all(&store.runs_dir());
    let new = pick(&runs, store, domain, b, 0)?;
    let old = match a {
        Some(_) => pick(&runs, store, domain, a, 0)?,
        None => runs
            .iter()
            .rev()
            .find(|r| r.started_unix_ms < new.started_unix_ms && !metric_files(store, domain, r).is_empty())
            .context("no earlier run with metrics to compare with")?,
    };
    let scratch = tempfile::tempdir()?;
    let (old_dir, new_dir) = (scratch.path().join("old"), scratch.path().join("new"));
    std::fs::create_dir_all(&old_dir)?;
    std::fs::create_dir_all(&new_dir)?;
    gather(store, domain, old, &old_dir)?;
    gather(store, domain, new, &new_dir)?;
    let diff = domain.metrics_diff(&old_dir, &new_dir, all, json)?;
    if json {
        return Ok(diff);
    }
    Ok(format!("{} -> {}\n{diff}", old.id, new.id))
}
