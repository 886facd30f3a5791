//! Classification metrics of one test set: accuracy with a 95 % Wilson score interval,
//! macro-F1, unweighted average recall (UAR), per-class precision/recall/F1/support and the
//! confusion matrix (counts and row-normalised). Pure computation, no I/O.
//!
//! # Definitions (they match scikit-learn with `zero_division=0`)
//! - **Accuracy** = correct / n, with a 95 % **Wilson score interval**. A RAVDESS test set of
//!   two actors holds 120–240 clips, where the textbook normal ("Wald") interval
//!   `p ± 1.96·sqrt(p(1-p)/n)` under-covers, and can leave `[0, 1]` near 0 or 1. The Wilson
//!   interval inverts the score test instead: it stays inside `[0, 1]`, its coverage is close to
//!   the nominal 95 % already at n ≈ 100 (checked by simulation in the tests below), and it is
//!   a closed form, so unlike a bootstrap it needs no seed and no resampling.
//! - **Precision** of a class = true positives / clips predicted as that class; a class that is
//!   never predicted has precision 0. **Recall** = true positives / clips of that class (its
//!   support); a class absent from the truth has recall 0. **F1** = 2PR / (P + R), 0 when
//!   P + R = 0.
//! - **Macro precision / recall / F1** average over the classes that occur in the truth *or* in
//!   the predictions (sklearn's `f1_score(average="macro", zero_division=0)` without `labels`):
//!   a class that is predicted but absent from the truth counts with F1 0; a class absent from
//!   both is left out (nothing can be said about it).
//! - **UAR** (unweighted average recall, sklearn's `balanced_accuracy_score`) averages recall
//!   over the classes present in the truth only: predicting a class that does not occur is
//!   already paid for in the recall of the true classes.
//! - **Confusion matrix**: rows are true classes, columns predicted classes. The row-normalised
//!   matrix divides each row by its support; a row without support is all zeros.
//! - **Log loss** = mean of `-ln p(true class)` (probabilities clamped at 1e-15), reported when
//!   every row carries probabilities.
//!
//! ```
//! use stages_report::metrics::{compute, Row};
//! let names: Vec<String> = ["calm", "sad"].map(String::from).to_vec();
//! let rows = [Row { label: 0, predicted: 0, probs: &[] }, Row { label: 1, predicted: 0, probs: &[] }];
//! let m = compute(&rows, &names).unwrap();
//! assert_eq!(m.accuracy, 0.5);
//! assert_eq!(m.uar, 0.5); // recall 1 for calm, 0 for sad
//! assert_eq!(m.per_class[1].precision, 0.0); // sad is never predicted
//! assert!(m.accuracy_ci.low < 0.5 && m.accuracy_ci.high > 0.5);
//! ```

pub use stage_formats::metrics::{ClassMetrics, Interval, Metrics};

/// The two-sided 95 % normal quantile, `Φ⁻¹(0.975)`.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// Why metrics could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    #[error("no predictions to evaluate")]
    Empty,
    #[error("no class names given")]
    NoClasses,
    #[error("row {row}: label {label} is outside 0..{num_classes}")]
    LabelOutOfRange { row: usize, label: i64, num_classes: usize },
    #[error("row {row}: {len} probabilities for {num_classes} classes")]
    ProbabilityCount { row: usize, len: usize, num_classes: usize },
}

/// The 95 % Wilson score interval for `successes` out of `n` trials (`z` = [`Z_95`]).
pub fn wilson_interval(successes: u64, n: u64) -> Interval {
    wilson_interval_z(successes, n, Z_95)
}

/// The Wilson score interval with normal quantile `z`; `[0, 1]` when `n` is 0.
pub fn wilson_interval_z(successes: u64, n: u64, z: f64) -> Interval {
    if n == 0 {
        return Interval { low: 0.0, high: 1.0 };
    }
    let n = n as f64;
    let p = successes as f64 / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // At 0 and n successes the bounds are exactly 0 and 1; the formula gets there only up to
    // rounding.
    let low = if successes == 0 { 0.0 } else { (center - half).max(0.0) };
    let high = if successes as f64 >= n { 1.0 } else { (center + half).min(1.0) };
    Interval { low, high }
}

/// One evaluated clip: true label, predicted label and the class probabilities (may be empty
/// when unknown).
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub label: i64,
    pub predicted: i64,
    pub probs: &'a [f32],
}

/// Computes every metric of the module doc from `rows` over the classes `class_names`
/// (label `i` is `class_names[i]`).
pub fn compute(rows: &[Row<'_>], class_names: &[String]) -> Result<Metrics, MetricsError> {
    let k = class_names.len();
    if k == 0 {
        return Err(MetricsError::NoClasses);
    }
    if rows.is_empty() {
        return Err(MetricsError::Empty);
    }
    let index = |row: usize, label: i64| -> Result<usize, MetricsError> {
        usize::try_from(label).ok().filter(|&l| l < k).ok_or(MetricsError::LabelOutOfRange { row, label, num_classes: k })
    };
    let mut confusion = vec![vec![0u64; k]; k];
    let mut log_loss_sum = 0.0;
    let mut all_probs = true;
    for (i, row) in rows.iter().enumerate() {
        let t = index(i, row.label)?;
        let p = index(i, row.predicted)?;
        confusion[t][p] += 1;
        if row.probs.is_empty() {
            all_probs = false;
        } else if row.probs.len() != k {
            return Err(MetricsError::ProbabilityCount { row: i, len: row.probs.len(), num_classes: k });
        } else {
            log_loss_sum -= f64::from(row.probs[t]).clamp(1e-15, 1.0).ln();
        }
    }

    let n = rows.len() as u64;
    let correct: u64 = (0..k).map(|c| confusion[c][c]).sum();
    let per_class: Vec<ClassMetrics> = (0..k)
        .map(|c| {
            let tp = confusion[c][c];
            let support: u64 = confusion[c].iter().sum();
            let predicted: u64 = confusion.iter().map(|r| r[c]).sum();
            let precision = ratio(tp, predicted);
            let recall = ratio(tp, support);
            let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
            ClassMetrics { class: class_names[c].clone(), label: c, precision, recall, f1, support, predicted }
        })
        .collect();

    let seen: Vec<&ClassMetrics> = per_class.iter().filter(|c| c.support > 0 || c.predicted > 0).collect();
    let truth: Vec<&ClassMetrics> = per_class.iter().filter(|c| c.support > 0).collect();
    let confusion_normalized = confusion
        .iter()
        .map(|row| {
            let total: u64 = row.iter().sum();
            row.iter().map(|&v| ratio(v, total)).collect()
        })
        .collect();

    Ok(Metrics {
        model: String::new(),
        n,
        correct,
        accuracy: ratio(correct, n),
        accuracy_ci: wilson_interval(correct, n),
        ci_method: "wilson-95".to_owned(),
        macro_precision: mean(seen.iter().map(|c| c.precision)),
        macro_recall: mean(seen.iter().map(|c| c.recall)),
        macro_f1: mean(seen.iter().map(|c| c.f1)),
        uar: mean(truth.iter().map(|c| c.recall)),
        log_loss: all_probs.then(|| log_loss_sum / n as f64),
        class_names: class_names.to_vec(),
        per_class,
        confusion,
        confusion_normalized,
    })
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    if count == 0 {
        0.0
    } else {
        sum / count as f64
    }
}

/// Mean and sample standard deviation (n − 1; 0 for a single value) of `values`.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = values.iter().sum::<f64>() / values.len() as f64;
    if values.len() == 1 {
        return (m, 0.0);
    }
    let var = values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64;
    (m, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    fn names(k: usize) -> Vec<String> {
        ["a", "b", "c", "d", "e"][..k].iter().map(|s| s.to_string()).collect()
    }

    fn rows(pairs: &[(i64, i64)]) -> Vec<Row<'static>> {
        pairs.iter().map(|&(label, predicted)| Row { label, predicted, probs: &[] }).collect()
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    /// Hand computation, classes a b c d e (0..4), true → predicted:
    /// a→a a→a a→b | b→b b→d | c→a c→a c→b; d is predicted once but never true, c is true but
    /// never predicted, e occurs nowhere.
    ///
    /// confusion (rows true a..e, cols predicted a..e):
    ///   a [2 1 0 0 0]   b [0 1 0 1 0]   c [2 1 0 0 0]   d, e all zero
    /// predicted counts a=4 b=3 c=0 d=1 e=0; support a=3 b=2 c=3 d=0 e=0; correct = 3 of 8.
    /// precision a=2/4  b=1/3  c=0 (never predicted)  d=0/1  e=0
    /// recall    a=2/3  b=1/2  c=0/3                  d=0 (no support) e=0
    /// F1        a=2·½·⅔/(½+⅔)=4/7  b=2·⅓·½/(⅓+½)=2/5  c=d=e=0
    /// macro over {a,b,c,d} (in truth or predictions): F1=(4/7+2/5)/4, P=(1/2+1/3)/4, R=(2/3+1/2)/4
    /// UAR over {a,b,c} (in truth): (2/3+1/2+0)/3 = 7/18   (sklearn balanced_accuracy_score)
    #[test]
    fn hand_computed_case_with_absent_classes() {
        let r = rows(&[(0, 0), (0, 0), (0, 1), (1, 1), (1, 3), (2, 0), (2, 0), (2, 1)]);
        let m = compute(&r, &names(5)).unwrap();
        assert_eq!((m.n, m.correct), (8, 3));
        close(m.accuracy, 0.375);
        assert_eq!(m.confusion[0], vec![2, 1, 0, 0, 0]);
        assert_eq!(m.confusion[1], vec![0, 1, 0, 1, 0]);
        assert_eq!(m.confusion[2], vec![2, 1, 0, 0, 0]);
        assert_eq!(m.confusion[3], vec![0; 5]);
        let p: Vec<f64> = m.per_class.iter().map(|c| c.precision).collect();
        let r: Vec<f64> = m.per_class.iter().map(|c| c.recall).collect();
        let f: Vec<f64> = m.per_class.iter().map(|c| c.f1).collect();
        for (got, want) in p.iter().zip([0.5, 1.0 / 3.0, 0.0, 0.0, 0.0]) {
            close(*got, want);
        }
        for (got, want) in r.iter().zip([2.0 / 3.0, 0.5, 0.0, 0.0, 0.0]) {
            close(*got, want);
        }
        for (got, want) in f.iter().zip([4.0 / 7.0, 0.4, 0.0, 0.0, 0.0]) {
            close(*got, want);
        }
        assert_eq!(m.per_class.iter().map(|c| c.support).collect::<Vec<_>>(), vec![3, 2, 3, 0, 0]);
        assert_eq!(m.per_class.iter().map(|c| c.predicted).collect::<Vec<_>>(), vec![4, 3, 0, 1, 0]);
        close(m.macro_f1, (4.0 / 7.0 + 0.4) / 4.0);
        close(m.macro_precision, (0.5 + 1.0 / 3.0) / 4.0);
        close(m.macro_recall, (2.0 / 3.0 + 0.5) / 4.0);
        close(m.uar, 7.0 / 18.0);
        close(m.confusion_normalized[0][0], 2.0 / 3.0);
        close(m.confusion_normalized[1][3], 0.5);
        assert_eq!(m.confusion_normalized[4], vec![0.0; 5]);
        assert_eq!(m.log_loss, None);
    }

    /// Perfect predictions: every score 1, normalised confusion is the identity.
    #[test]
    fn perfect_predictions() {
        let r = rows(&[(0, 0), (1, 1), (2, 2), (2, 2)]);
        let m = compute(&r, &names(3)).unwrap();
        close(m.accuracy, 1.0);
        close(m.macro_f1, 1.0);
        close(m.uar, 1.0);
        close(m.confusion_normalized[2][2], 1.0);
    }

    /// Log loss by hand: true-class probabilities 0.5 and 0.25 → (ln 2 + ln 4)/2 = 1.5·ln 2.
    #[test]
    fn log_loss_from_probabilities() {
        let p1 = [0.5f32, 0.5];
        let p2 = [0.75f32, 0.25];
        let r = [Row { label: 0, predicted: 0, probs: &p1 }, Row { label: 1, predicted: 0, probs: &p2 }];
        let m = compute(&r, &names(2)).unwrap();
        close(m.log_loss.unwrap(), 1.5 * std::f64::consts::LN_2);
    }

    #[test]
    fn bad_rows_are_errors() {
        assert_eq!(compute(&[], &names(2)), Err(MetricsError::Empty));
        assert_eq!(compute(&rows(&[(0, 0)]), &[]), Err(MetricsError::NoClasses));
        assert_eq!(compute(&rows(&[(0, 0), (0, 2)]), &names(2)), Err(MetricsError::LabelOutOfRange { row: 1, label: 2, num_classes: 2 }));
        assert!(matches!(compute(&rows(&[(-1, 0)]), &names(2)), Err(MetricsError::LabelOutOfRange { .. })));
        let p = [1.0f32];
        let r = [Row { label: 0, predicted: 0, probs: &p }];
        assert!(matches!(compute(&r, &names(2)), Err(MetricsError::ProbabilityCount { .. })));
    }

    /// Wilson by hand for 3 of 8 (z = 1.959964, z² = 3.841459):
    /// centre = (0.375 + z²/16)/(1 + z²/8) = 0.615091/1.480182 = 0.415551
    /// half   = z/(1 + z²/8)·sqrt(0.375·0.625/8 + z²/256) = 1.324137·0.210483 = 0.278711
    /// → [0.13684, 0.69426]. Published values: 0 of 10 → [0, 0.2775], 10 of 10 → [0.7225, 1].
    #[test]
    fn wilson_hand_computed() {
        let i = wilson_interval(3, 8);
        assert!((i.low - 0.13684).abs() < 1e-4, "{i:?}");
        assert!((i.high - 0.69426).abs() < 1e-4, "{i:?}");
        let zero = wilson_interval(0, 10);
        assert_eq!(zero.low, 0.0);
        assert!((zero.high - 0.2775).abs() < 1e-4);
        let all = wilson_interval(10, 10);
        assert!((all.low - 0.7225).abs() < 1e-4);
        assert_eq!(all.high, 1.0);
    }

    /// Simulates 2000 test sets of n = 120 clips, each correct with probability 0.6, and
    /// counts how often the 95 % interval covers 0.6.
    #[test]
    fn wilson_covers_true_accuracy_about_95_percent() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let (sims, n, p) = (2000, 120, 0.6);
        let covered = (0..sims)
            .filter(|_| {
                let k = (0..n).filter(|_| rng.random_bool(p)).count() as u64;
                let i = wilson_interval(k, n);
                i.low <= p && p <= i.high
            })
            .count();
        let coverage = covered as f64 / sims as f64;
        assert!((0.93..=0.97).contains(&coverage), "coverage {coverage}");
    }

    #[test]
    fn mean_std_sample() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        close(m, 2.5);
        close(s, (5.0f64 / 3.0).sqrt());
        assert_eq!(mean_std(&[7.0]), (7.0, 0.0));
    }
}
