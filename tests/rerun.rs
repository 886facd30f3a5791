//! Only what went stale reruns, and the run says why.

mod common;
use common::{counting, Workspace};

fn pipeline_yaml(n: &str, extra_with: &str) -> String {
    format!(
        r#"stages:
  gen:
    run: "{gen}"
    with: {{n: {n}{extra_with}}}
  train:
    run: "{train}"
    needs: [gen]
    deps: [scripts/train.sh]
    matrix: {{arch: [a, b]}}
  report:
    run: "{report}"
    needs: [train]
"#,
        gen = counting("gen", "echo $PIPELINE_PARAM_N > $PIPELINE_OUT/n.txt"),
        train = counting("train", "sh scripts/train.sh > $PIPELINE_OUT/model.txt"),
        report = counting("report", "for d in $(echo $PIPELINE_IN_TRAIN | tr : ' '); do cat $d/model.txt; done > $PIPELINE_OUT/report.txt"),
    )
}

fn workspace() -> Workspace {
    let ws = Workspace::new(&pipeline_yaml("3", ""));
    ws.write("scripts/train.sh", "cat $PIPELINE_IN_GEN/n.txt; echo $PIPELINE_PARAM_ARCH\n");
    let first = ws.pipeline(&["run"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!((ws.count("gen"), ws.count("train"), ws.count("report")), (1, 2, 1));
    ws
}

#[test]
fn nothing_changed_runs_nothing() {
    let ws = workspace();
    let again = ws.pipeline(&["run"]);
    assert_eq!(again.code, 0);
    assert_eq!((ws.count("gen"), ws.count("train"), ws.count("report")), (1, 2, 1));
    assert!(again.stderr.contains("summary: 0 ran, 4 fresh"), "{}", again.stderr);
}

#[test]
fn param_change_reruns_the_stage_and_says_why() {
    let ws = workspace();
    ws.write("pipeline.yaml", &pipeline_yaml("4", ""));
    let out = ws.pipeline(&["run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("gen: stale: param n changed 3 -> 4"), "{}", out.stderr);
    assert!(out.stderr.contains("train[arch=a]: stale: upstream gen changed"), "{}", out.stderr);
    assert_eq!((ws.count("gen"), ws.count("train"), ws.count("report")), (2, 4, 2));
}

#[test]
fn a_matrix_include_reruns_only_the_instance_it_selects() {
    let ws = workspace();
    let yaml = pipeline_yaml("3", "").replace("matrix: {arch: [a, b]}", "matrix: {arch: [a, b], include: [{arch: b, epochs: 20}]}");
    ws.write("pipeline.yaml", &yaml);
    ws.write("scripts/train.sh", "cat $PIPELINE_IN_GEN/n.txt; echo $PIPELINE_PARAM_ARCH ${PIPELINE_PARAM_EPOCHS:-}\n");
    let out = ws.pipeline(&["run", "train[arch=b]"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("train[arch=b]: stale"), "{}", out.stderr);
    assert_eq!(ws.count("train"), 3, "only train[arch=b] reran:\n{}", out.stderr);
    let status = ws.pipeline(&["status"]);
    assert!(status.stdout.contains("train[arch=b]"), "{}", status.stdout);
    // The instance saw the included parameter; its name did not change.
    let show = ws.pipeline(&["show", "train[arch=b]"]);
    let dir = show.stdout.lines().next().and_then(|l| l.split_once(": ")).map(|(_, d)| d.trim().to_owned()).unwrap();
    assert_eq!(std::fs::read_to_string(std::path::Path::new(&dir).join("model.txt")).unwrap(), "3\nb 20\n");
}

#[test]
fn equal_spellings_and_key_order_do_not_rerun() {
    let ws = workspace();
    // `3.0` is `3`; a reordered mapping is the same mapping.
    ws.write("pipeline.yaml", &pipeline_yaml("3.0", ""));
    ws.pipeline(&["run"]);
    let reordered = pipeline_yaml("3", "");
    // Move `with:` above `run:` for gen.
    let lines: Vec<&str> = reordered.lines().collect();
    let mut swapped: Vec<&str> = lines.clone();
    swapped.swap(2, 3);
    ws.write("pipeline.yaml", &(swapped.join("\n") + "\n"));
    let out = ws.pipeline(&["run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!((ws.count("gen"), ws.count("train"), ws.count("report")), (1, 2, 1), "{}", out.stderr);
}

#[test]
fn dep_file_change_reruns_dependents_only() {
    let ws = workspace();
    ws.write("scripts/train.sh", "cat $PIPELINE_IN_GEN/n.txt; echo $PIPELINE_PARAM_ARCH; echo v2\n");
    let out = ws.pipeline(&["run"]);
    assert!(out.stderr.contains("train[arch=b]: stale: deps changed: scripts/train.sh"), "{}", out.stderr);
    assert_eq!((ws.count("gen"), ws.count("train"), ws.count("report")), (1, 4, 2));
}

#[test]
fn touch_without_content_change_reruns_nothing() {
    let ws = workspace();
    let script = ws.path().join("scripts/train.sh");
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options().write(true).open(&script).unwrap().set_modified(later).unwrap();
    let out = ws.pipeline(&["run"]);
    assert_eq!((ws.count("gen"), ws.count("train"), ws.count("report")), (1, 2, 1), "{}", out.stderr);
}

#[test]
fn upstream_that_reruns_with_identical_output_does_not_rerun_dependents() {
    let ws = workspace();
    // A new parameter that gen ignores: gen reruns, its output is byte-identical.
    ws.write("pipeline.yaml", &pipeline_yaml("3", ", unused: 1"));
    let out = ws.pipeline(&["run"]);
    assert!(out.stderr.contains("gen: stale: param unused added (1)"), "{}", out.stderr);
    assert_eq!((ws.count("gen"), ws.count("train"), ws.count("report")), (2, 2, 1), "{}", out.stderr);
}

#[test]
fn upstream_output_change_reruns_all_dependents() {
    let ws = workspace();
    ws.write("pipeline.yaml", &pipeline_yaml("5", ""));
    ws.pipeline(&["run"]);
    assert_eq!((ws.count("gen"), ws.count("train"), ws.count("report")), (2, 4, 2));
    let report = std::fs::read_to_string(
        ws.path().join(ws.pipeline(&["show", "report"]).stdout.lines().next().unwrap().split(": ").nth(1).unwrap()).join("report.txt"),
    )
    .unwrap();
    assert_eq!(report, "5\na\n5\nb\n");
}

#[test]
fn reverting_a_change_is_a_cache_hit() {
    let ws = workspace();
    ws.write("pipeline.yaml", &pipeline_yaml("4", ""));
    ws.pipeline(&["run"]);
    ws.write("pipeline.yaml", &pipeline_yaml("3", ""));
    let out = ws.pipeline(&["run"]);
    assert_eq!((ws.count("gen"), ws.count("train"), ws.count("report")), (2, 4, 2), "{}", out.stderr);
}

#[test]
fn force_reruns_a_fresh_stage() {
    let ws = workspace();
    let out = ws.pipeline(&["run", "--force", "gen"]);
    assert!(out.stderr.contains("gen: stale: forced"), "{}", out.stderr);
    assert_eq!((ws.count("gen"), ws.count("train")), (2, 2));
}

#[test]
fn status_json_lists_state_and_reasons() {
    let ws = workspace();
    ws.write("pipeline.yaml", &pipeline_yaml("4", ""));
    let out = ws.pipeline(&["status", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let why = serde_json::json!([{"reason": "param_changed", "name": "n", "old": 3, "new": 4}]);
    assert_eq!(rows[0], serde_json::json!({"stage": "gen", "state": "stale", "reasons": ["param n changed 3 -> 4"], "why": why}));
    assert_eq!(rows[1]["state"], "stale");
    assert_eq!(rows.as_array().unwrap().len(), 4);
    // status ran nothing.
    assert_eq!(ws.count("gen"), 1);
    // The run record keeps the same reasons, as text and as data.
    assert_eq!(ws.pipeline(&["run"]).code, 0);
    let records: Vec<serde_json::Value> = std::fs::read_dir(ws.store().join("runs"))
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    let gen_records: Vec<&serde_json::Value> =
        records.iter().flat_map(|r| r["stages"].as_array().unwrap()).filter(|s| s["instance"] == "gen" && s["state"] == "ran").collect();
    assert!(gen_records.iter().any(|s| s["why"] == why && s["reasons"][0] == "param n changed 3 -> 4"), "{records:?}");
}

#[test]
fn targets_run_only_what_they_need() {
    let ws = Workspace::new(&pipeline_yaml("3", ""));
    ws.write("scripts/train.sh", "echo x\n");
    let out = ws.pipeline(&["run", "train[arch=a]"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!((ws.count("gen"), ws.count("train"), ws.count("report")), (1, 1, 0));
}

#[test]
fn failing_stage_publishes_nothing_and_keep_going_runs_independent_branches() {
    let ws = Workspace::new(
        r#"stages:
  bad:
    run: "echo partial > $PIPELINE_OUT/x; echo boom >&2; exit 3"
  after_bad:
    run: "echo run >> counts/after_bad"
    needs: [bad]
  good:
    run: "echo run >> counts/good"
"#,
    );
    let out = ws.pipeline(&["run"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("bad: FAILED: command failed (exit status 3); end of stderr:\n    boom"), "{}", out.stderr);
    assert!(out.stderr.contains("after_bad: not run: upstream bad failed"), "{}", out.stderr);
    assert_eq!(ws.count("good"), 0, "without --keep-going the run stops");
    let out = ws.pipeline(&["run", "--keep-going"]);
    assert_eq!(out.code, 1);
    assert_eq!((ws.count("good"), ws.count("after_bad")), (1, 0));
    // Nothing of the failed stage was published.
    let objects: Vec<_> =
        walkdir::WalkDir::new(ws.store().join("objects")).into_iter().filter_map(Result::ok).filter(|e| e.file_name() == "x").collect();
    assert!(objects.is_empty());
}

/// A failed instance's run record says why as data: the stage's own failure here, with the
/// message the run printed.
#[test]
fn a_failed_stage_is_recorded_with_the_kind_of_failure() {
    let ws = Workspace::new("stages:\n  broken:\n    run: \"echo no input >&2; exit 3\"\n");
    let out = ws.pipeline(&["run"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let runs: Vec<_> = std::fs::read_dir(ws.store().join("runs")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&runs[0]).unwrap()).unwrap();
    let stage = &record["stages"][0];
    assert_eq!(stage["state"], "failed", "{record}");
    assert_eq!(stage["failure"]["kind"], "stage", "{record}");
    let message = stage["failure"]["message"].as_str().unwrap();
    assert!(message.contains("exit") && stage["summary"] == message, "{record}");
}
