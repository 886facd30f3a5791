//! The `split` stage end to end on a tiny cache: outputs, disjointness, k-fold coverage,
//! determinism and errors.

use std::collections::BTreeSet;

use serde_json::json;
use stage_api::testing::{input, params, run_stage};
use stage_api::Stage;
use stage_formats::parquet::Table;
use stage_formats::testing::toy_cache;
use stages_learn::split::{read_assignment, Split, SplitStage};

#[test]
fn lists_mode_writes_every_output() {
    let root = tempfile::tempdir().unwrap();
    let cache = toy_cache(&root.path().join("extract"), &[1, 2, 3, 4, 5], &[0, 1], 2);
    let out = root.path().join("split");
    let outcome =
        run_stage(&SplitStage, params(json!({"val_actors": [4], "test_actors": [5]})), &[input("extract", &cache)], &out).unwrap();
    assert!(outcome.summary.contains("train 12 clips (3 actors)"), "{}", outcome.summary);

    let rows = read_assignment(&out).unwrap();
    assert_eq!(rows.len(), 20);
    for r in &rows {
        let expected = match r.actor {
            4 => Split::Val,
            5 => Split::Test,
            _ => Split::Train,
        };
        assert_eq!(r.split, expected, "{r:?}");
    }
    let classes = Table::read(&out.join("class_counts.parquet")).unwrap();
    assert_eq!(classes.num_rows(), 6); // 3 splits x 2 classes
    assert_eq!(classes.integers("count").unwrap(), [6, 6, 2, 2, 2, 2]);
    assert_eq!(classes.strings("emotion").unwrap()[..2], ["neutral".to_string(), "calm".to_string()]);
    let actors = Table::read(&out.join("actor_counts.parquet")).unwrap();
    assert_eq!(actors.integers("actor").unwrap(), [1, 2, 3, 4, 5]);
    assert_eq!(actors.integers("count").unwrap(), [4; 5]);
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("split.json")).unwrap()).unwrap();
    assert_eq!(meta["actors"]["test"], json!([5]));
    assert_eq!(meta["clips"]["val"], 4);
}

#[test]
fn kfold_puts_every_actor_in_exactly_one_test_fold_and_is_deterministic() {
    let root = tempfile::tempdir().unwrap();
    let cache = toy_cache(&root.path().join("extract"), &(1..=10).collect::<Vec<_>>(), &[0], 1);
    let mut tested = Vec::new();
    for fold in 0..5 {
        let p = || params(json!({"folds": 5, "fold": fold, "seed": 11}));
        let out_a = root.path().join(format!("a{fold}"));
        let out_b = root.path().join(format!("b{fold}"));
        run_stage(&SplitStage, p(), &[input("extract", &cache)], &out_a).unwrap();
        run_stage(&SplitStage, p(), &[input("extract", &cache)], &out_b).unwrap();
        let a = read_assignment(&out_a).unwrap();
        assert_eq!(a, read_assignment(&out_b).unwrap(), "fold {fold} not deterministic");
        let of = |s: Split| a.iter().filter(|r| r.split == s).map(|r| r.actor).collect::<BTreeSet<_>>();
        let (train, val, test) = (of(Split::Train), of(Split::Val), of(Split::Test));
        assert!(train.is_disjoint(&val) && train.is_disjoint(&test) && val.is_disjoint(&test));
        assert_eq!(train.len() + val.len() + test.len(), 10);
        assert_eq!(test.len(), 2);
        tested.extend(test);
    }
    tested.sort_unstable();
    assert_eq!(tested, (1..=10).collect::<Vec<_>>());
}

#[test]
fn default_study_split_and_bad_parameters() {
    let root = tempfile::tempdir().unwrap();
    let cache = toy_cache(&root.path().join("extract"), &[1, 2, 21, 22, 23, 24], &[0], 1);
    let out = root.path().join("study");
    run_stage(&SplitStage, params(json!({})), &[input("extract", &cache)], &out).unwrap();
    let rows = read_assignment(&out).unwrap();
    let test: BTreeSet<i64> = rows.iter().filter(|r| r.split == Split::Test).map(|r| r.actor).collect();
    assert_eq!(test, BTreeSet::from([23, 24]));

    let err =
        run_stage(&SplitStage, params(json!({"test_actors": [30]})), &[input("extract", &cache)], &root.path().join("x")).unwrap_err();
    assert!(err.message.contains("actor(s) 30 that are not in the tensor cache"), "{}", err.message);
    let err = run_stage(
        &SplitStage,
        params(json!({"train_actors": [1, 21], "val_actors": [21], "test_actors": [23]})),
        &[input("extract", &cache)],
        &root.path().join("y"),
    )
    .unwrap_err();
    assert!(err.message.contains("21 are in both the train and the val split"), "{}", err.message);
    let err = SplitStage.resolve_params(&params(json!({"folds": 5}))).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("fold"));
    let err = SplitStage.resolve_params(&params(json!({"folds": 5, "fold": 0, "test_actors": [1]}))).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("test_actors"));
    let err = run_stage(&SplitStage, params(json!({})), &[], &root.path().join("z")).unwrap_err();
    assert!(err.message.contains("`extract`"), "{}", err.message);
}
