//! Writes the scan's tables as Parquet (snappy), in the column layout documented in [`super`]:
//! `clips.parquet` through the one writer of that table (`stage_formats::clips`), which
//! `extract` reads back.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, StringArray};
use stage_api::StageError;
use stage_formats::clips::{write_clips_table, ClipRecord};
use stage_formats::parquet::write_columns;

use super::select::Reject;
use super::Clip;

/// The row of `clips.parquet` for a scanned clip.
fn record(c: &Clip) -> ClipRecord {
    ClipRecord {
        clip_id: c.name.clip_id(),
        source: c.source.display().to_string(),
        modality: i32::from(c.name.modality.code()),
        vocal_channel: i32::from(c.name.vocal_channel.code()),
        emotion: c.name.emotion_name().to_owned(),
        label: i32::from(c.name.label()),
        intensity: i32::from(c.name.intensity),
        statement: i32::from(c.name.statement),
        repetition: i32::from(c.name.repetition),
        actor: i32::from(c.name.actor),
        width: c.info.width as i32,
        height: c.info.height as i32,
        fps: c.info.fps,
        frame_count: c.info.frame_count as i64,
        duration_s: c.info.duration_s,
    }
}

/// `clips.parquet`.
pub fn write_clips(path: &Path, clips: &[Clip]) -> Result<(), StageError> {
    write_clips_table(path, &clips.iter().map(record).collect::<Vec<_>>())
}

/// `rejects.parquet`.
pub fn write_rejects(path: &Path, rejects: &[Reject]) -> Result<(), StageError> {
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("source", Arc::new(StringArray::from_iter_values(rejects.iter().map(|r| r.source.display().to_string())))),
        ("kind", Arc::new(StringArray::from_iter_values(rejects.iter().map(|r| r.kind)))),
        ("reason", Arc::new(StringArray::from_iter_values(rejects.iter().map(|r| r.reason.clone())))),
    ];
    write_columns(path, columns)
}
