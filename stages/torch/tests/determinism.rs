//! Seeded training is reproducible on the CPU, also when trainings run at once in one process
//! (what the engine does with `cpus: 1` on several cores). A test binary of its own, so that no
//! other test's training runs beside these.

mod common;

use common::{history, input, params, run_stage, toy_cache, train_in};
use serde_json::json;
use stages_torch::split::SplitStage;

#[test]
fn same_seed_same_history_other_seed_other_history() {
    let root = tempfile::tempdir().unwrap();
    let cache = toy_cache(&root.path().join("extract"), &[1, 2, 3, 4, 5], &[0, 1, 2, 3], 2);
    let split = root.path().join("split");
    run_stage(&SplitStage, params(json!({"val_actors": [5], "test_actors": [1]})), &[input("extract", &cache)], &split).unwrap();
    let with = |seed: u64| {
        json!({"arch": "early_fusion_cnn", "epochs": 2, "batch_size": 8, "lr": 1e-3, "seed": seed, "device": "cpu",
               "threads": 1, "class_weights": true})
    };
    let a = train_in(root.path(), "a", with(3)).unwrap();
    let b = train_in(root.path(), "b", with(3)).unwrap();
    let c = train_in(root.path(), "c", with(4)).unwrap();
    assert_eq!(history(&a), history(&b));
    assert_ne!(history(&a), history(&c));
    let (wa, wb) = (std::fs::read(a.join("model.safetensors")).unwrap(), std::fs::read(b.join("model.safetensors")).unwrap());
    assert!(wa == wb, "same seed, different weights");

    // Both seeds again, side by side: libtorch's generator is process-wide, so this checks that
    // neither training draws from the other's stream (model initialisation, dropout masks).
    let (d, e) = std::thread::scope(|s| {
        let d = s.spawn(|| train_in(root.path(), "d", with(3)).unwrap());
        let e = s.spawn(|| train_in(root.path(), "e", with(4)).unwrap());
        (d.join().unwrap(), e.join().unwrap())
    });
    assert_eq!(history(&d), history(&a), "seed 3 beside seed 4 differs from seed 3 alone");
    assert_eq!(history(&e), history(&c), "seed 4 beside seed 3 differs from seed 4 alone");
    let weights = |dir: &std::path::Path| std::fs::read(dir.join("model.safetensors")).unwrap();
    assert!(weights(&d) == wa && weights(&e) == weights(&c), "side by side, different weights");
}
