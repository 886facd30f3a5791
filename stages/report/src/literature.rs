//! The k-fold part of the report beyond the mean ± std summary: one row per fold, and — when
//! the pipeline runs the literature's protocol (`literature: true`) — our fold means beside
//! the published self-supervised anchors, with the ways our protocol differs spelled out.

use crate::report::{ComparisonRow, Report};

/// A published result on RAVDESS under the 6-fold subject-independent protocol.
pub struct Published {
    pub method: &'static str,
    /// Weighted average recall (= accuracy), percent.
    pub war: f64,
    /// Unweighted average recall, percent.
    pub uar: f64,
}

/// The anchors: 6 folds of 4 actors (1–4, 5–8, …, 21–24) on the 1440 video-only speech clips.
pub const PUBLISHED: [Published; 2] = [
    Published { method: "MAE-DFER (Sun et al., ACM MM 2023)", war: 75.56, uar: 75.91 },
    Published { method: "SVFAP (Sun et al., IEEE TAC 2024)", war: 75.01, uar: 75.15 },
];

/// What the literature's protocol is, for the checks below.
const PROTOCOL_FOLDS: usize = 6;
const PROTOCOL_CLIPS: u64 = 1440;

/// A titled table with notes under it, rendered alike in Markdown and HTML.
pub struct Section {
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub notes: Vec<String>,
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// The fold rows (rows with a fold), ordered by architecture then fold number.
fn fold_rows(report: &Report) -> Vec<&ComparisonRow> {
    let mut rows: Vec<&ComparisonRow> = report.rows.iter().filter(|r| r.fold.is_some()).collect();
    let fold_number = |r: &ComparisonRow| r.fold.as_deref().and_then(|f| f.parse::<i64>().ok());
    rows.sort_by(|a, b| (&a.arch, fold_number(a), &a.fold).cmp(&(&b.arch, fold_number(b), &b.fold)));
    rows
}

/// The per-fold table and, with `literature`, the comparison with the published numbers.
pub fn sections(report: &Report) -> Vec<Section> {
    let rows = fold_rows(report);
    if rows.is_empty() {
        return Vec::new();
    }
    let mut out = vec![Section {
        title: "Per fold".into(),
        header: ["Arch", "Fold", "WAR (accuracy)", "UAR", "Macro-F1", "n test"].map(String::from).to_vec(),
        rows: rows
            .iter()
            .map(|r| {
                vec![r.arch.clone(), r.fold.clone().unwrap_or_default(), pct(r.accuracy), pct(r.uar), pct(r.macro_f1), r.n_test.to_string()]
            })
            .collect(),
        notes: Vec::new(),
    }];
    if report.literature {
        out.push(against_published(report, &rows));
    }
    out
}

fn against_published(report: &Report, rows: &[&ComparisonRow]) -> Section {
    let mut table: Vec<Vec<String>> = report
        .folds
        .iter()
        .map(|f| {
            vec![
                format!("ours: {}", f.arch),
                format!("{:.2}% ± {:.2}", f.accuracy_mean * 100.0, f.accuracy_std * 100.0),
                format!("{:.2}% ± {:.2}", f.uar_mean * 100.0, f.uar_std * 100.0),
                f.folds.to_string(),
            ]
        })
        .collect();
    table.extend(
        PUBLISHED.iter().map(|p| vec![p.method.into(), format!("{:.2}%", p.war), format!("{:.2}%", p.uar), PROTOCOL_FOLDS.to_string()]),
    );

    let mut notes = vec![
        "WAR is the accuracy over the test clips of a fold (weighted average recall), UAR the mean per-class recall; \
         ours are mean ± sample std over folds, the published ones are their papers' means."
            .to_string(),
        "Where our protocol differs: each of our folds holds out actors of the next fold as a validation set for \
         early stopping and the learning-rate schedule, so a model trains on fewer actors (the published methods \
         train on all 20 non-test actors with a fixed schedule and no validation set); the published methods \
         pretrain self-supervised on large face-video corpora and fine-tune end to end, ours start from \
         ImageNet/Kinetics weights or from scratch."
            .to_string(),
    ];
    // Checks of what the data says against the protocol, so a mismatch cannot go unnoticed.
    for f in &report.folds {
        if f.folds != PROTOCOL_FOLDS {
            notes.push(format!("{}: {} folds evaluated, the protocol has {PROTOCOL_FOLDS}.", f.arch, f.folds));
        }
        let clips: u64 = rows.iter().filter(|r| r.arch == f.arch).map(|r| r.n_test).sum();
        if clips != PROTOCOL_CLIPS {
            notes.push(format!(
                "{}: its folds test {clips} clips in all, the protocol's 1440 video-only speech clips (`02-01-*`) would be {PROTOCOL_CLIPS}.",
                f.arch
            ));
        }
    }
    Section {
        title: "Against the literature (6-fold, subject-independent)".into(),
        header: ["Method", "WAR", "UAR", "Folds"].map(String::from).to_vec(),
        rows: table,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fold_summaries;
    use crate::report::tests::row;

    fn report(rows: Vec<ComparisonRow>, literature: bool) -> Report {
        Report {
            title: "t".into(),
            references: true,
            literature,
            folds: fold_summaries(&rows),
            rows,
            overview: Vec::new(),
            data: Vec::new(),
            models: Vec::new(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn per_fold_rows_sort_by_fold_number_and_literature_is_opt_in() {
        let rows = (0..12).rev().map(|f| row("r3d18", Some(&f.to_string()), 0.5 + f as f64 / 100.0)).collect::<Vec<_>>();
        let plain = sections(&report(rows.clone(), false));
        assert_eq!(plain.len(), 1);
        let folds: Vec<&str> = plain[0].rows.iter().map(|r| r[1].as_str()).collect();
        assert_eq!(folds, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"]);
        assert_eq!(plain[0].rows[2][2], "52.0%");

        let with = sections(&report(rows, true));
        let lit = &with[1];
        assert_eq!(lit.rows.len(), 3, "ours + two published");
        assert_eq!(lit.rows[1][1], "75.56%");
        assert_eq!(lit.rows[2][2], "75.15%");
        // 12 folds of 120 test clips = 1440: the fold count differs from the protocol, the clip count not.
        let notes = lit.notes.join("\n");
        assert!(notes.contains("r3d18: 12 folds evaluated, the protocol has 6"), "{notes}");
        assert!(!notes.contains("clips in all"), "{notes}");
        assert!(notes.contains("validation set"), "{notes}");
    }

    #[test]
    fn the_protocol_itself_draws_no_mismatch_notes() {
        let rows = (0..6).map(|f| row("r3d18", Some(&f.to_string()), 0.6)).collect::<Vec<_>>();
        // 6 folds x 120 = 720 clips: the clip count differs, the fold count does not.
        let lit = &sections(&report(rows.clone(), true))[1];
        assert!(!lit.notes.iter().any(|n| n.contains("folds evaluated")));
        assert!(lit.notes.iter().any(|n| n.contains("test 720 clips in all")));
        let full: Vec<ComparisonRow> = rows.into_iter().map(|r| ComparisonRow { n_test: 240, ..r }).collect();
        let lit = &sections(&report(full, true))[1];
        assert_eq!(lit.notes.len(), 2, "{:?}", lit.notes);
        assert!(sections(&report(vec![row("cnn", None, 0.3)], true)).is_empty());
    }
}
