//! A run killed at any moment (kill -9) leaves nothing that a later run takes as a result, and
//! two runs on one workspace at once compute each stage once.

mod common;
use std::time::{Duration, SystemTime};

use common::{counting, Workspace};

/// Stages that write several files slowly, so kills land mid-stage.
fn slow_yaml() -> String {
    let body = |tag: &str| {
        format!("for i in 1 2 3 4 5 6; do echo {tag}-$i > $PIPELINE_OUT/f$i.txt; sleep 0.03; done; cat $PIPELINE_IN_A/f1.txt 2>/dev/null > $PIPELINE_OUT/up.txt; true")
    };
    format!(
        r#"stages:
  a:
    run: "{a}"
  b:
    run: "{b}"
    needs: [a]
  c:
    run: "{c}"
    needs: [a]
  d:
    run: "{d}"
    needs: [b, c]
"#,
        a = counting("a", &body("a")),
        b = counting("b", &body("b")),
        c = counting("c", &body("c")),
        d = counting("d", &body("d")),
    )
}

/// Every artifact under objects/ matches its manifest (re-hashed here, independently).
fn assert_store_consistent(ws: &Workspace) {
    let objects = ws.store().join("objects");
    let mut checked = 0;
    for entry in walkdir::WalkDir::new(&objects).min_depth(2).max_depth(2) {
        let dir = entry.unwrap().into_path();
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("every published dir has a manifest")).unwrap();
        let files = manifest["files"].as_array().unwrap();
        let on_disk = walkdir::WalkDir::new(dir.join("out")).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()).count();
        assert_eq!(on_disk, files.len(), "{}", dir.display());
        for f in files {
            let bytes = std::fs::read(dir.join("out").join(f["path"].as_str().unwrap())).unwrap();
            assert_eq!(blake3::hash(&bytes).to_hex().as_str(), f["blake3"].as_str().unwrap(), "{}", dir.display());
        }
        checked += 1;
    }
    assert!(checked > 0);
}

#[test]
fn kill_9_at_random_points_never_publishes_a_partial_result() {
    let ws = Workspace::new(&slow_yaml());
    let mut seed = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("seed {seed}");
    for round in 0..12 {
        // Force reruns of everything in some rounds so kills also hit replacement.
        let mut args = vec!["run", "-j", "2"];
        if round % 3 == 2 {
            args.extend(["--force", "a"]);
        }
        let mut child = ws.command(&args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis((seed >> 33) % 700));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Orphaned `sh` children may still be writing into their private tmp directories.
        if let Ok(objects) = std::fs::read_dir(ws.store().join("objects")) {
            drop(objects);
            assert_store_consistent_if_any(&ws);
        }
    }
    std::thread::sleep(Duration::from_millis(400));
    let out = ws.pipeline(&["run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_store_consistent(&ws);
    let verify = ws.pipeline(&["verify"]);
    assert_eq!(verify.code, 0, "{}", verify.stdout);
    assert_eq!(verify.stdout.lines().filter(|l| l.ends_with(": ok")).count(), 4, "{}", verify.stdout);
    // A clean run after that is all fresh.
    let again = ws.pipeline(&["run"]);
    assert!(again.stderr.contains("0 ran, 4 fresh"), "{}", again.stderr);
}

fn assert_store_consistent_if_any(ws: &Workspace) {
    let any = walkdir::WalkDir::new(ws.store().join("objects")).min_depth(2).max_depth(2).into_iter().next().is_some();
    if any {
        assert_store_consistent(ws);
    }
}

#[test]
fn two_concurrent_runs_compute_each_stage_once() {
    let ws = Workspace::new(&slow_yaml().replace("sleep 0.03", "sleep 0.1"));
    let first = ws.command(&["run", "-j", "2"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let second = ws.command(&["run", "-j", "2"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let first = first.wait_with_output().unwrap();
    let second = second.wait_with_output().unwrap();
    let (e1, e2) = (String::from_utf8_lossy(&first.stderr), String::from_utf8_lossy(&second.stderr));
    assert!(first.status.success() && second.status.success(), "{e1}\n---\n{e2}");
    for stage in ["a", "b", "c", "d"] {
        assert_eq!(ws.count(stage), 1, "stage {stage} ran more than once:\n{e1}\n---\n{e2}");
    }
    assert!(e1.contains("waiting for another run") || e2.contains("waiting for another run"), "{e1}\n---\n{e2}");
    assert_store_consistent(&ws);
}

#[test]
fn gc_removes_unreferenced_artifacts_and_keeps_current_ones() {
    let ws = Workspace::new("stages:\n  a:\n    run: \"echo $PIPELINE_PARAM_N > $PIPELINE_OUT/n\"\n    with: {n: 1}\n");
    ws.pipeline(&["run"]);
    ws.write("pipeline.yaml", "stages:\n  a:\n    run: \"echo $PIPELINE_PARAM_N > $PIPELINE_OUT/n\"\n    with: {n: 2}\n");
    ws.pipeline(&["run"]);
    let out = ws.pipeline(&["gc"]);
    assert!(out.stdout.contains("removed 1 artifacts"), "{}", out.stdout);
    let again = ws.pipeline(&["run"]);
    assert!(again.stderr.contains("0 ran, 1 fresh"), "{}", again.stderr);
}
