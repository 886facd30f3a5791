//! The `synth` stage end to end: RAVDESS layout, byte-identical regeneration, faces the real detector
//! finds, and expressions that differ between emotions.

use std::path::{Path, PathBuf};
use std::process::Command;

use stage_api::{NoProgress, Params, SameStore, Stage, StageContext};
use stages_video::ravdess::RavdessName;
use stages_video::synth::face::ClipPlan;
use stages_video::synth::render::Renderer;
use stages_video::synth::SynthStage;

/// The SeetaFace model the extract stage embeds.
const MODEL: &[u8] = include_bytes!("../src/extract/model/seeta_fd_frontal_v1.0.bin");

fn run_synth(out: &Path, json: &str) -> String {
    let raw: Params = serde_json::from_str(json).unwrap();
    let params = SynthStage.resolve_params(&raw).unwrap();
    let ctx = StageContext {
        params: &params,
        inputs: &[],
        out_dir: out,
        base_dir: out,
        progress: &NoProgress,
        threads: 2,
        artifacts: &SameStore,
        resume_dir: None,
    };
    SynthStage.run(&ctx).unwrap().summary
}

fn mp4s(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(mp4s(&p));
        } else if p.extension().is_some_and(|e| e == "mp4") {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn writes_a_ravdess_tree_of_h264_clips_and_regenerates_it_byte_for_byte() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let json = r#"{"actors": 2, "emotions": ["happy"], "intensities": [2], "duration_s": 0.5, "audio_video_copies": true}"#;
    let summary = run_synth(a.path(), json);
    assert!(summary.starts_with("2 synthetic clips (4 files)"), "{summary}");
    run_synth(b.path(), json);
    let names: Vec<String> = mp4s(a.path()).iter().map(|p| p.strip_prefix(a.path()).unwrap().display().to_string()).collect();
    assert_eq!(
        names,
        [
            "Actor_01/01-01-03-02-01-01-01.mp4",
            "Actor_01/02-01-03-02-01-01-01.mp4",
            "Actor_02/01-01-03-02-01-01-02.mp4",
            "Actor_02/02-01-03-02-01-01-02.mp4"
        ]
    );
    for name in &names {
        let (x, y) = (std::fs::read(a.path().join(name)).unwrap(), std::fs::read(b.path().join(name)).unwrap());
        assert!(x.len() > 1000);
        assert!(x == y, "{name} differs between two generations");
    }
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_name,width,height,r_frame_rate,nb_frames,pix_fmt"])
        .args(["-of", "default=nw=1"])
        .arg(a.path().join(&names[1]))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&probe.stdout);
    for want in ["codec_name=h264", "width=1280", "height=720", "pix_fmt=yuv420p", "r_frame_rate=30/1", "nb_frames=15"] {
        assert!(text.contains(want), "{want} not in {text}");
    }
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(a.path().join("synth.json")).unwrap()).unwrap();
    assert_eq!(meta["clips"], 2);
    assert_eq!(meta["files"], 4);
    assert_eq!(meta["params"]["emotions"], serde_json::json!(["happy"]));
    // Every output file, synth.json included, is the same bytes on every run (keys downstream).
    let (x, y) = (std::fs::read(a.path().join("synth.json")).unwrap(), std::fs::read(b.path().join("synth.json")).unwrap());
    assert!(x == y, "synth.json differs between two generations");
}

#[test]
fn rustface_finds_the_face_in_at_least_90_percent_of_320x180_frames() {
    let dir = tempfile::tempdir().unwrap();
    // Three actors (different skin, size, position), every emotion at strong intensity, plus neutral.
    run_synth(dir.path(), r#"{"actors": 3, "intensities": [2], "duration_s": 0.5}"#);
    run_synth(dir.path(), r#"{"actors": 3, "emotions": ["neutral"], "intensities": [1], "duration_s": 0.5}"#);
    let mut detector = rustface::create_detector_with_model(rustface::read_model(MODEL).unwrap());
    detector.set_min_face_size(20);
    detector.set_score_thresh(2.0);
    detector.set_pyramid_scale_factor(0.8);
    detector.set_slide_window_step(4, 4);
    let (mut found, mut total, mut misplaced) = (0, 0, 0);
    for clip in mp4s(dir.path()) {
        let name = RavdessName::parse_file_name(&clip.file_name().unwrap().to_string_lossy()).unwrap();
        let look = ClipPlan::new(0, &name, 1280, 720, 0.5).look;
        let grey = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&clip)
            .args(["-vf", "scale=320:180", "-pix_fmt", "gray", "-f", "rawvideo", "-"])
            .output()
            .unwrap();
        assert!(grey.status.success());
        for frame in grey.stdout.chunks_exact(320 * 180).step_by(2) {
            total += 1;
            let faces = detector.detect(&rustface::ImageData::new(frame, 320, 180));
            let Some(best) = faces.iter().max_by(|a, b| a.score().total_cmp(&b.score())) else { continue };
            found += 1;
            // The box must sit on the rendered face (centre within half a face width of it).
            let b = best.bbox();
            let cx = (b.x() as f32 + b.width() as f32 / 2.0) * 4.0;
            let cy = (b.y() as f32 + b.height() as f32 / 2.0) * 4.0;
            if (cx - look.cx).abs() > look.unit * 0.5 || (cy - look.cy).abs() > look.unit * 0.6 {
                misplaced += 1;
            }
        }
    }
    let rate = found as f64 / total as f64;
    println!("detection rate {found}/{total} = {rate:.3}, misplaced {misplaced}");
    assert_eq!(total, 3 * 8 * 8, "frames looked at");
    assert!(rate >= 0.9, "detection rate {rate:.3} below 90 %");
    assert_eq!(misplaced, 0);
}

/// Mean RGB patch of the face (eyes, brows, nose, mouth), following the head, over frames `from..to`
/// (every 5th) of a clip rendered without encoding.
fn mean_face(stem: &str, from: usize, to: usize) -> Vec<f32> {
    let name = RavdessName::parse_stem(stem).unwrap();
    let plan = ClipPlan::new(0, &name, 1280, 720, 3.0);
    let (cx, cy, u) = (plan.look.cx, plan.look.cy, plan.look.unit);
    let mut r = Renderer::new(plan.clone(), 1280, 720, 30.0);
    let (w, h) = ((1.6 * u) as usize, (1.55 * u) as usize);
    let mut sum = vec![0f32; w * h * 3];
    let mut n = 0.0;
    for i in (from..to).step_by(5) {
        let pose = plan.pose(i as f32 / 30.0);
        let x0 = (cx + pose.dx.round() - 0.8 * u) as usize;
        let y0 = (cy + pose.dy.round() - 0.6 * u) as usize;
        let frame = r.render(i);
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    sum[(y * w + x) * 3 + c] += f32::from(frame[((y0 + y) * 1280 + x0 + x) * 3 + c]);
                }
            }
        }
        n += 1.0;
    }
    sum.iter_mut().for_each(|s| *s /= n);
    sum
}

/// Mean absolute difference of two face patches.
fn face_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
}

#[test]
fn expressions_differ_more_between_emotions_than_between_repetitions() {
    // Actor 5, strong intensity, the second half of the clip (expression fully developed).
    let stems: Vec<String> = (1..=8).map(|e| format!("02-01-{e:02}-{:02}-01-01-05", if e == 1 { 1 } else { 2 })).collect();
    let means: Vec<_> = stems.iter().map(|s| mean_face(s, 45, 90)).collect();
    let mut within = 0f32;
    for (e, stem) in stems.iter().enumerate() {
        let other = mean_face(&stem.replace("-01-01-05", "-02-02-05"), 45, 90);
        let d = face_difference(&means[e], &other);
        println!("emotion {} statement 1 vs 2: {d:.2}", e + 1);
        within = within.max(d);
    }
    let mut closest = f32::MAX;
    for i in 0..8 {
        for j in i + 1..8 {
            let d = face_difference(&means[i], &means[j]);
            closest = closest.min(d);
            println!("emotions {} vs {}: {d:.2}", i + 1, j + 1);
        }
    }
    println!("largest same-emotion difference {within:.2}, smallest between-emotion difference {closest:.2}");
    assert!(closest > 1.0, "two emotions look alike: {closest:.2}");
    assert!(closest > 1.2 * within, "between {closest:.2} vs within {within:.2}");
}
