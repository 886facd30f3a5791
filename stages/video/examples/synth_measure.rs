//! Generates a synthetic RAVDESS set with the `synth` stage and measures rustface detection on it.
//!
//! `cargo run --release -p stages-video --example synth_measure -- OUT_DIR [THREADS] [PARAMS_JSON]`
//! prints generation time, then decodes every clip at 320x180 grey with ffmpeg and runs the SeetaFace
//! detector (the extract stage's settings) on every frame, printing the detection rate per emotion.
//! Wrap it in `/usr/bin/time` for CPU seconds (ffmpeg children included).

use std::path::PathBuf;
use std::process::Command;

use stage_api::{NoProgress, Params, SameStore, Stage, StageContext};
use stages_video::ravdess::{RavdessName, EMOTIONS};
use stages_video::synth::SynthStage;

fn main() {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "/tmp/synth_measure".into()));
    let threads: usize = args.next().map(|t| t.parse().expect("THREADS")).unwrap_or(2);
    let raw: Params = serde_json::from_str(&args.next().unwrap_or_else(|| "{}".into())).expect("PARAMS_JSON");
    if out.exists() {
        std::fs::remove_dir_all(&out).expect("clearing OUT_DIR");
    }
    std::fs::create_dir_all(&out).expect("creating OUT_DIR");
    let params = SynthStage.resolve_params(&raw).expect("params");
    let ctx = StageContext {
        params: &params,
        inputs: &[],
        out_dir: &out,
        base_dir: &out,
        progress: &NoProgress,
        threads,
        artifacts: &SameStore,
        resume_dir: None,
    };
    let t0 = std::time::Instant::now();
    let outcome = SynthStage.run(&ctx).expect("synth");
    let gen_s = t0.elapsed().as_secs_f64();
    println!("{} ({gen_s:.2} s wall on {threads} threads)", outcome.summary);
    if std::env::var_os("SKIP_DETECT").is_some() {
        return;
    }
    let model = rustface::read_model(&include_bytes!("../src/extract/model/seeta_fd_frontal_v1.0.bin")[..]).expect("model");
    let mut det = rustface::create_detector_with_model(model);
    det.set_min_face_size(20);
    det.set_score_thresh(2.0);
    det.set_pyramid_scale_factor(0.8);
    det.set_slide_window_step(4, 4);
    let mut per_emotion = [(0usize, 0usize); 8];
    let mut clips: Vec<PathBuf> = walk(&out);
    clips.sort();
    for clip in clips {
        let name = RavdessName::parse_file_name(&clip.file_name().unwrap().to_string_lossy()).expect("name");
        let grey = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&clip)
            .args(["-vf", "scale=320:180", "-pix_fmt", "gray", "-f", "rawvideo", "-"])
            .output()
            .expect("ffmpeg");
        for frame in grey.stdout.chunks_exact(320 * 180) {
            let found = !det.detect(&rustface::ImageData::new(frame, 320, 180)).is_empty();
            let e = &mut per_emotion[usize::from(name.label())];
            e.0 += usize::from(found);
            e.1 += 1;
        }
    }
    let (f, t) = per_emotion.iter().fold((0, 0), |a, e| (a.0 + e.0, a.1 + e.1));
    for (i, (found, total)) in per_emotion.iter().enumerate() {
        if *total > 0 {
            println!("{:>10}: {found}/{total} = {:.1} %", EMOTIONS[i], 100.0 * *found as f64 / *total as f64);
        }
    }
    println!("all frames: {f}/{t} = {:.1} %", 100.0 * f as f64 / t.max(1) as f64);
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|e| e == "mp4") {
            out.push(p);
        }
    }
    out
}
