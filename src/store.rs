//! The artifact store: published stage outputs, addressed by cache key.
//!
//! Layout under the store directory (default `.pipeline/` next to `pipeline.yaml`):
//!
//! ```text
//! objects/<k0k1>/<key>/manifest.json   every output file with its size and blake3 hash
//! objects/<k0k1>/<key>/out/...         the stage's output files (read-only)
//! objects/<k0k1>/<key>/log.txt         what the stage printed
//! tmp/<key>.<pid>.<n>/                 a stage at work; never read as a result
//! locks/<key>.lock                     held (flock) while an instance computes that key
//! state/<instance>.json                the last fingerprint per instance, to explain staleness
//! memo/file-hashes.json                see [`crate::filehash`]
//! runs/<millis>-<pid>.json             one record per run
//! ```
//!
//! Publishing is atomic: a stage writes into its private `tmp/` directory; on success every
//! file is hashed into the manifest, files and directories are synced to disk, and the directory
//! is renamed into `objects/`. A directory under `objects/` therefore always holds a complete
//! result; a run killed at any moment leaves only `tmp/` debris, which the next run or `gc`
//! removes once no process holds its lock.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use walkdir::WalkDir;

use crate::fingerprint::{Fingerprint, Key};

/// One output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Relative to `out/`, `/`-separated.
    pub path: String,
    pub size: u64,
    pub blake3: String,
}

/// What a published artifact holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub key: String,
    pub instance: String,
    /// blake3 over the sorted file list: the "content hash" downstream keys use.
    pub content_hash: String,
    pub files: Vec<ManifestEntry>,
    pub summary: String,
    pub seconds: f64,
}

impl Manifest {
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

pub struct Store {
    root: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> io::Result<Self> {
        for sub in ["objects", "tmp", "locks", "state", "memo", "runs"] {
            fs::create_dir_all(root.join(sub))?;
        }
        Ok(Self { root: root.to_path_buf() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn object_dir(&self, key: &Key) -> PathBuf {
        let hex = key.as_str();
        self.root.join("objects").join(&hex[..2]).join(hex)
    }

    /// The output directory of a published artifact.
    pub fn output_dir(&self, key: &Key) -> PathBuf {
        self.object_dir(key).join("out")
    }

    pub fn memo_file(&self) -> PathBuf {
        self.root.join("memo").join("file-hashes.json")
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// The published artifact for `key`, if there is a complete one. Cheap: reads the manifest
    /// and checks that every file is there with its size (content is verified by `verify`).
    pub fn lookup(&self, key: &Key) -> Option<Manifest> {
        let dir = self.object_dir(key);
        let manifest: Manifest = serde_json::from_slice(&fs::read(dir.join("manifest.json")).ok()?).ok()?;
        let out = dir.join("out");
        let complete = manifest.files.iter().all(|f| fs::metadata(out.join(&f.path)).is_ok_and(|m| m.len() == f.size));
        complete.then_some(manifest)
    }

    /// Re-hashes every file of an artifact; the paths that do not match the manifest.
    pub fn verify(&self, key: &Key) -> io::Result<Vec<String>> {
        let dir = self.object_dir(key);
        let manifest: Manifest = serde_json::from_slice(&fs::read(dir.join("manifest.json"))?).map_err(io::Error::other)?;
        let out = dir.join("out");
        Ok(manifest
            .files
            .par_iter()
            .filter(|f| crate::filehash::hash_contents(&out.join(&f.path), f.size).map_or(true, |h| h != f.blake3))
            .map(|f| f.path.clone())
            .collect())
    }

    /// A fresh private directory for a stage at work (`<tmp>/out` is the stage's output dir).
    pub fn new_tmp(&self, key: &Key) -> io::Result<PathBuf> {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = self.root.join("tmp").join(format!("{}.{}.{n}", key.as_str(), std::process::id()));
        fs::create_dir_all(dir.join("out"))?;
        Ok(dir)
    }

    /// Hashes, syncs and atomically publishes `tmp` as the artifact for `key`. With `replace`
    /// an existing artifact is swapped out (forced reruns); without, an artifact another run
    /// published meanwhile wins and `tmp` is discarded.
    pub fn publish(&self, key: &Key, instance: &str, tmp: &Path, summary: &str, seconds: f64, replace: bool) -> io::Result<Manifest> {
        let files = hash_tree(&tmp.join("out"))?;
        let manifest = Manifest {
            key: key.as_str().to_owned(),
            instance: instance.to_owned(),
            content_hash: content_hash(&files),
            files,
            summary: summary.to_owned(),
            seconds,
        };
        self.publish_manifest(key, tmp, manifest, replace)
    }

    /// Publishes `tmp` with a manifest whose hashes the caller has already checked while
    /// writing the files (a verified download): `tmp/out` must hold exactly the listed files,
    /// with the listed sizes; nothing is re-hashed.
    pub fn publish_verified(&self, key: &Key, tmp: &Path, manifest: &Manifest) -> io::Result<Manifest> {
        let out = tmp.join("out");
        let mut listed: std::collections::BTreeMap<&str, u64> = manifest.files.iter().map(|f| (f.path.as_str(), f.size)).collect();
        for entry in WalkDir::new(&out) {
            let entry = entry.map_err(io::Error::other)?;
            if entry.file_type().is_dir() {
                continue;
            }
            let rel = entry.path().strip_prefix(&out).map_err(io::Error::other)?;
            let rel = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            let size = entry.metadata().map_err(io::Error::other)?.len();
            if !entry.file_type().is_file() || listed.remove(rel.as_str()) != Some(size) {
                return Err(io::Error::other(format!("{rel}: not the file the manifest lists")));
            }
        }
        if let Some((path, _)) = listed.into_iter().next() {
            return Err(io::Error::other(format!("{path}: missing")));
        }
        let mut manifest = manifest.clone();
        manifest.key = key.as_str().to_owned();
        manifest.content_hash = content_hash(&manifest.files);
        self.publish_manifest(key, tmp, manifest, false)
    }

    fn publish_manifest(&self, key: &Key, tmp: &Path, manifest: Manifest, replace: bool) -> io::Result<Manifest> {
        let out = tmp.join("out");
        let bytes = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
        write_synced(&tmp.join("manifest.json"), &bytes)?;
        make_read_only_and_sync(&out)?;
        sync_dir(tmp)?;

        let dest = self.object_dir(key);
        let parent = dest.parent().expect("object dirs have a parent");
        fs::create_dir_all(parent)?;
        if dest.exists() {
            if !replace {
                remove_tree(tmp)?;
                return self.lookup(key).ok_or_else(|| io::Error::other("published artifact vanished"));
            }
            let trash = self.new_tmp(key)?;
            fs::remove_dir_all(&trash)?;
            fs::rename(&dest, &trash)?;
            fs::rename(tmp, &dest)?;
            remove_tree(&trash)?;
        } else {
            fs::rename(tmp, &dest)?;
        }
        sync_dir(parent)?;
        Ok(manifest)
    }

    /// Every published key.
    pub fn published_keys(&self) -> io::Result<Vec<Key>> {
        let mut keys = Vec::new();
        for shard in fs::read_dir(self.root.join("objects"))? {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for entry in fs::read_dir(shard.path())? {
                if let Some(key) = entry?.file_name().to_str().and_then(Key::parse) {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Removes an artifact; returns the bytes freed.
    pub fn remove(&self, key: &Key) -> io::Result<u64> {
        let dir = self.object_dir(key);
        let size = tree_size(&dir);
        remove_tree(&dir)?;
        Ok(size)
    }

    /// Removes temporary directories no live process is working in; returns the bytes freed.
    pub fn clean_tmp(&self) -> io::Result<u64> {
        let mut freed = 0;
        for entry in fs::read_dir(self.root.join("tmp"))? {
            let path = entry?.path();
            let Some(key) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.split('.').next()).and_then(Key::parse) else {
                continue;
            };
            // A tmp dir is in use only while its key's lock is held.
            if let Ok(Some(_guard)) = crate::lock::KeyLock::try_acquire(self, &key) {
                freed += tree_size(&path);
                remove_tree(&path)?;
            }
        }
        Ok(freed)
    }

    pub fn lock_file(&self, key: &Key) -> PathBuf {
        self.root.join("locks").join(format!("{}.lock", key.as_str()))
    }

    fn state_file(&self, instance: &str) -> PathBuf {
        let safe: String = instance.chars().map(|c| if c.is_ascii_alphanumeric() || "-_=,.".contains(c) { c } else { '_' }).collect();
        let tag = &blake3::hash(instance.as_bytes()).to_hex()[..8];
        self.root.join("state").join(format!("{safe}.{tag}.json"))
    }

    /// The fingerprint this instance had when it last succeeded.
    pub fn last_state(&self, instance: &str) -> Option<InstanceState> {
        serde_json::from_slice(&fs::read(self.state_file(instance)).ok()?).ok()
    }

    pub fn save_state(&self, state: &InstanceState) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
        write_atomically(&self.state_file(&state.instance), &bytes)
    }

    pub fn all_states(&self) -> Vec<InstanceState> {
        let Ok(dir) = fs::read_dir(self.root.join("state")) else { return Vec::new() };
        dir.filter_map(|e| e.ok()).filter_map(|e| fs::read(e.path()).ok()).filter_map(|b| serde_json::from_slice(&b).ok()).collect()
    }
}

/// What the store remembers of an instance's last success.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceState {
    pub instance: String,
    pub key: String,
    pub fingerprint: Fingerprint,
}

/// Hashes every regular file below `root` (sorted by path).
pub fn hash_tree(root: &Path) -> io::Result<Vec<ManifestEntry>> {
    let mut paths = Vec::new();
    for entry in WalkDir::new(root).sort_by_file_name() {
        let entry = entry.map_err(io::Error::other)?;
        if entry.file_type().is_file() {
            paths.push(entry.into_path());
        } else if entry.file_type().is_symlink() {
            return Err(io::Error::other(format!(
                "{}: stage outputs may not contain symbolic links (they could point outside the store)",
                entry.path().display()
            )));
        }
    }
    paths
        .par_iter()
        .map(|path| {
            let size = fs::metadata(path)?.len();
            let rel = path.strip_prefix(root).map_err(io::Error::other)?;
            let rel = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            Ok(ManifestEntry { path: rel, size, blake3: crate::filehash::hash_contents(path, size)? })
        })
        .collect()
}

/// The content hash of a file list: equal lists, equal hash, whatever produced them.
pub fn content_hash(files: &[ManifestEntry]) -> String {
    let mut hasher = blake3::Hasher::new();
    for f in files {
        hasher.update(f.path.as_bytes());
        hasher.update(&[0]);
        hasher.update(&f.size.to_le_bytes());
        hasher.update(f.blake3.as_bytes());
        hasher.update(&[0]);
    }
    hasher.finalize().to_hex().to_string()
}

/// Writes `bytes` to `path` through a synced temporary file and a rename. On failure (a full
/// disk) `path` is as it was and the temporary file is removed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
    let written = write_synced(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Writes and syncs `path`; an error names the file (`PATH: No space left on device`).
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let write = || {
        let mut file = fs::File::create(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    write().map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn make_read_only_and_sync(root: &Path) -> io::Result<()> {
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    for entry in WalkDir::new(root).contents_first(true) {
        let entry = entry.map_err(io::Error::other)?;
        if entry.file_type().is_file() {
            files.push(entry.into_path());
        } else if entry.file_type().is_dir() {
            dirs.push(entry.into_path());
        }
    }
    // Files in parallel (one fsync after another leaves the disk idle between them), then
    // directories, innermost first.
    files.par_iter().try_for_each(|path| {
        let file = fs::File::open(path)?;
        file.sync_all()?;
        let mut perms = file.metadata()?.permissions();
        perms.set_readonly(true);
        fs::set_permissions(path, perms)
    })?;
    dirs.iter().try_for_each(|dir| sync_dir(dir))
}

fn sync_dir(path: &Path) -> io::Result<()> {
    fs::File::open(path)?.sync_all()
}

/// Removes a directory tree (published files are read-only, which `remove_dir_all` handles on
/// Unix because only the directories' permissions matter).
fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Bytes of the files under `path` (0 when it does not exist).
pub(crate) fn tree_size(path: &Path) -> u64 {
    WalkDir::new(path).into_iter().filter_map(|e| e.ok()).filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()
}
