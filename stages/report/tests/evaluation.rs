//! `write_evaluation` and `write_misclassified_examples` on fake predictions and a fake
//! extract cache: every file is read back.

mod common;

use common::*;
use stages_report::{read_history, write_evaluation, write_misclassified_examples, Metrics};

#[test]
fn evaluation_files_are_written_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let preds = predictions(120, 3); // every third clip wrong: 40 wrong, 80 right
    let metrics = write_evaluation(out, &preds, &class_names(), Some(&history(5)), "r3d18").unwrap();
    assert_eq!((metrics.n, metrics.correct, metrics.model.as_str()), (120, 80, "r3d18"));

    let on_disk: Metrics = serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(on_disk, metrics);

    let file = std::fs::File::open(out.join("predictions.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    let schema = batches[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(&names[..5], ["clip_id", "actor", "label", "predicted", "prob_0"]);
    assert_eq!(names.last(), Some(&"prob_7"));
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 120);

    let per_class = std::fs::read_to_string(out.join("per_class.csv")).unwrap();
    assert!(per_class.starts_with("class,label,precision,recall,f1,support,predicted\nneutral,0,"), "{per_class}");
    assert_eq!(per_class.lines().count(), 9);
    let confusion = std::fs::read_to_string(out.join("confusion.csv")).unwrap();
    assert!(confusion.starts_with("true\\predicted,neutral,calm,"), "{confusion}");
    // Row `neutral`: clips i = 8k (15), wrong when 8k ≡ 2 mod 3, i.e. k = 1, 4, 7, 10, 13.
    assert!(confusion.lines().nth(1).unwrap().starts_with("neutral,10,5,0,"), "{confusion}");
    let normalized = std::fs::read_to_string(out.join("confusion_normalized.csv")).unwrap();
    assert!(normalized.lines().nth(1).unwrap().starts_with("neutral,0.666667,0.333333,"), "{normalized}");
    let wrong = std::fs::read_to_string(out.join("misclassified.csv")).unwrap();
    assert_eq!(wrong.lines().count(), 41);
    assert!(wrong.starts_with("clip_id,actor,true,predicted,prob_neutral,"), "{wrong}");
    assert!(wrong.lines().nth(1).unwrap().contains(",happy,sad,0.0200,0.0200,0.0200,0.8600,"), "{wrong}");

    assert_png(&out.join("confusion.png"), None, 8);
    assert_png(&out.join("per_class_accuracy.png"), None, 5);
    assert_png(&out.join("curves.png"), Some((1200, 520)), 8);
}

#[test]
fn no_history_no_curves_and_bad_predictions_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_evaluation(dir.path(), &predictions(16, 4), &class_names(), None, "m").unwrap();
    assert!(!dir.path().join("curves.png").exists());

    let mut bad = predictions(16, 4);
    bad[3].probs.pop();
    let err = write_evaluation(dir.path(), &bad, &class_names(), None, "m").unwrap_err();
    assert!(err.message.contains(&bad[3].clip_id) && err.message.contains("7 probabilities"), "{}", err.chain());
    let mut bad = predictions(16, 4);
    bad[2].label = 9;
    let err = write_evaluation(dir.path(), &bad, &class_names(), None, "m").unwrap_err();
    assert!(err.chain().contains("label 9"), "{}", err.chain());
}

#[test]
fn history_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    fake_train(dir.path(), "r3d18", serde_json::json!({}), 4);
    let h = read_history(&dir.path().join("history.parquet")).unwrap();
    assert_eq!(h, history(4));
    let err = read_history(&dir.path().join("model.json")).unwrap_err();
    assert!(err.message.contains("model.json"), "{}", err.chain());
}

#[test]
fn misclassified_examples_from_the_tensor_cache() {
    let dir = tempfile::tempdir().unwrap();
    let preds = predictions(24, 5);
    let ids: Vec<String> = preds.iter().map(|p| p.clip_id.clone()).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    let extract = dir.path().join("extract");
    fake_extract(&extract, &unique, 10, 48);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let drawn = write_misclassified_examples(&out, &extract, &preds, &class_names(), 4).unwrap();
    assert_eq!(drawn, 4);
    // 6 tiles of 128 px + gaps; 4 rows of caption + tile.
    assert_png(&out.join("misclassified_examples.png"), Some((6 * 134 + 6, 50 + 4 * 164 + 6)), 50);

    // A clip missing from the index is named.
    let mut stray = preds.clone();
    let first_wrong = stray.iter().position(|p| p.label != p.predicted).unwrap();
    stray[first_wrong].clip_id = "00-00-00-00-00-00".into(); // sorts first among equal confidences
    let err = write_misclassified_examples(&out, &extract, &stray, &class_names(), 4).unwrap_err();
    assert!(err.message.contains("00-00-00-00-00-00"), "{}", err.chain());
    // Nothing wrong: nothing drawn.
    assert_eq!(write_misclassified_examples(&out, &extract, &predictions(8, 1000), &class_names(), 4).unwrap(), 0);
}
