//! Benchmark: `pipeline run` over a large unchanged input set.
//!
//! Creates N input files of 1–5 MB (default 3,000, about 9 GB; `BENCH_FILES=300` for a quick
//! look), declares them as `deps` of one stage, and times in the same run:
//! - a plain blake3 read of every file (the baseline: read + hash, one file after another),
//! - the first `pipeline run` (hashes everything),
//! - a second `pipeline run` with nothing changed (the memo answers; target at most 1 s),
//! - a run after `touch`ing every file (re-hashed, found equal, nothing reruns).
//!
//! Run: `cargo bench --bench nochange` (set `BENCH_DIR` to choose where the files go).

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

fn main() {
    let count: usize = std::env::var("BENCH_FILES").ok().and_then(|s| s.parse().ok()).unwrap_or(3000);
    let parent = std::env::var("BENCH_DIR").map(Into::into).unwrap_or_else(|_| std::env::temp_dir());
    let dir = tempfile::tempdir_in(parent).expect("tempdir");
    let data = dir.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let total = make_files(&data, count);
    // An existing dataset: files last modified a day ago.
    set_mtimes(&data, SystemTime::now() - Duration::from_secs(86_400));
    fs::write(
        dir.path().join("pipeline.yaml"),
        "stages:\n  consume:\n    run: \"ls data | wc -l > $PIPELINE_OUT/count\"\n    deps: [data]\n",
    )
    .unwrap();
    let gb = total as f64 / 1e9;
    println!("{count} files, {gb:.2} GB");

    let baseline = time(|| plain_blake3(&data));
    let first = time(|| run(dir.path(), "first run"));
    let second = time(|| run(dir.path(), "nothing changed"));
    // `touch` to an hour ago: a new mtime, same contents (and outside the racy window).
    set_mtimes(&data, SystemTime::now() - Duration::from_secs(3600));
    let touched = time(|| run(dir.path(), "after touch"));
    let third = time(|| run(dir.path(), "nothing changed again"));

    println!("| measurement | seconds | throughput | ratio |");
    println!("|---|---|---|---|");
    println!("| plain blake3 read of every file (baseline) | {baseline:.2} | {:.2} GB/s | 1.00 |", gb / baseline);
    println!(
        "| first `pipeline run` (hash everything) | {first:.2} | {:.2} GB/s | {:.2}x baseline throughput |",
        gb / first,
        baseline / first
    );
    println!("| second `pipeline run`, nothing changed | {second:.3} | | |");
    println!(
        "| `pipeline run` after touching every file | {touched:.2} | {:.2} GB/s | {:.2}x baseline throughput |",
        gb / touched,
        baseline / touched
    );
    println!("| third `pipeline run`, nothing changed | {third:.3} | | |");
}

fn set_mtimes(dir: &Path, when: SystemTime) {
    for entry in fs::read_dir(dir).unwrap() {
        fs::File::options().write(true).open(entry.unwrap().path()).unwrap().set_modified(when).unwrap();
    }
}

fn run(dir: &Path, what: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline")).args(["run", "-q"]).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
}

fn time(f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64()
}

fn make_files(dir: &Path, count: usize) -> u64 {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut block = vec![0u8; 1 << 20];
    let mut total = 0;
    for i in 0..count {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let megabytes = 1 + (state % 5) as usize;
        let mut bytes = Vec::with_capacity(megabytes << 20);
        for m in 0..megabytes {
            block[0] = m as u8;
            bytes.extend_from_slice(&block);
        }
        total += bytes.len() as u64;
        fs::write(dir.join(format!("clip-{i:05}.bin")), bytes).unwrap();
    }
    total
}

/// Read and hash each file, one after another, with a 1 MiB buffer.
fn plain_blake3(dir: &Path) {
    let mut buf = vec![0u8; 1 << 20];
    for entry in fs::read_dir(dir).unwrap() {
        let mut file = fs::File::open(entry.unwrap().path()).unwrap();
        let mut hasher = blake3::Hasher::new();
        loop {
            let n = file.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        std::hint::black_box(hasher.finalize());
    }
}
