//! Content hashes of input files, memoised on (path, size, mtime, inode).
//!
//! A dataset of thousands of multi-megabyte videos must not be re-read on every run, so a file
//! whose stat signature is unchanged reuses its recorded blake3 hash. A `touch` changes the
//! signature: the file is re-hashed, found equal, and nothing downstream reruns because cache
//! keys contain content hashes, never mtimes.
//!
//! The memo lives in `<store>/memo/file-hashes.json`. It is only a cache: losing it costs a
//! re-hash, and concurrent runs may overwrite each other's copy safely (last writer wins, each
//! entry is validated by its signature before use).
//!
//! Racy entries: a file modified twice within the file system's timestamp granularity could
//! keep its signature while changing content. Like git's "racily clean" rule, an entry whose
//! mtime is less than [`RACY_WINDOW`] before the moment it was hashed is not remembered.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Files larger than this are hashed through a memory map (parallelism comes from hashing
/// several files at once, see [`HashMemo::hash_files`]).
const MMAP_THRESHOLD: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Signature {
    size: u64,
    mtime_ns: i64,
    inode: u64,
}

impl Signature {
    fn of(meta: &fs::Metadata) -> Self {
        let mtime_ns = meta.modified().ok().and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as i64);
        Self { size: meta.len(), mtime_ns, inode: inode(meta) }
    }
}

#[cfg(unix)]
fn inode(meta: &fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_meta: &fs::Metadata) -> u64 {
    0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    #[serde(flatten)]
    signature: Signature,
    hash: String,
}

/// The memo, shared by all threads of one run.
pub struct HashMemo {
    file: Option<PathBuf>,
    entries: Mutex<HashMap<PathBuf, Entry>>,
    dirty: Mutex<bool>,
}

impl HashMemo {
    /// Loads the memo at `file` (missing or unreadable: start empty).
    pub fn open(file: PathBuf) -> Self {
        let entries = fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        Self { file: Some(file), entries: Mutex::new(entries), dirty: Mutex::new(false) }
    }

    /// A memo that is never saved.
    pub fn in_memory() -> Self {
        Self { file: None, entries: Mutex::new(HashMap::new()), dirty: Mutex::new(false) }
    }

    /// The blake3 hash (hex) of the file at `path`.
    pub fn hash_file(&self, path: &Path) -> io::Result<String> {
        let meta = fs::metadata(path)?;
        let signature = Signature::of(&meta);
        if let Some(entry) = self.entries.lock().expect("memo lock").get(path) {
            if entry.signature == signature {
                return Ok(entry.hash.clone());
            }
        }
        let started = SystemTime::now();
        let hash = hash_contents(path, meta.len())?;
        let racy = started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(true, |now| (now.as_nanos() as i64) - signature.mtime_ns < RACY_WINDOW.as_nanos() as i64);
        if !racy {
            self.entries.lock().expect("memo lock").insert(path.to_path_buf(), Entry { signature, hash: hash.clone() });
            *self.dirty.lock().expect("memo lock") = true;
        }
        Ok(hash)
    }

    /// Hashes many files in parallel; results in the order given.
    pub fn hash_files(&self, paths: &[PathBuf]) -> Vec<io::Result<String>> {
        paths.par_iter().map(|p| self.hash_file(p)).collect()
    }

    /// Writes the memo back (atomically) if anything was added.
    pub fn save(&self) -> io::Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        if !*self.dirty.lock().expect("memo lock") {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&*self.entries.lock().expect("memo lock")).map_err(io::Error::other)?;
        crate::store::write_atomically(file, &bytes)
    }
}

/// blake3 of a file's contents, hex.
pub fn hash_contents(path: &Path, size: u64) -> io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    if size >= MMAP_THRESHOLD {
        hasher.update_mmap(path)?;
    } else {
        hasher.update(&fs::read(path)?);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touch_rehashes_but_hash_is_equal_and_content_change_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        fs::write(&path, b"hello").unwrap();
        let memo = HashMemo::in_memory();
        let first = memo.hash_file(&path).unwrap();
        assert_eq!(first, blake3::hash(b"hello").to_hex().to_string());
        fs::write(&path, b"hellO").unwrap();
        assert_ne!(memo.hash_file(&path).unwrap(), first);
    }

    #[test]
    fn memo_roundtrips_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a.bin");
        fs::write(&data, vec![7u8; 3 << 20]).unwrap();
        // Make the file old enough not to be racy.
        let old = SystemTime::now() - Duration::from_secs(60);
        fs::File::options().write(true).open(&data).unwrap().set_modified(old).unwrap();
        let memo_file = dir.path().join("memo.json");
        let memo = HashMemo::open(memo_file.clone());
        let hash = memo.hash_file(&data).unwrap();
        memo.save().unwrap();
        let reopened = HashMemo::open(memo_file);
        assert_eq!(reopened.entries.lock().unwrap().len(), 1);
        assert_eq!(reopened.hash_file(&data).unwrap(), hash);
    }
}
