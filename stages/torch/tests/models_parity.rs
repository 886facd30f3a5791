//! Numerical parity of the torchvision weight import, and its errors.
//!
//! `tests/python/parity.py` (run here with the venv's python) builds random-weight torchvision
//! `resnet18` / `video.r3d_18` and the PyTorch versions of the study models
//! (`tests/python/study_models.py`), saves their state dicts with `torch.save` as torchvision
//! publishes them, and writes a fixed input and its eval-mode logits. Each test loads a `.pth`
//! with `load_pretrained`, runs the Rust model on the same input and requires
//! max |Δlogit| ≤ 1e-4.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use stages_torch::models::{build, load_pretrained, Arch, LoadReport, ModelSpec, TemporalPool};
use tch::nn::VarStore;
use tch::{Device, Tensor};

const TOLERANCE: f64 = 1e-4;

fn python() -> PathBuf {
    match std::env::var_os("PIPELINE_TORCH_VENV") {
        Some(venv) => PathBuf::from(venv).join("bin/python"),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/pipeline/torch-2.13.0/bin/python"),
    }
}

/// The reference files, written once per test binary.
fn reference() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/parity.py");
        let out = Command::new(python())
            .arg(script)
            .arg(dir.path())
            .env("OMP_NUM_THREADS", "2")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} (set PIPELINE_TORCH_VENV): {e}", python().display()));
        assert!(out.status.success(), "parity.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
        dir
    })
    .path()
}

fn spec(arch: Arch, frames: i64, num_classes: i64) -> ModelSpec {
    ModelSpec { arch, frames, size: 32, num_classes, temporal_pool: TemporalPool::Mean }
}

/// Loads `<case>.pth` into `spec`'s model and checks its logits against `<logits>.safetensors`.
fn check_parity(spec: &ModelSpec, case: &str, logits: &str) -> LoadReport {
    let dir = reference();
    let mut vs = VarStore::new(Device::Cpu);
    let model = build(&vs.root(), spec).unwrap();
    let report = load_pretrained(&mut vs, spec, &dir.join(format!("{case}.pth"))).unwrap();
    let tensors = Tensor::read_safetensors(dir.join(format!("{logits}.safetensors"))).unwrap();
    let get = |name: &str| tensors.iter().find(|(n, _)| n == name).unwrap().1.shallow_clone();
    let (input, expected) = (get("input"), get("logits"));
    let actual = tch::no_grad(|| model.forward_t(&input, false));
    assert_eq!(actual.size(), expected.size());
    let diff = (actual - &expected).abs().max().double_value(&[]);
    let scale = expected.abs().max().double_value(&[]);
    eprintln!("{case} -> {}: max |diff| {diff:e}, max |logit| {scale:.3}", spec.arch);
    assert!(diff <= TOLERANCE, "{case} -> {}: max |diff| {diff:e} (max |logit| {scale})", spec.arch);
    assert!(scale > 0.1, "{case}: reference logits too small to be a meaningful check");
    report
}

#[test]
fn torchvision_resnet18_equals_early_fusion_with_one_frame() {
    let report = check_parity(&spec(Arch::EarlyFusionResnet18, 1, 1000), "resnet18", "resnet18");
    assert!(report.kept_fresh.is_empty() && report.unused_in_file.is_empty(), "{report:?}");
    assert_eq!(report.loaded.len(), 102, "62 weights/biases + 2 * 20 BN running stats");
}

#[test]
fn parity_fails_without_the_import() {
    let spec = spec(Arch::EarlyFusionResnet18, 1, 1000);
    let vs = VarStore::new(Device::Cpu);
    let model = build(&vs.root(), &spec).unwrap();
    let tensors = Tensor::read_safetensors(reference().join("resnet18.safetensors")).unwrap();
    let get = |name: &str| tensors.iter().find(|(n, _)| n == name).unwrap().1.shallow_clone();
    let actual = tch::no_grad(|| model.forward_t(&get("input"), false));
    let diff = (actual - get("logits")).abs().max().double_value(&[]);
    assert!(diff > 1e-2, "fresh weights must not reproduce the reference logits (diff {diff})");
}

#[test]
fn torchvision_resnet18_loads_into_the_late_fusion_backbone() {
    let report = check_parity(&spec(Arch::LateFusionResnet18, 4, 1000), "resnet18", "resnet18_into_late_fusion");
    assert!(report.loaded.contains(&"backbone.layer3.1.bn2.running_var".to_owned()));
    assert!(report.kept_fresh.is_empty(), "{report:?}");
}

#[test]
fn torchvision_r3d_18_with_kinetics_head_matches() {
    let report = check_parity(&spec(Arch::R3d18, 4, 400), "r3d18", "r3d18");
    assert!(report.kept_fresh.is_empty() && report.unused_in_file.is_empty(), "{report:?}");
}

#[test]
fn study_models_match_their_pytorch_definitions() {
    check_parity(&spec(Arch::EarlyFusionCnn, 4, 8), "early_fusion_cnn", "early_fusion_cnn");
    check_parity(&spec(Arch::LateFusionResnet18, 4, 8), "late_fusion_resnet18", "late_fusion_resnet18");
    // torch.nn.LSTM(512, 512, batch_first=True) on the same weights as tch's LSTM.
    let report = check_parity(&spec(Arch::Resnet18Lstm, 4, 8), "resnet18_lstm", "resnet18_lstm");
    assert!(report.loaded.contains(&"lstm.weight_hh_l0".to_owned()));
}

#[test]
fn imagenet_weights_leave_the_reshaped_layers_fresh() {
    let spec = spec(Arch::EarlyFusionResnet18, 4, 8);
    let mut vs = VarStore::new(Device::Cpu);
    build(&vs.root(), &spec).unwrap();
    let fresh_conv1 = vs.variables()["conv1.weight"].copy();
    let report = load_pretrained(&mut vs, &spec, &reference().join("resnet18.pth")).unwrap();
    assert_eq!(report.kept_fresh, vec!["conv1.weight", "fc.bias", "fc.weight"]);
    assert_eq!(report.loaded.len(), 102 - 3);
    assert!(fresh_conv1.equal(&vs.variables()["conv1.weight"]));

    let spec = ModelSpec { arch: Arch::Resnet18Lstm, ..spec };
    let mut vs = VarStore::new(Device::Cpu);
    build(&vs.root(), &spec).unwrap();
    let report = load_pretrained(&mut vs, &spec, &reference().join("resnet18.pth")).unwrap();
    assert_eq!(report.unused_in_file, vec!["fc.bias", "fc.weight"], "ImageNet classifier does not fit an LSTM head");
    assert_eq!(report.kept_fresh.len(), 2 + 4);
    assert_eq!(report.loaded.len(), 102 - 2);
}

fn load_err(spec: &ModelSpec, path: &Path) -> String {
    let mut vs = VarStore::new(Device::Cpu);
    build(&vs.root(), spec).unwrap();
    load_pretrained(&mut vs, spec, path).unwrap_err().chain()
}

#[test]
fn a_checkpoint_of_another_architecture_is_refused() {
    let err = load_err(&spec(Arch::EarlyFusionResnet18, 1, 8), &reference().join("r3d18.pth"));
    assert!(err.contains("r3d18.pth") && err.contains("another architecture") && err.contains("layer1.0.conv1.0.weight"), "{err}");
}

#[test]
fn wrong_shapes_and_missing_names_are_listed() {
    let spec = spec(Arch::EarlyFusionResnet18, 1, 1000);
    let vs = VarStore::new(Device::Cpu);
    build(&vs.root(), &spec).unwrap();
    let mut tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    tensors.retain(|(n, _)| n != "layer4.1.bn2.weight");
    for (name, t) in tensors.iter_mut() {
        if name == "layer1.0.conv1.weight" {
            *t = Tensor::zeros([64, 64, 1, 1], (tch::Kind::Float, Device::Cpu));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.safetensors");
    Tensor::write_safetensors(&tensors, &path).unwrap();
    let err = load_err(&spec, &path);
    assert!(err.contains("broken.safetensors"), "{err}");
    assert!(err.contains("layer1.0.conv1.weight") && err.contains("[64, 64, 1, 1]") && err.contains("[64, 64, 3, 3]"), "{err}");
    assert!(err.contains("not in the file: layer4.1.bn2.weight"), "{err}");
}

#[test]
fn corrupt_and_missing_files_are_named() {
    let spec = spec(Arch::EarlyFusionResnet18, 1, 1000);
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(reference().join("resnet18.pth")).unwrap();
    let truncated = dir.path().join("truncated.pth");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_err(&spec, &truncated);
    assert!(err.contains("truncated.pth") && err.contains("not a readable PyTorch checkpoint"), "{err}");

    let garbage = dir.path().join("garbage.bin");
    std::fs::write(&garbage, b"this is not a checkpoint at all").unwrap();
    let err = load_err(&spec, &garbage);
    assert!(err.contains("garbage.bin") && err.contains("neither a PyTorch .pth"), "{err}");

    let err = load_err(&spec, &dir.path().join("absent.pth"));
    assert!(err.contains("absent.pth") && err.contains("cannot open"), "{err}");
}
