//! The `report` stage: one comparison of every trained model.
//!
//! Needs `evaluate` (every instance), `train` (every instance) and optionally `split`; also
//! any other stage of kind `evaluate` or `train`, and `run:` stages that stand for either (a
//! model trained elsewhere writes `model.json`, see `README.md`, "Bring your own model").
//! Each evaluate instance is paired with the train instance it evaluated: the one its
//! `metrics.json` names as `model`, else the one that agrees on the matrix values of the
//! evaluate instance (the `[key=value,...]` part of its instance name) and on `arch` and
//! `fold` wherever both instances' `params` carry them; a single train instance pairs with a
//! single evaluate instance trivially. From the pair the stage reads `metrics.json`
//! (evaluate) and `model.json` (train: arch, frames, size, augmentation, parameter_count,
//! train_seconds, epochs_run).
//!
//! Outputs:
//! - `comparison.csv` / `comparison.json`: one row per evaluated model ([`ComparisonRow`]);
//!   the JSON also holds the k-fold summary ([`FoldSummary`]: mean ± sample std over folds per
//!   architecture/configuration) when train params carry `fold`.
//! - `plots/`: the accuracy comparison, each model's confusion matrix, per-class accuracy,
//!   training curves and misclassified examples (copied from evaluate, curves drawn from the
//!   train stage's `history.parquet` when evaluate has none), the split's class and actor
//!   distributions.
//! - `report.md` (links the plots) and `report.html` (self-contained: plots embedded as
//!   base64 data URIs), with the study's reference accuracies as a column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use stage_api::{typed_params, ParamError, Params, Stage, StageContext, StageError, StageInput, StageOutcome};

use crate::html::{render_html, render_markdown};
use crate::io::{file_error, write_csv, write_json, Table};
use crate::metrics::{mean_std, Metrics};
use crate::plots::{self, ActorCount, ClassCount};
use stage_formats::history::read_history;
use stage_formats::metrics::{read_metrics, METRICS_FILE};
use stage_formats::model_card::{card_fields, MODEL_CARD_FILE};

/// Parameters of `uses: report`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// The report's title.
    #[serde(default = "default_title")]
    pub title: String,
    /// Show the study's reference accuracies next to ours.
    #[serde(default = "yes")]
    pub references: bool,
    /// The pipeline runs the literature's 6-fold protocol: show the published anchors
    /// (MAE-DFER, SVFAP) beside our fold means. Left out of the key when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub literature: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_title() -> String {
    "Emotion recognition from faces in RAVDESS videos: model comparison".to_owned()
}

fn yes() -> bool {
    true
}

/// The `report` stage kind.
pub struct ReportStage;

impl Stage for ReportStage {
    fn kind(&self) -> &'static str {
        "report"
    }

    fn version(&self) -> u32 {
        4 // 4: per-fold table and the literature comparison for k-fold reports
    }

    fn resolve_params(&self, params: &Params) -> Result<Params, ParamError> {
        typed_params::<ReportParams>(params).map(|(_, canonical)| canonical)
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        let (params, _): (ReportParams, _) = typed_params(ctx.params).map_err(|e| StageError::msg(format!("report parameters: {e}")))?;
        let report = build_report(ctx, &params)?;
        let summary = format!(
            "{} model(s) compared{}",
            report.rows.len(),
            report.best().map(|r| format!(", best {} at {:.1}% test accuracy", r.model, r.accuracy * 100.0)).unwrap_or_default()
        );
        Ok(StageOutcome::new(summary))
    }
}

/// The study's reference test accuracies (percent), by architecture.
pub const STUDY_REFERENCES: [(&str, f64); 5] = [
    ("custom 2D CNN, early fusion", 28.3),
    ("ResNet-18, early fusion", 42.5),
    ("ResNet-18, late fusion", 52.9),
    ("R3D-18", 60.4),
    ("ResNet-18 + LSTM", 62.1),
];

/// The study's model that an architecture name stands for, and its reference accuracy in
/// percent. Matching is on the lower-cased name without punctuation: `lstm` → ResNet-18 +
/// LSTM; `r3d` → R3D-18; `late` → ResNet-18 late fusion; `resnet`/`early` → ResNet-18 early
/// fusion; `cnn`/`2d`/`custom`/`simple` → the custom 2D CNN.
pub fn study_reference(arch: &str) -> Option<(&'static str, f64)> {
    let a: String = arch.to_lowercase().chars().filter(char::is_ascii_alphanumeric).collect();
    let index = if a.contains("lstm") {
        4
    } else if a.contains("r3d") {
        3
    } else if a.contains("late") {
        2
    } else if a.contains("cnn") || a.contains("2d") || a.contains("custom") || a.contains("simple") {
        // Before "early": `early_fusion_cnn` is the custom CNN, not the early-fusion ResNet.
        0
    } else if a.contains("resnet") || a.contains("early") {
        1
    } else {
        return None;
    };
    Some(STUDY_REFERENCES[index])
}

/// One evaluated model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonRow {
    /// The evaluate instance name.
    pub model: String,
    pub arch: String,
    pub frames: Option<u64>,
    pub size: Option<u64>,
    pub augmentation: String,
    pub fold: Option<String>,
    pub parameter_count: Option<u64>,
    pub train_seconds: Option<f64>,
    pub epochs_run: Option<u64>,
    pub n_test: u64,
    pub accuracy: f64,
    pub accuracy_ci_low: f64,
    pub accuracy_ci_high: f64,
    pub macro_f1: f64,
    pub uar: f64,
    /// The study's accuracy for this architecture, percent.
    pub reference_accuracy: Option<f64>,
}

/// Mean ± sample standard deviation over the folds of one configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldSummary {
    pub arch: String,
    pub frames: Option<u64>,
    pub size: Option<u64>,
    pub augmentation: String,
    pub folds: usize,
    pub accuracy_mean: f64,
    pub accuracy_std: f64,
    pub macro_f1_mean: f64,
    pub macro_f1_std: f64,
    pub uar_mean: f64,
    pub uar_std: f64,
    pub train_seconds_mean: Option<f64>,
    pub reference_accuracy: Option<f64>,
}

/// A plot in the report: its path relative to the output directory and a caption.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    pub file: String,
    pub caption: String,
}

/// Per-model figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSection {
    pub model: String,
    pub figures: Vec<Figure>,
}

/// Everything the report shows.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub title: String,
    pub references: bool,
    pub literature: bool,
    pub rows: Vec<ComparisonRow>,
    pub folds: Vec<FoldSummary>,
    pub overview: Vec<Figure>,
    pub data: Vec<Figure>,
    pub models: Vec<ModelSection>,
    pub notes: Vec<String>,
}

impl Report {
    /// The row with the highest test accuracy.
    pub fn best(&self) -> Option<&ComparisonRow> {
        self.rows.iter().max_by(|a, b| a.accuracy.total_cmp(&b.accuracy))
    }
}

/// Gathers the inputs, draws and copies the plots, and writes every output file.
fn build_report(ctx: &StageContext<'_>, params: &ReportParams) -> Result<Report, StageError> {
    let evaluates = every_input_like(ctx, "evaluate", METRICS_FILE);
    if evaluates.is_empty() {
        return Err(StageError::msg("the report needs at least one `evaluate` stage in `needs:`"));
    }
    let trains = every_input_like(ctx, "train", MODEL_CARD_FILE);
    let plots_dir = ctx.out_dir.join("plots");
    std::fs::create_dir_all(&plots_dir).map_err(|e| file_error("creating", &plots_dir, e))?;
    ctx.progress.start(evaluates.len() as u64, "models");

    let mut rows = Vec::new();
    let mut models = Vec::new();
    let mut notes = Vec::new();
    for eval in &evaluates {
        let metrics: Metrics = read_metrics(&eval.dir)?;
        let train = match_train(eval, &metrics, &trains)?;
        if train.is_none() && !trains.is_empty() {
            let note = format!("{}: no matching train instance; its training columns are empty", eval.instance);
            ctx.progress.note(&note);
            notes.push(note);
        }
        let model_json = match train {
            Some(t) => Value::Object(card_fields(&t.dir)?),
            None => Value::Null,
        };
        rows.push(comparison_row(eval, train, &model_json, &metrics));
        models.push(model_figures(eval, train, &plots_dir)?);
        ctx.progress.advance(1);
    }
    rows.sort_by(|a, b| (&a.arch, &a.fold, &a.model).cmp(&(&b.arch, &b.fold, &b.model)));
    models.sort_by(|a, b| a.model.cmp(&b.model));
    let folds = fold_summaries(&rows);

    let mut overview = Vec::new();
    let file = "plots/accuracy_comparison.png";
    plots::model_comparison(&rows, params.references, &ctx.out_dir.join(file))?;
    overview.push(Figure {
        file: file.into(),
        caption: "Test accuracy per model with its 95% Wilson interval (whiskers) and the study's number (red bar)".into(),
    });
    let data = split_figures(ctx, &plots_dir, &mut notes)?;

    let report = Report {
        title: params.title.clone(),
        references: params.references,
        literature: params.literature,
        rows,
        folds,
        overview,
        data,
        models,
        notes,
    };
    write_comparison_csv(&ctx.out_dir.join("comparison.csv"), &report.rows)?;
    write_json(&ctx.out_dir.join("comparison.json"), &serde_json::json!({ "models": report.rows, "folds": report.folds }))?;
    let md = render_markdown(&report);
    let md_path = ctx.out_dir.join("report.md");
    std::fs::write(&md_path, md).map_err(|e| file_error("writing", &md_path, e))?;
    let html = render_html(&report, ctx.out_dir)?;
    let html_path = ctx.out_dir.join("report.html");
    std::fs::write(&html_path, html).map_err(|e| file_error("writing", &html_path, e))?;
    Ok(report)
}

/// A parameter value as plain text (strings without quotes).
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every input that is a `kind` output: from the need called `kind`, from a stage of that
/// kind under any name (`evaluate_pytorch: {uses: evaluate}`), or from a `run:` stage whose
/// folder holds `marker` (a model trained elsewhere, with its `model.json`).
fn every_input_like<'a>(ctx: &'a StageContext<'_>, kind: &str, marker: &str) -> Vec<&'a StageInput> {
    ctx.inputs.iter().filter(|i| i.need == kind || i.is_kind(kind) || (i.kind.is_none() && i.dir.join(marker).is_file())).collect()
}

/// The train instance that `eval` evaluated (see the module doc); `None` when none agrees.
/// The instance `metrics.json` names wins: `evaluate` records what it evaluated.
fn match_train<'a>(eval: &StageInput, metrics: &Metrics, trains: &[&'a StageInput]) -> Result<Option<&'a StageInput>, StageError> {
    if let Some(named) = trains.iter().copied().find(|t| t.instance == metrics.model) {
        return Ok(Some(named));
    }
    let mut keys: BTreeMap<String, String> = eval.matrix.iter().map(|(k, v)| (k.clone(), text_of(v))).collect();
    for key in ["arch", "fold"] {
        if let Some(v) = eval.params.get(key) {
            keys.entry(key.to_owned()).or_insert_with(|| text_of(v));
        }
    }
    let agrees = |t: &StageInput| {
        keys.iter().all(|(k, v)| match t.params.get(k).or_else(|| t.matrix.get(k)).map(text_of) {
            Some(other) => &other == v,
            None => true,
        })
    };
    let candidates: Vec<&'a StageInput> = trains.iter().copied().filter(|t| agrees(t)).collect();
    match candidates.as_slice() {
        [one] => Ok(Some(one)),
        [] => Ok(None),
        many => Err(StageError::msg(format!(
            "{} matches several train instances ({}); give them distinct matrix values",
            eval.instance,
            many.iter().map(|t| t.instance.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Looks `key` up in model.json, then in the train params, then in the evaluate params.
fn lookup<'a>(key: &str, model: &'a Value, train: Option<&'a StageInput>, eval: &'a StageInput) -> Option<&'a Value> {
    model.get(key).filter(|v| !v.is_null()).or_else(|| train.and_then(|t| t.params.get(key))).or_else(|| eval.params.get(key))
}

fn augmentation_text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::Bool(true)) => "yes".into(),
        Some(Value::Bool(false)) => "no".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn comparison_row(eval: &StageInput, train: Option<&StageInput>, model: &Value, m: &Metrics) -> ComparisonRow {
    let get = |key: &str| lookup(key, model, train, eval);
    let arch = get("arch").map(text_of).unwrap_or_else(|| if m.model.is_empty() { eval.instance.clone() } else { m.model.clone() });
    let augmentation = augmentation_text(get("augment").or_else(|| get("augmentation")));
    let fold = get("fold").filter(|v| !v.is_null()).map(text_of);
    ComparisonRow {
        model: eval.instance.clone(),
        reference_accuracy: study_reference(&arch).map(|r| r.1),
        arch,
        frames: get("frames").and_then(Value::as_u64),
        size: get("size").and_then(Value::as_u64),
        augmentation,
        fold,
        parameter_count: model.get("parameter_count").and_then(Value::as_u64),
        train_seconds: model.get("train_seconds").and_then(Value::as_f64),
        epochs_run: model.get("epochs_run").and_then(Value::as_u64),
        n_test: m.n,
        accuracy: m.accuracy,
        accuracy_ci_low: m.accuracy_ci.low,
        accuracy_ci_high: m.accuracy_ci.high,
        macro_f1: m.macro_f1,
        uar: m.uar,
    }
}

/// Mean ± std over folds, per (arch, frames, size, augmentation), for rows with a fold.
pub fn fold_summaries(rows: &[ComparisonRow]) -> Vec<FoldSummary> {
    // (arch, frames, size, augmentation) → the fold rows of that configuration.
    type Config = (String, Option<u64>, Option<u64>, String);
    let mut groups: BTreeMap<Config, Vec<&ComparisonRow>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.fold.is_some()) {
        groups.entry((r.arch.clone(), r.frames, r.size, r.augmentation.clone())).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|((arch, frames, size, augmentation), members)| {
            let stat = |f: fn(&ComparisonRow) -> f64| mean_std(&members.iter().map(|r| f(r)).collect::<Vec<_>>());
            let (accuracy_mean, accuracy_std) = stat(|r| r.accuracy);
            let (macro_f1_mean, macro_f1_std) = stat(|r| r.macro_f1);
            let (uar_mean, uar_std) = stat(|r| r.uar);
            let seconds: Vec<f64> = members.iter().filter_map(|r| r.train_seconds).collect();
            FoldSummary {
                reference_accuracy: study_reference(&arch).map(|r| r.1),
                arch,
                frames,
                size,
                augmentation,
                folds: members.len(),
                accuracy_mean,
                accuracy_std,
                macro_f1_mean,
                macro_f1_std,
                uar_mean,
                uar_std,
                train_seconds_mean: (!seconds.is_empty()).then(|| mean_std(&seconds).0),
            }
        })
        .collect()
}

/// A file-name-safe form of an instance name.
fn slug(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    s.trim_matches('_').to_owned()
}

fn copy(from: &Path, to: &Path) -> Result<(), StageError> {
    std::fs::copy(from, to).map(|_| ()).map_err(|e| file_error(&format!("copying {} to", from.display()), to, e))
}

/// Copies (or draws) the plots of one model into `plots_dir`.
fn model_figures(eval: &StageInput, train: Option<&StageInput>, plots_dir: &Path) -> Result<ModelSection, StageError> {
    let name = slug(&eval.instance);
    let mut figures = Vec::new();
    let mut take = |source: PathBuf, suffix: &str, caption: &str| -> Result<bool, StageError> {
        if !source.is_file() {
            return Ok(false);
        }
        let file = format!("{name}-{suffix}.png");
        copy(&source, &plots_dir.join(&file))?;
        figures.push(Figure { file: format!("plots/{file}"), caption: caption.to_owned() });
        Ok(true)
    };
    take(eval.dir.join("confusion.png"), "confusion", "Confusion matrix (counts; colour = share of the true class)")?;
    take(eval.dir.join("per_class_accuracy.png"), "per_class_accuracy", "Per-class accuracy on the test set")?;
    let has_curves = take(eval.dir.join("curves.png"), "curves", "Training curves")?;
    take(eval.dir.join("misclassified_examples.png"), "misclassified", "Misclassified test clips")?;
    if let (false, Some(train)) = (has_curves, train) {
        let history_path = train.dir.join(stage_formats::history::HISTORY_FILE);
        if history_path.is_file() {
            let history = read_history(&history_path)?;
            if !history.epochs.is_empty() {
                let file = format!("{name}-curves.png");
                plots::training_curves(&history, &format!("Training curves — {}", train.instance), &plots_dir.join(&file))?;
                figures.insert(2.min(figures.len()), Figure { file: format!("plots/{file}"), caption: "Training curves".into() });
            }
        }
    }
    Ok(ModelSection { model: eval.instance.clone(), figures })
}

/// Class and actor distribution plots of the (first) split instance, when there is one.
fn split_figures(ctx: &StageContext<'_>, plots_dir: &Path, notes: &mut Vec<String>) -> Result<Vec<Figure>, StageError> {
    let splits = ctx.inputs_like("split", "assignment.parquet");
    let Some(split) = splits.first() else {
        return Ok(Vec::new());
    };
    if splits.len() > 1 {
        notes.push(format!("Data distributions are those of {} ({} split instances).", split.instance, splits.len()));
    }
    let mut figures = Vec::new();
    let classes_path = split.dir.join("class_counts.parquet");
    if classes_path.is_file() {
        let t = Table::read(&classes_path)?;
        let (s, l, e, c) = (t.strings("split")?, t.integers("label")?, t.strings("emotion")?, t.integers("count")?);
        let rows: Vec<ClassCount> = (0..s.len())
            .map(|i| ClassCount { split: s[i].clone(), label: l[i], emotion: e[i].clone(), count: c[i].max(0) as u64 })
            .collect();
        if !rows.is_empty() {
            plots::class_distribution(&rows, &plots_dir.join("class_distribution.png"))?;
            figures.push(Figure { file: "plots/class_distribution.png".into(), caption: "Clips per class and split".into() });
        }
    }
    let actors_path = split.dir.join("actor_counts.parquet");
    if actors_path.is_file() {
        let t = Table::read(&actors_path)?;
        let (s, a, c) = (t.strings("split")?, t.integers("actor")?, t.integers("count")?);
        let rows: Vec<ActorCount> =
            (0..s.len()).map(|i| ActorCount { split: s[i].clone(), actor: a[i], count: c[i].max(0) as u64 }).collect();
        if !rows.is_empty() {
            plots::actor_distribution(&rows, &plots_dir.join("actor_distribution.png"))?;
            figures.push(Figure { file: "plots/actor_distribution.png".into(), caption: "Clips per actor and split".into() });
        }
    }
    Ok(figures)
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn write_comparison_csv(path: &Path, rows: &[ComparisonRow]) -> Result<(), StageError> {
    let header = [
        "model",
        "arch",
        "frames",
        "size",
        "augmentation",
        "fold",
        "parameter_count",
        "train_seconds",
        "epochs_run",
        "n_test",
        "accuracy",
        "accuracy_ci_low",
        "accuracy_ci_high",
        "macro_f1",
        "uar",
        "reference_accuracy",
    ]
    .map(String::from);
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.model.clone(),
                r.arch.clone(),
                opt(r.frames),
                opt(r.size),
                r.augmentation.clone(),
                opt(r.fold.clone()),
                opt(r.parameter_count),
                opt(r.train_seconds.map(|s| format!("{s:.1}"))),
                opt(r.epochs_run),
                r.n_test.to_string(),
                format!("{:.6}", r.accuracy),
                format!("{:.6}", r.accuracy_ci_low),
                format!("{:.6}", r.accuracy_ci_high),
                format!("{:.6}", r.macro_f1),
                format!("{:.6}", r.uar),
                opt(r.reference_accuracy),
            ]
        })
        .collect();
    write_csv(path, &header, &body)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn references_by_architecture_name() {
        assert_eq!(study_reference("r3d18").unwrap().1, 60.4);
        assert_eq!(study_reference("R3D_18").unwrap().1, 60.4);
        assert_eq!(study_reference("resnet18_lstm").unwrap().1, 62.1);
        assert_eq!(study_reference("resnet18-late").unwrap().1, 52.9);
        assert_eq!(study_reference("resnet18_early").unwrap().1, 42.5);
        assert_eq!(study_reference("cnn2d").unwrap().1, 28.3);
        // The pipeline's own arch names (regression: the CNN was matched as the early-fusion ResNet).
        assert_eq!(study_reference("early_fusion_cnn").unwrap().1, 28.3);
        assert_eq!(study_reference("early_fusion_resnet18").unwrap().1, 42.5);
        assert_eq!(study_reference("late_fusion_resnet18").unwrap().1, 52.9);
        assert_eq!(study_reference("transformer"), None);
    }

    pub(crate) fn row(arch: &str, fold: Option<&str>, acc: f64) -> ComparisonRow {
        ComparisonRow {
            model: format!("evaluate[arch={arch}]"),
            arch: arch.into(),
            frames: Some(10),
            size: Some(112),
            augmentation: "yes".into(),
            fold: fold.map(String::from),
            parameter_count: Some(1000),
            train_seconds: Some(10.0),
            epochs_run: Some(3),
            n_test: 120,
            accuracy: acc,
            accuracy_ci_low: acc - 0.1,
            accuracy_ci_high: acc + 0.1,
            macro_f1: acc - 0.05,
            uar: acc,
            reference_accuracy: None,
        }
    }

    #[test]
    fn folds_are_summarised_per_architecture() {
        let rows = vec![row("r3d18", Some("0"), 0.5), row("r3d18", Some("1"), 0.7), row("lstm", Some("0"), 0.6), row("cnn2d", None, 0.3)];
        let f = fold_summaries(&rows);
        assert_eq!(f.len(), 2);
        let r3d = f.iter().find(|s| s.arch == "r3d18").unwrap();
        assert_eq!(r3d.folds, 2);
        assert!((r3d.accuracy_mean - 0.6).abs() < 1e-12);
        // sample std of {0.5, 0.7} = sqrt(0.02) = 0.141421
        assert!((r3d.accuracy_std - 0.02f64.sqrt()).abs() < 1e-12);
        assert_eq!(r3d.reference_accuracy, Some(60.4));
    }
}
