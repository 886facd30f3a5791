//! Resumable states: one folder per cache key where a stage keeps what lets a later attempt at
//! the same key continue where a killed or preempted one stopped (see
//! [`stage_api::StageContext::resume_dir`]; the `train` stage keeps its last finished epoch).
//!
//! A state is never read as a result: results are only ever published artifacts. The folder is
//! removed once the key's result is published, and `run --force` and `gc` discard it. It is
//! keyed like the result, so a state can only be taken up by an attempt with the same
//! parameters, code version and inputs.
//!
//! The folders live in `<store>/resume/<key>/` of the workspace's store, or where
//! `PIPELINE_RESUME_DIR` says. A cluster job's `exec-task` computes in a scratch store and keeps
//! states where `PIPELINE_RESUME_DIR` says: the Slurm executor sets it to the workspace's folder
//! (the jobs share the working directory), so a requeued job finds what its first attempt left;
//! for Kubernetes pods set it to a persistent volume they share.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::fingerprint::Key;
use crate::lock::KeyLock;
use crate::store::{tree_size, Store};

/// Overrides where resumable states are kept.
pub const RESUME_DIR_VAR: &str = "PIPELINE_RESUME_DIR";

/// The resumable states of one workspace.
#[derive(Debug, Clone)]
pub struct ResumeStates {
    root: PathBuf,
}

impl ResumeStates {
    /// The states of the workspace whose store is `store_dir` (or `$PIPELINE_RESUME_DIR`).
    pub fn for_store_dir(store_dir: &Path) -> Self {
        let root = std::env::var_os(RESUME_DIR_VAR).filter(|v| !v.is_empty()).map_or_else(|| store_dir.join("resume"), PathBuf::from);
        Self { root }
    }

    /// Where the states are kept.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of `key`'s state (it may not exist).
    pub fn dir(&self, key: &Key) -> PathBuf {
        self.root.join(key.as_str())
    }

    /// The folder of `key`'s state, created if need be; the caller holds `key`'s lock.
    pub fn prepare(&self, key: &Key) -> io::Result<PathBuf> {
        let dir = self.dir(key);
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Removes `key`'s state; returns the bytes freed.
    pub fn discard(&self, key: &Key) -> io::Result<u64> {
        let dir = self.dir(key);
        let size = tree_size(&dir);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(size),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// After a failed attempt: removes `key`'s folder when the stage left nothing in it.
    pub fn drop_if_empty(&self, key: &Key) {
        let _ = fs::remove_dir(self.dir(key));
    }

    /// Whether `key` has a state an attempt left behind.
    pub fn exists(&self, key: &Key) -> bool {
        fs::read_dir(self.dir(key)).is_ok_and(|mut entries| entries.next().is_some())
    }

    /// Discards every state whose key no process is computing (`gc`); returns (states, bytes).
    /// Locks are taken in `store`, where runs lock the keys they compute.
    pub fn discard_idle(&self, store: &Store) -> io::Result<(usize, u64)> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
            Err(e) => return Err(e),
        };
        let (mut count, mut freed) = (0, 0);
        for entry in entries {
            let Some(key) = entry?.file_name().to_str().and_then(Key::parse) else { continue };
            if let Ok(Some(_lock)) = KeyLock::try_acquire(store, &key) {
                freed += self.discard(&key)?;
                count += 1;
            }
        }
        Ok((count, freed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: char) -> Key {
        Key::parse(&c.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn prepare_discard_and_gc() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let states = ResumeStates { root: dir.path().join("store/resume") };
        let (a, b) = (key('a'), key('b'));
        assert!(!states.exists(&a));
        let folder = states.prepare(&a).unwrap();
        states.drop_if_empty(&a);
        assert!(!folder.exists(), "an empty state folder is dropped after a failure");
        fs::write(states.prepare(&a).unwrap().join("epoch"), b"1234").unwrap();
        states.drop_if_empty(&a);
        assert!(states.exists(&a), "a state with something in it is kept");
        fs::write(states.prepare(&b).unwrap().join("epoch"), b"12").unwrap();

        // gc leaves the state of a key another run is computing.
        let held = KeyLock::try_acquire(&store, &b).unwrap().unwrap();
        assert_eq!(states.discard_idle(&store).unwrap(), (1, 4));
        assert!(!states.exists(&a) && states.exists(&b));
        drop(held);
        assert_eq!(states.discard(&b).unwrap(), 2);
        assert_eq!(states.discard(&b).unwrap(), 0, "discarding nothing is not an error");
    }
}
