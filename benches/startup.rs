//! Benchmark: what a command costs before it does anything (issue: start in milliseconds).
//!
//! Creates N small input files (default 3,000), a 3-stage `run:` pipeline over them and the same
//! pipeline as a `dvc.yaml`, runs each once to fill the caches, then times in the same run, each
//! command `BENCH_ROUNDS` times (default 10), wall time (median) and peak resident memory (max):
//! - `pipeline --help`, `pipeline status`, a no-op `pipeline run` (this build);
//! - the same with a previous build (`BENCH_PREV_PIPELINE=path`, e.g. one that links libtorch);
//! - `dvc repro` with nothing to do, and `dvc --version` (`BENCH_DVC=path` to a `dvc` executable).
//!
//! Missing comparisons are skipped with a note. Ratios are against DVC's no-op and against the
//! previous build's same command.
//!
//! Run: `BENCH_PREV_PIPELINE=/path/old/pipeline BENCH_DVC=/path/venv/bin/dvc cargo bench --bench startup`

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One measured command: median wall seconds and the largest peak RSS in MiB over the rounds.
struct Measured {
    seconds: f64,
    peak_mib: f64,
}

fn main() {
    let count: usize = env_number("BENCH_FILES", 3000);
    let rounds: usize = env_number("BENCH_ROUNDS", 10);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    make_inputs(&root.join("data"), count);
    fs::write(root.join("pipeline.yaml"), PIPELINE_YAML).unwrap();
    fs::write(root.join("dvc.yaml"), DVC_YAML).unwrap();
    println!("{count} input files, {rounds} rounds per command");

    let current = PathBuf::from(env!("CARGO_BIN_EXE_pipeline"));
    let previous = std::env::var_os("BENCH_PREV_PIPELINE").map(PathBuf::from);
    let dvc = std::env::var_os("BENCH_DVC").map(PathBuf::from);

    let mut rows: Vec<(String, Measured)> = Vec::new();
    for (label, bin) in [("this build", Some(&current)), ("previous build", previous.as_ref())] {
        let Some(bin) = bin else {
            println!("(no previous build: set BENCH_PREV_PIPELINE)");
            continue;
        };
        must(Command::new(bin).args(["run", "-q"]).current_dir(root), "first pipeline run");
        for (what, args) in [("--help", vec!["--help"]), ("status", vec!["status"]), ("no-op run", vec!["run", "-q"])] {
            rows.push((
                format!("`pipeline {}` ({label})", what),
                measure(rounds, || {
                    Command::new(bin).args(&args).current_dir(root).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
                }),
            ));
        }
    }
    match &dvc {
        Some(dvc) => {
            must(Command::new("git").args(["init", "-q"]).current_dir(root), "git init");
            must(Command::new(dvc).args(["init", "-q"]).current_dir(root), "dvc init");
            must(Command::new(dvc).args(["repro", "-q"]).current_dir(root), "first dvc repro");
            rows.push((
                "`dvc --version`".into(),
                measure(rounds, || Command::new(dvc).arg("--version").current_dir(root).stdout(Stdio::null()).spawn().unwrap()),
            ));
            rows.push((
                "no-op `dvc repro`".into(),
                measure(rounds, || Command::new(dvc).args(["repro", "-q"]).current_dir(root).stdout(Stdio::null()).spawn().unwrap()),
            ));
        }
        None => println!("(no DVC: set BENCH_DVC)"),
    }

    let dvc_noop = rows.iter().find(|(n, _)| n == "no-op `dvc repro`").map(|(_, m)| m.seconds);
    println!("| command | median wall | peak RSS | vs no-op `dvc repro` | vs previous build |");
    println!("|---|---|---|---|---|");
    for (name, m) in &rows {
        let vs_dvc = dvc_noop.map_or("".into(), |d| format!("{:.3}x", m.seconds / d));
        let vs_prev = name
            .strip_suffix(" (this build)")
            .and_then(|base| rows.iter().find(|(n, _)| *n == format!("{base} (previous build)")))
            .map_or("".into(), |(_, p)| format!("{:.3}x time, {:.3}x memory", m.seconds / p.seconds, m.peak_mib / p.peak_mib));
        println!("| {name} | {:.1} ms | {:.1} MiB | {vs_dvc} | {vs_prev} |", m.seconds * 1e3, m.peak_mib);
    }
}

const PIPELINE_YAML: &str = "stages:
  count:
    run: \"ls data | wc -l > $PIPELINE_OUT/count\"
    deps: [data]
  double:
    needs: [count]
    run: \"echo $(( $(cat $PIPELINE_IN_COUNT/count) * 2 )) > $PIPELINE_OUT/double\"
  report:
    needs: [double]
    run: \"cp $PIPELINE_IN_DOUBLE/double $PIPELINE_OUT/report\"
";

const DVC_YAML: &str = "stages:
  count:
    cmd: mkdir -p out && ls data | wc -l > out/count
    deps: [data]
    outs: [out/count]
  double:
    cmd: echo $(( $(cat out/count) * 2 )) > out/double
    deps: [out/count]
    outs: [out/double]
  report:
    cmd: cp out/double out/report
    deps: [out/double]
    outs: [out/report]
";

fn make_inputs(dir: &Path, count: usize) {
    fs::create_dir_all(dir).unwrap();
    for i in 0..count {
        let body: Vec<u8> = (0..1024 + (i % 7) * 512).map(|j| ((i * 31 + j * 7) % 251) as u8).collect();
        fs::write(dir.join(format!("clip-{i:05}.bin")), body).unwrap();
    }
}

/// Runs `start` `rounds` times, waiting for each child with `wait4` to read its peak RSS.
fn measure(rounds: usize, mut start: impl FnMut() -> std::process::Child) -> Measured {
    let mut times = Vec::with_capacity(rounds);
    let mut peak_kib = 0i64;
    for _ in 0..rounds {
        let began = Instant::now();
        // Reaped by `wait4` right below (std's `wait` does not report the peak RSS).
        #[allow(clippy::zombie_processes)]
        let child = start();
        let (ok, maxrss) = wait_with_rusage(child.id() as libc::pid_t);
        times.push(began.elapsed().as_secs_f64());
        assert!(ok, "a measured command failed");
        peak_kib = peak_kib.max(maxrss);
    }
    times.sort_by(f64::total_cmp);
    Measured { seconds: times[times.len() / 2], peak_mib: peak_kib as f64 / 1024.0 }
}

fn wait_with_rusage(pid: libc::pid_t) -> (bool, i64) {
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    (libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, usage.ru_maxrss)
}

fn must(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}
