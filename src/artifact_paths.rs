//! The engine's [`ArtifactPaths`]: maps paths into the pipeline's configured store (what tables
//! record) to the store this process actually uses, and fetches artifacts a table points into.
//!
//! On the coordinator the two stores are the same directory and both directions are the identity.
//! A cluster worker (`pipeline exec-task`) computes in a private store elsewhere: a scan it runs
//! still records `<configured store>/objects/..` paths, so its table is byte-identical to a local
//! run, and an extract it runs finds those videos in its own store, pulled from the remote cache
//! the first time a table names that artifact.

use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use stage_api::{ArtifactPaths, StageError};

use crate::fingerprint::Key;
use crate::remote::Remote;
use crate::store::Store;

pub struct StorePaths<'a> {
    /// The store as the pipeline file configures it (absolute).
    configured: PathBuf,
    store: &'a Store,
    /// Where missing artifacts come from; none on a machine without a remote.
    remote: Option<&'a Remote>,
    /// One pull at a time (stages call `locate` from many threads for the same artifact).
    pulling: Mutex<()>,
}

impl<'a> StorePaths<'a> {
    pub fn new(configured: &Path, store: &'a Store, remote: Option<&'a Remote>) -> Self {
        StorePaths { configured: absolute(configured), store, remote, pulling: Mutex::new(()) }
    }

    /// The artifact key of a path relative to a store root (`objects/ab/<key>/out/...`).
    fn key_in(relative: &Path) -> Option<Key> {
        let mut parts = relative.components().map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        });
        match (parts.next()?, parts.next()?, parts.next()?) {
            (Some("objects"), Some(_), Some(key)) => Key::parse(key),
            _ => None,
        }
    }

    fn ensure_local(&self, key: &Key, path: &Path) -> Result<(), StageError> {
        if self.store.lookup(key).is_some() {
            return Ok(());
        }
        let _one_at_a_time = self.pulling.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.store.lookup(key).is_some() {
            return Ok(());
        }
        let remote = self.remote.ok_or_else(|| {
            StageError::msg(format!(
                "{} lies in artifact {key}, which is not in this store and no remote cache is configured",
                path.display()
            ))
        })?;
        remote
            .pull(self.store, key, "an artifact an upstream table points into")
            .map(drop)
            .map_err(|e| StageError::with_source(format!("{} lies in artifact {key}, which could not be pulled", path.display()), e))
    }
}

impl ArtifactPaths for StorePaths<'_> {
    fn portable(&self, path: &Path) -> PathBuf {
        match absolute(path).strip_prefix(absolute(self.store.root())) {
            Ok(rest) => self.configured.join(rest),
            Err(_) => path.to_path_buf(),
        }
    }

    fn locate(&self, path: &Path) -> Result<PathBuf, StageError> {
        let full = absolute(path);
        let Ok(rest) = full.strip_prefix(&self.configured) else { return Ok(path.to_path_buf()) };
        let local = self.store.root().join(rest);
        match Self::key_in(rest) {
            Some(key) => self.ensure_local(&key, path).map(|()| local),
            None => Ok(local),
        }
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_store_maps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let paths = StorePaths::new(&dir.path().join("store"), &store, None);
        let p = dir.path().join("store/objects/ab/x/out/a.mp4");
        assert_eq!(paths.portable(&p), p);
        let outside = dir.path().join("data/a.mp4");
        assert_eq!(paths.locate(&outside).unwrap(), outside);
    }

    #[test]
    fn a_private_store_writes_configured_paths_and_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let configured = dir.path().join("ws/.pipeline");
        let store = Store::open(&dir.path().join("private")).unwrap();
        let paths = StorePaths::new(&configured, &store, None);
        let key = "ab".repeat(32);
        let inside = dir.path().join(format!("private/objects/ab/{key}/out/v.mp4"));
        let recorded = paths.portable(&inside);
        assert_eq!(recorded, configured.join(format!("objects/ab/{key}/out/v.mp4")));
        // Not in the private store and no remote: a clear error naming the file and the artifact.
        let err = paths.locate(&recorded).unwrap_err().chain();
        assert!(err.contains("v.mp4") && err.contains(&key) && err.contains("no remote"), "{err}");
    }
}
