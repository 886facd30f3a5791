//! Every configuration error names the file, line and column, and never panics.

mod common;
use common::Workspace;

/// Runs `pipeline status` on `yaml` and returns the error line (exit status 2 asserted).
fn error_for(yaml: &str) -> String {
    let ws = Workspace::new(yaml);
    let out = ws.pipeline(&["status"]);
    assert_eq!(out.code, 2, "expected a configuration error, got:\n{}\n{}", out.stdout, out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    out.stderr
}

#[test]
fn unknown_key() {
    let err = error_for("stages:\n  a:\n    run: echo\n    neds: [b]\n");
    assert!(err.contains("pipeline.yaml:4:5: stages.a: unknown field `neds`"), "{err}");
}

#[test]
fn wrong_type() {
    let err = error_for("stages:\n  a:\n    run: echo\n    needs: 3\n");
    assert!(err.contains("pipeline.yaml:4:12:"), "{err}");
    assert!(err.contains("invalid type"), "{err}");
}

#[test]
fn yaml_syntax_error() {
    let err = error_for("stages:\n  a:\n    run: [echo\n");
    assert!(err.contains("pipeline.yaml:"), "{err}");
}

#[test]
fn unknown_kind_with_hint() {
    let err = error_for("stages:\n  a:\n    uses: no_such_kind\n");
    assert!(err.contains("pipeline.yaml:3:5: unknown stage kind `no_such_kind`"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn needs_naming_no_stage_with_did_you_mean() {
    let err = error_for("stages:\n  extract:\n    run: echo\n  train:\n    run: echo\n    needs: [extrct]\n");
    assert!(err.contains("pipeline.yaml:6:13: `train` needs `extrct`, but there is no such stage"), "{err}");
    assert!(err.contains("hint: did you mean `extract`?"), "{err}");
}

#[test]
fn cycle_is_spelled_out() {
    let err = error_for("stages:\n  a:\n    run: echo\n    needs: [b]\n  b:\n    run: echo\n    needs: [a]\n");
    assert!(err.contains("pipeline.yaml:4:5: the stages form a cycle: a -> b -> a"), "{err}");
}

#[test]
fn both_uses_and_run() {
    let err = error_for("stages:\n  a:\n    uses: x\n    run: echo\n");
    assert!(err.contains("pipeline.yaml:2:3: stage `a` has both `uses` and `run`"), "{err}");
}

#[test]
fn neither_uses_nor_run() {
    let err = error_for("stages:\n  a:\n    needs: []\n");
    assert!(err.contains("pipeline.yaml:2:3: stage `a` has neither `uses` nor `run`"), "{err}");
}

#[test]
fn empty_matrix() {
    let err = error_for("stages:\n  a:\n    run: echo\n    matrix: {arch: []}\n");
    assert!(err.contains("pipeline.yaml:4:14: matrix `arch` of `a` lists no values"), "{err}");
}

#[test]
fn matrix_include_that_selects_nothing() {
    let yaml = "stages:\n  a:\n    run: echo\n    matrix:\n      arch: [x, y]\n      include:\n        - {arch: z, epochs: 2}\n";
    let err = error_for(yaml);
    assert!(err.contains("pipeline.yaml:7:12: `a`: `include` entry 1 selects arch=z, which matches no combination"), "{err}");
    assert!(err.contains("hint: `arch` lists: x, y"), "{err}");
}

#[test]
fn matrix_include_with_a_bad_parameter_points_at_the_include() {
    let yaml = "stages:\n  s:\n    uses: synth\n    matrix:\n      actors: [2]\n      include:\n        - {actors: 2, actorz: 3}\n";
    let err = error_for(yaml);
    assert!(err.contains("pipeline.yaml:6:7: parameter of `s[actors=2]` (synth)"), "{err}");
    assert!(err.contains("actorz"), "{err}");
}

#[test]
fn deps_matching_nothing() {
    let err = error_for("stages:\n  a:\n    run: echo\n    deps: [scripts/missing.py]\n");
    assert!(err.contains("pipeline.yaml:4:12: `deps` pattern `scripts/missing.py` of `a` matches no file"), "{err}");
}

#[test]
fn param_in_both_with_and_matrix() {
    let err = error_for("stages:\n  a:\n    run: echo\n    with: {x: 1}\n    matrix: {x: [1, 2]}\n");
    assert!(err.contains("pipeline.yaml:5:14: `x` is set both in `with:` and in `matrix:`"), "{err}");
}

#[test]
fn missing_file() {
    let ws = Workspace::new("stages: {}\n");
    let out = ws.pipeline(&["--config", "nope.yaml", "status"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("nope.yaml: cannot read the pipeline file"), "{}", out.stderr);
}

#[test]
fn no_stages() {
    let err = error_for("stages: {}\n");
    assert!(err.contains("no stages defined"), "{err}");
}

/// Output into a pipe that closes early (`pipeline dag | head -1`) ends quietly, no panic.
#[test]
fn closed_stdout_pipe_is_not_a_panic() {
    let stages: String = (0..400).map(|i| format!("  stage_{i}:\n    run: echo {i}\n")).collect();
    let ws = Workspace::new(&format!("stages:\n{stages}"));
    let mut child = ws.command(&["dag"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take()); // the reader goes away before the first line is written
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
