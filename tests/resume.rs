//! Long stages resume where a killed attempt stopped: the engine lends each instance a folder
//! keyed like its result (`PIPELINE_RESUME` for a `run:` stage), removed once the result is
//! published and discarded by `--force` and `gc`; the `train` stage keeps its last finished
//! epoch there, and a training killed with SIGKILL and rerun gives the bytes of one never
//! interrupted.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Workspace;

/// The resumable-state folders of a workspace.
fn states(ws: &Workspace) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(ws.store().join("resume")) else { return Vec::new() };
    let mut dirs: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    dirs.sort();
    dirs
}

/// A `run:` stage that fails on its first attempt and succeeds on the second, counting its
/// attempts in its resumable state.
const TWO_ATTEMPTS: &str = r#"stages:
  slow:
    run: "n=$(cat $PIPELINE_RESUME/attempts 2>/dev/null || echo 0); echo $((n+1)) > $PIPELINE_RESUME/attempts; test $n -ge 1 || { echo 'first attempt dies' >&2; exit 1; }; echo attempt $((n+1)) > $PIPELINE_OUT/result; echo finished on attempt $((n+1))"
"#;

#[test]
fn a_run_stage_continues_from_its_state_until_published() {
    let ws = Workspace::new(TWO_ATTEMPTS);
    let first = ws.pipeline(&["run"]);
    assert_eq!(first.code, 1, "{}", first.stderr);
    let kept = states(&ws);
    assert_eq!(kept.len(), 1, "the failed attempt's state is kept: {kept:?}");
    assert_eq!(fs::read_to_string(kept[0].join("attempts")).unwrap().trim(), "1");

    let second = ws.pipeline(&["run"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(second.stderr.contains("slow: an earlier attempt was interrupted"), "{}", second.stderr);
    assert!(second.stderr.contains("finished on attempt 2"), "{}", second.stderr);
    assert!(states(&ws).is_empty(), "the state is removed once the result is published: {:?}", states(&ws));

    // A stage that leaves nothing in its folder leaves no folder behind, even when it fails.
    let ws = Workspace::new("stages:\n  broken: {run: \"exit 3\"}\n");
    assert_eq!(ws.pipeline(&["run"]).code, 1);
    assert!(states(&ws).is_empty(), "{:?}", states(&ws));
}

#[test]
fn force_and_gc_discard_resumable_states() {
    let ws = Workspace::new(TWO_ATTEMPTS);
    assert_eq!(ws.pipeline(&["run"]).code, 1);
    // --force starts over: the state is discarded, so this is a first attempt again.
    let forced = ws.pipeline(&["run", "--force", "slow"]);
    assert_eq!(forced.code, 1, "{}", forced.stderr);
    assert!(forced.stderr.contains("slow: forced: discarded the resumable state"), "{}", forced.stderr);
    assert_eq!(fs::read_to_string(states(&ws)[0].join("attempts")).unwrap().trim(), "1");

    let gc = ws.pipeline(&["gc"]);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    assert!(states(&ws).is_empty(), "gc discards what no run is using: {:?}", states(&ws));
    let again = ws.pipeline(&["run"]);
    assert_eq!(again.code, 1, "after gc the stage starts over: {}", again.stderr);
}

const EPOCHS: usize = 4;

/// One small training, one libtorch thread, four epochs without early stopping. The CNN draws
/// dropout masks from its own generator, the hardest state to carry over.
fn training_yaml() -> String {
    format!(
        "{}  train:
    uses: train
    needs: [extract, split]
    with: {{arch: early_fusion_cnn, epochs: {EPOCHS}, early_stopping_patience: 1000, batch_size: 2, device: cpu, threads: 1}}
",
        common::tiny_dataset(common::TRAINABLE_SYNTH)
    )
}

/// The trained model's bytes and its history without the timing column.
fn trained(ws: &Workspace) -> (Vec<u8>, Vec<String>) {
    let artifacts = common::artifacts_of(ws);
    let train = &artifacts["train"];
    let history = String::from_utf8(train["history.csv"].clone()).unwrap();
    let rows = history.lines().map(|l| l.rsplit_once(',').map_or(l, |(rest, _seconds)| rest).to_owned()).collect();
    (train["model.safetensors"].clone(), rows)
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn finished_epochs(state: &Path) -> Vec<usize> {
    let Ok(entries) = fs::read_dir(state) else { return Vec::new() };
    entries.filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("epoch-")?.parse().ok()).collect()
}

#[test]
fn a_training_killed_after_an_epoch_resumes_and_gives_the_uninterrupted_bytes() {
    let whole = Workspace::new(&training_yaml());
    let out = whole.pipeline(&["run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (model, history) = trained(&whole);
    assert_eq!(history.len(), EPOCHS + 1, "{history:?}");

    let ws = Workspace::new(&training_yaml());
    let (mut child, lines) = ws.spawn_run(&["run"]);
    // Kill -9 once the second epoch's state is complete.
    let mut state = None;
    wait_for("the state of epoch 2", Duration::from_secs(600), || {
        state = states(&ws).into_iter().find(|s| finished_epochs(s).iter().any(|&e| e >= 2));
        state.is_some()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let seen: Vec<String> = lines.try_iter().collect();
    assert!(!seen.iter().any(|l| l.starts_with("train: done")), "the kill came too late:\n{}", seen.join("\n"));
    let state = state.unwrap();
    let epochs_before = finished_epochs(&state);
    assert!(!common::artifacts_of(&ws).contains_key("train"), "nothing of the killed training is published");

    let rerun = ws.pipeline(&["run"]);
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    let resumed_from = *epochs_before.iter().max().unwrap();
    // Another epoch may have finished between reading the folder and the kill.
    let said = (resumed_from..=resumed_from + 1).find(|e| rerun.stderr.contains(&format!("resuming from epoch {e} of {EPOCHS}")));
    assert!(said.is_some(), "no `resuming from epoch {resumed_from} of {EPOCHS}` in:\n{}", rerun.stderr);
    assert!(!rerun.stderr.contains("epoch 1/4"), "epoch 1 was trained again:\n{}", rerun.stderr);
    println!("killed after epoch {resumed_from} of {EPOCHS}; resumed from epoch {}", said.unwrap());

    let (resumed_model, resumed_history) = trained(&ws);
    assert_eq!(resumed_history, history, "the history differs from the uninterrupted run's");
    assert!(resumed_model == model, "the model's bytes differ from the uninterrupted run's ({} bytes compared)", model.len());
    assert!(states(&ws).is_empty(), "the state is removed once the model is published: {:?}", states(&ws));
    println!("bytes compared: model.safetensors {} bytes, history {} rows: equal", model.len(), history.len());
}
