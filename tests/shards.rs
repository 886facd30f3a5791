//! Data-parallel stages (`extract`, the probing of `scan`) split into shards (`executor.resources.STAGE.shards`) with the local
//! executor: the shards one after another, then the merge. The merged result is the same bytes
//! as an unsharded run (so it has the same key downstream), finished shards survive a run that
//! stopped before the merge, and `shards` on a stage that cannot be split is a config error.

mod common;
use std::collections::BTreeMap;
use std::path::PathBuf;

use common::Workspace;

fn stages() -> String {
    common::tiny_dataset(common::SMALL_SYNTH)
}

/// `extract` in `count` shards, and the probing of `scan` in 2.
fn sharded(count: u32) -> String {
    format!("executor:\n  resources:\n    scan: {{shards: 2}}\n    extract: {{shards: {count}}}\n{}", stages())
}

/// instance -> (artifact directory, content hash), from every manifest in the store.
fn artifacts(ws: &Workspace) -> BTreeMap<String, (PathBuf, String)> {
    let mut all = BTreeMap::new();
    for entry in walkdir::WalkDir::new(ws.store().join("objects")).min_depth(2).max_depth(2) {
        let dir = entry.unwrap().into_path();
        let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        let hash = manifest["content_hash"].as_str().unwrap().to_owned();
        all.insert(manifest["instance"].as_str().unwrap().to_owned(), (dir, hash));
    }
    all
}

#[test]
fn shards_then_a_merge_give_an_unsharded_runs_bytes_and_survive_a_stop_before_the_merge() {
    let whole = Workspace::new(&stages());
    let out = whole.pipeline(&["run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("[shard") && !out.stderr.contains("split into"), "{}", out.stderr);

    let ws = Workspace::new(&sharded(4));
    let out = ws.pipeline(&["run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("extract: split into 4 shards\n"), "{}", out.stderr);
    for i in 1..=4 {
        assert!(out.stderr.contains(&format!("extract[shard {i}/4]: done")), "{}", out.stderr);
    }
    assert!(out.stderr.contains("extract: merging the 4 shards"), "{}", out.stderr);
    assert!(out.stderr.contains("extract: done in 4 shards"), "{}", out.stderr);

    assert!(out.stderr.contains("scan: split into 2 shards\n") && out.stderr.contains("scan: done in 2 shards"), "{}", out.stderr);

    // The same bytes, hence the same keys downstream: split is the same artifact too.
    let (a, b) = (artifacts(&whole), artifacts(&ws));
    for stage in ["scan", "extract", "split"] {
        assert_eq!(a[stage].1, b[stage].1, "{stage} differs from an unsharded run");
    }
    assert_eq!(b.keys().filter(|k| k.starts_with("extract[shard ")).count(), 4, "{:?}", b.keys());

    // The same bytes whatever the count: back to one task, everything is fresh.
    ws.write("pipeline.yaml", &stages());
    let out = ws.pipeline(&["status"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(text.contains("scan: fresh") && text.contains("extract: fresh") && text.contains("split: fresh"), "{text}");
    ws.write("pipeline.yaml", &sharded(4));

    // A run that stopped after three shards: the merged result and one shard are gone. The
    // rerun computes only the missing shard, then merges the same bytes.
    std::fs::remove_dir_all(&b["extract"].0).unwrap();
    std::fs::remove_dir_all(&b["extract[shard 3/4]"].0).unwrap();
    let out = ws.pipeline(&["run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("extract: split into 4 shards (3 done by an earlier run)"), "{}", out.stderr);
    assert!(out.stderr.contains("extract[shard 3/4]: running"), "{}", out.stderr);
    assert!(!out.stderr.contains("extract[shard 1/4]: running"), "{}", out.stderr);
    assert!(out.stderr.contains("scan: fresh") && out.stderr.contains("split: fresh"), "{}", out.stderr);
    assert_eq!(artifacts(&ws)["extract"].1, a["extract"].1);

    // More shards than clips: the empty shards merge to the same bytes.
    let many = Workspace::new(&sharded(9));
    let out = many.pipeline(&["run", "extract"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(artifacts(&many)["extract"].1, a["extract"].1);
}

fn config_error(yaml: &str) -> String {
    let ws = Workspace::new(yaml);
    let out = ws.pipeline(&["status"]);
    assert_eq!(out.code, 2, "expected a configuration error:\n{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    out.stderr
}

#[test]
fn shards_on_a_stage_that_cannot_be_split_are_config_errors() {
    let err = config_error(&format!("executor:\n  resources:\n    split: {{shards: 2}}\n{}", stages()));
    assert!(err.contains("pipeline.yaml:3:13: stage `split` cannot be split into shards"), "{err}");
    assert!(err.contains("hint: only data-parallel built-in stages can: extract, scan"), "{err}");

    let shell = "executor:\n  resources:\n    a: {shards: 3}\nstages:\n  a:\n    run: echo hi\n";
    assert!(config_error(shell).contains("stage `a` cannot be split into shards"));

    let err = config_error(&format!("executor:\n  resources:\n    extract: {{shards: 0}}\n{}", stages()));
    assert!(err.contains("`extract` asks for 0 shards"), "{err}");

    let err = config_error(&format!("executor:\n  resources:\n    default: {{shards: 4}}\n{}", stages()));
    assert!(err.contains("`shards` is set per stage, not under `default`"), "{err}");
}

#[test]
fn one_shard_is_one_task() {
    let ws = Workspace::new(&format!("executor:\n  resources:\n    extract: {{shards: 1}}\n{}", stages()));
    let out = ws.pipeline(&["run", "extract"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("[shard") && !out.stderr.contains("split into"), "{}", out.stderr);
}
