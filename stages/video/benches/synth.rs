//! Benchmark of one `synth` clip (run in release: `cargo bench -p stages-video --bench synth`).
//!
//! For clips of the default look (1280x720, 30 fps) of several actors and emotions, measures on one
//! thread:
//! 1. render only: `Renderer::render_window` (what the stage pipes) for every frame, nothing written;
//! 2. render + encode: `write_clip` as the stage does it (frames piped into ffmpeg/x264), CPU time of
//!    this process plus its waited-for ffmpeg children (getrusage), and the file size.
//!
//! Encode's share is (2) - (1). Environment: BENCH_DURATION (seconds per clip, default 3.0),
//! BENCH_CLIPS (default 6), BENCH_RAW (a path: also writes the first clip's raw yuv420p frames there,
//! to time ffmpeg settings by hand; not timed).

use std::io::Write;
use std::time::Instant;

use stage_api::{Params, Stage};
use stages_video::ravdess::RavdessName;
use stages_video::synth::face::ClipPlan;
use stages_video::synth::render::Renderer;
use stages_video::synth::{write_clip, SynthParams, SynthStage};

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

fn main() {
    let duration: f64 = std::env::var("BENCH_DURATION").ok().and_then(|v| v.parse().ok()).unwrap_or(3.0);
    let n: usize = std::env::var("BENCH_CLIPS").ok().and_then(|v| v.parse().ok()).unwrap_or(6);
    let raw: Params = serde_json::from_value(serde_json::json!({"actors": 12, "statements": 2, "duration_s": duration})).unwrap();
    let resolved = SynthStage.resolve_params(&raw).unwrap();
    let params: SynthParams = serde_json::from_value(serde_json::Value::Object(resolved)).unwrap();
    let all = params.clips();
    // Spread over actors and emotions.
    let clips: Vec<RavdessName> = (0..n).map(|i| all[(i * 61 + 7) % all.len()]).collect();
    let (w, h, fps) = (params.width as usize, params.height as usize, params.fps);
    let frames = params.frames();
    let ffmpeg = stages_video::tools::ffmpeg().expect("ffmpeg");
    let dir = tempfile::tempdir().unwrap();

    // 1. Render only.
    let (c0, _) = cpu_seconds();
    let t0 = Instant::now();
    let mut checksum = 0u64;
    for name in &clips {
        let plan = ClipPlan::new(params.seed, name, w, h, duration as f32);
        let mut r = Renderer::new(plan, w, h, fps as f32);
        for i in 0..frames {
            let f = r.render_window(i);
            checksum = checksum.wrapping_add(u64::from(f[(i * 7919) % f.len()]));
        }
    }
    let render_cpu = cpu_seconds().0 - c0;
    let render_wall = t0.elapsed().as_secs_f64();
    if let Some(p) = std::env::var_os("BENCH_RAW") {
        let mut o = std::io::BufWriter::new(std::fs::File::create(p).unwrap());
        let mut r = Renderer::new(ClipPlan::new(params.seed, &clips[0], w, h, duration as f32), w, h, fps as f32);
        (0..frames).for_each(|i| o.write_all(r.render_yuv(i)).unwrap());
    }

    // 2. Render + encode, as the stage does.
    let (s0, k0) = cpu_seconds();
    let t0 = Instant::now();
    for name in &clips {
        write_clip(&ffmpeg, &params, name, dir.path()).unwrap();
    }
    let wall = t0.elapsed().as_secs_f64();
    let (s1, k1) = cpu_seconds();
    let (self_cpu, child_cpu) = (s1 - s0, k1 - k0);
    let bytes: u64 = clips.iter().map(|c| std::fs::metadata(dir.path().join(c.actor_dir()).join(c.file_name())).unwrap().len()).sum();

    let per = |x: f64| x / n as f64;
    let total = self_cpu + child_cpu;
    println!("synth bench: {n} clips of {duration} s ({frames} frames, {w}x{h}), checksum {checksum}");
    println!("  render only       : {:.3} CPU-s/clip ({:.3} s wall)", per(render_cpu), per(render_wall));
    println!(
        "  render + encode   : {:.3} CPU-s/clip ({:.3} s wall): this process {:.3} (render + pipe), ffmpeg {:.3}",
        per(total),
        per(wall),
        per(self_cpu),
        per(child_cpu)
    );
    println!(
        "  shares            : render {:.0} %, pipe {:.0} %, ffmpeg (x264 + mux) {:.0} %",
        100.0 * render_cpu / total,
        100.0 * (self_cpu - render_cpu).max(0.0) / total,
        100.0 * child_cpu / total
    );
    println!("  file size         : {:.0} kB/clip", per(bytes as f64) / 1000.0);
}
