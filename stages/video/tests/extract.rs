//! Integration tests of the `extract` stage on real footage and on bad input.

mod extract_support;

use std::path::Path;

use extract_support::*;
use safetensors::SafeTensors;
use stages_video::extract::cache::{read_index, IndexRow};

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
        eprintln!("{}: box ({:.0},{:.0},{:.0},{:.0}) score {:.2} found {}/{} crop centre ({cx:.0},{cy:.0}) side {}", row.clip_id, row.box_x, row.box_y, row.box_w, row.box_h, row.detect_score, row.face_found_frames, row.frames, row.crop_side);
        assert_eq!((row.source_width as f32, row.source_height as f32), (fw, fh));
        assert!(!row.fallback, "{}: no face found", row.clip_id);
        assert!(row.face_found_frames >= 7, "{}: face in only {} of 10 frames", row.clip_id, row.face_found_frames);
        assert!((cx - ex).abs() <= 0.15 * fw && (cy - ey).abs() <= 0.15 * fh, "{}: crop centre ({cx},{cy}) far from the face at ({ex},{ey})", row.clip_id);
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
}
