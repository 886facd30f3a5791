//! Quality-assurance outputs: a contact sheet of crops and the per-clip detection table.
//!
//! `qa/contact_sheet.png`: one row per emotion (label order), one column per actor
//! (ascending), each cell the middle sampled frame of the first clip (by `clip_id`) of that
//! emotion and actor, shrunk to at most 96 px. Rows are labelled with the emotion name and
//! columns with the actor number in a built-in 3x5 pixel font (no font files needed);
//! fallback crops get a red frame so that detector failures stand out.
//! Memory: one thumbnail per (emotion, actor) pair, never per clip.
//!
//! `qa/detection.csv`: one line per extracted clip with the detector's numbers.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use stage_api::StageError;

use stage_formats::tensor_cache::IndexRow;

const MAX_CELL: u32 = 96;
const GAP: u32 = 2;
const SCALE: u32 = 2; // font pixels per glyph pixel

struct Cell {
    emotion: String,
    pixels: Vec<u8>,
    fallback: bool,
}

/// Collects one thumbnail per (label, actor) and draws the sheet.
pub struct ContactSheet {
    cell: u32,
    cells: BTreeMap<(i64, i64), Cell>,
    resizer: Resizer,
}

impl ContactSheet {
    /// `size`: side of the crops that will be offered.
    pub fn new(size: u32) -> Self {
        Self { cell: size.clamp(1, MAX_CELL), cells: BTreeMap::new(), resizer: Resizer::new() }
    }

    /// Offers a clip's middle crop (`size x size` RGB24); kept if it is the first of its
    /// (label, actor) pair.
    pub fn offer(&mut self, label: i64, emotion: &str, actor: i64, crop: &[u8], size: u32, fallback: bool) {
        if self.cells.contains_key(&(label, actor)) {
            return;
        }
        let pixels = if size == self.cell {
            crop.to_vec()
        } else {
            let mut dst = Image::new(self.cell, self.cell, PixelType::U8x3);
            let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
            match ImageRef::new(size, size, crop, PixelType::U8x3) {
                Ok(src) if self.resizer.resize(&src, &mut dst, &options).is_ok() => dst.into_vec(),
                _ => return,
            }
        };
        self.cells.insert((label, actor), Cell { emotion: emotion.to_owned(), pixels, fallback });
    }

    /// Writes the PNG (a small white image saying nothing was extracted when empty).
    pub fn write(&self, path: &Path) -> Result<(), StageError> {
        let mut labels: Vec<i64> = self.cells.keys().map(|k| k.0).collect();
        labels.dedup();
        let mut actors: Vec<i64> = self.cells.keys().map(|k| k.1).collect();
        actors.sort_unstable();
        actors.dedup();
        let names: BTreeMap<i64, &str> = self.cells.iter().map(|(k, c)| (k.0, c.emotion.as_str())).collect();
        let longest = names.values().map(|n| n.len()).max().unwrap_or(0) as u32;
        let left = longest * 4 * SCALE + 3 * GAP;
        let top = 5 * SCALE + 3 * GAP;
        let pitch = self.cell + GAP;
        let width = (left + actors.len() as u32 * pitch + GAP).max(1);
        let height = (top + labels.len() as u32 * pitch + GAP).max(1);
        let mut img = image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
        for (col, actor) in actors.iter().enumerate() {
            let x = left + col as u32 * pitch;
            draw_text(&mut img, x, GAP, &format!("{actor:02}"));
        }
        for (row, label) in labels.iter().enumerate() {
            let y = top + row as u32 * pitch;
            draw_text(&mut img, GAP, y + self.cell / 2 - 5 * SCALE / 2, &names[label].to_uppercase());
            for (col, actor) in actors.iter().enumerate() {
                let Some(cell) = self.cells.get(&(*label, *actor)) else { continue };
                let x0 = left + col as u32 * pitch;
                for (i, px) in cell.pixels.chunks_exact(3).enumerate() {
                    let (cx, cy) = (i as u32 % self.cell, i as u32 / self.cell);
                    img.put_pixel(x0 + cx, y + cy, image::Rgb([px[0], px[1], px[2]]));
                }
                if cell.fallback {
                    for t in 0..self.cell {
                        for (cx, cy) in [(t, 0), (t, self.cell - 1), (0, t), (self.cell - 1, t)] {
                            img.put_pixel(x0 + cx, y + cy, image::Rgb([230, 0, 0]));
                        }
                    }
                }
            }
        }
        img.save(path).map_err(|e| StageError::with_source(format!("{}: cannot write the contact sheet", path.display()), e))
    }
}

/// 3x5 glyphs, one row of 3 bits per entry (MSB = left); characters without a glyph are blank.
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' | 'O' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' | 'S' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        'A' => [2, 5, 7, 5, 5],
        'B' => [6, 5, 6, 5, 6],
        'C' => [7, 4, 4, 4, 7],
        'D' => [6, 5, 5, 5, 6],
        'E' => [7, 4, 7, 4, 7],
        'F' => [7, 4, 7, 4, 4],
        'G' => [7, 4, 5, 5, 7],
        'H' => [5, 5, 7, 5, 5],
        'I' => [7, 2, 2, 2, 7],
        'K' => [5, 5, 6, 5, 5],
        'L' => [4, 4, 4, 4, 7],
        'M' => [5, 7, 7, 5, 5],
        'N' => [6, 5, 5, 5, 5],
        'P' => [7, 5, 7, 4, 4],
        'R' => [6, 5, 6, 5, 5],
        'T' => [7, 2, 2, 2, 2],
        'U' => [5, 5, 5, 5, 7],
        'V' => [5, 5, 5, 5, 2],
        'W' => [5, 5, 7, 7, 5],
        'Y' => [5, 5, 2, 2, 2],
        '-' => [0, 0, 7, 0, 0],
        _ => return None,
    })
}

fn draw_text(img: &mut image::RgbImage, x: u32, y: u32, text: &str) {
    for (k, c) in text.chars().enumerate() {
        let Some(rows) = glyph(c) else { continue };
        for (r, bits) in rows.iter().enumerate() {
            for b in 0..3u32 {
                if bits & (4 >> b) == 0 {
                    continue;
                }
                for dy in 0..SCALE {
                    for dx in 0..SCALE {
                        let px = x + (k as u32 * 4 + b) * SCALE + dx;
                        let py = y + r as u32 * SCALE + dy;
                        if px < img.width() && py < img.height() {
                            img.put_pixel(px, py, image::Rgb([0, 0, 0]));
                        }
                    }
                }
            }
        }
    }
}

/// Writes `qa/detection.csv`: one line per clip.
pub fn write_detection_csv(path: &Path, rows: &[IndexRow]) -> Result<(), StageError> {
    let fail = |e: std::io::Error| StageError::with_source(format!("{}: cannot write", path.display()), e);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(fail)?);
    writeln!(
        out,
        "clip_id,actor,label,emotion,frames,face_found_frames,face_checked_frames,detect_rate,detect_score,fallback,padded,box_x,box_y,box_w,box_h,crop_x,crop_y,crop_side"
    )
    .map_err(fail)?;
    for r in rows {
        writeln!(
            out,
            "{},{},{},{},{},{},{},{:.3},{:.3},{},{},{:.1},{:.1},{:.1},{:.1},{},{},{}",
            r.clip_id,
            r.actor,
            r.label,
            r.emotion,
            r.frames,
            r.face_found_frames,
            r.face_checked_frames,
            r.face_found_frames as f32 / r.face_checked_frames.max(1) as f32,
            r.detect_score,
            r.fallback,
            r.padded,
            r.box_x,
            r.box_y,
            r.box_w,
            r.box_h,
            r.crop_x,
            r.crop_y,
            r.crop_side
        )
        .map_err(fail)?;
    }
    out.into_inner().map_err(|e| fail(e.into_error()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheet_has_a_cell_per_emotion_and_actor() {
        let dir = tempfile::tempdir().unwrap();
        let mut sheet = ContactSheet::new(8);
        let red = [200u8, 0, 0].repeat(64);
        let blue = [0u8, 0, 200].repeat(64);
        sheet.offer(0, "neutral", 1, &red, 8, false);
        sheet.offer(0, "neutral", 1, &blue, 8, false); // second clip of the pair: ignored
        sheet.offer(3, "sad", 2, &blue, 8, true);
        let path = dir.path().join("sheet.png");
        sheet.write(&path).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        let left = "NEUTRAL".len() as u32 * 4 * SCALE + 3 * GAP;
        let top = 5 * SCALE + 3 * GAP;
        assert_eq!(img.width(), left + 2 * (8 + GAP) + GAP);
        assert_eq!(img.height(), top + 2 * (8 + GAP) + GAP);
        assert_eq!(img.get_pixel(left + 4, top + 4).0, [200, 0, 0]);
        assert_eq!(img.get_pixel(left + 10 + 4, top + 10 + 4).0, [0, 0, 200]);
        assert_eq!(img.get_pixel(left + 10, top + 10).0, [230, 0, 0], "fallback frame");
        assert_eq!(img.get_pixel(left + 4, top + 10 + 4).0, [255, 255, 255], "no clip");
    }
}
