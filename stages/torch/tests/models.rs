//! The five architectures: output shapes, names, parameter counts against torchvision.

use stages_torch::models::{build, parameter_count, Arch, ModelSpec, TemporalPool};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

fn spec(arch: Arch, frames: i64, size: i64, num_classes: i64) -> ModelSpec {
    ModelSpec { arch, frames, size, num_classes, temporal_pool: TemporalPool::Mean }
}

#[test]
fn every_architecture_maps_a_clip_batch_to_logits() {
    tch::manual_seed(0);
    for arch in Arch::ALL {
        let spec = spec(arch, 4, 32, 8);
        let vs = VarStore::new(Device::Cpu);
        let model = build(&vs.root(), &spec).unwrap();
        let xs = Tensor::randn(spec.input_shape(2), (Kind::Float, Device::Cpu));
        spec.check_input(&xs).unwrap();
        for train in [true, false] {
            let logits = model.forward_t(&xs, train);
            assert_eq!(logits.size(), vec![2, 8], "{arch} train={train}");
            assert!(bool::try_from(logits.isfinite().all()).unwrap(), "{arch}: non-finite logits");
        }
        let names = vs.variables();
        assert!(names.keys().all(|k| !k.contains("__")), "{arch}: tch auto names in {:?}", names.keys());
    }
}

#[test]
fn training_mode_uses_batch_statistics_and_updates_running_stats() {
    let spec = spec(Arch::EarlyFusionResnet18, 2, 32, 3);
    let vs = VarStore::new(Device::Cpu);
    let model = build(&vs.root(), &spec).unwrap();
    let xs = Tensor::randn(spec.input_shape(4), (Kind::Float, Device::Cpu)) * 3.0 + 1.0;
    let before = vs.variables()["bn1.running_mean"].copy();
    let _ = model.forward_t(&xs, false);
    assert!(before.equal(&vs.variables()["bn1.running_mean"]), "eval must not touch running stats");
    let _ = model.forward_t(&xs, true);
    assert!(!before.equal(&vs.variables()["bn1.running_mean"]), "training must update running stats");
}

#[test]
fn concat_pooling_widens_the_late_fusion_head() {
    let mut spec = spec(Arch::LateFusionResnet18, 5, 32, 8);
    spec.temporal_pool = TemporalPool::Concat;
    let vs = VarStore::new(Device::Cpu);
    let model = build(&vs.root(), &spec).unwrap();
    assert_eq!(vs.variables()["fc.weight"].size(), vec![8, 5 * 512]);
    let xs = Tensor::randn(spec.input_shape(2), (Kind::Float, Device::Cpu));
    assert_eq!(model.forward_t(&xs, false).size(), vec![2, 8]);
}

/// Counts from the venv's torchvision 0.28:
/// `sum(p.numel() for p in torchvision.models.resnet18().parameters())` = 11,689,512 and
/// `sum(p.numel() for p in torchvision.models.video.r3d_18().parameters())` = 33,371,472.
#[test]
fn parameter_counts_equal_torchvision() {
    let count = |spec: &ModelSpec| {
        let vs = VarStore::new(Device::Cpu);
        build(&vs.root(), spec).unwrap();
        parameter_count(&vs)
    };
    assert_eq!(count(&spec(Arch::EarlyFusionResnet18, 1, 112, 1000)), 11_689_512);
    assert_eq!(count(&spec(Arch::R3d18, 16, 112, 400)), 33_371_472);
    // Late fusion (mean) with 1000 classes is resnet18 with the head after the pool.
    assert_eq!(count(&spec(Arch::LateFusionResnet18, 10, 112, 1000)), 11_689_512);
    // Each extra input frame adds 3 conv1 input channels: 64 * 3 * 7 * 7 weights.
    assert_eq!(count(&spec(Arch::EarlyFusionResnet18, 10, 112, 1000)), 11_689_512 + 9 * 64 * 3 * 49);
    // resnet18 trunk + nn.LSTM(512, 512) (4 gates: 2 * 2048 * 512 weights + 2 * 2048 biases) + fc.
    let trunk = 11_689_512 - (512 * 1000 + 1000);
    let lstm = 2 * 2048 * 512 + 2 * 2048;
    assert_eq!(count(&spec(Arch::Resnet18Lstm, 10, 112, 8)), trunk + lstm + 512 * 8 + 8);
    // early_fusion_cnn, from tests/python/study_models.py: sum(p.numel()) of EarlyFusionCnn(10, 8).
    let convs = [(30, 64), (64, 128), (128, 256), (256, 512)].iter().map(|&(i, o)| o * i * 9 + o + 2 * o).sum::<i64>();
    assert_eq!(count(&spec(Arch::EarlyFusionCnn, 10, 112, 8)), convs + 512 * 1024 + 1024 + 1024 * 8 + 8);
}

#[test]
fn impossible_specs_are_rejected_with_the_reason() {
    let vs = VarStore::new(Device::Cpu);
    let err = build(&vs.root(), &spec(Arch::R3d18, 0, 112, 8)).err().unwrap();
    assert!(err.message.contains("frames"), "{}", err.message);
    let err = build(&vs.root(), &spec(Arch::EarlyFusionCnn, 4, 8, 8)).err().unwrap();
    assert!(err.message.contains("size"), "{}", err.message);
    let bad = Tensor::zeros([2, 3, 3, 32, 32], (Kind::Float, Device::Cpu));
    let err = spec(Arch::R3d18, 4, 32, 8).check_input(&bad).unwrap_err();
    assert!(err.message.contains("[B, 4, 3, 32, 32]"), "{}", err.message);
}

#[test]
fn spec_serialises_with_snake_case_names() {
    let json = serde_json::to_value(spec(Arch::Resnet18Lstm, 10, 112, 8)).unwrap();
    assert_eq!(json["arch"], "resnet18_lstm");
    assert_eq!(json["temporal_pool"], "mean");
    let back: ModelSpec = serde_json::from_str(r#"{"arch":"late_fusion_resnet18","frames":4,"size":32,"num_classes":8}"#).unwrap();
    assert_eq!(back.temporal_pool, TemporalPool::Mean);
}
