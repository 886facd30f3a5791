//! The `evaluate` stage: runs one trained model on its test split and writes the metrics,
//! tables and plots of `stages_report::evaluation` (accuracy with a Wilson 95 % interval,
//! macro-F1, UAR, per-class scores, confusion matrices, misclassified clips, training curves).
//!
//! Needs exactly one `train` instance (give `evaluate` the same `matrix:` as `train`, and the
//! engine pairs `evaluate[arch=x]` with `train[arch=x]`), plus `extract` and `split`.

use serde::{Deserialize, Serialize};
use stage_api::{typed_params, ParamError, Params, Stage, StageContext, StageError, StageOutcome};

use crate::cache::{read_cache_index, ClipLoader};
use crate::inference::Predictor;
use crate::inputs::find_input;
use crate::split::{read_assignment, Split};
use crate::train::DeviceChoice;

/// Misclassified clips drawn in `misclassified_examples.png`.
const EXAMPLE_ROWS: usize = 6;

/// Unlike other stages, `evaluate` accepts keys it does not know: they are matrix values
/// (`arch`, `frames`, `fold`, ...) that pair it with the matching `train` instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvaluateParams {
    /// Which split to evaluate on (`test`, or `val`).
    #[serde(default = "default_split")]
    pub split: String,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default)]
    pub device: DeviceChoice,
    /// Copied from the matrix (e.g. `arch`); ignored by the stage itself, used to pair with
    /// the matching `train` instance.
    #[serde(flatten)]
    pub matrix: std::collections::BTreeMap<String, serde_json::Value>,
}

fn default_split() -> String {
    "test".into()
}

fn default_batch() -> usize {
    16
}

pub struct EvaluateStage;

impl Stage for EvaluateStage {
    fn kind(&self) -> &'static str {
        "evaluate"
    }

    fn version(&self) -> u32 {
        1
    }

    fn resolve_params(&self, params: &Params) -> Result<Params, ParamError> {
        let (p, canonical): (EvaluateParams, Params) = typed_params(params)?;
        if p.split != "test" && p.split != "val" {
            return Err(ParamError::new(Some("split"), format!("`split` must be `test` or `val`, not `{}`", p.split)));
        }
        if p.batch_size == 0 {
            return Err(ParamError::new(Some("batch_size"), "`batch_size` must be at least 1"));
        }
        Ok(canonical)
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        let (p, _): (EvaluateParams, Params) = typed_params(ctx.params).map_err(|e| StageError::msg(e.message))?;
        let train = find_input(ctx, "train", "model.json")?;
        let extract = find_input(ctx, "extract", "index.parquet")?;
        let split = find_input(ctx, "split", "assignment.parquet")?;
        tch::set_num_threads(ctx.threads.max(1) as i32);

        let predictor = Predictor::load(&train.dir, p.device.resolve()?)?;
        let wanted = if p.split == "val" { Split::Val } else { Split::Test };
        let chosen: Vec<_> = read_assignment(&split.dir)?.into_iter().filter(|a| a.split == wanted).collect();
        if chosen.is_empty() {
            return Err(StageError::msg(format!("the {} split of `{}` holds no clips", p.split, split.instance)));
        }
        let index = read_cache_index(&extract.dir)?;
        let loader = ClipLoader::open(&extract.dir, &index)?;
        if (loader.frames(), loader.size()) != (predictor.frames(), predictor.size()) {
            return Err(StageError::msg(format!(
                "the model in `{}` expects T={} frames of {}x{}, the cache of `{}` holds T={} of {}x{}",
                train.instance,
                predictor.frames(),
                predictor.size(),
                predictor.size(),
                extract.instance,
                loader.frames(),
                loader.size(),
                loader.size()
            )));
        }

        ctx.progress.start(chosen.len() as u64, "clips");
        let mut predictions = Vec::with_capacity(chosen.len());
        for batch in chosen.chunks(p.batch_size) {
            let clips: Vec<&[u8]> = batch.iter().map(|a| loader.clip(&a.clip_id)).collect::<Result<_, _>>()?;
            let probs = predictor.predict(&clips)?;
            for (a, probs) in batch.iter().zip(probs) {
                let predicted = argmax(&probs);
                predictions.push(stages_report::Prediction {
                    clip_id: a.clip_id.clone(),
                    actor: a.actor as i32,
                    label: a.label,
                    predicted,
                    probs,
                });
            }
            ctx.progress.advance(batch.len() as u64);
        }

        let history_file = train.dir.join("history.parquet");
        let history = if history_file.is_file() { Some(stages_report::read_history(&history_file)?) } else { None };
        let metrics = stages_report::write_evaluation(
            ctx.out_dir,
            &predictions,
            predictor.class_names(),
            history.as_ref(),
            &train.instance,
        )?;
        stages_report::write_misclassified_examples(ctx.out_dir, &extract.dir, &predictions, predictor.class_names(), EXAMPLE_ROWS)?;
        Ok(StageOutcome::new(format!(
            "{} {} clips: accuracy {:.1} % [{:.1}, {:.1}], macro-F1 {:.3}, UAR {:.3}",
            predictions.len(),
            p.split,
            100.0 * metrics.accuracy,
            100.0 * metrics.accuracy_ci.low,
            100.0 * metrics.accuracy_ci.high,
            metrics.macro_f1,
            metrics.uar
        )))
    }
}

fn argmax(probs: &[f32]) -> i64 {
    probs.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_picks_the_largest() {
        assert_eq!(argmax(&[0.1, 0.7, 0.2]), 1);
    }

    #[test]
    fn matrix_values_are_accepted_and_split_is_checked() {
        let ok: Params = serde_json::from_str(r#"{"arch": "r3d18"}"#).unwrap();
        let resolved = EvaluateStage.resolve_params(&ok).unwrap();
        assert_eq!(resolved["split"], "test");
        assert_eq!(resolved["arch"], "r3d18");
        let bad: Params = serde_json::from_str(r#"{"split": "train"}"#).unwrap();
        assert!(EvaluateStage.resolve_params(&bad).is_err());
    }
}
