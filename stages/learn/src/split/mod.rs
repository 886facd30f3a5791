//! The `split` stage: assigns every clip of the tensor cache to train, validation or test by
//! actor, so no speaker is ever seen both in training and in evaluation.
//!
//! Parameters (see [`SplitParams`]): the study's split by default (validation actors 21–22,
//! test actors 23–24, training every other actor), explicit actor lists, or subject-wise
//! k-fold (`folds`, `fold`, optional `val_actors_per_fold` and `seed`) meant to be expanded
//! with `matrix: {fold: [0, 1, 2, 3, 4]}`, or a published protocol's folds given as actor
//! lists (`fold_actors: [[1, 2, 3, 4], [5, 6, 7, 8], ...]`). The rule itself lives in [`assign`].
//!
//! Outputs: `assignment.parquet` (clip_id, actor, label, split), `class_counts.parquet`
//! (split, label, emotion, count), `actor_counts.parquet` (split, actor, count), `split.json`.

pub mod assign;
mod output;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use stage_api::{typed_params, ParamError, Params, Stage, StageContext, StageError, StageOutcome};

pub use assign::{assign_actors, ActorSplit, SplitRule};
pub use stage_formats::assignment::{read_assignment, Assigned, Split, ASSIGNMENT_FILE};
use stage_formats::tensor_cache::{read_cache_index, INDEX_FILE};

/// `with:` of a `split` stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitParams {
    /// Training actors; `null` (default) means every cache actor not in validation or test.
    #[serde(default)]
    pub train_actors: Option<Vec<i64>>,
    /// Validation actors (lists mode; default the study's 21, 22).
    #[serde(default)]
    pub val_actors: Option<Vec<i64>>,
    /// Test actors (lists mode; default the study's 23, 24).
    #[serde(default)]
    pub test_actors: Option<Vec<i64>>,
    /// Number of subject-wise folds; turns on k-fold mode.
    #[serde(default)]
    pub folds: Option<usize>,
    /// Which fold (0-based) to produce in k-fold mode.
    #[serde(default)]
    pub fold: Option<usize>,
    /// Validation actors per fold (k-fold); default: the whole next group.
    #[serde(default)]
    pub val_actors_per_fold: Option<usize>,
    /// Shuffles the actor order before cutting folds; default: sorted order.
    #[serde(default)]
    pub seed: Option<u64>,
    /// A published protocol's folds: the test actors of each fold (k-fold mode; `folds`, if
    /// given, must equal the number of groups). Omitted from the key when unset, so configs
    /// without it keep their keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold_actors: Option<Vec<Vec<i64>>>,
}

impl SplitParams {
    /// The rule these parameters describe, or the parameter that is wrong.
    pub fn rule(&self) -> Result<SplitRule, ParamError> {
        let folds = match (self.folds, &self.fold_actors) {
            (Some(folds), Some(groups)) if folds != groups.len() => {
                return Err(ParamError::new(
                    Some("folds"),
                    format!("`folds` is {folds} but `fold_actors` lists {} groups; give one of them, or make them agree", groups.len()),
                ))
            }
            (folds, groups) => folds.or(groups.as_ref().map(Vec::len)),
        };
        match folds {
            None => {
                for (name, set) in [
                    ("fold", self.fold.is_some()),
                    ("val_actors_per_fold", self.val_actors_per_fold.is_some()),
                    ("seed", self.seed.is_some()),
                ] {
                    if set {
                        return Err(ParamError::new(Some(name), format!("`{name}` only applies with `folds` (k-fold mode)")));
                    }
                }
                Ok(SplitRule::Lists {
                    train: self.train_actors.clone(),
                    val: self.val_actors.clone().unwrap_or_else(|| assign::STUDY_VAL_ACTORS.to_vec()),
                    test: self.test_actors.clone().unwrap_or_else(|| assign::STUDY_TEST_ACTORS.to_vec()),
                })
            }
            Some(folds) => {
                for (name, set) in [
                    ("train_actors", self.train_actors.is_some()),
                    ("val_actors", self.val_actors.is_some()),
                    ("test_actors", self.test_actors.is_some()),
                    ("seed", self.seed.is_some() && self.fold_actors.is_some()),
                ] {
                    if set {
                        let with = if self.fold_actors.is_some() { "fold_actors" } else { "folds" };
                        return Err(ParamError::new(Some(name), format!("`{name}` cannot be combined with `{with}`")));
                    }
                }
                let fold = self.fold.ok_or_else(|| {
                    ParamError::new(Some("fold"), "k-fold mode needs `fold` (0-based), e.g. `matrix: {fold: [0, 1, 2, 3, 4]}`")
                })?;
                if folds < 2 || fold >= folds {
                    return Err(ParamError::new(
                        Some("fold"),
                        format!("need folds >= 2 and 0 <= fold < folds, got folds {folds}, fold {fold}"),
                    ));
                }
                if let Some(empty) = self.fold_actors.iter().flatten().position(Vec::is_empty) {
                    return Err(ParamError::new(Some("fold_actors"), format!("group {empty} of `fold_actors` is empty")));
                }
                Ok(SplitRule::KFold {
                    folds,
                    fold,
                    val_actors_per_fold: self.val_actors_per_fold,
                    seed: self.seed,
                    groups: self.fold_actors.clone(),
                })
            }
        }
    }
}

/// The `split` stage kind.
pub struct SplitStage;

impl Stage for SplitStage {
    fn kind(&self) -> &'static str {
        "split"
    }

    fn version(&self) -> u32 {
        1
    }

    fn resolve_params(&self, params: &Params) -> Result<Params, ParamError> {
        let (typed, mut canonical): (SplitParams, Params) = typed_params(params)?;
        typed.rule()?;
        // Lists mode: write the defaults out, so `{}` and the study's explicit lists share a key.
        if typed.folds.is_none() && typed.fold_actors.is_none() {
            if typed.val_actors.is_none() {
                canonical.insert("val_actors".into(), serde_json::json!(assign::STUDY_VAL_ACTORS));
            }
            if typed.test_actors.is_none() {
                canonical.insert("test_actors".into(), serde_json::json!(assign::STUDY_TEST_ACTORS));
            }
        }
        Ok(canonical)
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        let (params, _): (SplitParams, Params) = typed_params(ctx.params).map_err(|e| StageError::msg(format!("split parameters: {e}")))?;
        let rule = params.rule().map_err(|e| StageError::msg(e.message))?;
        let extract = ctx.input_like("extract", INDEX_FILE)?;
        let clips = read_cache_index(&extract.dir)?;
        if clips.is_empty() {
            return Err(StageError::msg(format!("{}: the cache has no clips", extract.dir.display())));
        }
        let cache_actors: BTreeSet<i64> = clips.iter().map(|c| c.actor).collect();
        let actors = assign_actors(&rule, &cache_actors)?;
        let summary = output::write_all(ctx.out_dir, &rule, &actors, &clips)?;
        for warning in &summary.warnings {
            ctx.progress.note(warning);
        }
        Ok(StageOutcome::new(summary.line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(json: serde_json::Value) -> SplitParams {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn fold_actors_turn_on_kfold_and_must_agree_with_folds() {
        let groups = serde_json::json!([[1, 2], [3, 4], [5, 6]]);
        let rule = params(serde_json::json!({"fold": 1, "fold_actors": groups})).rule().unwrap();
        assert!(matches!(rule, SplitRule::KFold { folds: 3, fold: 1, groups: Some(ref g), .. } if g.len() == 3));
        params(serde_json::json!({"folds": 3, "fold": 0, "fold_actors": groups})).rule().unwrap();

        let disagree = params(serde_json::json!({"folds": 4, "fold": 0, "fold_actors": groups})).rule().unwrap_err();
        assert!(disagree.message.contains("`folds` is 4 but `fold_actors` lists 3 groups"), "{}", disagree.message);
        let seeded = params(serde_json::json!({"fold": 0, "seed": 1, "fold_actors": groups})).rule().unwrap_err();
        assert!(seeded.message.contains("`seed` cannot be combined with `fold_actors`"), "{}", seeded.message);
        let empty = params(serde_json::json!({"fold": 0, "fold_actors": [[1], []]})).rule().unwrap_err();
        assert!(empty.message.contains("group 1 of `fold_actors` is empty"), "{}", empty.message);
        let lists = params(serde_json::json!({"fold": 0, "test_actors": [1], "fold_actors": groups})).rule().unwrap_err();
        assert!(lists.message.contains("`test_actors` cannot be combined"), "{}", lists.message);
    }

    #[test]
    fn configs_without_fold_actors_keep_their_canonical_params() {
        // `fold_actors` is skipped when unset, so existing split keys do not move.
        let json = serde_json::to_value(params(serde_json::json!({"folds": 5, "fold": 2}))).unwrap();
        assert!(json.get("fold_actors").is_none(), "{json}");
    }
}
