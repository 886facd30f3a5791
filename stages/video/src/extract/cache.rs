//! The tensor cache on disk: safetensors shards written as a stream, and the Parquet index.
//!
//! A shard is a standard safetensors file (8-byte little-endian header length, JSON header,
//! data). The header has to list every tensor before the data, so while a shard is open its
//! tensors are appended to a hidden data file (`shards/.shard-NNNNN.data`); when the shard is
//! full (the next tensor would pass `shard_bytes`; a shard holds at least one tensor) the
//! header is built with the `safetensors` crate's own `Metadata` type, and header + data are
//! copied into `shards/shard-NNNNN.safetensors`. Memory use is one tensor at a time,
//! whatever the number of clips. Tensors appear in the order they were added (the stage adds
//! them by ascending `clip_id`), and `__metadata__` has a single key so that the header
//! bytes are deterministic.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float32Array, Int32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::Dtype;
use stage_api::StageError;

/// The `__metadata__` key of every shard; its value is a JSON string describing the layout.
pub const METADATA_KEY: &str = "pipeline_extract";

/// Streams uint8 tensors into size-bounded safetensors shards.
pub struct ShardWriter {
    dir: PathBuf,
    max_bytes: u64,
    metadata: String,
    next_number: u32,
    open: Option<OpenShard>,
    written: Vec<String>,
}

struct OpenShard {
    name: String,
    data_path: PathBuf,
    data: BufWriter<File>,
    tensors: Vec<(String, TensorInfo)>,
    bytes: u64,
}

fn io_error(path: &Path, what: &str, e: impl std::error::Error + Send + Sync + 'static) -> StageError {
    StageError::with_source(format!("{}: {what}", path.display()), e)
}

impl ShardWriter {
    /// Shards go into `dir` (created); `metadata` is stored under [`METADATA_KEY`].
    pub fn new(dir: &Path, max_bytes: u64, metadata: String) -> Result<Self, StageError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, "cannot create the shard folder", e))?;
        Ok(Self { dir: dir.to_owned(), max_bytes, metadata, next_number: 0, open: None, written: Vec::new() })
    }

    /// Appends a uint8 tensor; returns the file name of the shard it lands in.
    pub fn add(&mut self, name: &str, shape: &[usize], data: &[u8]) -> Result<String, StageError> {
        let len = data.len() as u64;
        if shape.iter().product::<usize>() != data.len() {
            return Err(StageError::msg(format!("tensor `{name}`: shape {shape:?} does not match {} bytes", data.len())));
        }
        if self.open.as_ref().is_some_and(|s| s.bytes > 0 && s.bytes + len > self.max_bytes) {
            self.close_shard()?;
        }
        if self.open.is_none() {
            let name = format!("shard-{:05}.safetensors", self.next_number);
            let data_path = self.dir.join(format!(".shard-{:05}.data", self.next_number));
            let file = File::create(&data_path).map_err(|e| io_error(&data_path, "cannot create", e))?;
            self.next_number += 1;
            self.open = Some(OpenShard { name, data_path, data: BufWriter::new(file), tensors: Vec::new(), bytes: 0 });
        }
        let shard = self.open.as_mut().expect("opened above");
        shard.data.write_all(data).map_err(|e| io_error(&shard.data_path, "cannot write", e))?;
        let start = shard.bytes as usize;
        shard
            .tensors
            .push((name.to_owned(), TensorInfo { dtype: Dtype::U8, shape: shape.to_vec(), data_offsets: (start, start + data.len()) }));
        shard.bytes += len;
        Ok(shard.name.clone())
    }

    /// Closes the last shard; returns the shard file names written.
    pub fn finish(mut self) -> Result<Vec<String>, StageError> {
        self.close_shard()?;
        Ok(self.written)
    }

    fn close_shard(&mut self) -> Result<(), StageError> {
        let Some(shard) = self.open.take() else { return Ok(()) };
        let OpenShard { name, data_path, data, tensors, bytes } = shard;
        data.into_inner().map_err(|e| io_error(&data_path, "cannot flush", e.into_error()))?;
        let path = self.dir.join(&name);
        let info = HashMap::from([(METADATA_KEY.to_owned(), self.metadata.clone())]);
        let metadata = Metadata::new(Some(info), tensors)
            .map_err(|e| StageError::with_source(format!("{}: invalid tensor layout", path.display()), e))?;
        let mut header = serde_json::to_vec(&metadata)
            .map_err(|e| StageError::with_source(format!("{}: cannot encode the header", path.display()), e))?;
        header.resize(header.len().next_multiple_of(8), b' ');
        let mut out = BufWriter::new(File::create(&path).map_err(|e| io_error(&path, "cannot create", e))?);
        out.write_all(&(header.len() as u64).to_le_bytes())
            .and_then(|_| out.write_all(&header))
            .map_err(|e| io_error(&path, "cannot write", e))?;
        let mut src = File::open(&data_path).map_err(|e| io_error(&data_path, "cannot reopen", e))?;
        let copied = std::io::copy(&mut src, &mut out).map_err(|e| io_error(&path, "cannot write", e))?;
        if copied != bytes {
            return Err(StageError::msg(format!("{}: copied {copied} of {bytes} data bytes", path.display())));
        }
        out.into_inner().map_err(|e| io_error(&path, "cannot flush", e.into_error()))?;
        std::fs::remove_file(&data_path).map_err(|e| io_error(&data_path, "cannot remove", e))?;
        self.written.push(name);
        Ok(())
    }
}

/// One row of `index.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexRow {
    pub clip_id: String,
    pub source: String,
    pub actor: i32,
    pub label: i32,
    pub emotion: String,
    pub intensity: i32,
    pub statement: i32,
    pub repetition: i32,
    pub vocal_channel: i32,
    pub shard: String,
    pub tensor: String,
    pub frames: i32,
    pub size: i32,
    /// Smoothed face box in source pixels; NaN when `fallback`.
    pub box_x: f32,
    pub box_y: f32,
    pub box_w: f32,
    pub box_h: f32,
    /// Median of the per-frame best detector scores; 0 when `fallback`.
    pub detect_score: f32,
    /// Output frames (of T) with a face, among those the detector looked at.
    pub face_found_frames: i32,
    /// Output frames (of T) the detector looked at (see `detect_frames`).
    pub face_checked_frames: i32,
    pub fallback: bool,
    /// The square actually cropped (source pixels; may extend past the frame).
    pub crop_x: i32,
    pub crop_y: i32,
    pub crop_side: i32,
    pub source_width: i32,
    pub source_height: i32,
    /// Frames ffmpeg decoded (N).
    pub decoded_frames: i32,
    /// N < T: frames repeated by the sampling rule.
    pub padded: bool,
    pub decode_passes: i32,
}

/// Writes `index.parquet` (rows in the given order).
pub fn write_index(path: &Path, rows: &[IndexRow]) -> Result<(), StageError> {
    let f = |name: &str, t: DataType| Field::new(name, t, false);
    let schema = Arc::new(Schema::new(vec![
        f("clip_id", DataType::Utf8),
        f("source", DataType::Utf8),
        f("actor", DataType::Int32),
        f("label", DataType::Int32),
        f("emotion", DataType::Utf8),
        f("intensity", DataType::Int32),
        f("statement", DataType::Int32),
        f("repetition", DataType::Int32),
        f("vocal_channel", DataType::Int32),
        f("shard", DataType::Utf8),
        f("tensor", DataType::Utf8),
        f("frames", DataType::Int32),
        f("size", DataType::Int32),
        f("box_x", DataType::Float32),
        f("box_y", DataType::Float32),
        f("box_w", DataType::Float32),
        f("box_h", DataType::Float32),
        f("detect_score", DataType::Float32),
        f("face_found_frames", DataType::Int32),
        f("face_checked_frames", DataType::Int32),
        f("fallback", DataType::Boolean),
        f("crop_x", DataType::Int32),
        f("crop_y", DataType::Int32),
        f("crop_side", DataType::Int32),
        f("source_width", DataType::Int32),
        f("source_height", DataType::Int32),
        f("decoded_frames", DataType::Int32),
        f("padded", DataType::Boolean),
        f("decode_passes", DataType::Int32),
    ]));
    let s = |g: fn(&IndexRow) -> &str| Arc::new(StringArray::from_iter_values(rows.iter().map(g))) as ArrayRef;
    let i = |g: fn(&IndexRow) -> i32| Arc::new(Int32Array::from_iter_values(rows.iter().map(g))) as ArrayRef;
    let x = |g: fn(&IndexRow) -> f32| Arc::new(Float32Array::from_iter_values(rows.iter().map(g))) as ArrayRef;
    let b = |g: fn(&IndexRow) -> bool| Arc::new(BooleanArray::from(rows.iter().map(g).collect::<Vec<_>>())) as ArrayRef;
    let columns = vec![
        s(|r| &r.clip_id),
        s(|r| &r.source),
        i(|r| r.actor),
        i(|r| r.label),
        s(|r| &r.emotion),
        i(|r| r.intensity),
        i(|r| r.statement),
        i(|r| r.repetition),
        i(|r| r.vocal_channel),
        s(|r| &r.shard),
        s(|r| &r.tensor),
        i(|r| r.frames),
        i(|r| r.size),
        x(|r| r.box_x),
        x(|r| r.box_y),
        x(|r| r.box_w),
        x(|r| r.box_h),
        x(|r| r.detect_score),
        i(|r| r.face_found_frames),
        i(|r| r.face_checked_frames),
        b(|r| r.fallback),
        i(|r| r.crop_x),
        i(|r| r.crop_y),
        i(|r| r.crop_side),
        i(|r| r.source_width),
        i(|r| r.source_height),
        i(|r| r.decoded_frames),
        b(|r| r.padded),
        i(|r| r.decode_passes),
    ];
    let batch = RecordBatch::try_new(schema, columns)
        .map_err(|e| StageError::with_source(format!("{}: cannot build the index", path.display()), e))?;
    super::clips::write_parquet(path, &batch)
}

/// Reads `index.parquet` back (tests, tools); errors name the file and the column.
pub fn read_index(path: &Path) -> Result<Vec<IndexRow>, StageError> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Int32Type};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let ctx = |what: String| StageError::msg(format!("{}: {what}", path.display()));
    let file = File::open(path).map_err(|e| io_error(path, "cannot open", e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| StageError::with_source(format!("{}: not a readable Parquet file", path.display()), e))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| StageError::with_source(format!("{}: bad record batch", path.display()), e))?;
        let col = |n: &str| batch.column_by_name(n).ok_or_else(|| ctx(format!("missing column `{n}`")));
        let typed = |n: &str, t: DataType| -> Result<&ArrayRef, StageError> {
            let c = col(n)?;
            if c.data_type() == &t {
                Ok(c)
            } else {
                Err(ctx(format!("column `{n}` is {}, expected {t}", c.data_type())))
            }
        };
        let s = |n: &str, i: usize| -> Result<String, StageError> { Ok(typed(n, DataType::Utf8)?.as_string::<i32>().value(i).to_owned()) };
        let int = |n: &str, i: usize| -> Result<i32, StageError> { Ok(typed(n, DataType::Int32)?.as_primitive::<Int32Type>().value(i)) };
        let x = |n: &str, i: usize| -> Result<f32, StageError> { Ok(typed(n, DataType::Float32)?.as_primitive::<Float32Type>().value(i)) };
        let b = |n: &str, i: usize| -> Result<bool, StageError> { Ok(typed(n, DataType::Boolean)?.as_boolean().value(i)) };
        for i in 0..batch.num_rows() {
            rows.push(IndexRow {
                clip_id: s("clip_id", i)?,
                source: s("source", i)?,
                actor: int("actor", i)?,
                label: int("label", i)?,
                emotion: s("emotion", i)?,
                intensity: int("intensity", i)?,
                statement: int("statement", i)?,
                repetition: int("repetition", i)?,
                vocal_channel: int("vocal_channel", i)?,
                shard: s("shard", i)?,
                tensor: s("tensor", i)?,
                frames: int("frames", i)?,
                size: int("size", i)?,
                box_x: x("box_x", i)?,
                box_y: x("box_y", i)?,
                box_w: x("box_w", i)?,
                box_h: x("box_h", i)?,
                detect_score: x("detect_score", i)?,
                face_found_frames: int("face_found_frames", i)?,
                face_checked_frames: int("face_checked_frames", i)?,
                fallback: b("fallback", i)?,
                crop_x: int("crop_x", i)?,
                crop_y: int("crop_y", i)?,
                crop_side: int("crop_side", i)?,
                source_width: int("source_width", i)?,
                source_height: int("source_height", i)?,
                decoded_frames: int("decoded_frames", i)?,
                padded: b("padded", i)?,
                decode_passes: int("decode_passes", i)?,
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::SafeTensors;

    #[test]
    fn shards_are_bounded_readable_and_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ShardWriter::new(dir.path(), 100, "{\"frames\":2}".to_owned()).unwrap();
        let mut shards = Vec::new();
        for k in 0..5u8 {
            let data: Vec<u8> = (0..48).map(|v| v ^ k).collect();
            shards.push(w.add(&format!("clip-{k}"), &[2, 2, 4, 3], &data).unwrap());
        }
        // 48-byte tensors, 100-byte bound: two per shard.
        assert_eq!(
            shards,
            [
                "shard-00000.safetensors",
                "shard-00000.safetensors",
                "shard-00001.safetensors",
                "shard-00001.safetensors",
                "shard-00002.safetensors"
            ]
        );
        assert_eq!(w.finish().unwrap().len(), 3);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let bytes = std::fs::read(dir.path().join("shard-00001.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let t = st.tensor("clip-3").unwrap();
        assert_eq!(t.shape(), &[2, 2, 4, 3]);
        assert_eq!(t.dtype(), Dtype::U8);
        assert_eq!(t.data(), (0..48).map(|v| v ^ 3).collect::<Vec<u8>>().as_slice());
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap()[METADATA_KEY], "{\"frames\":2}");
    }

    #[test]
    fn oversized_tensor_gets_its_own_shard() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ShardWriter::new(dir.path(), 10, String::new()).unwrap();
        assert_eq!(w.add("a", &[20], &[1; 20]).unwrap(), "shard-00000.safetensors");
        assert_eq!(w.add("b", &[20], &[2; 20]).unwrap(), "shard-00001.safetensors");
        assert!(w.add("c", &[3], &[1; 20]).is_err());
        assert_eq!(w.finish().unwrap().len(), 2);
    }
}
