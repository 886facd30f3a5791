//! `clips.parquet`: the `scan` stage's list of clips, which `extract` reads.
//!
//! Only the columns `extract` uses are required (`clip_id`, `source`, `emotion`, `label`,
//! `intensity`, `statement`, `repetition`, `actor`, `vocal_channel`); the probe columns
//! (`modality`, `width`, `height`, `fps`, `frame_count`, `duration_s`) default to 0, so a clip
//! list built by hand or with pandas works too.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int32Array, Int64Array, StringArray};
use stage_api::StageError;

use crate::parquet::{write_columns, Table};

/// The file name in a `scan` output.
pub const CLIPS_FILE: &str = "clips.parquet";

/// One row of `clips.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipRecord {
    pub clip_id: String,
    pub source: String,
    pub modality: i32,
    pub vocal_channel: i32,
    pub emotion: String,
    pub label: i32,
    pub intensity: i32,
    pub statement: i32,
    pub repetition: i32,
    pub actor: i32,
    pub width: i32,
    pub height: i32,
    pub fps: f64,
    /// The container's frame count (a hint for sampling; 0 = unknown).
    pub frame_count: i64,
    pub duration_s: f64,
}

/// Reads `clips.parquet`; errors name the file and the column.
pub fn read_clips_table(path: &Path) -> Result<Vec<ClipRecord>, StageError> {
    let table = Table::read(path)?;
    let int32 = |values: Vec<i64>, name: &str| -> Result<Vec<i32>, StageError> {
        values
            .into_iter()
            .map(|v| i32::try_from(v).map_err(|_| StageError::msg(format!("{}: column `{name}` holds {v}", path.display()))))
            .collect()
    };
    let required = |name: &str| -> Result<Vec<i32>, StageError> { int32(table.integers(name)?, name) };
    let optional = |name: &str| -> Result<Vec<i32>, StageError> { int32(table.integers_or(name, 0)?, name) };
    let clip_id = table.strings("clip_id")?;
    let source = table.strings("source")?;
    let emotion = table.strings("emotion")?;
    let (label, actor) = (required("label")?, required("actor")?);
    let (intensity, statement, repetition) = (required("intensity")?, required("statement")?, required("repetition")?);
    let vocal_channel = required("vocal_channel")?;
    let modality = optional("modality")?;
    let (width, height) = (optional("width")?, optional("height")?);
    let frame_count = table.integers_or("frame_count", 0)?;
    let (fps, duration_s) = (table.floats_or("fps", 0.0)?, table.floats_or("duration_s", 0.0)?);
    Ok((0..table.num_rows())
        .map(|i| ClipRecord {
            clip_id: clip_id[i].clone(),
            source: source[i].clone(),
            modality: modality[i],
            vocal_channel: vocal_channel[i],
            emotion: emotion[i].clone(),
            label: label[i],
            intensity: intensity[i],
            statement: statement[i],
            repetition: repetition[i],
            actor: actor[i],
            width: width[i],
            height: height[i],
            fps: fps[i],
            frame_count: frame_count[i],
            duration_s: duration_s[i],
        })
        .collect())
}

/// Writes `rows` as a `clips.parquet` (snappy), in the column order of the contract.
pub fn write_clips_table(path: &Path, rows: &[ClipRecord]) -> Result<(), StageError> {
    let s = |f: fn(&ClipRecord) -> &str| Arc::new(StringArray::from_iter_values(rows.iter().map(f))) as ArrayRef;
    let i = |f: fn(&ClipRecord) -> i32| Arc::new(Int32Array::from_iter_values(rows.iter().map(f))) as ArrayRef;
    let x = |f: fn(&ClipRecord) -> f64| Arc::new(Float64Array::from_iter_values(rows.iter().map(f))) as ArrayRef;
    write_columns(
        path,
        vec![
            ("clip_id", s(|r| &r.clip_id)),
            ("source", s(|r| &r.source)),
            ("modality", i(|r| r.modality)),
            ("vocal_channel", i(|r| r.vocal_channel)),
            ("emotion", s(|r| &r.emotion)),
            ("label", i(|r| r.label)),
            ("intensity", i(|r| r.intensity)),
            ("statement", i(|r| r.statement)),
            ("repetition", i(|r| r.repetition)),
            ("actor", i(|r| r.actor)),
            ("width", i(|r| r.width)),
            ("height", i(|r| r.height)),
            ("fps", x(|r| r.fps)),
            ("frame_count", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.frame_count))) as ArrayRef),
            ("duration_s", x(|r| r.duration_s)),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> ClipRecord {
        ClipRecord {
            clip_id: id.to_owned(),
            source: format!("/data/{id}.mp4"),
            modality: 2,
            vocal_channel: 1,
            emotion: "happy".to_owned(),
            label: 2,
            intensity: 1,
            statement: 2,
            repetition: 1,
            actor: 7,
            width: 1280,
            height: 720,
            fps: 30.0,
            frame_count: 90,
            duration_s: 3.0,
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CLIPS_FILE);
        let rows = vec![record("01-03-01-02-01-07"), record("01-03-02-02-01-07")];
        write_clips_table(&path, &rows).unwrap();
        assert_eq!(read_clips_table(&path).unwrap(), rows);
    }

    #[test]
    fn errors_name_file_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CLIPS_FILE);
        std::fs::write(&path, b"not parquet").unwrap();
        let e = read_clips_table(&path).unwrap_err().chain();
        assert!(e.contains("clips.parquet") && e.contains("Parquet"), "{e}");

        write_columns(&path, vec![("clip_id", Arc::new(StringArray::from(vec!["a"])) as ArrayRef)]).unwrap();
        let e = read_clips_table(&path).unwrap_err().chain();
        assert!(e.contains("missing column `source`"), "{e}");
    }

    #[test]
    fn probe_columns_are_optional() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CLIPS_FILE);
        let text = |v: &str| Arc::new(StringArray::from(vec![v])) as ArrayRef;
        let int = |v: i64| Arc::new(Int64Array::from(vec![v])) as ArrayRef;
        write_columns(
            &path,
            vec![
                ("clip_id", text("a")),
                ("source", text("/a.mp4")),
                ("emotion", text("calm")),
                ("label", int(1)),
                ("intensity", int(1)),
                ("statement", int(1)),
                ("repetition", int(1)),
                ("actor", int(3)),
                ("vocal_channel", int(1)),
            ],
        )
        .unwrap();
        let rows = read_clips_table(&path).unwrap();
        assert_eq!((rows[0].actor, rows[0].frame_count, rows[0].fps), (3, 0, 0.0));
    }
}
