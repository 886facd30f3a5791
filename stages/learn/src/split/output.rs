//! Writes the `split` stage's files: the per-clip assignment, per-split class and actor
//! counts (Parquet, for the report), and `split.json` (the rule, the actors, the counts).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, Int64Array, StringArray};
use stage_api::StageError;

use super::assign::{join, ActorSplit, SplitRule};
use super::{Split, ASSIGNMENT_FILE};
use stage_formats::assignment::{write_assignment, Assigned};
use stage_formats::json::write_json;
use stage_formats::parquet::{batch, write_parquet};
use stage_formats::tensor_cache::IndexRow;

/// What the stage reports.
pub struct Summary {
    pub line: String,
    pub warnings: Vec<String>,
}

pub fn write_all(out: &Path, rule: &SplitRule, actors: &ActorSplit, clips: &[IndexRow]) -> Result<Summary, StageError> {
    let split_of = |actor: i64| {
        [(Split::Train, &actors.train), (Split::Val, &actors.val), (Split::Test, &actors.test)]
            .into_iter()
            .find(|(_, list)| list.contains(&actor))
            .map(|(s, _)| s)
    };
    let assigned: Vec<(&IndexRow, Split)> = clips.iter().filter_map(|c| split_of(c.actor).map(|s| (c, s))).collect();

    let rows: Vec<Assigned> =
        assigned.iter().map(|(c, split)| Assigned { clip_id: c.clip_id.clone(), actor: c.actor, label: c.label, split: *split }).collect();
    write_assignment(&out.join(ASSIGNMENT_FILE), &rows)?;

    // Class counts for every label present in the cache, zero counts included.
    let labels: BTreeMap<i64, &str> = clips.iter().map(|c| (c.label, c.emotion.as_str())).collect();
    let mut class_counts: BTreeMap<(Split, i64), i64> = BTreeMap::new();
    let mut actor_counts: BTreeMap<(Split, i64), i64> = BTreeMap::new();
    for s in Split::ALL {
        for &l in labels.keys() {
            class_counts.insert((s, l), 0);
        }
    }
    for (c, s) in &assigned {
        *class_counts.entry((*s, c.label)).or_default() += 1;
        *actor_counts.entry((*s, c.actor)).or_default() += 1;
    }
    write_class_counts(&out.join("class_counts.parquet"), &class_counts, &labels)?;
    write_actor_counts(&out.join("actor_counts.parquet"), &actor_counts)?;

    let mut warnings = Vec::new();
    for ((s, l), n) in &class_counts {
        if *n == 0 {
            warnings.push(format!("the {} split has no clip of class {l} ({})", s.as_str(), labels[l]));
        }
    }
    if !actors.unassigned.is_empty() {
        warnings.push(format!("actor(s) {} are in no split and left out", join(&actors.unassigned)));
    }
    let clips_in = |s: Split| assigned.iter().filter(|(_, x)| *x == s).count();
    let (train, val, test) = (clips_in(Split::Train), clips_in(Split::Val), clips_in(Split::Test));
    let (mode, folds, fold, val_per_fold, seed) = match rule {
        SplitRule::Lists { .. } => ("actors", None, None, None, None),
        SplitRule::KFold { folds, fold, val_actors_per_fold, seed, .. } => {
            ("kfold", Some(*folds), Some(*fold), *val_actors_per_fold, *seed)
        }
    };
    let json = serde_json::json!({
        "mode": mode,
        "folds": folds,
        "fold": fold,
        "val_actors_per_fold": val_per_fold,
        "seed": seed,
        "actors": actors,
        "clips": { "train": train, "val": val, "test": test, "unassigned": clips.len() - assigned.len() },
        "classes": labels,
        "warnings": warnings,
    });
    write_json(&out.join("split.json"), &json)?;
    let fold_text = fold.map(|f| format!("fold {f}/{}: ", folds.unwrap_or(0))).unwrap_or_default();
    let count = |n: usize| if n == 1 { "1 actor".to_owned() } else { format!("{n} actors") };
    let line = format!(
        "{fold_text}train {train} clips ({}), val {val} ({}: {}), test {test} ({}: {})",
        count(actors.train.len()),
        count(actors.val.len()),
        join(&actors.val),
        count(actors.test.len()),
        join(&actors.test)
    );
    Ok(Summary { line, warnings })
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn write_class_counts(path: &Path, counts: &BTreeMap<(Split, i64), i64>, labels: &BTreeMap<i64, &str>) -> Result<(), StageError> {
    let b = batch(vec![
        ("split", strings(counts.keys().map(|(s, _)| s.as_str()))),
        ("label", Arc::new(Int32Array::from_iter_values(counts.keys().map(|(_, l)| *l as i32)))),
        ("emotion", strings(counts.keys().map(|(_, l)| labels[l]))),
        ("count", Arc::new(Int64Array::from_iter_values(counts.values().copied()))),
    ])?;
    write_parquet(path, &b)
}

fn write_actor_counts(path: &Path, counts: &BTreeMap<(Split, i64), i64>) -> Result<(), StageError> {
    let b = batch(vec![
        ("split", strings(counts.keys().map(|(s, _)| s.as_str()))),
        ("actor", Arc::new(Int32Array::from_iter_values(counts.keys().map(|(_, a)| *a as i32)))),
        ("count", Arc::new(Int64Array::from_iter_values(counts.values().copied()))),
    ])?;
    write_parquet(path, &b)
}
