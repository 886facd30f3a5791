//! Integration tests of the `extract` stage on real footage and on bad input.

mod extract_support;

use std::path::Path;

use extract_support::*;
use safetensors::SafeTensors;
use stage_formats::tensor_cache::{read_index, IndexRow};
use stages_video::extract::decode::Decoder;
use stages_video::extract::ExtractStage;

/// The clip tensor `name` of `row`'s shard.
fn tensor(out: &Path, row: &IndexRow) -> (Vec<usize>, Vec<u8>) {
    let bytes = std::fs::read(out.join("shards").join(&row.shard)).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(&row.tensor).unwrap();
    assert_eq!(t.dtype(), safetensors::Dtype::U8);
    (t.shape().to_vec(), t.data().to_vec())
}

fn save_frames(dir: &Path, name: &str, shape: &[usize], data: &[u8]) {
    let (t, s) = (shape[0], shape[1] as u32);
    let strip = image::RgbImage::from_fn(s * t as u32, s, |x, y| {
        let (f, x) = ((x / s) as usize, x % s);
        let o = f * (s * s * 3) as usize + ((y * s + x) * 3) as usize;
        image::Rgb([data[o], data[o + 1], data[o + 2]])
    });
    strip.save(dir.join(format!("{name}.png"))).unwrap();
}

fn json(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("extract.json")).unwrap()).unwrap()
}

#[test]
fn real_faces_are_found_and_crops_are_centred_on_them() {
    let tmp = tempfile::tempdir().unwrap();
    // (clip, source, frame size, README face centre)
    let cases = [
        ("01-01-08-02-01-01-19", real("01-01-08-02-01-01-19.mp4"), 122, (720.0, 720.0), (350.0, 360.0)),
        ("01-02-08-02-01-01-19", padded_ravdess(tmp.path()), 122, (1280.0, 720.0), (630.0, 360.0)),
        ("01-03-01-01-01-01-02", real("talking_1280x720.mp4"), 282, (1280.0, 720.0), (765.0, 270.0)),
        ("01-04-03-01-01-01-03", real("closeup_512.mp4"), 354, (512.0, 512.0), (285.0, 280.0)),
    ];
    let clips: Vec<_> = cases.iter().enumerate().map(|(k, c)| record(c.0, &c.1, 19 + k as i32, 7, c.2)).collect();
    let run = run(&clips, serde_json::json!({}), 2);
    let outcome = run.result.as_ref().unwrap();
    eprintln!("{}", outcome.summary);
    let rows = read_index(&run.out.join("index.parquet")).unwrap();
    assert_eq!(rows.len(), 4);
    for (row, case) in rows.iter().zip(&cases) {
        let (fw, fh) = case.3;
        let (ex, ey) = case.4;
        let (cx, cy) = (row.crop_x as f32 + row.crop_side as f32 / 2.0, row.crop_y as f32 + row.crop_side as f32 / 2.0);
        eprintln!(
            "{}: box ({:.0},{:.0},{:.0},{:.0}) score {:.2} found {}/{} crop centre ({cx:.0},{cy:.0}) side {}",
            row.clip_id, row.box_x, row.box_y, row.box_w, row.box_h, row.detect_score, row.face_found_frames, row.frames, row.crop_side
        );
        assert_eq!((row.source_width as f32, row.source_height as f32), (fw, fh));
        assert!(!row.fallback, "{}: no face found", row.clip_id);
        assert_eq!(row.face_checked_frames, 2, "{}: the detector looks at detect_frames (2) frames", row.clip_id);
        assert_eq!(row.face_found_frames, 2, "{}: face in only {} of 2 frames", row.clip_id, row.face_found_frames);
        assert!(
            (cx - ex).abs() <= 0.15 * fw && (cy - ey).abs() <= 0.15 * fh,
            "{}: crop centre ({cx},{cy}) far from the face at ({ex},{ey})",
            row.clip_id
        );
        assert!(row.box_w > 0.05 * fw && row.box_w < 0.9 * fw, "{}: implausible face width {}", row.clip_id, row.box_w);
        assert_eq!(row.decode_passes, 1, "{}: the container's frame count was right", row.clip_id);
        let (shape, data) = tensor(&run.out, row);
        assert_eq!(shape, vec![10, 112, 112, 3]);
        if let Some(dir) = crops_dir() {
            std::fs::create_dir_all(&dir).unwrap();
            save_frames(&dir, &row.clip_id, &shape, &data);
        }
    }
    // The padded RAVDESS clip is the same face 280 px to the right.
    assert!((rows[1].box_x - rows[0].box_x - 280.0).abs() < 20.0, "{} vs {}", rows[1].box_x, rows[0].box_x);
    let report = json(&run.out);
    assert_eq!(report["detection"]["clip_detection_rate"], 1.0);
    assert!(run.out.join("qa/contact_sheet.png").exists());
    if let Some(dir) = crops_dir() {
        std::fs::copy(run.out.join("qa/contact_sheet.png"), dir.join("contact_sheet.png")).unwrap();
    }
    let csv = std::fs::read_to_string(run.out.join("qa/detection.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);

    // Detection on every frame finds the face in most of them and crops (nearly) the same square.
    let all = self::run(&clips, serde_json::json!({"detect_frames": 0}), 2);
    let all_rows = read_index(&all.out.join("index.parquet")).unwrap();
    for (row, two) in all_rows.iter().zip(&rows) {
        assert_eq!(row.face_checked_frames, 10);
        assert!(row.face_found_frames >= 7, "{}: face in only {} of 10 frames", row.clip_id, row.face_found_frames);
        let shift = (row.crop_x - two.crop_x).abs().max((row.crop_y - two.crop_y).abs());
        // 8 %: the talking close-up moves its head, so the 2-frame median is a little off.
        assert!(shift as f32 <= 0.08 * two.crop_side as f32, "{}: 2-frame crop is {shift} px off the 10-frame crop", row.clip_id);
        assert!((row.crop_side - two.crop_side).abs() as f32 <= 0.05 * two.crop_side as f32, "{}", row.clip_id);
    }
}

#[test]
fn bad_inputs_become_rejects_naming_file_and_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let good = real("01-01-08-02-01-01-19.mp4");
    let zero = dir.join("zero.mp4");
    std::fs::write(&zero, b"").unwrap();
    let text = dir.join("text.mp4");
    std::fs::write(&text, b"this is not a video\n").unwrap();
    let truncated = dir.join("truncated.mp4");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let missing = dir.join("missing.mp4");
    let noface = testsrc(dir, "noface.mp4", 320, 240, 30);
    let tiny = testsrc(dir, "tiny_portrait.mp4", 90, 160, 30);
    let short = dir.join("short.mp4");
    let src = good.to_str().unwrap();
    ffmpeg(&["-i", src, "-frames:v", "4", "-c:v", "libx264", "-pix_fmt", "yuv420p", short.to_str().unwrap()]);
    let clips = vec![
        record("01-01-01-01-01-01", &good, 1, 0, 122),
        record("01-01-01-01-01-02", &zero, 2, 0, 0),
        record("01-01-01-01-01-03", &text, 3, 0, 0),
        record("01-01-01-01-01-04", &truncated, 4, 0, 122),
        record("01-01-01-01-01-05", &missing, 5, 0, 90),
        record("01-01-01-01-01-06", &noface, 6, 0, 30),
        record("01-01-01-01-01-07", &tiny, 7, 0, 30),
        record("01-01-01-01-01-08", &short, 8, 0, 4),
    ];
    let run = run(&clips, serde_json::json!({"frames": 10}), 2);
    let outcome = run.result.as_ref().unwrap();
    eprintln!("{}", outcome.summary);
    let report = json(&run.out);
    let rejects = report["rejects"].as_array().unwrap();
    for r in rejects {
        eprintln!("reject: {}", r["reason"]);
    }
    let reason = |id: &str| -> String {
        rejects.iter().find(|r| r["clip_id"] == id).map(|r| r["reason"].as_str().unwrap().to_owned()).unwrap_or_default()
    };
    assert!(reason("01-01-01-01-01-02").contains("zero.mp4") && reason("01-01-01-01-01-02").contains("empty"));
    assert!(reason("01-01-01-01-01-03").contains("text.mp4") && reason("01-01-01-01-01-03").contains("Invalid data"));
    assert!(reason("01-01-01-01-01-05").contains("missing.mp4") && reason("01-01-01-01-01-05").contains("cannot read"));
    let rows = read_index(&run.out.join("index.parquet")).unwrap();
    let row = |id: &str| rows.iter().find(|r| r.clip_id == id);
    // The truncated file lost its index (moov atom at the end): a reject naming the file.
    match row("01-01-01-01-01-04") {
        None => assert!(reason("01-01-01-01-01-04").contains("truncated.mp4"), "{}", reason("01-01-01-01-01-04")),
        Some(r) => assert!(r.decoded_frames < 122),
    }
    assert!(!row("01-01-01-01-01-01").unwrap().fallback);
    let noface = row("01-01-01-01-01-06").unwrap();
    assert!(noface.fallback && noface.box_x.is_nan() && noface.face_found_frames == 0);
    assert_eq!(noface.face_checked_frames, noface.frames, "no face in the first 3 frames: every frame is tried");
    assert_eq!((noface.crop_x, noface.crop_y, noface.crop_side), (40, 0, 240), "centre square of the shorter side");
    let tiny = row("01-01-01-01-01-07").unwrap();
    assert_eq!((tiny.source_width, tiny.source_height), (90, 160));
    assert!(tiny.fallback);
    assert_eq!((tiny.crop_x, tiny.crop_y, tiny.crop_side), (0, 35, 90));
    let short = row("01-01-01-01-01-08").unwrap();
    assert!(short.padded && short.decoded_frames == 4);
    let (shape, data) = tensor(&run.out, short);
    assert_eq!(shape, vec![10, 112, 112, 3]);
    // Decoded frames 0,0,1,1,1,2,2,3,3,3 by the sampling rule (N = 4, T = 10).
    let f = |i: usize| &data[i * 112 * 112 * 3..(i + 1) * 112 * 112 * 3];
    assert!(f(0) == f(1) && f(2) == f(4) && f(7) == f(9), "repeated frames are identical");
    assert!(f(1) != f(2) && f(6) != f(7), "distinct frames differ");
    assert_eq!(report["extracted"], rows.len());
    assert_eq!(report["rejected"].as_u64().unwrap() as usize + rows.len(), clips.len());

    // strict: the first reject fails the stage, naming it.
    let strict = extract_support::run(&clips, serde_json::json!({"strict": true}), 2);
    let e = strict.result.unwrap_err().chain();
    assert!(e.contains("strict") && e.contains(".mp4"), "{e}");

    // Nothing extractable: an error naming the problem.
    let bad = extract_support::run(&clips[1..3], serde_json::json!({}), 1);
    let e = bad.result.unwrap_err().chain();
    assert!(e.contains("none of the 2 clips") && e.contains("zero.mp4"), "{e}");
}

#[test]
fn missing_ffmpeg_is_one_clear_error() {
    let clips = vec![record("01-01-01-01-01-01", &real("closeup_512.mp4"), 1, 0, 354)];
    let stage = ExtractStage::with_decoder(Decoder::with_program("/nonexistent/ffmpeg"));
    let run = run_with(&stage, &clips, serde_json::json!({}), 1);
    let e = run.result.unwrap_err().chain();
    assert!(e.contains("ffmpeg was not found") && e.contains("closeup_512.mp4"), "{e}");
}

#[test]
fn output_is_byte_identical_across_thread_counts_and_frame_count_hints() {
    let tmp = tempfile::tempdir().unwrap();
    let short = testsrc(tmp.path(), "short.mp4", 160, 120, 3);
    let clips = vec![
        record("01-01-03-01-01-02", &real("closeup_512.mp4"), 2, 2, 354),
        record("01-01-08-02-01-01", &real("01-01-08-02-01-01-19.mp4"), 1, 7, 122),
        record("01-01-01-01-01-03", &short, 3, 0, 3),
    ];
    // shard_mb 1 with 6x112x112x3 = 225 KiB clips: several clips per shard, and a second
    // shard once the first is full is exercised by the unit tests.
    let params = serde_json::json!({"frames": 6, "shard_mb": 1});
    let one = run(&clips, params.clone(), 1);
    let two = run(&clips, params.clone(), 2);
    // A wrong container frame count (off by one, and unknown) changes nothing but decode_passes.
    let mut hinted = clips.clone();
    hinted[0].frame_count = 355;
    hinted[1].frame_count = 0;
    let off = run(&hinted, params, 2);
    one.result.as_ref().unwrap();
    let files = |root: &Path| {
        let mut v: Vec<_> = walk(root).into_iter().map(|p| p.strip_prefix(root).unwrap().to_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(files(&one.out), files(&two.out));
    for f in files(&one.out) {
        let (a, b) = (std::fs::read(one.out.join(&f)).unwrap(), std::fs::read(two.out.join(&f)).unwrap());
        assert!(a == b, "{} differs between 1 and 2 threads", f.display());
    }
    let rows = read_index(&one.out.join("index.parquet")).unwrap();
    let ids: Vec<_> = rows.iter().map(|r| r.clip_id.as_str()).collect();
    assert_eq!(ids, ["01-01-01-01-01-03", "01-01-03-01-01-02", "01-01-08-02-01-01"], "sorted by clip_id");
    let off_rows = read_index(&off.out.join("index.parquet")).unwrap();
    assert_eq!(off_rows[1].decode_passes, 2, "355 frames promised, 354 decoded: the sample moved");
    assert_eq!(off_rows[2].decode_passes, 2, "unknown count: one counting pass");
    for (a, b) in rows.iter().zip(&off_rows) {
        assert_eq!(tensor(&one.out, a), tensor(&off.out, b), "{}", a.clip_id);
    }
}

/// Extract split into shards of the sorted clip list and merged writes the same bytes as one
/// run, with rejects and an empty shard among them (what a cluster run of shards relies on).
#[test]
fn shards_merged_are_byte_identical_to_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let zero = tmp.path().join("zero.mp4");
    std::fs::write(&zero, b"").unwrap();
    let clips = vec![
        record("01-01-03-01-01-02", &real("closeup_512.mp4"), 2, 2, 354),
        record("01-01-08-02-01-01", &real("01-01-08-02-01-01-19.mp4"), 1, 7, 122),
        record("01-01-01-01-01-03", &zero, 3, 0, 0),
        record("01-01-05-01-01-04", &real("talking_1280x720.mp4"), 4, 4, 282),
    ];
    let params = serde_json::json!({"frames": 4, "size": 64, "shard_mb": 1});
    let whole = run(&clips, params.clone(), 2);
    let whole_summary = whole.result.as_ref().unwrap().summary.clone();
    assert!(whole_summary.contains("3 clips extracted, 1 rejected"), "{whole_summary}");
    for count in [2, 3, 6] {
        let sharded = run_sharded(&clips, params.clone(), count, 1);
        assert_eq!(sharded.result.as_ref().unwrap().summary, whole_summary, "{count} shards");
        let files = |root: &Path| {
            let mut v: Vec<_> = walk(root).into_iter().map(|p| p.strip_prefix(root).unwrap().to_owned()).collect();
            v.sort();
            v
        };
        assert_eq!(files(&whole.out), files(&sharded.out), "{count} shards");
        for f in files(&whole.out) {
            let (a, b) = (std::fs::read(whole.out.join(&f)).unwrap(), std::fs::read(sharded.out.join(&f)).unwrap());
            assert!(a == b, "{} differs between one run and {count} merged shards", f.display());
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
