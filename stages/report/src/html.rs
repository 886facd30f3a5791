//! Renders a [`Report`] as Markdown (plots linked as files next to it) and as one
//! self-contained HTML page (plots embedded as base64 `data:` URIs, inline CSS, no scripts, so
//! the file can be mailed or opened from anywhere).

use std::fmt::Write;
use std::path::Path;

use base64::Engine;
use stage_api::StageError;

use crate::io::file_error;
use crate::literature;
use crate::report::{ComparisonRow, Figure, FoldSummary, Report, STUDY_REFERENCES};

/// `11.2M`, `850.3k`, `512`.
fn count(n: Option<u64>) -> String {
    match n {
        None => "–".into(),
        Some(n) if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        Some(n) if n >= 1_000 => format!("{:.1}k", n as f64 / 1e3),
        Some(n) => n.to_string(),
    }
}

/// `42.0 s`, `12 min 30 s`, `2 h 05 min`.
fn duration(s: Option<f64>) -> String {
    match s {
        None => "–".into(),
        Some(s) if s < 60.0 => format!("{s:.1} s"),
        Some(s) if s < 3600.0 => format!("{} min {:02} s", (s / 60.0) as u64, (s % 60.0) as u64),
        Some(s) => format!("{} h {:02} min", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64),
    }
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "–".into())
}

const MODEL_HEADER: [&str; 13] = [
    "Model",
    "Arch",
    "T",
    "Size",
    "Augment",
    "Params",
    "Train time",
    "Epochs",
    "Test accuracy [95% CI]",
    "Macro-F1",
    "UAR",
    "n test",
    "Study",
];

/// The matrix part of an instance name (`evaluate[arch=r3d18]` → `arch=r3d18`), else the name.
fn short_name(instance: &str) -> String {
    match instance.split_once('[').and_then(|(_, rest)| rest.strip_suffix(']')) {
        Some(inner) => inner.to_owned(),
        None => instance.to_owned(),
    }
}

fn model_cells(r: &ComparisonRow) -> Vec<String> {
    vec![
        short_name(&r.model),
        r.arch.clone(),
        opt(r.frames),
        opt(r.size),
        r.augmentation.clone(),
        count(r.parameter_count),
        duration(r.train_seconds),
        opt(r.epochs_run),
        format!("{} [{}–{}]", pct(r.accuracy), pct(r.accuracy_ci_low), pct(r.accuracy_ci_high)),
        pct(r.macro_f1),
        pct(r.uar),
        r.n_test.to_string(),
        r.reference_accuracy.map(|a| format!("{a:.1}%")).unwrap_or_else(|| "–".into()),
    ]
}

const FOLD_HEADER: [&str; 10] =
    ["Arch", "T", "Size", "Augment", "Folds", "Accuracy (mean ± std)", "Macro-F1", "UAR", "Mean train time", "Study"];

fn fold_cells(f: &FoldSummary) -> Vec<String> {
    vec![
        f.arch.clone(),
        opt(f.frames),
        opt(f.size),
        f.augmentation.clone(),
        f.folds.to_string(),
        format!("{:.1}% ± {:.1}", f.accuracy_mean * 100.0, f.accuracy_std * 100.0),
        format!("{:.1}% ± {:.1}", f.macro_f1_mean * 100.0, f.macro_f1_std * 100.0),
        format!("{:.1}% ± {:.1}", f.uar_mean * 100.0, f.uar_std * 100.0),
        duration(f.train_seconds_mean),
        f.reference_accuracy.map(|a| format!("{a:.1}%")).unwrap_or_else(|| "–".into()),
    ]
}

/// Header and rows of a table, leaving out the `Study` column when references are off.
fn columns(report: &Report, header: &[&str], rows: Vec<Vec<String>>) -> (Vec<String>, Vec<Vec<String>>) {
    let keep = |i: usize| report.references || header[i] != "Study";
    let h = header.iter().enumerate().filter(|(i, _)| keep(*i)).map(|(_, s)| s.to_string()).collect();
    let r = rows.into_iter().map(|row| row.into_iter().enumerate().filter(|(i, _)| keep(*i)).map(|(_, c)| c).collect()).collect();
    (h, r)
}

fn summary_line(report: &Report) -> String {
    match report.best() {
        Some(best) => format!(
            "{} model(s) evaluated. Best test accuracy: {} ({}, 95% CI {}–{}, n = {}).",
            report.rows.len(),
            best.model,
            pct(best.accuracy),
            pct(best.accuracy_ci_low),
            pct(best.accuracy_ci_high),
            best.n_test
        ),
        None => "No models evaluated.".into(),
    }
}

const READING_NOTES: [&str; 4] = [
    "Test accuracy is the share of correctly classified test clips; the bracket is its 95% Wilson score interval, \
     which keeps its nominal coverage on test sets of one or two hundred clips.",
    "Macro-F1 averages the per-class F1 over the classes present in the truth or the predictions; \
     UAR (unweighted average recall) averages the per-class recall over the classes present in the truth.",
    "With k-fold splits, mean ± std are over folds (sample standard deviation).",
    "Study: the test accuracy reported by the study for the same architecture.",
];

/// The Markdown report; plots are linked by their paths relative to the report.
pub(crate) fn render_markdown(report: &Report) -> String {
    let mut md = String::new();
    let table = |md: &mut String, header: &[String], rows: &[Vec<String>]| {
        let esc = |c: &String| c.replace('|', "\\|");
        let _ = writeln!(md, "| {} |", header.iter().map(esc).collect::<Vec<_>>().join(" | "));
        let _ = writeln!(md, "|{}", "---|".repeat(header.len()));
        for row in rows {
            let _ = writeln!(md, "| {} |", row.iter().map(esc).collect::<Vec<_>>().join(" | "));
        }
        md.push('\n');
    };
    let figures = |md: &mut String, figs: &[Figure]| {
        for f in figs {
            let _ = writeln!(md, "![{}]({})\n", f.caption, f.file);
        }
    };
    let _ = writeln!(md, "# {}\n\n{}\n", report.title, summary_line(report));
    let _ = writeln!(md, "## Model comparison\n");
    let (h, r) = columns(report, &MODEL_HEADER, report.rows.iter().map(model_cells).collect());
    table(&mut md, &h, &r);
    if !report.folds.is_empty() {
        let _ = writeln!(md, "## Cross-validation (mean ± std over folds)\n");
        let (h, r) = columns(report, &FOLD_HEADER, report.folds.iter().map(fold_cells).collect());
        table(&mut md, &h, &r);
    }
    for section in literature::sections(report) {
        let _ = writeln!(
            md,
            "### {}
",
            section.title
        );
        table(&mut md, &section.header, &section.rows);
        for note in &section.notes {
            let _ = writeln!(md, "- {note}");
        }
        if !section.notes.is_empty() {
            md.push('\n');
        }
    }
    figures(&mut md, &report.overview);
    let _ = writeln!(md, "### How to read these numbers\n");
    for note in READING_NOTES.iter().filter(|n| report.references || !n.starts_with("Study")) {
        let _ = writeln!(md, "- {note}");
    }
    md.push('\n');
    if report.references {
        let _ = writeln!(md, "### The study's results\n");
        let rows: Vec<Vec<String>> = STUDY_REFERENCES.iter().map(|(m, a)| vec![m.to_string(), format!("{a:.1}%")]).collect();
        table(&mut md, &["Model".into(), "Test accuracy".into()], &rows);
    }
    if !report.data.is_empty() {
        let _ = writeln!(md, "## Data\n");
        figures(&mut md, &report.data);
    }
    for m in &report.models {
        let _ = writeln!(md, "## {}\n", m.model);
        figures(&mut md, &m.figures);
    }
    if !report.notes.is_empty() {
        let _ = writeln!(md, "## Notes\n");
        for n in &report.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    md
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const CSS: &str = "
body { font-family: -apple-system, 'Segoe UI', 'DejaVu Sans', Helvetica, Arial, sans-serif; color: #1d2330;
       max-width: 1280px; margin: 2rem auto; padding: 0 1.5rem; line-height: 1.5; }
h1 { font-size: 1.7rem; border-bottom: 2px solid #1f77b4; padding-bottom: .3rem; }
h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 1px solid #dde2ea; padding-bottom: .2rem; }
h3 { font-size: 1.05rem; margin-top: 1.5rem; }
.summary { background: #eef5fb; border-left: 4px solid #1f77b4; padding: .6rem 1rem; }
table { border-collapse: collapse; margin: 1rem 0; font-size: .85rem; }
.wide { overflow-x: auto; }
th, td { border: 1px solid #dde2ea; padding: .35rem .55rem; text-align: right; white-space: nowrap; }
th { background: #f3f5f8; white-space: normal; vertical-align: bottom; }
.text { text-align: left; white-space: normal; }
td.wrap { white-space: normal; min-width: 7rem; }
tr:nth-child(even) td { background: #fafbfc; }
tr.best td { background: #e8f4e8; font-weight: 600; }
figure { margin: 1rem 0 2rem; }
figure img { max-width: 100%; border: 1px solid #dde2ea; }
figcaption { color: #5a6475; font-size: .9rem; }
ul.notes { color: #3a4252; font-size: .92rem; }
";

/// The self-contained HTML report; reads the PNGs named by the figures from `out_dir`.
pub(crate) fn render_html(report: &Report, out_dir: &Path) -> Result<String, StageError> {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        esc(&report.title)
    );
    let _ = writeln!(h, "<h1>{}</h1>\n<p class=\"summary\">{}</p>", esc(&report.title), esc(&summary_line(report)));
    let best = report.best().map(|b| b.model.clone());
    let table = |h: &mut String, header: &[String], rows: &[Vec<String>], highlight: &dyn Fn(usize) -> bool| {
        let text = |j: usize| ["Model", "Arch", "Augment", "Method"].contains(&header[j].as_str()) || j == 0;
        h.push_str("<div class=\"wide\"><table>\n<thead><tr>");
        for (j, c) in header.iter().enumerate() {
            let class = if text(j) { " class=\"text\"" } else { "" };
            let _ = write!(h, "<th{class}>{}</th>", esc(c));
        }
        h.push_str("</tr></thead>\n<tbody>\n");
        for (i, row) in rows.iter().enumerate() {
            h.push_str(if highlight(i) { "<tr class=\"best\">" } else { "<tr>" });
            for (j, c) in row.iter().enumerate() {
                let class = if text(j) {
                    " class=\"text\""
                } else if header[j].contains("ccuracy") {
                    " class=\"wrap\""
                } else {
                    ""
                };
                let _ = write!(h, "<td{class}>{}</td>", esc(c));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</tbody>\n</table></div>\n");
    };
    let figures = |h: &mut String, figs: &[Figure]| -> Result<(), StageError> {
        for f in figs {
            let path = out_dir.join(&f.file);
            let bytes = std::fs::read(&path).map_err(|e| file_error("reading", &path, e))?;
            let data = base64::engine::general_purpose::STANDARD.encode(bytes);
            let _ = writeln!(
                h,
                "<figure><img src=\"data:image/png;base64,{data}\" alt=\"{0}\"><figcaption>{0}</figcaption></figure>",
                esc(&f.caption)
            );
        }
        Ok(())
    };

    h.push_str("<h2>Model comparison</h2>\n");
    let (head, rows) = columns(report, &MODEL_HEADER, report.rows.iter().map(model_cells).collect());
    table(&mut h, &head, &rows, &|i| report.rows.len() > 1 && Some(&report.rows[i].model) == best.as_ref());
    if !report.folds.is_empty() {
        h.push_str("<h2>Cross-validation (mean ± std over folds)</h2>\n");
        let (head, rows) = columns(report, &FOLD_HEADER, report.folds.iter().map(fold_cells).collect());
        table(&mut h, &head, &rows, &|_| false);
    }
    for section in literature::sections(report) {
        let _ = writeln!(h, "<h3>{}</h3>", esc(&section.title));
        table(&mut h, &section.header, &section.rows, &|_| false);
        if !section.notes.is_empty() {
            h.push_str("<ul class=\"notes\">\n");
            for note in &section.notes {
                let _ = writeln!(h, "<li>{}</li>", esc(note));
            }
            h.push_str("</ul>\n");
        }
    }
    figures(&mut h, &report.overview)?;
    h.push_str("<h3>How to read these numbers</h3>\n<ul class=\"notes\">\n");
    for note in READING_NOTES.iter().filter(|n| report.references || !n.starts_with("Study")) {
        let _ = writeln!(h, "<li>{}</li>", esc(note));
    }
    h.push_str("</ul>\n");
    if report.references {
        h.push_str("<h3>The study's results</h3>\n");
        let rows: Vec<Vec<String>> = STUDY_REFERENCES.iter().map(|(m, a)| vec![m.to_string(), format!("{a:.1}%")]).collect();
        table(&mut h, &["Model".into(), "Test accuracy".into()], &rows, &|_| false);
    }
    if !report.data.is_empty() {
        h.push_str("<h2>Data</h2>\n");
        figures(&mut h, &report.data)?;
    }
    for m in &report.models {
        let _ = writeln!(h, "<h2>{}</h2>", esc(&m.model));
        figures(&mut h, &m.figures)?;
    }
    if !report.notes.is_empty() {
        h.push_str("<h2>Notes</h2>\n<ul class=\"notes\">\n");
        for n in &report.notes {
            let _ = writeln!(h, "<li>{}</li>", esc(n));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</body>\n</html>\n");
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(count(Some(11_689_512)), "11.7M");
        assert_eq!(count(Some(33_200)), "33.2k");
        assert_eq!(count(None), "–");
        assert_eq!(duration(Some(42.04)), "42.0 s");
        assert_eq!(duration(Some(750.0)), "12 min 30 s");
        assert_eq!(duration(Some(7500.0)), "2 h 05 min");
        assert_eq!(esc("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }
}
