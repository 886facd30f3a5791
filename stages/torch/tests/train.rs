//! The `train` stage end to end on a tiny learnable cache (S=32, T=4): learning, determinism,
//! the checkpoint round trip through `Predictor`, and bad input.

mod common;

use std::path::{Path, PathBuf};

use common::{history, input, params, run_stage, toy_cache, toy_cache_with, train_in};
use serde_json::json;
use stages_torch::cache::{read_cache_index, ClipLoader};
use stages_torch::inference::Predictor;
use stages_torch::split::{read_assignment, Split, SplitStage};
use stages_torch::train::schedule::{EarlyStopping, ReduceOnPlateau};
use stages_torch::train::{ModelCard, TRAIN};

/// A cache of 4 classes x 2 clips for actors 1-6, split 1-4 / 5 / 6.
fn prepared(root: &Path) -> (PathBuf, PathBuf) {
    prepared_sized(root, 2, common::FRAMES, common::SIZE)
}

/// [`prepared`] with `per_class` clips of T = `frames`, S = `size`.
fn prepared_sized(root: &Path, per_class: usize, frames: i64, size: i64) -> (PathBuf, PathBuf) {
    let classes: &[i64] = &[0, 1, 2, 3];
    let groups: Vec<(i64, &[i64])> = (1..=6).map(|a| (a, classes)).collect();
    let cache = common::toy_cache_sized(&root.join("extract"), &groups, per_class, frames, size);
    let split = root.join("split");
    run_stage(&SplitStage, params(json!({"val_actors": [5], "test_actors": [6]})), &[input("extract", &cache)], &split).unwrap();
    (cache, split)
}

#[test]
fn learns_the_toy_set_and_the_checkpoint_predicts_like_training() {
    let root = tempfile::tempdir().unwrap();
    prepared(root.path());
    let out = train_in(
        root.path(),
        "train",
        json!({"arch": "early_fusion_cnn", "epochs": 6, "lr": 1e-3, "augment": false, "device": "cpu", "threads": 1}),
    )
    .unwrap();
    let h = history(&out);
    let losses = &h[0];
    assert!(losses.last().unwrap() < &(losses[0] * 0.5), "train loss did not fall: {losses:?}");
    let card = ModelCard::read(&out).unwrap();
    // The lr column is what ReduceLROnPlateau makes of the val_accuracy column, and the run
    // stopped where early stopping says.
    let mut plateau = ReduceOnPlateau::new(1e-3, 0.5, 2);
    let mut stopping = EarlyStopping::new(5);
    let mut expected_lr = vec![1e-3];
    for (epoch, &acc) in h[3].iter().enumerate() {
        expected_lr.push(plateau.step(acc));
        stopping.observe(epoch + 1, acc);
    }
    expected_lr.pop();
    assert_eq!(h[4], expected_lr);
    assert_eq!(card.best_epoch, stopping.best_epoch());
    assert!(h[3].len() == 6 || stopping.should_stop());
    assert!(card.best_val_accuracy >= 0.75, "val accuracy {} (chance 0.25)", card.best_val_accuracy);
    assert_eq!((card.spec.frames, card.spec.size, card.spec.num_classes, card.device.as_str()), (4, 32, 8, "cpu"));
    assert_eq!(card.class_names[3], "sad");
    assert_eq!(card.hyperparameters["lr"], json!(1e-3));
    assert!(card.parameter_count > 1_000_000);
    assert!(std::fs::read_to_string(out.join("history.csv")).unwrap().starts_with("epoch,train_loss"));

    // The saved best model reproduces the best validation accuracy through Predictor.
    let predictor = Predictor::load(&out, tch::Device::Cpu).unwrap();
    let cache = root.path().join("extract");
    let clips = read_cache_index(&cache).unwrap();
    let loader = ClipLoader::open(&cache, &clips).unwrap();
    let val: Vec<_> = read_assignment(&root.path().join("split")).unwrap().into_iter().filter(|a| a.split == Split::Val).collect();
    let bytes: Vec<&[u8]> = val.iter().map(|a| loader.clip(&a.clip_id).unwrap()).collect();
    let probs = predictor.predict(&bytes).unwrap();
    let correct = probs
        .iter()
        .zip(&val)
        .filter(|(p, a)| {
            let argmax = p.iter().enumerate().max_by(|x, y| x.1.total_cmp(y.1)).unwrap().0;
            argmax as i64 == a.label
        })
        .count();
    assert!((correct as f64 / val.len() as f64 - card.best_val_accuracy).abs() < 1e-9);
    assert!(probs.iter().all(|p| (p.iter().sum::<f32>() - 1.0).abs() < 1e-4));
}

#[test]
fn bad_input_is_named() {
    let root = tempfile::tempdir().unwrap();
    let (cache, split) = prepared(root.path());
    let base = json!({"arch": "early_fusion_cnn", "epochs": 1, "device": "cpu", "augment": false});

    // No split need.
    let err = run_stage(&TRAIN, params(base.clone()), &[input("extract", &cache)], &root.path().join("n1")).unwrap_err();
    assert!(err.message.contains("`split`"), "{}", err.message);

    // A class that only the test actor has.
    let lonely = root.path().join("lonely");
    let lonely_cache = toy_cache_with(&lonely.join("extract"), &[(1, &[0, 1]), (2, &[0, 1]), (3, &[2])], 2);
    let lonely_split = lonely.join("split");
    run_stage(
        &SplitStage,
        params(json!({"train_actors": [1], "val_actors": [2], "test_actors": [3]})),
        &[input("extract", &lonely_cache)],
        &lonely_split,
    )
    .unwrap();
    let err =
        run_stage(&TRAIN, params(base.clone()), &[input("extract", &lonely_cache), input("split", &lonely_split)], &lonely.join("out"))
            .unwrap_err();
    assert!(err.message.contains("no clip of class 2 (happy"), "{}", err.message);

    // A split made from another cache.
    let err = run_stage(&TRAIN, params(base.clone()), &[input("extract", &lonely_cache), input("split", &split)], &lonely.join("out2"))
        .unwrap_err();
    assert!(err.message.contains("is not in the tensor cache"), "{}", err.message);

    // A pretrained model trained on another frame count.
    let first = train_in(root.path(), "first", base.clone()).unwrap();
    let mut card: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(first.join("model.json")).unwrap()).unwrap();
    card["frames"] = json!(8);
    std::fs::write(first.join("model.json"), card.to_string()).unwrap();
    let mut with = base.clone();
    with["pretrained"] = json!(first.to_str().unwrap());
    let err = train_in(root.path(), "second", with).unwrap_err();
    assert!(err.message.contains("T=8 S=32") && err.message.contains("T=4 S=32"), "{}", err.message);

    // A corrupt checkpoint.
    std::fs::write(first.join("model.safetensors"), b"garbage").unwrap();
    card["frames"] = json!(4);
    std::fs::write(first.join("model.json"), card.to_string()).unwrap();
    let err = Predictor::load(&first, tch::Device::Cpu).err().unwrap();
    assert!(err.message.contains("model.safetensors") && err.message.contains("not a readable"), "{}", err.message);
}

/// Not a check but a measurement (run with `--ignored --nocapture`): the study's geometry
/// (T=10, S=112, batch 8), augmentation on, and how long training waited for data.
#[test]
#[ignore]
fn measure_data_feeding_at_study_size() {
    let root = tempfile::tempdir().unwrap();
    let (cache, split) = prepared_sized(root.path(), 4, 10, 112);
    let notes = common::Notes::default();
    common::run_stage_with(
        &TRAIN,
        params(json!({"arch": "early_fusion_cnn", "epochs": 2, "device": "cpu", "threads": 2})),
        &[input("extract", &cache), input("split", &split)],
        &root.path().join("train"),
        &notes,
    )
    .unwrap();
}

#[test]
fn every_architecture_trains_through_the_stage() {
    let root = tempfile::tempdir().unwrap();
    let cache = toy_cache(&root.path().join("extract"), &[1, 2, 3, 4], &[0, 1], 2);
    let split = root.path().join("split");
    run_stage(&SplitStage, params(json!({"val_actors": [3], "test_actors": [4]})), &[input("extract", &cache)], &split).unwrap();
    let runs = [("early_fusion_resnet18", "mean"), ("late_fusion_resnet18", "concat"), ("r3d18", "mean"), ("resnet18_lstm", "mean")];
    for (arch, pool) in runs {
        let out = train_in(
            root.path(),
            arch,
            json!({"arch": arch, "temporal_pool": pool, "epochs": 1, "batch_size": 4, "device": "cpu", "threads": 1}),
        )
        .unwrap();
        let card = ModelCard::read(&out).unwrap();
        assert_eq!((card.epochs_run, card.spec.arch.name()), (1, arch));
        let predictor = Predictor::load(&out, tch::Device::Cpu).unwrap();
        assert_eq!(predictor.spec(), card.spec);
    }
    let err =
        train_in(root.path(), "nofile", json!({"arch": "r3d18", "epochs": 1, "device": "cpu", "pretrained": "missing.pth"})).unwrap_err();
    assert!(err.message.contains("missing.pth") && err.message.contains("no such file"), "{}", err.message);
}

/// A measurement for planning CPU budgets (run with `--ignored --nocapture`): one epoch of
/// every architecture on 64 training clips of T=8, S=64, batch 8, augmentation on.
#[test]
#[ignore]
fn measure_epoch_time_per_architecture() {
    let root = tempfile::tempdir().unwrap();
    let (cache, split) = prepared_sized(root.path(), 4, 8, 64);
    for arch in ["early_fusion_cnn", "early_fusion_resnet18", "late_fusion_resnet18", "r3d18", "resnet18_lstm"] {
        let notes = common::Notes::default();
        common::run_stage_with(
            &TRAIN,
            params(json!({"arch": arch, "epochs": 1, "device": "cpu", "threads": 2})),
            &[input("extract", &cache), input("split", &split)],
            &root.path().join(arch),
            &notes,
        )
        .unwrap();
    }
}
