//! `pipeline runs` and `pipeline metrics diff` across runs.

mod common;
use common::Workspace;

fn yaml(acc: &str) -> String {
    format!(
        "stages:\n  evaluate:\n    run: \"printf '{{\\\"accuracy\\\": %s, \\\"uar\\\": 0.5}}' $PIPELINE_PARAM_ACC > $PIPELINE_OUT/metrics.json\"\n    with: {{acc: {acc}}}\n"
    )
}

#[test]
fn metrics_diff_compares_the_latest_two_runs() {
    let ws = Workspace::new(&yaml("0.5"));
    assert_eq!(ws.pipeline(&["run"]).code, 0);
    ws.write("pipeline.yaml", &yaml("0.75"));
    let out = ws.pipeline(&["run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let diff = ws.pipeline(&["metrics", "diff"]);
    assert_eq!(diff.code, 0, "{}", diff.stderr);
    let line = diff.stdout.lines().find(|l| l.contains("accuracy")).unwrap_or_else(|| panic!("{}", diff.stdout));
    assert!(line.contains("evaluate/metrics.json"), "{line}");
    assert!(line.contains("0.5") && line.contains("0.75") && line.contains("0.25"), "{line}");
    assert!(!diff.stdout.contains("uar"), "unchanged metrics are hidden without --all:\n{}", diff.stdout);
    let all = ws.pipeline(&["metrics", "diff", "--all", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&all.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    let runs = ws.pipeline(&["runs"]);
    assert_eq!(runs.stdout.lines().count(), 2, "{}", runs.stdout);
    assert!(runs.stdout.contains("succeeded"));
}

#[test]
fn metrics_diff_without_two_runs_explains() {
    let ws = Workspace::new(&yaml("0.5"));
    ws.pipeline(&["run"]);
    let diff = ws.pipeline(&["metrics", "diff"]);
    assert_eq!(diff.code, 2);
    assert!(diff.stderr.contains("no earlier run with metrics"), "{}", diff.stderr);
}
