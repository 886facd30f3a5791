//! The `report` stage on fake evaluate/train/split outputs, and its HTML in headless Chromium.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use stage_api::{NoProgress, Params, SameStore, Stage, StageContext, StageInput};
use stages_report::{write_evaluation, write_misclassified_examples, ReportStage};

/// Two architectures (r3d18: 80/120 right, resnet18_lstm: 90/120 right), their train outputs
/// and a split. Returns the inputs in `needs:` order.
fn two_models(root: &Path) -> Vec<StageInput> {
    let mut inputs = Vec::new();
    for (arch, wrong_every) in [("r3d18", 3), ("resnet18_lstm", 4)] {
        let eval = root.join(format!("evaluate-{arch}"));
        std::fs::create_dir_all(&eval).unwrap();
        let preds = predictions(120, wrong_every);
        write_evaluation(&eval, &preds, &class_names(), None, arch).unwrap();
        let mut ids: Vec<String> = preds.iter().map(|p| p.clip_id.clone()).collect();
        ids.sort();
        ids.dedup();
        let extract = root.join(format!("extract-{arch}"));
        fake_extract(&extract, &ids, 10, 64);
        write_misclassified_examples(&eval, &extract, &preds, &class_names(), 3).unwrap();
        inputs.push(input("evaluate", &format!("evaluate[arch={arch}]"), &format!(r#"{{"arch": "{arch}"}}"#), eval));
    }
    // Train instances in the other order: matching must not rely on position.
    for (arch, epochs) in [("resnet18_lstm", 8), ("r3d18", 6)] {
        let train = root.join(format!("train-{arch}"));
        fake_train(&train, arch, serde_json::json!({}), epochs);
        inputs.push(input("train", &format!("train[arch={arch}]"), &format!(r#"{{"arch": "{arch}", "epochs": 30}}"#), train));
    }
    let split = root.join("split");
    fake_split(&split);
    inputs.push(input("split", "split", "{}", split));
    inputs
}

fn run_report(inputs: &[StageInput], out: &Path) -> Result<String, stage_api::StageError> {
    std::fs::create_dir_all(out).unwrap();
    let params = ReportStage.resolve_params(&Params::new()).unwrap();
    let ctx = StageContext {
        params: &params,
        inputs,
        out_dir: out,
        base_dir: out,
        progress: &NoProgress,
        threads: 1,
        artifacts: &SameStore,
        resume_dir: None,
    };
    ReportStage.run(&ctx).map(|o| o.summary)
}

fn comparison(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("comparison.json")).unwrap()).unwrap()
}

#[test]
fn report_compares_every_model() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = two_models(dir.path());
    let out = dir.path().join("out");
    let summary = run_report(&inputs, &out).unwrap();
    assert!(summary.contains("2 model(s)") && summary.contains("resnet18_lstm"), "{summary}");

    let json = comparison(&out);
    let models = json["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    let r3d = models.iter().find(|m| m["arch"] == "r3d18").unwrap();
    assert_eq!(r3d["accuracy"], 80.0 / 120.0);
    assert_eq!(r3d["epochs_run"], 6, "matched to the wrong train instance");
    assert_eq!(r3d["parameter_count"], 11_689_512u64);
    assert_eq!(r3d["augmentation"], "yes");
    assert_eq!(r3d["frames"], 10);
    assert_eq!(r3d["reference_accuracy"], 60.4);
    let lstm = models.iter().find(|m| m["arch"] == "resnet18_lstm").unwrap();
    assert_eq!(lstm["accuracy"], 0.75);
    assert_eq!(lstm["epochs_run"], 8);
    assert_eq!(lstm["reference_accuracy"], 62.1);
    assert!(json["folds"].as_array().unwrap().is_empty());

    let csv = std::fs::read_to_string(out.join("comparison.csv")).unwrap();
    assert!(csv.starts_with("model,arch,frames,size,augmentation,fold,parameter_count,"), "{csv}");
    assert!(csv.contains("evaluate[arch=r3d18],r3d18,10,112,yes,,11689512,754.2,6,120,0.666667,"), "{csv}");

    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| arch=r3d18 | r3d18 | 10 | 112 | yes | 11.7M | 12 min 34 s | 6 | 66.7% ["), "{md}");
    assert!(md.contains("](plots/class_distribution.png)"), "{md}");
    for link in md.split("](").skip(1).map(|s| &s[..s.find(')').unwrap()]) {
        assert_png(&out.join(link), None, 4);
    }

    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let images = html.matches("src=\"data:image/png;base64,").count();
    // accuracy comparison, 2 distributions, per model confusion + per-class + curves + examples.
    assert_eq!(images, 1 + 2 + 2 * 4, "embedded plots");
    assert!(!html.contains("src=\"plots/") && !html.contains("http://") && !html.contains("https://"));
    assert!(html.contains("<td>60.4%</td>") && html.contains("<td class=\"wrap\">66.7% [57.8%–74.5%]</td>") && html.contains("R3D-18"));
}

#[test]
fn k_fold_runs_are_summarised() {
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = Vec::new();
    for (fold, wrong_every) in [(0, 2), (1, 4)] {
        let eval = dir.path().join(format!("evaluate-{fold}"));
        std::fs::create_dir_all(&eval).unwrap();
        write_evaluation(&eval, &predictions(120, wrong_every), &class_names(), None, "r3d18").unwrap();
        inputs.push(input("evaluate", &format!("evaluate[fold={fold}]"), &format!(r#"{{"fold": {fold}}}"#), eval));
    }
    for fold in [1, 0] {
        let train = dir.path().join(format!("train-{fold}"));
        fake_train(&train, "r3d18", serde_json::json!({"epochs_run": 3 + fold}), 3 + fold);
        inputs.push(input("train", &format!("train[fold={fold}]"), &format!(r#"{{"arch": "r3d18", "fold": {fold}}}"#), train));
    }
    let out = dir.path().join("out");
    run_report(&inputs, &out).unwrap();
    let json = comparison(&out);
    let folds = json["folds"].as_array().unwrap();
    assert_eq!(folds.len(), 1);
    assert_eq!(folds[0]["folds"], 2);
    // fold 0: 60/120 right, fold 1: 90/120 → mean 0.625, sample std sqrt(2·0.125²) = 0.176777
    assert!((folds[0]["accuracy_mean"].as_f64().unwrap() - 0.625).abs() < 1e-12);
    assert!((folds[0]["accuracy_std"].as_f64().unwrap() - 0.125 * 2f64.sqrt()).abs() < 1e-12);
    let fold1 = json["models"].as_array().unwrap().iter().find(|m| m["fold"] == "1").unwrap().clone();
    assert_eq!(fold1["epochs_run"], 4);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Cross-validation") && md.contains("62.5% ± 17.7"), "{md}");
}

#[test]
fn missing_or_broken_inputs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let err = run_report(&[], &out).unwrap_err();
    assert!(err.message.contains("`evaluate`"), "{}", err.message);

    let inputs = two_models(dir.path());
    std::fs::write(inputs[0].dir.join("metrics.json"), "{ broken").unwrap();
    let err = run_report(&inputs, &dir.path().join("out2")).unwrap_err();
    assert!(err.message.contains("metrics.json"), "{}", err.chain());

    let mut inputs = two_models(&dir.path().join("again"));
    inputs.retain(|i| !(i.need == "train" && i.instance.contains("r3d18")));
    std::fs::remove_file(inputs[2].dir.join("model.json")).unwrap();
    let err = run_report(&inputs, &dir.path().join("out3")).unwrap_err();
    assert!(err.message.contains("model.json"), "{}", err.chain());
}

#[test]
fn unmatched_evaluate_is_reported_with_empty_training_columns() {
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = two_models(dir.path());
    inputs.retain(|i| !(i.need == "train" && i.instance.contains("r3d18")));
    let out = dir.path().join("out");
    run_report(&inputs, &out).unwrap();
    let json = comparison(&out);
    let r3d = json["models"].as_array().unwrap().iter().find(|m| m["model"] == "evaluate[arch=r3d18]").unwrap().clone();
    assert!(r3d["epochs_run"].is_null());
    assert!(std::fs::read_to_string(out.join("report.md")).unwrap().contains("no matching train instance"));
}

/// The Chromium binary: `$CHROMIUM`, else `chromium` or `chromium-browser` on PATH.
fn chromium() -> PathBuf {
    let candidates: Vec<PathBuf> = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .into_iter()
        .chain(["chromium", "chromium-browser"].iter().map(PathBuf::from))
        .collect();
    for c in &candidates {
        if Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return c.clone();
        }
    }
    panic!(
        "headless Chromium is needed to check that report.html renders, and none was found \
         (tried $CHROMIUM, chromium, chromium-browser): install Debian's `chromium` package \
         (apt-get install chromium), which scripts/setup.sh does when run as root"
    );
}

#[test]
fn report_html_renders_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = two_models(dir.path());
    let out = dir.path().join("out");
    run_report(&inputs, &out).unwrap();
    let profile = tempfile::tempdir().unwrap();
    // The report and its screenshot stay in target/tmp for a person to look at.
    let keep = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report");
    let _ = std::fs::remove_dir_all(&keep);
    std::fs::create_dir_all(keep.join("plots")).unwrap();
    for file in ["report.html", "report.md", "comparison.csv", "comparison.json"] {
        std::fs::copy(out.join(file), keep.join(file)).unwrap();
    }
    for entry in std::fs::read_dir(out.join("plots")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), keep.join("plots").join(entry.file_name())).unwrap();
    }
    let shot = keep.join("screenshot.png");
    let html = keep.join("report.html");
    let status = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1280,2000")
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(shot.is_file(), "no screenshot; chromium said: {}", String::from_utf8_lossy(&status.stderr));
    let img = assert_png(&shot, Some((1280, 2000)), 50);
    // The page is not just white: plots and tables cover a good part of the first screen.
    let ink = img.pixels().filter(|p| p.0.iter().any(|&c| c < 200)).count();
    assert!(ink > 1280 * 2000 / 50, "screenshot is nearly blank ({ink} dark pixels)");
}
