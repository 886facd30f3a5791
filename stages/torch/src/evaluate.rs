//! The `evaluate` stage: runs one trained model on its test split and writes the metrics,
//! tables and plots of `stages_report::evaluation` (accuracy with a Wilson 95 % interval,
//! macro-F1, UAR, per-class scores, confusion matrices, misclassified clips, training curves).
//!
//! Needs exactly one `train` instance (give `evaluate` the same `matrix:` as `train`, and the
//! engine pairs `evaluate[arch=x]` with `train[arch=x]`), plus `extract` and `split`. The
//! `train` input may instead be a model trained elsewhere that brings its predictions
//! ([`crate::external`]): then nothing is run, and the metrics come from the same code.

use stage_api::worker::WorkerStage;
use stage_api::{typed_params, Params, StageContext, StageError, StageInput, StageOutcome};
use stages_learn::evaluate::EvaluateParams;

use crate::cache::{cache_geometry, read_cache_index, ClipLoader, IndexRow};
use crate::external::{self, PredictionsCard};
use crate::inference::Predictor;
use crate::split::{read_assignment, Assigned, Split};
use crate::train::device::resolve_device;
use crate::CLASS_NAMES;

/// Misclassified clips drawn in `misclassified_examples.png`.
const EXAMPLE_ROWS: usize = 6;

/// The `evaluate` stage as the worker runs it: described by
/// [`stages_learn::evaluate::EvaluateStage`], evaluated by [`evaluate`].
pub const EVALUATE: WorkerStage<stages_learn::evaluate::EvaluateStage> =
    WorkerStage { describe: stages_learn::evaluate::EvaluateStage, work: evaluate };

/// Evaluates one model on its test (or validation) split and writes the metrics: a model the
/// pipeline trained is run on the split's clips; a model trained elsewhere brings its
/// predictions ([`crate::external`]). Either way the same code computes and writes the metrics.
pub fn evaluate(ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
    let (p, _): (EvaluateParams, Params) = typed_params(ctx.params).map_err(|e| StageError::msg(e.message))?;
    let train = ctx.input_like("train", crate::train::checkpoint::CARD_FILE)?;
    let extract = ctx.input_like("extract", crate::cache::INDEX_FILE)?;
    let split = ctx.input_like("split", crate::split::ASSIGNMENT_FILE)?;
    tch::set_num_threads(ctx.threads.max(1) as i32);

    let wanted = if p.split == "val" { Split::Val } else { Split::Test };
    let assignment = read_assignment(&split.dir)?;
    let chosen: Vec<&Assigned> = assignment.iter().filter(|a| a.split == wanted).collect();
    if chosen.is_empty() {
        return Err(StageError::msg(format!("the {} split of `{}` holds no clips", p.split, split.instance)));
    }
    let index = read_cache_index(&extract.dir)?;
    let (predictions, class_names) = match PredictionsCard::read_if_any(&train.dir)? {
        Some(card) => {
            let (frames, size) = cache_geometry(&extract.dir, &index)?;
            let predictions = card
                .check_geometry(&train.dir, frames, size)
                .and_then(|()| external::read_predictions(&train.dir, &split.dir, &assignment, wanted))
                // The file lies in the store: say which stage wrote it.
                .map_err(|e| StageError { message: format!("the predictions of `{}`: {}", train.instance, e.message), ..e })?;
            (predictions, CLASS_NAMES.iter().map(|s| s.to_string()).collect())
        }
        None => crate::libtorch::catch("evaluate", || run_model(ctx, &p, train, extract, &index, &chosen))?,
    };

    let history_file = train.dir.join(stage_formats::history::HISTORY_FILE);
    let history = if history_file.is_file() { Some(stage_formats::history::read_history(&history_file)?) } else { None };
    let metrics = stages_report::write_evaluation(ctx.out_dir, &predictions, &class_names, history.as_ref(), &train.instance)?;
    stages_report::write_misclassified_examples(ctx.out_dir, &extract.dir, &predictions, &class_names, EXAMPLE_ROWS)?;
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

/// Runs the model in `train` (a `train` output) on the `chosen` clips: their predictions and
/// the model's class names.
fn run_model(
    ctx: &StageContext<'_>,
    p: &EvaluateParams,
    train: &StageInput,
    extract: &StageInput,
    index: &[IndexRow],
    chosen: &[&Assigned],
) -> Result<(Vec<stages_report::Prediction>, Vec<String>), StageError> {
    let predictor = Predictor::load(&train.dir, resolve_device(p.device)?)?;
    let loader = ClipLoader::open(&extract.dir, index)?;
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
    Ok((predictions, predictor.class_names().to_vec()))
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
}
