//! Sharing results between machines through a remote cache (here a directory remote; two
//! workspaces stand for two machines with the same pipeline.yaml and raw data).

mod common;
use std::fs;
use std::path::{Path, PathBuf};

use common::{counting, Workspace};

fn yaml(remote: &Path) -> String {
    format!(
        "remote: {}\nstages:\n  prep:\n    run: \"{}\"\n    deps: [raw]\n  train:\n    run: \"{}\"\n    needs: [prep]\n",
        remote.display(),
        counting("prep", "mkdir -p $PIPELINE_OUT/shards; cat raw/* > $PIPELINE_OUT/shards/all.bin; echo prepped"),
        counting("train", "wc -c < $PIPELINE_IN_PREP/shards/all.bin > $PIPELINE_OUT/model.txt"),
    )
}

fn machine(remote: &Path) -> Workspace {
    let ws = Workspace::new(&yaml(remote));
    ws.write("raw/a.txt", "alpha\n");
    ws.write("raw/b.txt", "beta\n");
    ws
}

fn output_of(ws: &Workspace, stage: &str) -> PathBuf {
    let show = ws.pipeline(&["show", stage]).stdout;
    PathBuf::from(show.lines().next().unwrap().split(": ").nth(1).unwrap())
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()).map(|e| e.into_path()).collect()
}

#[test]
fn second_machine_pulls_instead_of_computing() {
    let remote = tempfile::tempdir().unwrap();
    let a = machine(remote.path());
    let out = a.pipeline(&["run", "--push"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("prep: pushed to the remote"), "{}", out.stderr);

    let b = machine(remote.path());
    let out = b.pipeline(&["run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("prep: pulled from the remote"), "{}", out.stderr);
    assert!(out.stderr.contains("train: pulled from the remote"), "{}", out.stderr);
    assert_eq!((b.count("prep"), b.count("train")), (0, 0), "nothing was computed on B");
    for stage in ["prep", "train"] {
        let (da, db) = (output_of(&a, stage), output_of(&b, stage));
        for fa in files_under(&da) {
            let fb = db.join(fa.strip_prefix(&da).unwrap());
            assert_eq!(fs::read(&fa).unwrap(), fs::read(&fb).unwrap(), "{}", fb.display());
        }
    }
    // The same content is stored once: pushing again uploads nothing.
    let again = a.pipeline(&["push"]);
    assert!(again.stdout.contains("pushed 2 artifacts, uploaded 0 B"), "{}", again.stdout);
}

#[test]
fn pull_command_fetches_upstream_first() {
    let remote = tempfile::tempdir().unwrap();
    let a = machine(remote.path());
    a.pipeline(&["run"]);
    assert!(a.pipeline(&["push"]).stdout.contains("pushed 2 artifacts"));
    let b = machine(remote.path());
    let out = b.pipeline(&["pull"]);
    assert!(out.stdout.contains("pulled 2 artifacts"), "{}\n{}", out.stdout, out.stderr);
    let run = b.pipeline(&["run"]);
    assert!(run.stderr.contains("0 ran, 2 fresh"), "{}", run.stderr);
}

/// Corrupts what A pushed in one of three ways; B must refuse it and compute locally.
fn refused_after(damage: impl Fn(&Path)) -> (Workspace, common::RunOutput) {
    let remote = tempfile::tempdir().unwrap();
    let a = machine(remote.path());
    assert_eq!(a.pipeline(&["run", "--push"]).code, 0);
    damage(remote.path());
    let b = machine(remote.path());
    let out = b.pipeline(&["run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("prep: refused the remote copy"), "{}", out.stderr);
    assert_eq!(b.count("prep"), 1, "computed locally instead");
    let verify = b.pipeline(&["verify"]);
    assert_eq!(verify.code, 0, "{}", verify.stdout);
    (b, out)
}

fn prep_blob(remote: &Path) -> PathBuf {
    // The largest blob is prep's shard (alpha+beta).
    files_under(&remote.join("blobs")).into_iter().max_by_key(|p| fs::metadata(p).unwrap().len()).unwrap()
}

#[test]
fn corrupted_blob_is_refused() {
    let (_, out) = refused_after(|remote| {
        let blob = prep_blob(remote);
        fs::write(&blob, "alphX\nbeta\n").unwrap();
    });
    assert!(out.stderr.contains("is corrupt: blake3"), "{}", out.stderr);
}

#[test]
fn truncated_blob_is_refused() {
    let (_, out) = refused_after(|remote| {
        let blob = prep_blob(remote);
        fs::write(&blob, "alpha\n").unwrap();
    });
    assert!(out.stderr.contains("is corrupt"), "{}", out.stderr);
}

#[test]
fn manifest_with_parent_paths_is_refused_and_nothing_escapes() {
    let outside = tempfile::tempdir().unwrap();
    let (b, out) = refused_after(|remote| {
        for manifest in files_under(&remote.join("manifests")) {
            let text = fs::read_to_string(&manifest).unwrap();
            fs::write(&manifest, text.replace("\"shards/all.bin\"", "\"../../../../escape.bin\"")).unwrap();
        }
    });
    assert!(out.stderr.contains("unsafe path `../../../../escape.bin`"), "{}", out.stderr);
    assert!(!b.store().join("escape.bin").exists() && !b.path().join("escape.bin").exists());
    assert!(!outside.path().join("escape.bin").exists());
}
