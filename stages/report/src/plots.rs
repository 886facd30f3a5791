//! PNG plots (plotters' bitmap backend) meant to be read at a glance: every plot has a title,
//! labelled axes and class names instead of indices.
//!
//! - [`training_curves`]: loss and accuracy per epoch, train and validation.
//! - [`confusion_heatmap`]: rows true, columns predicted, colour = share of the true class,
//!   the count written in every cell.
//! - [`per_class_accuracy`]: recall per class as bars with the chance level.
//! - [`class_distribution`] and [`actor_distribution`]: what the split stage produced.
//! - [`misclassified_examples`]: rows of frames of wrongly predicted clips with their labels.
//!
//! Text goes through plotters' `ttf` feature, which asks fontconfig for a sans-serif font at
//! run time. [`check_font`] runs before every plot so that a machine without fonts gets one
//! clear message (install Debian's `fonts-dejavu-core`) instead of a drawing error.

use std::error::Error;
use std::path::Path;

use plotters::backend::RGBPixel;
use plotters::coord::Shift;
use plotters::element::BitMapElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use stage_api::StageError;

use crate::report::ComparisonRow;
use stage_formats::history::{History, HistoryRow};

/// The font file Debian's `fonts-dejavu-core` installs; named in the missing-font message.
pub const DEJAVU_SANS: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

const FONT: &str = "sans-serif";
const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const GREY: RGBColor = RGBColor(120, 120, 120);
const RED: RGBColor = RGBColor(200, 30, 30);

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type DrawResult = Result<(), Box<dyn Error + Send + Sync>>;
/// A named line of `(epoch, value)` points and its colour.
type Series<'a> = (&'a str, Vec<(f64, f64)>, RGBColor);

/// Fails with a message naming the missing font package when plotters cannot find a
/// sans-serif font.
pub fn check_font() -> Result<(), StageError> {
    let font = FontDesc::new(FontFamily::SansSerif, 12.0, FontStyle::Normal);
    match font.box_size("Ag") {
        Ok((w, h)) if w > 0 && h > 0 => Ok(()),
        other => {
            let detail = match other {
                Err(e) => e.to_string(),
                Ok(_) => "the font has no glyphs".to_owned(),
            };
            let hint = if Path::new(DEJAVU_SANS).exists() {
                format!("{DEJAVU_SANS} exists but fontconfig does not list it (check FONTCONFIG_FILE, run fc-cache -f)")
            } else {
                format!("{DEJAVU_SANS} is missing: install Debian's `fonts-dejavu-core` package (apt-get install fonts-dejavu-core)")
            };
            Err(StageError::msg(format!("plots need a sans-serif font found through fontconfig, and none is usable ({detail}); {hint}")))
        }
    }
}

/// Creates a white `size` canvas at `path`, lets `draw` fill it, and writes the PNG.
fn render(path: &Path, size: (u32, u32), draw: impl FnOnce(&Area<'_>) -> DrawResult) -> Result<(), StageError> {
    check_font()?;
    let result = (|| -> DrawResult {
        let root = BitMapBackend::new(path, size).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
        Ok(())
    })();
    result.map_err(|e| StageError::msg(format!("drawing {}: {e}", path.display())))
}

/// Loss (left) and accuracy (right) per epoch, train and validation.
pub fn training_curves(history: &History, title: &str, path: &Path) -> Result<(), StageError> {
    if history.epochs.is_empty() {
        return Err(StageError::msg(format!("drawing {}: the training history is empty", path.display())));
    }
    render(path, (1200, 520), |root| {
        let root = root.titled(title, (FONT, 26))?;
        let (left, right) = root.split_horizontally(600);
        let series = |f: fn(&HistoryRow) -> Option<f64>| -> Vec<(f64, f64)> {
            history.epochs.iter().filter_map(|e| f(e).map(|v| (e.epoch as f64, v))).collect()
        };
        let loss = [("train", series(|e| e.train_loss), BLUE), ("validation", series(|e| e.val_loss), ORANGE)];
        let acc = [("train", series(|e| e.train_accuracy), BLUE), ("validation", series(|e| e.val_accuracy), ORANGE)];
        let max_loss = loss.iter().flat_map(|s| s.1.iter().map(|p| p.1)).filter(|v| v.is_finite()).fold(0.0, f64::max);
        curve_panel(&left, "Loss", "loss", &loss, 0.0..(max_loss * 1.1).max(1e-3), SeriesLabelPosition::UpperRight)?;
        curve_panel(&right, "Accuracy", "accuracy", &acc, 0.0..1.0, SeriesLabelPosition::LowerRight)?;
        Ok(())
    })
}

fn curve_panel(
    area: &Area<'_>,
    caption: &str,
    y_desc: &str,
    series: &[Series<'_>],
    y_range: std::ops::Range<f64>,
    legend: SeriesLabelPosition,
) -> DrawResult {
    let xs = series.iter().flat_map(|s| s.1.iter().map(|p| p.0));
    let (lo, hi) = xs.fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (lo, hi) = if lo > hi { (0.0, 1.0) } else { (lo - 0.5, hi + 0.5) };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(lo..hi, y_range)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("epoch")
        .y_desc(y_desc)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-9 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        })
        .draw()?;
    for (name, points, color) in series {
        if points.is_empty() {
            continue;
        }
        let color = *color;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    draw_legend(&mut chart, legend)?;
    Ok(())
}

/// The series legend, drawn the same way on every chart.
fn draw_legend<'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> DrawResult {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()?;
    Ok(())
}

fn segment_name(names: &[String], v: &SegmentValue<i32>) -> String {
    match v {
        SegmentValue::CenterOf(i) => usize::try_from(*i).ok().and_then(|i| names.get(i)).cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

/// Heatmap of `counts[true][predicted]`; colour = row share, text = count.
pub fn confusion_heatmap(counts: &[Vec<u64>], class_names: &[String], title: &str, path: &Path) -> Result<(), StageError> {
    let k = class_names.len();
    if k == 0 || counts.len() != k || counts.iter().any(|r| r.len() != k) {
        return Err(StageError::msg(format!("drawing {}: the confusion matrix is not {k}×{k} for {k} classes", path.display())));
    }
    let side = 260 + 80 * k as u32;
    render(path, (side + 40, side), |root| {
        let ki = k as i32;
        let reversed: Vec<String> = class_names.iter().rev().cloned().collect();
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 24))
            .margin(20)
            .x_label_area_size(70)
            .y_label_area_size(120)
            .build_cartesian_2d((0..ki - 1).into_segmented(), (0..ki - 1).into_segmented())?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(k)
            .y_labels(k)
            .x_desc("predicted class")
            .y_desc("true class")
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 18))
            .x_label_formatter(&|v| segment_name(class_names, v))
            .y_label_formatter(&|v| segment_name(&reversed, v))
            .draw()?;
        for (t, row) in counts.iter().enumerate() {
            let total: u64 = row.iter().sum();
            let y = ki - 1 - t as i32;
            for (p, &count) in row.iter().enumerate() {
                let share = if total > 0 { count as f64 / total as f64 } else { 0.0 };
                let x = p as i32;
                let fill = heat(share);
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(SegmentValue::Exact(x), SegmentValue::Exact(y)), (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1))],
                    fill.filled(),
                )))?;
                let ink = if share > 0.55 { WHITE } else { BLACK };
                let style = TextStyle::from((FONT, 18).into_font()).color(&ink).pos(Pos::new(HPos::Center, VPos::Center));
                chart.draw_series(std::iter::once(Text::new(
                    count.to_string(),
                    (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)),
                    style,
                )))?;
            }
        }
        Ok(())
    })
}

/// White (0) to dark blue (1).
fn heat(share: f64) -> RGBColor {
    let s = share.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * s).round() as u8;
    RGBColor(lerp(247.0, 8.0), lerp(251.0, 48.0), lerp(255.0, 107.0))
}

/// Bars of per-class accuracy (recall) in percent, with the support under each class name and
/// the chance level `100 / k` as a grey line.
pub fn per_class_accuracy(recall: &[f64], support: &[u64], class_names: &[String], title: &str, path: &Path) -> Result<(), StageError> {
    let k = class_names.len();
    if k == 0 || recall.len() != k || support.len() != k {
        return Err(StageError::msg(format!("drawing {}: {k} classes but {} recalls", path.display(), recall.len())));
    }
    let labels: Vec<String> = class_names.iter().zip(support).map(|(n, s)| format!("{n} (n={s})")).collect();
    render(path, (140 + 110 * k as u32, 560), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 24))
            .margin(20)
            .x_label_area_size(60)
            .y_label_area_size(70)
            .build_cartesian_2d((0..k as i32 - 1).into_segmented(), 0.0..105.0)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .x_labels(k)
            .x_desc("class (test clips)")
            .y_desc("accuracy (recall), %")
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .x_label_formatter(&|v| segment_name(&labels, v))
            .draw()?;
        chart.draw_series(recall.iter().enumerate().map(|(i, r)| {
            let x = i as i32;
            let mut bar = Rectangle::new([(SegmentValue::Exact(x), 0.0), (SegmentValue::Exact(x + 1), r * 100.0)], BLUE.filled());
            bar.set_margin(0, 0, 12, 12);
            bar
        }))?;
        let style = TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
        chart.draw_series(
            recall
                .iter()
                .enumerate()
                .map(|(i, r)| Text::new(format!("{:.0}%", r * 100.0), (SegmentValue::CenterOf(i as i32), r * 100.0 + 1.0), style.clone())),
        )?;
        let chance = 100.0 / k as f64;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(SegmentValue::Exact(0), chance), (SegmentValue::Last, chance)],
                GREY.stroke_width(2),
            )))?
            .label(format!("chance ({chance:.1}%)"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREY.stroke_width(2)));
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    })
}

/// The short label of a compared model: the matrix part of its instance name
/// (`evaluate[arch=r3d18]` → `arch=r3d18`), else its architecture.
fn model_label(row: &ComparisonRow) -> String {
    match row.model.split_once('[').and_then(|(_, rest)| rest.strip_suffix(']')) {
        Some(inner) => inner.to_owned(),
        None => row.arch.clone(),
    }
}

/// Test accuracy per model as bars, the 95 % interval as whiskers and, when `references`, the
/// study's accuracy for the architecture as a red bar across.
pub fn model_comparison(rows: &[ComparisonRow], references: bool, path: &Path) -> Result<(), StageError> {
    if rows.is_empty() {
        return Err(StageError::msg(format!("drawing {}: no models to compare", path.display())));
    }
    let n = rows.len();
    let labels: Vec<String> = rows.iter().map(model_label).collect();
    render(path, ((160 + 150 * n).max(700) as u32, 560), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Test accuracy per model (95% Wilson interval)", (FONT, 24))
            .margin(20)
            .x_label_area_size(60)
            .y_label_area_size(70)
            // Headroom above 100 % holds the legend, clear of bars and whiskers.
            .build_cartesian_2d((0..n as i32 - 1).into_segmented(), 0.0..120.0)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .y_label_formatter(&|v| if *v <= 100.0 { format!("{v:.0}") } else { String::new() })
            .x_labels(n)
            .x_desc("model")
            .y_desc("test accuracy, %")
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .x_label_formatter(&|v| segment_name(&labels, v))
            .draw()?;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                let x = i as i32;
                let mut bar = Rectangle::new(
                    [(SegmentValue::Exact(x), 0.0), (SegmentValue::Exact(x + 1), r.accuracy * 100.0)],
                    BLUE.mix(0.8).filled(),
                );
                bar.set_margin(0, 0, 25, 25);
                bar
            }))?
            .label("this pipeline")
            .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], BLUE.mix(0.8).filled()));
        for (i, r) in rows.iter().enumerate() {
            let x = SegmentValue::CenterOf(i as i32);
            let (lo, hi) = (r.accuracy_ci_low * 100.0, r.accuracy_ci_high * 100.0);
            let ink = BLACK.stroke_width(2);
            chart.draw_series(std::iter::once(PathElement::new(vec![(x.clone(), lo), (x.clone(), hi)], ink)))?;
            for y in [lo, hi] {
                chart.draw_series(std::iter::once(EmptyElement::at((x.clone(), y)) + PathElement::new(vec![(-8, 0), (8, 0)], ink)))?;
            }
            let style = TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Left, VPos::Bottom));
            chart.draw_series(std::iter::once(
                EmptyElement::at((x.clone(), r.accuracy * 100.0)) + Text::new(format!("{:.1}%", r.accuracy * 100.0), (6, -4), style),
            ))?;
        }
        let refs: Vec<(usize, f64)> =
            rows.iter().enumerate().filter_map(|(i, r)| r.reference_accuracy.map(|a| (i, a))).filter(|_| references).collect();
        if !refs.is_empty() {
            chart
                .draw_series(refs.iter().map(|&(i, a)| {
                    EmptyElement::at((SegmentValue::CenterOf(i as i32), a)) + Rectangle::new([(-40, -2), (40, 2)], RED.filled())
                }))?
                .label("study")
                .legend(|(x, y)| Rectangle::new([(x, y - 2), (x + 14, y + 2)], RED.filled()));
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    })
}

/// One row of the split stage's `class_counts.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassCount {
    pub split: String,
    pub label: i64,
    pub emotion: String,
    pub count: u64,
}

/// One row of the split stage's `actor_counts.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct ActorCount {
    pub split: String,
    pub actor: i64,
    pub count: u64,
}

/// Known splits first in their usual order, then any other name.
fn split_order(rows: impl Iterator<Item = String>) -> Vec<String> {
    let mut names: Vec<String> = rows.collect();
    names.sort_by_key(|s| (["train", "val", "test"].iter().position(|k| k == s).unwrap_or(3), s.clone()));
    names.dedup();
    names
}

fn split_color(i: usize) -> RGBColor {
    [BLUE, ORANGE, GREEN, RED, GREY][i.min(4)]
}

/// Grouped bars: clips per class, one bar per split.
pub fn class_distribution(rows: &[ClassCount], path: &Path) -> Result<(), StageError> {
    if rows.is_empty() {
        return Err(StageError::msg(format!("drawing {}: no class counts", path.display())));
    }
    let splits = split_order(rows.iter().map(|r| r.split.clone()));
    let mut classes: Vec<(i64, String)> = rows.iter().map(|r| (r.label, r.emotion.clone())).collect();
    classes.sort();
    classes.dedup_by_key(|c| c.0);
    // One group of bars per class (one bar per split) with an empty slot between groups; the
    // class name sits under the middle bar of its group.
    let group = splits.len() + 1;
    let mut labels = vec![String::new(); classes.len() * group];
    for (c, (_, name)) in classes.iter().enumerate() {
        labels[c * group + (splits.len() - 1) / 2] = name.clone();
    }
    let mut bars = Vec::new();
    for (s, split) in splits.iter().enumerate() {
        for (c, (label, _)) in classes.iter().enumerate() {
            if let Some(r) = rows.iter().find(|r| &r.split == split && r.label == *label) {
                bars.push(SplitBar { slot: c * group + s, split: s, count: r.count });
            }
        }
    }
    let chart = SplitBars { caption: "Clips per class and split", x_desc: "emotion", slot_px: 28, bar_margin: 2 };
    chart.draw(path, &splits, &labels, &bars)
}

pub fn actor_distribution(rows: &[ActorCount], path: &Path) -> Result<(), StageError> {
    if rows.is_empty() {
        return Err(StageError::msg(format!("drawing {}: no actor counts", path.display())));
    }
    let splits = split_order(rows.iter().map(|r| r.split.clone()));
    let mut rows = rows.to_vec();
    rows.sort_by_key(|r| (r.actor, splits.iter().position(|s| *s == r.split)));
    let labels: Vec<String> = rows.iter().map(|r| format!("{:02}", r.actor)).collect();
    let bars: Vec<SplitBar> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| SplitBar { slot: i, split: splits.iter().position(|s| *s == r.split).unwrap_or(0), count: r.count })
        .collect();
    let chart = SplitBars { caption: "Clips per actor, coloured by split", x_desc: "actor", slot_px: 40, bar_margin: 4 };
    chart.draw(path, &splits, &labels, &bars)
}

/// One bar of a [`SplitBars`] chart: its x slot, the split that colours it, its height.
struct SplitBar {
    slot: usize,
    split: usize,
    count: u64,
}

/// A bar chart of clip counts with one colour (and legend entry) per split.
struct SplitBars {
    caption: &'static str,
    x_desc: &'static str,
    /// Width of one x slot in pixels.
    slot_px: usize,
    /// Gap on each side of a bar in pixels.
    bar_margin: u32,
}

impl SplitBars {
    fn draw(&self, path: &Path, splits: &[String], labels: &[String], bars: &[SplitBar]) -> Result<(), StageError> {
        let slots = labels.len();
        let max = bars.iter().map(|b| b.count).max().unwrap_or(1).max(1) as f64;
        render(path, ((140 + slots * self.slot_px).max(700) as u32, 540), |root| {
            let mut chart = ChartBuilder::on(root)
                .caption(self.caption, (FONT, 24))
                .margin(20)
                .x_label_area_size(50)
                .y_label_area_size(70)
                .build_cartesian_2d((0..slots as i32 - 1).into_segmented(), 0.0..max * 1.35)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .light_line_style(WHITE)
                .y_label_formatter(&|v| format!("{v:.0}"))
                .x_labels(slots)
                .x_desc(self.x_desc)
                .y_desc("clips")
                .label_style((FONT, 14))
                .axis_desc_style((FONT, 16))
                .x_label_formatter(&|v| segment_name(labels, v))
                .draw()?;
            for (s, split) in splits.iter().enumerate() {
                let color = split_color(s);
                let series = bars.iter().filter(|b| b.split == s).map(|b| {
                    let x = b.slot as i32;
                    let mut bar =
                        Rectangle::new([(SegmentValue::Exact(x), 0.0), (SegmentValue::Exact(x + 1), b.count as f64)], color.filled());
                    bar.set_margin(0, 0, self.bar_margin, self.bar_margin);
                    bar
                });
                chart
                    .draw_series(series)?
                    .label(split.as_str())
                    .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
            }
            draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
            Ok(())
        })
    }
}

/// One row of [`misclassified_examples`]: a caption and its frames (RGB, square).
#[derive(Debug, Clone)]
pub struct ExampleRow {
    pub caption: String,
    pub frames: Vec<image::RgbImage>,
}

/// Rows of frames, each under its caption (clip, true and predicted label).
pub fn misclassified_examples(rows: &[ExampleRow], title: &str, path: &Path) -> Result<(), StageError> {
    const TILE: u32 = 128;
    const GAP: u32 = 6;
    const CAPTION: u32 = 30;
    const TITLE: u32 = 50;
    if rows.is_empty() {
        return Err(StageError::msg(format!("drawing {}: no examples", path.display())));
    }
    let per_row = rows.iter().map(|r| r.frames.len()).max().unwrap_or(1).max(1) as u32;
    let width = (per_row * (TILE + GAP) + GAP).max(640);
    let height = TITLE + rows.len() as u32 * (CAPTION + TILE + GAP) + GAP;
    let tiles: Vec<Vec<Vec<u8>>> = rows
        .iter()
        .map(|r| {
            r.frames.iter().map(|f| image::imageops::resize(f, TILE, TILE, image::imageops::FilterType::Triangle).into_raw()).collect()
        })
        .collect();
    render(path, (width, height), |root| {
        root.draw(&Text::new(title.to_owned(), (GAP as i32, 12), (FONT, 24).into_font()))?;
        for (r, (row, frames)) in rows.iter().zip(tiles).enumerate() {
            let top = (TITLE + r as u32 * (CAPTION + TILE + GAP)) as i32;
            root.draw(&Text::new(row.caption.clone(), (GAP as i32, top + 6), (FONT, 17).into_font().color(&RED)))?;
            for (i, buf) in frames.into_iter().enumerate() {
                let x = (GAP + i as u32 * (TILE + GAP)) as i32;
                let element = BitMapElement::<_, RGBPixel>::with_owned_buffer((x, top + CAPTION as i32), (TILE, TILE), buf)
                    .ok_or("frame buffer has the wrong size")?;
                root.draw(&element)?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Decodes `path`, checks its size and that it holds at least `min_colors` distinct colours.
    pub(crate) fn assert_png(path: &Path, size: (u32, u32), min_colors: usize) {
        let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8();
        assert_eq!(img.dimensions(), size, "{}", path.display());
        let colors: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        assert!(colors.len() >= min_colors, "{}: only {} colours", path.display(), colors.len());
    }

    fn names(k: usize) -> Vec<String> {
        ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"][..k].iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn font_is_available() {
        check_font().unwrap();
    }

    #[test]
    fn curves_plot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        let epochs = (1..=6)
            .map(|e| HistoryRow {
                epoch: e,
                train_loss: Some(2.0 / e as f64),
                train_accuracy: Some(0.1 * e as f64),
                val_loss: Some(2.2 / e as f64),
                val_accuracy: Some(0.08 * e as f64),
                lr: Some(1e-3),
                seconds: Some(1.0),
            })
            .collect();
        training_curves(&History { epochs }, "curves", &path).unwrap();
        assert_png(&path, (1200, 520), 8);
        let err = training_curves(&History::default(), "x", &path).unwrap_err();
        assert!(err.message.contains("empty"));
    }

    #[test]
    fn heatmap_and_bars() {
        let dir = tempfile::tempdir().unwrap();
        let counts = vec![vec![5, 1, 0], vec![2, 3, 1], vec![0, 0, 0]];
        let heat = dir.path().join("confusion.png");
        confusion_heatmap(&counts, &names(3), "Confusion", &heat).unwrap();
        assert_png(&heat, (540, 500), 6);
        assert!(confusion_heatmap(&counts, &names(2), "x", &heat).is_err());
        let bars = dir.path().join("bars.png");
        per_class_accuracy(&[0.8, 0.5, 0.0], &[6, 6, 0], &names(3), "Per-class accuracy", &bars).unwrap();
        assert_png(&bars, (470, 560), 5);
    }

    #[test]
    fn distributions() {
        let dir = tempfile::tempdir().unwrap();
        let mut classes = Vec::new();
        for (split, n) in [("train", 20), ("val", 4), ("test", 4)] {
            for (label, emotion) in names(8).into_iter().enumerate() {
                classes.push(ClassCount { split: split.into(), label: label as i64, emotion, count: n });
            }
        }
        let path = dir.path().join("classes.png");
        class_distribution(&classes, &path).unwrap();
        assert_png(&path, (140 + 32 * 28, 540), 5);
        let actors: Vec<ActorCount> =
            (1..=24).map(|a| ActorCount { split: ["train", "val", "test"][(a % 3) as usize].into(), actor: a, count: 60 }).collect();
        let path = dir.path().join("actors.png");
        actor_distribution(&actors, &path).unwrap();
        assert_png(&path, (140 + 24 * 40, 540), 5);
    }

    #[test]
    fn example_frames() {
        let dir = tempfile::tempdir().unwrap();
        let frame = |v: u8| image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([v, (x * 8) as u8, (y * 8) as u8]));
        let rows = vec![
            ExampleRow { caption: "clip A: true happy, predicted sad".into(), frames: (0..6).map(|i| frame(i * 40)).collect() },
            ExampleRow { caption: "clip B: true calm, predicted neutral".into(), frames: (0..3).map(|i| frame(i * 80)).collect() },
        ];
        let path = dir.path().join("examples.png");
        misclassified_examples(&rows, "Misclassified", &path).unwrap();
        assert_png(&path, (6 * 134 + 6, 50 + 2 * 164 + 6), 20);
    }
}
