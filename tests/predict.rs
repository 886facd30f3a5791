//! `pipeline predict` on real videos with a model trained on a tiny synthetic set: one row per
//! video, probabilities over the 8 classes summing to 1, and a bad file reported by name
//! without stopping the others.

mod common;
use common::Workspace;

fn tiny() -> String {
    common::tiny_dataset(common::TRAINABLE_SYNTH)
        + "  train:
    uses: train
    needs: [extract, split]
    with: {arch: early_fusion_cnn, epochs: 1, batch_size: 2, device: cpu}
"
}

fn real(name: &str) -> String {
    format!("{}/../../shared/data/real/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn predicts_real_videos_and_reports_bad_files() {
    let ws = Workspace::new(&tiny());
    let run = ws.pipeline(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    ws.write("not_a_video.mp4", "hello\n");
    let videos = [real("01-01-08-02-01-01-19.mp4"), real("closeup_512.mp4"), ws.path().join("not_a_video.mp4").display().to_string()];
    let mut args = vec!["predict", "--json"];
    args.extend(videos.iter().map(String::as_str));
    let out = ws.pipeline(&args);
    assert_eq!(out.code, 1, "one bad video makes the exit status 1:\n{}\n{}", out.stdout, out.stderr);
    let rows: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for row in &rows[..2] {
        let probs = row["probabilities"].as_object().unwrap_or_else(|| panic!("{row}"));
        assert_eq!(probs.len(), 8, "{row}");
        let sum: f64 = probs.values().map(|p| p.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4, "{row}");
        assert!(probs.contains_key(row["predicted"].as_str().unwrap()), "{row}");
    }
    let error = rows[2]["error"].as_str().unwrap_or_else(|| panic!("{}", rows[2]));
    assert!(error.contains("not_a_video.mp4"), "{error}");
}
