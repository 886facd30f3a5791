//! Writes the scan's tables as Parquet (snappy), in the column layout documented in [`super`].

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use stage_api::StageError;

use super::select::Reject;
use super::Clip;

fn write(path: &Path, columns: Vec<(&str, ArrayRef)>) -> Result<(), StageError> {
    let err = |e: &dyn std::fmt::Display| StageError::msg(format!("writing {}: {e}", path.display()));
    let batch = RecordBatch::try_from_iter(columns).map_err(|e| err(&e))?;
    let file = std::fs::File::create(path).map_err(|e| err(&e))?;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(|e| err(&e))?;
    writer.write(&batch).map_err(|e| err(&e))?;
    writer.close().map_err(|e| err(&e))?;
    Ok(())
}

/// `clips.parquet`.
pub fn write_clips(path: &Path, clips: &[Clip]) -> Result<(), StageError> {
    let int = |f: &dyn Fn(&Clip) -> i32| -> ArrayRef { Arc::new(Int32Array::from_iter_values(clips.iter().map(f))) };
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("clip_id", Arc::new(StringArray::from_iter_values(clips.iter().map(|c| c.name.clip_id())))),
        ("source", Arc::new(StringArray::from_iter_values(clips.iter().map(|c| c.source.display().to_string())))),
        ("modality", int(&|c| i32::from(c.name.modality.code()))),
        ("vocal_channel", int(&|c| i32::from(c.name.vocal_channel.code()))),
        ("emotion", Arc::new(StringArray::from_iter_values(clips.iter().map(|c| c.name.emotion_name())))),
        ("label", int(&|c| i32::from(c.name.label()))),
        ("intensity", int(&|c| i32::from(c.name.intensity))),
        ("statement", int(&|c| i32::from(c.name.statement))),
        ("repetition", int(&|c| i32::from(c.name.repetition))),
        ("actor", int(&|c| i32::from(c.name.actor))),
        ("width", int(&|c| c.info.width as i32)),
        ("height", int(&|c| c.info.height as i32)),
        ("fps", Arc::new(Float64Array::from_iter_values(clips.iter().map(|c| c.info.fps)))),
        ("frame_count", Arc::new(Int64Array::from_iter_values(clips.iter().map(|c| c.info.frame_count as i64)))),
        ("duration_s", Arc::new(Float64Array::from_iter_values(clips.iter().map(|c| c.info.duration_s)))),
    ];
    write(path, columns)
}

/// `rejects.parquet`.
pub fn write_rejects(path: &Path, rejects: &[Reject]) -> Result<(), StageError> {
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("source", Arc::new(StringArray::from_iter_values(rejects.iter().map(|r| r.source.display().to_string())))),
        ("kind", Arc::new(StringArray::from_iter_values(rejects.iter().map(|r| r.kind)))),
        ("reason", Arc::new(StringArray::from_iter_values(rejects.iter().map(|r| r.reason.clone())))),
    ];
    write(path, columns)
}
