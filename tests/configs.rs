//! The pipeline files we ship validate (every stage kind, parameter and matrix pairing).

mod common;
use std::process::Command;

fn dag(config: &str) -> String {
    // The repository root (this test belongs to the binary's package in cli/).
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline")).args(["--config", config, "dag"]).current_dir(root).output().unwrap();
    assert!(out.status.success(), "{config}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn default_pipeline_validates_and_pairs_evaluate_with_its_own_train() {
    let text = dag("pipeline.yaml");
    assert!(text.contains("evaluate[arch=r3d18] <- train[arch=r3d18], extract, split"), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("train[")).count(), 5);
}

#[test]
fn study_configs_validate() {
    let study = dag("configs/ravdess.yaml");
    assert_eq!(study.lines().filter(|l| l.starts_with("evaluate[")).count(), 5);
    // The literature's protocol: 6 folds x 5 architectures, each chain on its own fold's split.
    let six = dag("configs/ravdess-6fold.yaml");
    assert_eq!(six.lines().filter(|l| l.starts_with("split[fold=")).count(), 6, "{six}");
    assert_eq!(six.lines().filter(|l| l.starts_with("train[")).count(), 30, "{six}");
    assert!(six.contains("train[fold=3,arch=r3d18] <- extract, split[fold=3]"), "{six}");
    assert!(six.contains("evaluate[fold=5,arch=resnet18_lstm] <- train[fold=5,arch=resnet18_lstm], extract, split[fold=5]"), "{six}");
    let grid = dag("configs/ravdess-grid.yaml");
    assert_eq!(grid.lines().filter(|l| l.starts_with("train_t")).count(), 30, "{grid}");
    assert!(
        grid.contains("evaluate_t10[augment=false,arch=r3d18] <- train_t10[augment=false,arch=r3d18], extract_t10, split_t10"),
        "{grid}"
    );
}
