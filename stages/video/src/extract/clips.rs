//! Reading the `scan` stage's `clips.parquet` (the contract's columns) into [`ClipRecord`]s,
//! and writing such a table (tests, benchmarks, tools that build a clip list themselves).
//!
//! Only the columns `extract` uses are required; integer columns may be any integer width and
//! string columns `Utf8` or `LargeUtf8`, so a table written by pandas/pyarrow works too.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt8Type};
use arrow_array::{Array, ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use stage_api::StageError;

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
    let ctx = |what: &str| format!("{}: {what}", path.display());
    let file = File::open(path).map_err(|e| StageError::with_source(ctx("cannot open the scan table"), e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| StageError::with_source(ctx("not a readable Parquet file"), e))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| StageError::with_source(ctx("cannot read a record batch"), e))?;
        let col = |name: &str| -> Result<&ArrayRef, StageError> {
            batch.column_by_name(name).ok_or_else(|| StageError::msg(ctx(&format!("missing column `{name}`"))))
        };
        let get_strings = |name: &str| -> Result<Vec<String>, StageError> { strings(col(name)?).map_err(|t| bad_type(path, name, t)) };
        let get_ints = |name: &str| -> Result<Vec<i64>, StageError> { ints(col(name)?).map_err(|t| bad_type(path, name, t)) };
        let optional_ints = |name: &str| -> Result<Vec<i64>, StageError> {
            match batch.column_by_name(name) {
                Some(c) => ints(c).map_err(|t| bad_type(path, name, t)),
                None => Ok(vec![0; batch.num_rows()]),
            }
        };
        let optional_floats = |name: &str| -> Result<Vec<f64>, StageError> {
            match batch.column_by_name(name) {
                Some(c) => match c.data_type() {
                    DataType::Float64 => Ok(c.as_primitive::<Float64Type>().iter().map(|v| v.unwrap_or(0.0)).collect()),
                    other => Err(bad_type(path, name, other.clone())),
                },
                None => Ok(vec![0.0; batch.num_rows()]),
            }
        };
        let clip_id = get_strings("clip_id")?;
        let source = get_strings("source")?;
        let emotion = get_strings("emotion")?;
        let (label, actor) = (get_ints("label")?, get_ints("actor")?);
        let (intensity, statement, repetition) = (get_ints("intensity")?, get_ints("statement")?, get_ints("repetition")?);
        let vocal_channel = get_ints("vocal_channel")?;
        let modality = optional_ints("modality")?;
        let (width, height, frame_count) = (optional_ints("width")?, optional_ints("height")?, optional_ints("frame_count")?);
        let (fps, duration_s) = (optional_floats("fps")?, optional_floats("duration_s")?);
        for i in 0..batch.num_rows() {
            rows.push(ClipRecord {
                clip_id: clip_id[i].clone(),
                source: source[i].clone(),
                modality: modality[i] as i32,
                vocal_channel: vocal_channel[i] as i32,
                emotion: emotion[i].clone(),
                label: label[i] as i32,
                intensity: intensity[i] as i32,
                statement: statement[i] as i32,
                repetition: repetition[i] as i32,
                actor: actor[i] as i32,
                width: width[i] as i32,
                height: height[i] as i32,
                fps: fps[i],
                frame_count: frame_count[i],
                duration_s: duration_s[i],
            });
        }
    }
    Ok(rows)
}

fn bad_type(path: &Path, name: &str, found: DataType) -> StageError {
    StageError::msg(format!("{}: column `{name}` has type {found}, which this stage cannot read", path.display()))
}

fn strings(a: &ArrayRef) -> Result<Vec<String>, DataType> {
    match a.data_type() {
        DataType::Utf8 => Ok(a.as_string::<i32>().iter().map(|s| s.unwrap_or_default().to_owned()).collect()),
        DataType::LargeUtf8 => Ok(a.as_string::<i64>().iter().map(|s| s.unwrap_or_default().to_owned()).collect()),
        other => Err(other.clone()),
    }
}

fn ints(a: &ArrayRef) -> Result<Vec<i64>, DataType> {
    macro_rules! widen {
        ($t:ty) => {
            Ok(a.as_primitive::<$t>().iter().map(|v| v.map_or(0, i64::from)).collect())
        };
    }
    match a.data_type() {
        DataType::Int8 => widen!(Int8Type),
        DataType::Int16 => widen!(Int16Type),
        DataType::Int32 => widen!(Int32Type),
        DataType::Int64 => widen!(Int64Type),
        DataType::UInt8 => widen!(UInt8Type),
        DataType::UInt16 => widen!(UInt16Type),
        DataType::UInt32 => widen!(UInt32Type),
        other => Err(other.clone()),
    }
}

/// Writes `rows` as a `clips.parquet` with the contract's schema (snappy).
pub fn write_clips_table(path: &Path, rows: &[ClipRecord]) -> Result<(), StageError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("clip_id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("modality", DataType::Int32, false),
        Field::new("vocal_channel", DataType::Int32, false),
        Field::new("emotion", DataType::Utf8, false),
        Field::new("label", DataType::Int32, false),
        Field::new("intensity", DataType::Int32, false),
        Field::new("statement", DataType::Int32, false),
        Field::new("repetition", DataType::Int32, false),
        Field::new("actor", DataType::Int32, false),
        Field::new("width", DataType::Int32, false),
        Field::new("height", DataType::Int32, false),
        Field::new("fps", DataType::Float64, false),
        Field::new("frame_count", DataType::Int64, false),
        Field::new("duration_s", DataType::Float64, false),
    ]));
    let s = |f: fn(&ClipRecord) -> &str| Arc::new(StringArray::from_iter_values(rows.iter().map(f))) as ArrayRef;
    let i = |f: fn(&ClipRecord) -> i32| Arc::new(Int32Array::from_iter_values(rows.iter().map(f))) as ArrayRef;
    let columns = vec![
        s(|r| &r.clip_id),
        s(|r| &r.source),
        i(|r| r.modality),
        i(|r| r.vocal_channel),
        s(|r| &r.emotion),
        i(|r| r.label),
        i(|r| r.intensity),
        i(|r| r.statement),
        i(|r| r.repetition),
        i(|r| r.actor),
        i(|r| r.width),
        i(|r| r.height),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.fps))) as ArrayRef,
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.frame_count))) as ArrayRef,
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.duration_s))) as ArrayRef,
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| StageError::with_source(format!("{}: cannot build the clip table", path.display()), e))?;
    write_parquet(path, &batch)
}

/// Writes one record batch as a snappy Parquet file.
pub(crate) fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<(), StageError> {
    let fail = |e: &dyn std::fmt::Display| StageError::msg(format!("{}: cannot write Parquet: {e}", path.display()));
    let file = File::create(path).map_err(|e| fail(&e))?;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(|e| fail(&e))?;
    writer.write(batch).map_err(|e| fail(&e))?;
    writer.close().map_err(|e| fail(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn record(id: &str) -> ClipRecord {
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
        let path = dir.path().join("clips.parquet");
        let rows = vec![record("01-03-01-02-01-07"), record("01-03-02-02-01-07")];
        write_clips_table(&path, &rows).unwrap();
        assert_eq!(read_clips_table(&path).unwrap(), rows);
    }

    #[test]
    fn errors_name_file_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clips.parquet");
        std::fs::write(&path, b"not parquet").unwrap();
        let e = read_clips_table(&path).unwrap_err().chain();
        assert!(e.contains("clips.parquet") && e.contains("Parquet"), "{e}");

        let schema = Arc::new(Schema::new(vec![Field::new("clip_id", DataType::Utf8, false)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["a"])) as ArrayRef]).unwrap();
        write_parquet(&path, &batch).unwrap();
        let e = read_clips_table(&path).unwrap_err().chain();
        assert!(e.contains("missing column `source`"), "{e}");
    }
}
