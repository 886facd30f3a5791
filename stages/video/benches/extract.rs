//! Benchmark of the `extract` stage (run in release: `cargo bench -p stages-video --bench extract`).
//!
//! Input: the real RAVDESS test clip padded back to 1280x720 on white (the data README's
//! command), used as N differently named clips. Measures, in one run on the same clip:
//! 1. CPU time (user + sys of this process and its waited children, getrusage) per clip of
//!    `extract` on 1 thread vs `ffmpeg -i CLIP -f null -` (the decode floor);
//! 2. wall-clock throughput with 2 threads vs 1;
//! 3. peak RSS of a fresh process extracting N vs 4N clips;
//! 4. the study's way: ffmpeg writes every frame as JPEG once, then every epoch opens T
//!    JPEGs per clip and resizes them (here: `image` decode + resize), against our one-time
//!    extract and our per-epoch read of the tensor from its shard.
//!
//! Environment: BENCH_CLIPS (default 8) clips for the timing runs; BENCH_PARAMS extract parameters
//! as JSON (default: the stage's defaults).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use stage_api::{NoProgress, Params, SameStore, Stage, StageContext, StageInput};
use stage_formats::tensor_cache::read_index;
use stages_video::extract::sampling::sample_indices;
use stages_video::extract::testing::{write_clips_table, ClipRecord};
use stages_video::extract::ExtractStage;

/// (user + sys) seconds of this process and of its waited-for children.
fn cpu_seconds() -> (f64, f64) {
    fn secs(who: i32) -> f64 {
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(u.ru_utime) + tv(u.ru_stime)
    }
    (secs(libc::RUSAGE_SELF), secs(libc::RUSAGE_CHILDREN))
}

fn cpu_total() -> f64 {
    let (a, b) = cpu_seconds();
    a + b
}

fn max_rss_kib() -> i64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    u.ru_maxrss
}

fn ffmpeg(args: &[&str]) {
    let st = Command::new("ffmpeg").args(["-hide_banner", "-loglevel", "error", "-y"]).args(args).status().unwrap();
    assert!(st.success(), "ffmpeg {args:?}");
}

fn real(name: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/real")).join(name)
}

fn clips(src: &Path, n: usize) -> Vec<ClipRecord> {
    (0..n)
        .map(|k| ClipRecord {
            clip_id: format!("01-01-{:02}-01-01-{:02}", k % 8 + 1, k / 8 + 1),
            source: src.to_string_lossy().into_owned(),
            modality: 1,
            vocal_channel: 1,
            emotion: "neutral".into(),
            label: (k % 8) as i32,
            intensity: 1,
            statement: 1,
            repetition: 1,
            actor: (k / 8 + 1) as i32,
            width: 1280,
            height: 720,
            fps: 29.97,
            frame_count: 122,
            duration_s: 4.07,
        })
        .collect()
}

/// Runs the stage on `clips` with `threads`; returns the output folder (inside `tmp`).
fn extract(tmp: &Path, clips: &[ClipRecord], threads: usize) -> PathBuf {
    let scan = tmp.join(format!("scan-{threads}-{}", clips.len()));
    let out = tmp.join(format!("out-{threads}-{}", clips.len()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&scan).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    write_clips_table(&scan.join("clips.parquet"), clips).unwrap();
    let stage = ExtractStage::new();
    // BENCH_PARAMS: extract parameters as JSON (e.g. '{"detect_frames": 2}'), defaults otherwise.
    let raw: Params =
        std::env::var("BENCH_PARAMS").ok().map(|j| serde_json::from_str(&j).expect("BENCH_PARAMS: a JSON object")).unwrap_or_default();
    let params = stage.resolve_params(&raw).unwrap();
    let inputs = [StageInput { kind: Some("scan".into()), ..StageInput::new("scan", scan) }];
    let ctx = StageContext {
        params: &params,
        inputs: &inputs,
        out_dir: &out,
        base_dir: tmp,
        progress: &NoProgress,
        threads,
        artifacts: &SameStore,
        resume_dir: None,
    };
    stage.run(&ctx).unwrap();
    out
}

fn main() {
    // `cargo bench` passes `--bench`; the RSS child mode is chosen by environment.
    let tmp = tempfile::tempdir().unwrap();
    let padded = std::env::var_os("BENCH_INPUT").map(PathBuf::from).unwrap_or_else(|| {
        let p = tmp.path().join("ravdess_1280x720.mp4");
        let src = real("01-01-08-02-01-01-19.mp4");
        ffmpeg(&[
            "-i",
            src.to_str().unwrap(),
            "-vf",
            "pad=1280:720:280:0:white",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            p.to_str().unwrap(),
        ]);
        p
    });
    if let Some(n) = std::env::var_os("BENCH_RSS_CHILD") {
        let n: usize = n.to_str().unwrap().parse().unwrap();
        extract(tmp.path(), &clips(&padded, n), 2);
        println!("{}", max_rss_kib());
        return;
    }
    let n: usize = std::env::var("BENCH_CLIPS").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let input = padded.to_str().unwrap().to_owned();
    println!("input: {input} (1280x720, 122 frames, H.264), {n} clips, T=10, S=112");

    // 1. Decode floor vs extract, CPU per clip.
    let floor = |extra: &[&str]| {
        let before = cpu_total();
        for _ in 0..n {
            let mut args: Vec<&str> = extra.to_vec();
            args.extend(["-i", &input, "-f", "null", "-"]);
            ffmpeg(&args);
        }
        (cpu_total() - before) / n as f64
    };
    let floor_default = floor(&[]);
    let floor_1t = floor(&["-threads", "1"]);
    let before = cpu_total();
    extract(tmp.path(), &clips(&padded, n), 1);
    let ours = (cpu_total() - before) / n as f64;
    println!("cpu/clip: ffmpeg -i CLIP -f null - = {floor_default:.3}s, with -threads 1 = {floor_1t:.3}s, extract (1 thread) = {ours:.3}s");
    println!("ratio extract / decode floor = {:.2} (vs -threads 1 floor: {:.2})", ours / floor_default, ours / floor_1t);

    // 2. Throughput 2 threads vs 1.
    let wall = |threads: usize| {
        let t0 = Instant::now();
        extract(tmp.path(), &clips(&padded, n), threads);
        t0.elapsed().as_secs_f64()
    };
    let (w1, w2) = (wall(1), wall(2));
    println!(
        "wall for {n} clips: 1 thread {w1:.2}s ({:.2} clips/s), 2 threads {w2:.2}s ({:.2} clips/s), speed-up {:.2}x",
        n as f64 / w1,
        n as f64 / w2,
        w1 / w2
    );

    // 3. Peak RSS, fresh process per size.
    let rss = |k: usize| -> i64 {
        let exe = std::env::current_exe().unwrap();
        let out = Command::new(exe).env("BENCH_RSS_CHILD", k.to_string()).env("BENCH_INPUT", &padded).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let (r1, r4) = (rss(n), rss(4 * n));
    println!("peak RSS (2 threads): {n} clips {} MiB, {} clips {} MiB, ratio {:.2}", r1 / 1024, 4 * n, r4 / 1024, r4 as f64 / r1 as f64);

    // 4. The study's way: all frames to JPEG once, then T JPEG decodes + resizes per clip per epoch.
    let jpg_dir = tmp.path().join("jpg");
    let before = cpu_total();
    for k in 0..n {
        let d = jpg_dir.join(k.to_string());
        std::fs::create_dir_all(&d).unwrap();
        ffmpeg(&["-i", &input, "-q:v", "2", d.join("%05d.jpg").to_str().unwrap()]);
    }
    let study_once = (cpu_total() - before) / n as f64;
    let before = cpu_total();
    let mut checksum = 0u64;
    for k in 0..n {
        let d = jpg_dir.join(k.to_string());
        let count = std::fs::read_dir(&d).unwrap().count() as u64;
        for idx in sample_indices(count, 10) {
            let img = image::open(d.join(format!("{:05}.jpg", idx + 1))).unwrap();
            let small = img.resize_exact(112, 112, image::imageops::FilterType::Triangle);
            checksum += u64::from(small.to_rgb8().as_raw()[0]);
        }
    }
    let study_epoch = (cpu_total() - before) / n as f64;
    let out = extract(tmp.path(), &clips(&padded, n), 1);
    let before = cpu_total();
    let rows = read_index(&out.join("index.parquet")).unwrap();
    for row in &rows {
        let bytes = std::fs::read(out.join("shards").join(&row.shard)).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        checksum += u64::from(st.tensor(&row.tensor).unwrap().data()[0]);
    }
    let ours_epoch = (cpu_total() - before) / n as f64;
    println!("study: JPEG extraction {study_once:.3} CPU-s/clip once, {:.1} ms/clip/epoch (T JPEG decodes + resizes)", study_epoch * 1e3);
    println!("ours:  extract {ours:.3} CPU-s/clip once, {:.2} ms/clip/epoch (whole-shard read per clip, worst case)", ours_epoch * 1e3);
    println!(
        "ratios: one-time study/ours = {:.2}x, per-epoch study/ours = {:.0}x (checksum {checksum})",
        study_once / ours,
        study_epoch / ours_epoch.max(1e-9)
    );
}
