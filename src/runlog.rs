//! One record per `pipeline run` under `<store>/runs/`: which instances ran, were fresh,
//! failed or were not run, their keys, durations and why each ran. Written when the run starts
//! (state `running`) and rewritten as it goes, so a killed run leaves a record that says so.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::dirty::DirtyReason;
use crate::executor::RunError;
use crate::fingerprint::Key;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub argv: Vec<String>,
    pub started_unix_ms: u128,
    pub finished_unix_ms: Option<u128>,
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    pub stages: Vec<StageRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    pub instance: String,
    /// `fresh`, `ran`, `reused` (another run computed it), `pulled` (from the remote),
    /// `failed` or `not_run`.
    pub state: String,
    pub key: Option<String>,
    /// Why it was stale, as text (what `run` printed)...
    pub reasons: Vec<String>,
    /// ...and as data: one object per reason, `{"reason": "param_changed", "name": ..., ...}`
    /// (absent from records written before it existed).
    #[serde(default)]
    pub why: Vec<DirtyReason>,
    pub seconds: f64,
    pub summary: String,
    /// For a `failed` instance whose executor ran it: why it has no result, as data
    /// (`{"kind": "no_result", "message": ...}`, see [`RunError`]); `summary` holds the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<RunError>,
}

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

impl RunRecord {
    /// A fresh run id: `<unix millis>-<pid>`.
    pub fn new_id() -> String {
        format!("{}-{}", now_ms(), std::process::id())
    }

    pub fn start(argv: &[String], id: Option<&str>) -> Self {
        let started = now_ms();
        Self {
            id: id.map_or_else(Self::new_id, str::to_owned),
            argv: argv.to_vec(),
            started_unix_ms: started,
            finished_unix_ms: None,
            state: "running".into(),
            stages: Vec::new(),
        }
    }

    pub fn path(&self, runs_dir: &Path) -> PathBuf {
        runs_dir.join(format!("{}.json", self.id))
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::store::write_atomically(path, &bytes)
    }

    pub fn finish(&mut self, ok: bool) {
        self.finished_unix_ms = Some(now_ms());
        self.state = if ok { "succeeded" } else { "failed" }.into();
    }

    pub fn summary_line(&self, seconds: f64) -> String {
        let count = |s: &str| self.stages.iter().filter(|r| r.state == s).count();
        let mut parts = vec![format!("{} ran", count("ran")), format!("{} fresh", count("fresh") + count("reused"))];
        for (state, label) in [("pulled", "pulled"), ("failed", "failed"), ("not_run", "not run")] {
            if count(state) > 0 {
                parts.push(format!("{} {label}", count(state)));
            }
        }
        format!("summary: {} in {seconds:.1} s", parts.join(", "))
    }

    /// The end-of-run table of what was computed this run (ran, failed, not run): instance,
    /// state, seconds and the stage's summary (or error), one row each, columns aligned.
    /// `None` when everything was fresh. With a terminal `width`, rows are cut to it (the
    /// summary ends in `…`) rather than wrapped; the run record keeps every summary whole.
    pub fn results_table(&self, width: Option<usize>) -> Option<String> {
        let rows: Vec<&StageRecord> = self.stages.iter().filter(|r| matches!(r.state.as_str(), "ran" | "failed" | "not_run")).collect();
        if rows.is_empty() {
            return None;
        }
        let columns = width.unwrap_or(usize::MAX);
        let width = rows.iter().map(|r| r.instance.chars().count()).max().unwrap_or(0).max("instance".len());
        let mut text = format!("results:\n  {:<width$}  {:<7}  {:>8}  summary", "instance", "state", "seconds");
        for r in rows {
            let state = r.state.replace('_', " ");
            // The first line of an error: the whole of it was printed when it happened.
            let summary = r.summary.lines().next().unwrap_or("");
            let seconds = if r.state == "not_run" { String::new() } else { format!("{:.1}", r.seconds) };
            let row = format!("  {:<width$}  {state:<7}  {seconds:>8}  {summary}", r.instance);
            text.push('\n');
            text.push_str(&cut_to(&row, columns));
        }
        Some(text)
    }

    /// Every record in `runs_dir`, oldest first.
    pub fn all(runs_dir: &Path) -> Vec<RunRecord> {
        let mut records: Vec<RunRecord> = std::fs::read_dir(runs_dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
        records.sort_by_key(|r| r.started_unix_ms);
        records
    }
}

/// `line` cut to `columns` characters, its last one `…` when something was cut.
fn cut_to(line: &str, columns: usize) -> String {
    if line.chars().count() <= columns {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(columns.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

impl StageRecord {
    fn new(instance: &str, state: &str, key: Option<&Key>, reasons: &[DirtyReason], seconds: f64, summary: &str) -> Self {
        Self {
            instance: instance.to_owned(),
            state: state.to_owned(),
            key: key.map(|k| k.as_str().to_owned()),
            reasons: reasons.iter().map(ToString::to_string).collect(),
            why: reasons.to_vec(),
            seconds,
            summary: summary.to_owned(),
            failure: None,
        }
    }

    pub fn fresh(instance: &str, key: &Key) -> Self {
        Self::new(instance, "fresh", Some(key), &[], 0.0, "")
    }

    pub fn reused(instance: &str, key: &Key, reasons: &[DirtyReason]) -> Self {
        Self::new(instance, "reused", Some(key), reasons, 0.0, "")
    }

    pub fn pulled(instance: &str, key: &Key, reasons: &[DirtyReason]) -> Self {
        Self::new(instance, "pulled", Some(key), reasons, 0.0, "")
    }

    pub fn ran(instance: &str, key: &Key, reasons: &[DirtyReason], seconds: f64, summary: &str) -> Self {
        Self::new(instance, "ran", Some(key), reasons, seconds, summary)
    }

    pub fn failed(instance: &str, key: Option<&Key>, reasons: &[DirtyReason], seconds: f64, error: &str) -> Self {
        Self::new(instance, "failed", key, reasons, seconds, error)
    }

    /// The record with the executor's failure attached.
    pub fn with_failure(self, failure: RunError) -> Self {
        Self { failure: Some(failure), ..self }
    }

    pub fn not_run(instance: &str, why: &str) -> Self {
        Self::new(instance, "not_run", None, &[], 0.0, why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_results_table_lists_what_this_run_computed() {
        let key = Key::parse(&"a".repeat(64)).unwrap();
        let mut record = RunRecord::start(&[], Some("1-2"));
        record.stages.push(StageRecord::fresh("synth", &key));
        assert_eq!(record.results_table(None), None, "nothing computed, no table");
        record.stages.push(StageRecord::ran("train[arch=r3d18]", &key, &[], 286.14, "r3d18: best val accuracy 1.000"));
        record.stages.push(StageRecord::failed("evaluate", Some(&key), &[], 0.5, "no model\nsecond line"));
        record.stages.push(StageRecord::not_run("report", "upstream evaluate failed"));
        let table = record.results_table(None).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines,
            [
                "results:",
                "  instance           state     seconds  summary",
                "  train[arch=r3d18]  ran         286.1  r3d18: best val accuracy 1.000",
                "  evaluate           failed        0.5  no model",
                "  report             not run            upstream evaluate failed",
            ]
        );
    }

    #[test]
    fn on_a_terminal_the_results_table_is_cut_to_its_width() {
        let key = Key::parse(&"a".repeat(64)).unwrap();
        let mut record = RunRecord::start(&[], Some("1-2"));
        record.stages.push(StageRecord::ran("train[arch=r3d18]", &key, &[], 286.14, "r3d18: best val accuracy 1.000"));
        record.stages.push(StageRecord::ran("scan", &key, &[], 1.0, "ok"));
        let table = record.results_table(Some(50)).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[2], "  train[arch=r3d18]  ran         286.1  r3d18: be…");
        assert_eq!(lines[2].chars().count(), 50);
        assert_eq!(lines[3], "  scan               ran           1.0  ok", "a short row stays whole");
    }
}
