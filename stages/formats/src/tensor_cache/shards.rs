//! Streams uint8 tensors into size-bounded safetensors shards.
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
