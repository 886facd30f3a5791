//! The `split` stage: assigns every clip of the tensor cache to train, validation or test by
//! actor, so no speaker is ever seen both in training and in evaluation.
//!
//! Parameters (see [`SplitParams`]): the study's split by default (validation actors 21–22,
//! test actors 23–24, training every other actor), explicit actor lists, or subject-wise
//! k-fold (`folds`, `fold`, optional `val_actors_per_fold` and `seed`) meant to be expanded
//! with `matrix: {fold: [0, 1, 2, 3, 4]}`. The rule itself lives in [`assign`].
//!
//! Outputs: `assignment.parquet` (clip_id, actor, label, split), `class_counts.parquet`
//! (split, label, emotion, count), `actor_counts.parquet` (split, actor, count), `split.json`.

pub mod assign;
mod output;

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use stage_api::{typed_params, ParamError, Params, Stage, StageContext, StageError, StageOutcome};

use crate::cache::read_cache_index;
use crate::table::Table;
pub use assign::{assign_actors, ActorSplit, SplitRule};

/// The assignment file in a `split` output.
pub const ASSIGNMENT_FILE: &str = "assignment.parquet";

/// One of the three splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Split::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

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
}

impl SplitParams {
    /// The rule these parameters describe, or the parameter that is wrong.
    pub fn rule(&self) -> Result<SplitRule, ParamError> {
        match self.folds {
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
                ] {
                    if set {
                        return Err(ParamError::new(Some(name), format!("`{name}` cannot be combined with `folds`")));
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
                Ok(SplitRule::KFold { folds, fold, val_actors_per_fold: self.val_actors_per_fold, seed: self.seed })
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
        if typed.folds.is_none() {
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
        let extract = ctx.input_like("extract", crate::cache::INDEX_FILE)?;
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

/// One row of `assignment.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct Assigned {
    pub clip_id: String,
    pub actor: i64,
    pub label: i64,
    pub split: Split,
}

/// Reads `<dir>/assignment.parquet` (a `split` output).
pub fn read_assignment(dir: &Path) -> Result<Vec<Assigned>, StageError> {
    let path = dir.join(ASSIGNMENT_FILE);
    if !path.is_file() {
        return Err(StageError::msg(format!("{}: missing; is `{}` a `split` output?", path.display(), dir.display())));
    }
    let table = Table::read(&path)?;
    let ids = table.strings("clip_id")?;
    let actors = table.ints("actor")?;
    let labels = table.ints("label")?;
    let splits = table.strings("split")?;
    ids.into_iter()
        .zip(actors)
        .zip(labels)
        .zip(splits)
        .map(|(((clip_id, actor), label), split)| {
            let split = Split::parse(&split)
                .ok_or_else(|| StageError::msg(format!("{}: clip `{clip_id}` has unknown split `{split}`", path.display())))?;
            Ok(Assigned { clip_id, actor, label, split })
        })
        .collect()
}
