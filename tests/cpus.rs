//! Locally, without `-j`, instances run side by side as long as their stages' `cpus` fit in
//! the machine's cores (`PIPELINE_CPUS` here, so the test does not depend on the machine), and
//! each gets that many threads (`PIPELINE_THREADS`).

mod common;
use common::Workspace;

/// A stage that waits (up to 3 s) for `other` to start, and records its threads and when it
/// ran.
fn meeting(me: &str, other: &str) -> String {
    format!(
        "date +%s.%N > $PIPELINE_OUT/start; touch sync/{me}; \
         for i in $(seq 30); do [ -e sync/{other} ] && break; sleep 0.1; done; \
         echo $PIPELINE_THREADS > $PIPELINE_OUT/threads; date +%s.%N > $PIPELINE_OUT/end"
    )
}

fn yaml(resources: &str) -> String {
    format!(
        r#"executor:
  resources:
{resources}
stages:
  a:
    run: "{a}"
  b:
    run: "{b}"
  after:
    run: "echo $PIPELINE_THREADS > $PIPELINE_OUT/threads"
    needs: [a, b]
"#,
        a = meeting("a", "b"),
        b = meeting("b", "a"),
    )
}

fn read(ws: &Workspace, stage: &str, file: &str) -> String {
    let artifacts = common::artifacts_of(ws);
    String::from_utf8(artifacts[stage][file].clone()).unwrap().trim().to_owned()
}

fn interval(ws: &Workspace, stage: &str) -> (f64, f64) {
    (read(ws, stage, "start").parse().unwrap(), read(ws, stage, "end").parse().unwrap())
}

fn overlapped(ws: &Workspace) -> bool {
    let (a, b) = (interval(ws, "a"), interval(ws, "b"));
    a.0 < b.1 && b.0 < a.1
}

fn workspace(resources: &str) -> Workspace {
    let ws = Workspace::with_env(&yaml(resources), vec![("PIPELINE_CPUS".into(), "2".into())]);
    std::fs::create_dir_all(ws.path().join("sync")).unwrap();
    ws
}

/// A workspace with `resources`, after a successful `pipeline ARGS`; and that run's stderr.
fn ran(resources: &str, args: &[&str]) -> (Workspace, String) {
    let ws = workspace(resources);
    let out = ws.pipeline(args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    (ws, out.stderr)
}

#[test]
fn one_cpu_stages_run_side_by_side_with_one_thread_each() {
    let (ws, stderr) = ran("    a: {cpus: 1}\n    b: {cpus: 1}", &["run"]);
    assert!(overlapped(&ws), "a and b fit in 2 cores together: {}", stderr);
    assert_eq!((read(&ws, "a", "threads"), read(&ws, "b", "threads")), ("1".into(), "1".into()));
    assert_eq!(read(&ws, "after", "threads"), "2", "a stage without cpus gets every core");
}

#[test]
fn stages_without_cpus_take_every_core_and_run_one_at_a_time() {
    let (ws, stderr) = ran("    after: {cpus: 1}", &["run"]);
    assert!(!overlapped(&ws), "{}", stderr);
    assert_eq!((read(&ws, "a", "threads"), read(&ws, "after", "threads")), ("2".into(), "1".into()));
}

#[test]
fn more_cpus_than_the_machine_has_runs_alone_on_all_of_them() {
    let (ws, stderr) = ran("    a: {cpus: 8}\n    b: {cpus: 1}", &["run"]);
    assert!(!overlapped(&ws), "{}", stderr);
    assert_eq!((read(&ws, "a", "threads"), read(&ws, "b", "threads")), ("2".into(), "1".into()));
}

#[test]
fn dash_j_caps_how_many_run_at_once_whatever_the_cpus() {
    let (ws, stderr) = ran("    a: {cpus: 1}\n    b: {cpus: 1}", &["run", "-j", "1"]);
    assert!(!overlapped(&ws), "{}", stderr);
    assert_eq!(read(&ws, "a", "threads"), "1");
}

#[test]
fn a_bad_pipeline_cpus_is_an_error_naming_it() {
    let ws = Workspace::with_env(&yaml("    a: {cpus: 1}"), vec![("PIPELINE_CPUS".into(), "lots".into())]);
    let out = ws.pipeline(&["run"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("PIPELINE_CPUS=lots"), "{}", out.stderr);
}
