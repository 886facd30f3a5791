//! Two `pipeline run` of the real default pipeline on one workspace at once, one of them killed
//! with SIGKILL while it trains: every instance is computed (published) once, the surviving run
//! reuses what the killed one had computed and computes what it was computing when it died, no
//! process of the killed run survives, and afterwards everything is fresh and verifies.
//!
//! The pipeline is the repository's own `pipeline.yaml` (synth -> scan -> extract -> split ->
//! train over the five architectures -> evaluate -> report, `train: {cpus: 1}`), read from the
//! file so that the test follows it, with smaller sizes substituted: at full size it runs about
//! 8 minutes on 2 cores, too long for the suite, and the file has no override mechanism short of
//! editing it (`include:` exists only inside a matrix). The test keeps the stages, their order,
//! the five architectures, the split by actor (12 actors) and the executor section, and changes
//! only how much work there is: 4 emotions, 1 statement, half-second clips at 320x180 (48
//! clips instead of 360), and 2 epochs for every architecture. Each substitution is checked, so a
//! change of the default that the test would silently miss fails it instead.
//!
//! The test process makes itself a child subreaper (process-wide), so that any process the
//! killed run leaves behind becomes its child and is seen: this file holds this one test.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Child;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::{alive, artifacts_of, children_of, Workspace};

/// Epochs of every architecture (the default: 10 to 20).
const EPOCHS: u64 = 2;

/// The default pipeline with the smaller sizes (see the module comment).
fn small_default_pipeline() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../pipeline.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut doc: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let stages = doc.get_mut("stages").and_then(|s| s.as_mapping_mut()).expect("pipeline.yaml has stages");
    let names: Vec<&str> = stages.keys().filter_map(|k| k.as_str()).collect();
    assert_eq!(names, ["synth", "scan", "extract", "split", "train", "evaluate", "report"], "the default pipeline's stages changed");

    let synth = stages.get_mut("synth").and_then(|s| s.get_mut("with")).and_then(|w| w.as_mapping_mut()).expect("synth: with:");
    assert_eq!(synth.get("actors").and_then(|v| v.as_u64()), Some(12), "split lists actors 1-12");
    let small: serde_norway::Value = serde_norway::from_str(
        "{actors: 12, statements: 1, duration_s: 0.5, emotions: [neutral, happy, sad, angry], intensities: [1], width: 320, height: 180}",
    )
    .unwrap();
    for (k, v) in small.as_mapping().unwrap() {
        synth.insert(k.clone(), v.clone());
    }

    let train = stages.get_mut("train").expect("a train stage");
    assert_eq!(train.get("uses").and_then(|v| v.as_str()), Some("train"));
    let with = train.get_mut("with").and_then(|w| w.as_mapping_mut()).expect("train: with:");
    assert!(with.contains_key("epochs"), "train: with: epochs");
    with.insert("epochs".into(), EPOCHS.into());
    let matrix = train.get_mut("matrix").and_then(|m| m.as_mapping_mut()).expect("train: matrix:");
    let archs = matrix.get("arch").and_then(|a| a.as_sequence()).map_or(0, Vec::len);
    assert_eq!(archs, 5, "five architectures");
    for entry in matrix.get_mut("include").and_then(|i| i.as_sequence_mut()).into_iter().flatten() {
        let entry = entry.as_mapping_mut().expect("include entries are maps");
        if entry.contains_key("epochs") {
            entry.insert("epochs".into(), EPOCHS.into());
        }
    }
    serde_norway::to_string(&doc).unwrap()
}

/// What one run printed, by instance: the words after `instance: `.
#[derive(Default)]
struct RunLines {
    all: Vec<String>,
}

impl RunLines {
    fn push(&mut self, line: String) {
        self.all.push(line);
    }

    /// Instances with a line `instance: <starts>...`.
    fn instances(&self, starts: &str) -> BTreeSet<String> {
        self.all
            .iter()
            .filter_map(|l| l.split_once(": "))
            .filter(|(_, rest)| rest.starts_with(starts))
            .map(|(name, _)| name.to_owned())
            .collect()
    }

    fn text(&self) -> String {
        self.all.join("\n")
    }
}

/// Every line that has arrived on `rx` so far.
fn drain(rx: &Receiver<String>, into: &mut RunLines) {
    while let Ok(line) = rx.try_recv() {
        into.push(line);
    }
}

/// Every running descendant of `root`.
fn descendants(root: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        for child in children_of(pid) {
            stack.push(child.pid);
            found.push((child.pid, child.name));
        }
    }
    found
}

#[test]
fn two_runs_of_the_default_pipeline_one_killed_compute_each_instance_once() {
    // SAFETY: a plain prctl on this process.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) }, 0, "{}", std::io::Error::last_os_error());
    let ws = Workspace::with_env(&small_default_pipeline(), vec![("PIPELINE_CPUS".into(), "2".into())]);
    let started = Instant::now();
    let runs: Vec<(Child, Receiver<String>)> = (0..2).map(|_| ws.spawn_run(&["run"])).collect();
    let mut lines = [RunLines::default(), RunLines::default()];

    // The victim is killed while it trains (a train instance running, its pipeline-torch worker
    // started), and only once the other run has waited for something it computed and reused it
    // (synth at least: both start at once, one computes it, the other waits). Preferably it has
    // finished a training too, so that a trained model is among what the other reuses; which run
    // wins which lock is a race, so a run that trains for 10 s without finishing one is killed
    // anyway.
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut eligible_since: [Option<Instant>; 2] = [None, None];
    let victim = loop {
        for (i, (_, rx)) in runs.iter().enumerate() {
            drain(rx, &mut lines[i]);
        }
        let trains = |set: BTreeSet<String>| set.into_iter().filter(|n| n.starts_with("train[")).collect::<BTreeSet<_>>();
        let mut chosen = None;
        for i in 0..2 {
            let done = trains(lines[i].instances("done in "));
            let training = trains(lines[i].instances("running")).difference(&done).next().is_some();
            let reused_by_other = !lines[1 - i].instances("reused the result of the other run").is_empty();
            if !(training && reused_by_other && descendants(runs[i].0.id()).iter().any(|(_, name)| name == "pipeline-torch")) {
                continue;
            }
            let since = *eligible_since[i].get_or_insert_with(Instant::now);
            if !done.is_empty() || since.elapsed() > Duration::from_secs(10) {
                chosen = Some(i);
                break;
            }
        }
        if let Some(i) = chosen {
            break i;
        }
        for (i, (child, _)) in runs.iter().enumerate() {
            // A run that ended before the other was killed would leave nothing to test.
            assert!(alive(child.id()), "run {i} ended early:\n{}", lines[i].text());
        }
        assert!(Instant::now() < deadline, "no run trained within 240 s:\n{}\n---\n{}", lines[0].text(), lines[1].text());
        std::thread::sleep(Duration::from_millis(20));
    };
    let survivor = 1 - victim;
    let mut runs = runs;
    let (mut survivor_run, mut victim_run) = (runs.remove(survivor), runs.remove(0));
    let [a, b] = lines;
    let (mut victim_lines, mut survivor_lines) = if victim == 0 { (a, b) } else { (b, a) };
    let killed_at = started.elapsed();
    let doomed = descendants(victim_run.0.id());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(victim_run.0.id() as libc::pid_t, libc::SIGKILL) };
    let status = victim_run.0.wait().unwrap();
    assert_eq!(status.code(), None, "the victim was killed by the signal");

    // No process of the killed run survives: its descendants at the kill die, and nothing is
    // orphaned to this (subreaper) process but the surviving run.
    let grace = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<&(u32, String)> = doomed.iter().filter(|(pid, _)| alive(*pid)).collect();
        let orphans: Vec<(u32, String)> =
            children_of(std::process::id()).into_iter().filter(|p| p.pid != survivor_run.0.id()).map(|p| (p.pid, p.name)).collect();
        if left.is_empty() && orphans.is_empty() {
            break;
        }
        assert!(Instant::now() < grace, "processes of the killed run survive it: {left:?}, orphans {orphans:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The killed run's stderr ends with it.
    let reader_deadline = Instant::now() + Duration::from_secs(5);
    while let Ok(line) = victim_run.1.recv_timeout(reader_deadline.saturating_duration_since(Instant::now())) {
        victim_lines.push(line);
    }

    let status = survivor_run.0.wait().unwrap();
    while let Ok(line) = survivor_run.1.recv_timeout(Duration::from_secs(5)) {
        survivor_lines.push(line);
    }
    let both = format!("killed run:\n{}\n--- surviving run:\n{}", victim_lines.text(), survivor_lines.text());
    assert_eq!(status.code(), Some(0), "the surviving run succeeds:\n{both}");
    let survivor_done_at = started.elapsed();

    let again = ws.pipeline(&["run"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let instances: BTreeSet<String> = again.stderr.lines().filter_map(|l| l.strip_suffix(": fresh")).map(str::to_owned).collect();
    assert_eq!(instances.len(), 15, "synth, scan, extract, split, 5 train, 5 evaluate, report:\n{}", again.stderr);
    assert!(again.stderr.contains("0 ran, 15 fresh"), "everything is fresh after the surviving run:\n{}", again.stderr);
    let verify = ws.pipeline(&["verify"]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    assert_eq!(verify.stdout.lines().filter(|l| l.ends_with(": ok")).count(), 15, "{}", verify.stdout);

    // Each instance was computed once: by exactly one of the runs.
    let victim_done = victim_lines.instances("done in ");
    let killed: BTreeSet<String> = victim_lines.instances("running").difference(&victim_done).cloned().collect();
    let survivor_done = survivor_lines.instances("done in ");
    let reused = survivor_lines.instances("reused the result of the other run");
    let fresh = survivor_lines.instances("fresh");
    let twice: Vec<&String> = victim_done.intersection(&survivor_done).collect();
    assert!(twice.is_empty(), "computed by both runs: {twice:?}\n{both}");
    let computed: BTreeSet<String> = victim_done.union(&survivor_done).cloned().collect();
    assert_eq!(computed, instances, "every instance computed by one of the runs:\n{both}");
    assert!(!killed.is_empty() && killed.iter().all(|k| k.starts_with("train[")), "killed while training: {killed:?}\n{both}");
    assert!(killed.is_subset(&survivor_done), "the surviving run computed what the killed one was computing:\n{both}");
    assert!(!reused.is_empty(), "the surviving run waited for something the killed one computed and reused it:\n{both}");
    assert!(reused.union(&fresh).all(|r| victim_done.contains(r)), "what it did not compute, the killed run had:\n{both}");
    // One artifact per instance in the store (a second computation would be a second key only if
    // it differed; two publications of a key leave one directory either way, so count the
    // manifests by instance too).
    let artifacts = artifacts_of(&ws);
    assert_eq!(artifacts.keys().cloned().collect::<BTreeSet<_>>(), instances);
    let objects = walkdir::WalkDir::new(ws.store().join("objects")).min_depth(2).max_depth(2).into_iter().count();
    assert_eq!(objects, 15, "one artifact per instance");

    // `evaluate x5, train[arch=r3d18], ...`: a stage's instances counted, a lone one named.
    let per_stage = |set: &BTreeSet<String>| {
        let mut by_stage: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for name in set {
            by_stage.entry(name.split('[').next().unwrap()).or_default().push(name);
        }
        let parts: Vec<String> = by_stage
            .iter()
            .map(|(stage, names)| if names.len() > 1 { format!("{stage} x{}", names.len()) } else { names[0].to_owned() })
            .collect();
        parts.join(", ")
    };
    println!(
        "{} instances, 1 kill (at {:.1} s, {} process(es) of the killed run, 0 survived); killed while computing: {}",
        instances.len(),
        killed_at.as_secs_f64(),
        doomed.len(),
        killed.iter().cloned().collect::<Vec<_>>().join(", ")
    );
    println!("computed by the killed run: {} ({})", victim_done.len(), per_stage(&victim_done));
    println!("computed by the surviving run: {} ({})", survivor_done.len(), per_stage(&survivor_done));
    println!("reused by the surviving run: {} waited for and reused ({}), {} found fresh", reused.len(), per_stage(&reused), fresh.len());
    println!(
        "surviving run finished at {:.1} s; rerun: 0 ran, 15 fresh; verify: 15 ok; total {:.1} s",
        survivor_done_at.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
