//! `metrics diff`: the change of every metric between two runs, like `dvc metrics diff`.
//!
//! Both sides are either a `metrics.json` file or a directory searched recursively for files
//! named `metrics.json` (paired by their path relative to the directory, so the same stage
//! instance is compared across runs). Each file is flattened into dotted metric names:
//! nested objects join their keys (`accuracy_ci.low`), arrays of objects that carry a string
//! `class` field are keyed by it (`per_class.happy.f1`), other arrays (the confusion matrix)
//! and non-numeric values are skipped, as dvc skips them. A metric present on one side only
//! is listed with the other side empty.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;
use stage_api::StageError;

use crate::io::{file_error, read_json};

/// The name of the metric files compared in directories.
pub use stage_formats::metrics::METRICS_FILE;

/// One metric on both sides.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MetricChange {
    /// The metrics file, relative to the compared directory (or its file name).
    pub path: String,
    /// The dotted metric name.
    pub metric: String,
    pub old: Option<f64>,
    pub new: Option<f64>,
    /// `new - old` when both exist.
    pub change: Option<f64>,
}

/// Compares the metrics under `old` with those under `new`; see the module doc. Sorted by
/// path, then by metric name.
pub fn metrics_diff(old: &Path, new: &Path) -> Result<Vec<MetricChange>, StageError> {
    let (a, b) = match (old.is_file(), new.is_file()) {
        (true, true) => {
            let name = new.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            (BTreeMap::from([(name.clone(), old.to_owned())]), BTreeMap::from([(name, new.to_owned())]))
        }
        (false, false) => (metric_files(old)?, metric_files(new)?),
        _ => {
            return Err(StageError::msg(format!(
                "cannot compare {} with {}: give two metrics files or two directories",
                old.display(),
                new.display()
            )))
        }
    };
    let mut changes = Vec::new();
    let paths: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for path in paths {
        let old_values = a.get(path).map(|p| flat_metrics(p)).transpose()?.unwrap_or_default();
        let new_values = b.get(path).map(|p| flat_metrics(p)).transpose()?.unwrap_or_default();
        let names: BTreeSet<&String> = old_values.keys().chain(new_values.keys()).collect();
        for metric in names {
            let (o, n) = (old_values.get(metric).copied(), new_values.get(metric).copied());
            let change = o.zip(n).map(|(o, n)| n - o);
            changes.push(MetricChange { path: path.clone(), metric: metric.clone(), old: o, new: n, change });
        }
    }
    Ok(changes)
}

/// Every `metrics.json` under `dir`, keyed by its `/`-separated path relative to `dir`.
fn metric_files(dir: &Path) -> Result<BTreeMap<String, PathBuf>, StageError> {
    if !dir.is_dir() {
        return Err(StageError::msg(format!("{}: no such metrics file or directory", dir.display())));
    }
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| file_error("listing", &d, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| file_error("listing", &d, e))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| file_error("inspecting", &path, e))?;
            if kind.is_dir() {
                stack.push(path);
            } else if entry.file_name() == METRICS_FILE {
                let rel = path.strip_prefix(dir).unwrap_or(&path);
                let key = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
                found.insert(key, path);
            }
        }
    }
    Ok(found)
}

/// The numeric leaves of one metrics file under dotted names.
pub fn flat_metrics(path: &Path) -> Result<BTreeMap<String, f64>, StageError> {
    let value: Value = read_json(path)?;
    let mut out = BTreeMap::new();
    flatten("", &value, &mut out);
    Ok(out)
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, f64>) {
    let join = |key: &str| {
        if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        }
    };
    match value {
        Value::Number(n) => {
            if let Some(v) = n.as_f64().filter(|v| v.is_finite()) {
                out.insert(prefix.to_owned(), v);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&join(k), v, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                if let Some(class) = item.get("class").and_then(Value::as_str) {
                    flatten(&join(class), item, out);
                }
            }
        }
        _ => {}
    }
}

/// Formats a value with at most five decimals, trailing zeros dropped (dvc's default).
fn number(v: Option<f64>) -> String {
    match v {
        None => "-".to_owned(),
        Some(v) => {
            let s = format!("{v:.5}");
            let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s };
            if s == "-0" {
                "0".to_owned()
            } else {
                s
            }
        }
    }
}

/// A text table `Path Metric Old New Change`. Unless `all`, metrics whose value did not
/// change are left out; with nothing to show it says so.
pub fn render_diff_table(changes: &[MetricChange], all: bool) -> String {
    let rows: Vec<[String; 5]> = changes
        .iter()
        .filter(|c| all || c.change != Some(0.0))
        .map(|c| [c.path.clone(), c.metric.clone(), number(c.old), number(c.new), number(c.change)])
        .collect();
    if rows.is_empty() {
        return "no metric changed\n".to_owned();
    }
    let header = ["Path", "Metric", "Old", "New", "Change"].map(String::from);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, json: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, json).unwrap();
    }

    #[test]
    fn directories_are_compared_file_by_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write(
            &a.join("evaluate[arch=r3d18]/metrics.json"),
            r#"{"accuracy": 0.5, "accuracy_ci": {"low": 0.4, "high": 0.6}, "model": "r3d18",
                "per_class": [{"class": "happy", "f1": 0.25}], "confusion": [[1, 2], [3, 4]]}"#,
        );
        write(
            &b.join("evaluate[arch=r3d18]/metrics.json"),
            r#"{"accuracy": 0.625, "accuracy_ci": {"low": 0.4, "high": 0.7}, "model": "r3d18",
                "per_class": [{"class": "happy", "f1": 0.5}], "uar": 0.5}"#,
        );
        write(&a.join("evaluate[arch=lstm]/metrics.json"), r#"{"accuracy": 0.3}"#);
        let changes = metrics_diff(&a, &b).unwrap();
        let find = |p: &str, m: &str| changes.iter().find(|c| c.path.starts_with(p) && c.metric == m).unwrap().clone();
        assert_eq!(find("evaluate[arch=r3d18]", "accuracy").change, Some(0.125));
        assert_eq!(find("evaluate[arch=r3d18]", "accuracy_ci.low").change, Some(0.0));
        assert_eq!(find("evaluate[arch=r3d18]", "per_class.happy.f1").new, Some(0.5));
        let uar = find("evaluate[arch=r3d18]", "uar");
        assert_eq!((uar.old, uar.new, uar.change), (None, Some(0.5), None));
        let gone = find("evaluate[arch=lstm]", "accuracy");
        assert_eq!((gone.old, gone.new), (Some(0.3), None));
        assert!(!changes.iter().any(|c| c.metric.starts_with("confusion") || c.metric == "model"));
        assert_eq!(changes.len(), 6);

        let table = render_diff_table(&changes, false);
        assert!(table.starts_with("Path"), "{table}");
        assert!(table.contains("0.125"), "{table}");
        assert!(!table.contains("accuracy_ci.low"), "unchanged metric shown:\n{table}");
        assert!(render_diff_table(&changes, true).contains("accuracy_ci.low"));
    }

    #[test]
    fn two_files_and_bad_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("old.json"), dir.path().join("metrics.json"));
        write(&a, r#"{"accuracy": 0.5}"#);
        write(&b, r#"{"accuracy": 0.5}"#);
        let changes = metrics_diff(&a, &b).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(render_diff_table(&changes, false), "no metric changed\n");
        assert!(metrics_diff(&a, dir.path()).unwrap_err().message.contains("two metrics files or two directories"));
        let missing = dir.path().join("nope");
        assert!(metrics_diff(&missing, dir.path()).unwrap_err().message.contains("nope"));
        write(&b, "{ not json");
        assert!(metrics_diff(&a, &b).unwrap_err().message.contains("metrics.json"));
    }

    #[test]
    fn numbers_are_trimmed() {
        assert_eq!(number(Some(0.123456789)), "0.12346");
        assert_eq!(number(Some(2.0)), "2");
        assert_eq!(number(Some(-0.000001)), "0");
        assert_eq!(number(None), "-");
    }
}
