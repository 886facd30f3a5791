//! libtorch only in the processes that train: the `pipeline` binary does not link it, the
//! `pipeline-torch` worker does (CUDA included), a worker that dies fails its own instance only,
//! no worker outlives a killed `pipeline`, and trainings side by side give the bytes they give
//! one at a time.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{alive, Workspace};

/// Two small trainings (seeds 0 and 1) on a tiny synthetic set, one libtorch thread each.
fn pipeline_yaml(epochs: usize) -> String {
    format!(
        "executor: {{resources: {{train: {{cpus: 1}}}}}}
{}  train:
    uses: train
    needs: [extract, split]
    matrix: {{seed: [0, 1]}}
    with: {{arch: early_fusion_cnn, epochs: {epochs}, early_stopping_patience: 1000, batch_size: 2, device: cpu}}
",
        common::tiny_dataset(common::TRAINABLE_SYNTH)
    )
}

fn binary(name: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_pipeline")).with_file_name(name)
}

/// The shared libraries an ELF file names (`NEEDED`) and its run path, from `readelf -d`.
fn dynamic_section(path: &Path) -> (Vec<String>, Vec<String>) {
    let out = Command::new("readelf").arg("-d").arg(path).output().expect("readelf (binutils) is needed");
    assert!(out.status.success(), "readelf -d {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let bracketed = |kind: &str| -> Vec<String> {
        text.lines().filter(|l| l.contains(kind)).filter_map(|l| Some(l[l.find('[')? + 1..l.rfind(']')?].to_owned())).collect()
    };
    let needed = bracketed("(NEEDED)");
    let paths = bracketed("PATH)").iter().flat_map(|p| p.split(':').map(str::to_owned).collect::<Vec<_>>()).collect();
    (needed, paths)
}

#[test]
fn only_the_worker_links_libtorch_and_it_keeps_cuda() {
    let (needed, _) = dynamic_section(&binary("pipeline"));
    let torch: Vec<&String> = needed.iter().filter(|l| l.contains("torch") || l.contains("c10")).collect();
    assert!(torch.is_empty(), "the pipeline binary links {torch:?}");

    let worker = binary("pipeline-torch");
    let (needed, run_paths) = dynamic_section(&worker);
    assert!(needed.iter().any(|l| l.starts_with("libtorch_cpu")), "the worker does not link libtorch_cpu: {needed:?}");
    let torch_lib = run_paths.iter().map(PathBuf::from).find(|d| d.join("libtorch_cpu.so").is_file());
    let torch_lib = torch_lib.unwrap_or_else(|| panic!("no run path of the worker holds libtorch: {run_paths:?}"));
    if torch_lib.join("libtorch_cuda.so").is_file() {
        assert!(needed.iter().any(|l| l == "libtorch_cuda.so"), "libtorch_cuda.so was dropped from the worker: {needed:?}");
    }
    // The worker really starts and loads libtorch through that run path (no LD_LIBRARY_PATH).
    let out = Command::new(&worker).arg("devices").env_remove("LD_LIBRARY_PATH").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("cuda: "), "{}", String::from_utf8_lossy(&out.stdout));
}

/// The pids of `parent`'s running children called `name`.
fn children_named(parent: u32, name: &str) -> Vec<u32> {
    common::children_of(parent).into_iter().filter(|p| p.name == name).map(|p| p.pid).collect()
}

fn wait_for_worker(parent: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        if let Some(&pid) = children_named(parent, "pipeline-torch").first() {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no pipeline-torch worker started within 300 s");
}

/// Whether process `pid` ignores SIGPIPE (bit 13 of `SigIgn` in /proc/PID/status).
fn ignores_sigpipe(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = status.lines().find_map(|l| l.strip_prefix("SigIgn:")).map(str::trim).unwrap();
    u64::from_str_radix(mask, 16).unwrap() & (1 << (libc::SIGPIPE - 1)) != 0
}

fn kill(pid: u32, signal: i32) {
    let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

#[test]
fn a_worker_killed_like_the_oom_killer_fails_only_its_instance_and_the_rerun_redoes_only_it() {
    let ws = Workspace::with_env(&pipeline_yaml(40), vec![("PIPELINE_CPUS".into(), "2".into())]);
    let prepared = ws.pipeline(&["run", "split"]);
    assert_eq!(prepared.code, 0, "{}", prepared.stderr);
    let (mut child, rx) = ws.spawn_run(&["run", "--keep-going"]);
    let victim = wait_for_worker(child.id());
    // The coordinator ignores SIGPIPE, so a worker killed before it read its job is an EPIPE for
    // that stage, not a signal that ends the whole run (the race this test once lost).
    assert!(ignores_sigpipe(child.id()), "`pipeline run` must ignore SIGPIPE");
    kill(victim, 9);
    let status = child.wait().unwrap();
    let lines: Vec<String> = rx.try_iter().collect();
    let text = lines.join("\n");
    assert_eq!(status.code(), Some(1), "one instance failed:\n{text}");
    // The instance's own FAILED line (the end-of-run table repeats the error).
    let died: Vec<&String> = lines.iter().filter(|l| l.contains(": FAILED: ") && l.contains("died (killed by signal 9")).collect();
    assert_eq!(died.len(), 1, "exactly one instance names the killed worker:\n{text}");
    let failed = if died[0].starts_with("train[seed=0]") { "train[seed=0]" } else { "train[seed=1]" };
    let other = if failed == "train[seed=0]" { "train[seed=1]" } else { "train[seed=0]" };
    assert!(died[0].starts_with(failed) && died[0].contains("pipeline-torch"), "{}", died[0]);
    assert!(lines.iter().any(|l| l.starts_with(&format!("{other}: done"))), "the other training finished:\n{text}");

    let rerun = ws.pipeline(&["run"]);
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(rerun.line_for(failed).iter().any(|l| l.contains("done")), "{}", rerun.stderr);
    assert!(rerun.line_for(other).iter().all(|l| !l.contains("running")), "{other} was fresh:\n{}", rerun.stderr);
}

#[test]
fn no_worker_outlives_a_pipeline_killed_with_sigkill() {
    let ws = Workspace::with_env(&pipeline_yaml(200), vec![("PIPELINE_CPUS".into(), "2".into())]);
    let prepared = ws.pipeline(&["run", "split"]);
    assert_eq!(prepared.code, 0, "{}", prepared.stderr);
    let (mut child, _rx) = ws.spawn_run(&["run"]);
    let worker = wait_for_worker(child.id());
    // Let it get into training (loading libtorch, then epochs).
    std::thread::sleep(Duration::from_millis(1500));
    let mut workers = children_named(child.id(), "pipeline-torch");
    assert!(workers.contains(&worker), "{workers:?}");
    kill(child.id(), 9);
    child.wait().unwrap();
    workers.sort();
    let deadline = Instant::now() + Duration::from_secs(10);
    while workers.iter().any(|&w| alive(w)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let survivors: Vec<u32> = workers.iter().copied().filter(|&w| alive(w)).collect();
    assert!(survivors.is_empty(), "workers {survivors:?} outlived their pipeline");
}

#[test]
fn trainings_side_by_side_give_the_bytes_they_give_one_at_a_time() {
    let model_bytes = |cpus: &str, jobs: &str| {
        let ws = Workspace::with_env(&pipeline_yaml(3), vec![("PIPELINE_CPUS".into(), cpus.into())]);
        let run = ws.pipeline(&["run", "-j", jobs]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        ["train[seed=0]", "train[seed=1]"].map(|instance| {
            let show = ws.pipeline(&["show", instance]);
            let dir = show.stdout.lines().next().and_then(|l| l.split_once(": ")).map(|(_, d)| d.trim().to_owned()).unwrap();
            std::fs::read(Path::new(&dir).join("model.safetensors")).unwrap()
        })
    };
    let side_by_side = model_bytes("2", "2");
    let one_at_a_time = model_bytes("1", "1");
    assert_ne!(side_by_side[0], side_by_side[1], "two seeds train two models");
    assert!(side_by_side == one_at_a_time, "the models differ between side by side and one at a time");
}
