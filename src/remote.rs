//! A shared remote cache of published artifacts (a directory, S3-compatible, GCS, Azure, or
//! read-only HTTP), through the `object_store` crate.
//!
//! Remote layout, content-addressed so the same file is stored once however many artifacts
//! hold it:
//!
//! ```text
//! blobs/<h0h1>/<blake3>        file contents, named by their blake3 hash
//! manifests/<key>.json         an artifact's manifest (what `objects/<key>/manifest.json` holds)
//! tasks/<key>.json             the spec of a task handed to a cluster job (see `executor::task`)
//! ```
//!
//! Push uploads missing blobs first (in parallel) and the manifest last, so a manifest is never
//! visible before its blobs. Two machines pushing the same key at once is harmless: blobs with
//! the same name have the same content, and either manifest is a valid one.
//!
//! Pull trusts nothing: the manifest is validated before anything is written (the key matches,
//! paths are relative with no `..`, hashes are well-formed and the content hash matches the file
//! list), every blob is streamed into a private work directory while being hashed, and a blob
//! whose size or blake3 differs fails the pull. Only then is the directory published, with the
//! same atomic rename as a locally computed result. A failed pull leaves nothing behind, and the
//! stage is computed locally instead.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt, PutPayload};

use crate::fingerprint::Key;
use crate::store::{content_hash, Manifest, ManifestEntry, Store};

/// Transfers in flight at once.
const PARALLEL_TRANSFERS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("remote `{url}`: {message}")]
    Config { url: String, message: String },
    #[error("remote has no artifact for key {0}")]
    Missing(String),
    #[error("remote has no task spec for key {0}")]
    MissingTask(String),
    #[error("remote manifest for key {key} is invalid: {problem}")]
    BadManifest { key: String, problem: String },
    #[error("remote blob {path} ({file}) is corrupt: {problem}")]
    CorruptBlob { path: String, file: String, problem: String },
    #[error("remote `{url}` is read-only")]
    ReadOnly { url: String },
    #[error("remote transfer failed: {0}")]
    Store(#[from] object_store::Error),
    #[error("local I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The local copy of a forced artifact could not be removed to make room for the pulled one.
    #[error("cannot replace the local artifact {key}: {source}")]
    Replace { key: String, source: std::io::Error },
    /// Writing a downloaded file into the local store failed (a full disk, say).
    #[error("cannot write {}: {source}", path.display())]
    LocalWrite { path: PathBuf, source: std::io::Error },
}

pub struct Remote {
    url: String,
    store: Arc<dyn ObjectStore>,
    read_only: bool,
    runtime: tokio::runtime::Runtime,
}

impl Remote {
    /// Opens a remote: `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`,
    /// `http(s)://...` (read-only), or a directory path (`file://` optional). Credentials and
    /// endpoints come from the usual environment variables (`AWS_ENDPOINT_URL`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_ALLOW_HTTP`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_...`).
    pub fn open(url: &str, base_dir: &Path) -> Result<Self, RemoteError> {
        let config = |e: object_store::Error| RemoteError::Config { url: url.to_owned(), message: e.to_string() };
        let (store, read_only): (Arc<dyn ObjectStore>, bool) = match url.split_once("://").map(|(s, _)| s) {
            // The builders take the bucket (container) from the URL and ignore its path: the
            // prefix is applied with a `PrefixStore`.
            Some("s3") | Some("s3a") => {
                let store = object_store::aws::AmazonS3Builder::from_env().with_url(url).build().map_err(config)?;
                (with_prefix(store, url), false)
            }
            Some("gs") => {
                (with_prefix(object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url).build().map_err(config)?, url), false)
            }
            Some("az") | Some("abfs") | Some("abfss") => {
                (with_prefix(object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url).build().map_err(config)?, url), false)
            }
            Some(scheme @ ("http" | "https")) => {
                // object_store refuses plain HTTP unless told: the URL says it explicitly.
                let options = object_store::ClientOptions::new().with_allow_http(scheme == "http");
                let store = object_store::http::HttpBuilder::new().with_url(url).with_client_options(options);
                (Arc::new(store.build().map_err(config)?), true)
            }
            Some("file") | None => {
                let path = base_dir.join(url.strip_prefix("file://").unwrap_or(url));
                std::fs::create_dir_all(&path)?;
                (Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&path).map_err(config)?), false)
            }
            Some(other) => {
                return Err(RemoteError::Config {
                    url: url.to_owned(),
                    message: format!("unknown scheme `{other}://` (use s3://, gs://, az://, http(s):// or a directory)"),
                })
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        Ok(Self { url: url.to_owned(), store, read_only, runtime })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn manifest_path(key: &Key) -> ObjectPath {
        ObjectPath::from(format!("manifests/{}.json", key.as_str()))
    }

    fn blob_path(hash: &str) -> ObjectPath {
        ObjectPath::from(format!("blobs/{}/{hash}", &hash[..2]))
    }

    fn task_path(key: &Key) -> ObjectPath {
        ObjectPath::from(format!("tasks/{}.json", key.as_str()))
    }

    /// Stores the spec of the task that computes `key` (for a worker to read).
    pub fn put_task(&self, key: &Key, spec: Vec<u8>) -> Result<(), RemoteError> {
        if self.read_only {
            return Err(RemoteError::ReadOnly { url: self.url.clone() });
        }
        self.runtime.block_on(self.store.put(&Self::task_path(key), PutPayload::from(spec)))?;
        Ok(())
    }

    /// The spec of the task that computes `key`.
    pub fn get_task(&self, key: &Key) -> Result<Vec<u8>, RemoteError> {
        self.runtime.block_on(async {
            match self.store.get(&Self::task_path(key)).await {
                Ok(get) => Ok(get.bytes().await?.to_vec()),
                Err(object_store::Error::NotFound { .. }) => Err(RemoteError::MissingTask(key.as_str().to_owned())),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Whether the remote has an artifact for `key` (a HEAD request; [`Remote::pull`] needs none
    /// first: it answers [`RemoteError::Missing`] on a miss).
    pub fn has(&self, key: &Key) -> bool {
        self.runtime.block_on(self.store.head(&Self::manifest_path(key))).is_ok()
    }

    /// Uploads the local artifact `key` (blobs the remote lacks, then the manifest).
    /// Returns the number of bytes uploaded.
    pub fn push(&self, local: &Store, key: &Key) -> Result<u64, RemoteError> {
        if self.read_only {
            return Err(RemoteError::ReadOnly { url: self.url.clone() });
        }
        let manifest = local.lookup(key).ok_or_else(|| RemoteError::Missing(key.as_str().to_owned()))?;
        let out = local.output_dir(key);
        self.runtime.block_on(async {
            let uploaded: Vec<u64> = stream::iter(manifest.files.iter())
                .map(|f| {
                    let file = out.join(&f.path);
                    let blob = Self::blob_path(&f.blake3);
                    let store = self.store.clone();
                    async move {
                        if store.head(&blob).await.is_ok() {
                            return Ok::<u64, RemoteError>(0);
                        }
                        let expected = f.size;
                        let payload =
                            tokio::task::spawn_blocking(move || map_file(&file, expected)).await.map_err(std::io::Error::other)??;
                        store.put(&blob, payload).await?;
                        Ok(expected)
                    }
                })
                .buffer_unordered(PARALLEL_TRANSFERS)
                .try_collect()
                .await?;
            let bytes = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
            self.store.put(&Self::manifest_path(key), PutPayload::from(bytes)).await?;
            Ok(uploaded.iter().sum())
        })
    }

    /// Downloads, verifies and publishes the artifact `key` into the local store. Returns its
    /// manifest as published locally, or [`RemoteError::Missing`] when the remote lacks it.
    pub fn pull(&self, local: &Store, key: &Key, instance: &str) -> Result<Manifest, RemoteError> {
        let manifest = self.fetch_manifest(key)?;
        let work = local.new_tmp(key)?;
        let result = self.download_all(&manifest, &work.join("out"));
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&work);
            return Err(e);
        }
        // Every file was hashed while it was written: publish without re-hashing.
        let mut manifest = manifest;
        manifest.instance = instance.to_owned();
        let published = local.publish_verified(key, &work, &manifest);
        let published = match published {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&work);
                return Err(e.into());
            }
        };
        if published.content_hash != manifest.content_hash {
            // Cannot happen after per-blob verification; refuse loudly if it does.
            let _ = local.remove(key);
            return Err(RemoteError::BadManifest { key: key.as_str().to_owned(), problem: "content hash differs after download".into() });
        }
        Ok(published)
    }

    fn fetch_manifest(&self, key: &Key) -> Result<Manifest, RemoteError> {
        let bytes = self.runtime.block_on(async {
            match self.store.get(&Self::manifest_path(key)).await {
                Ok(get) => Ok(get.bytes().await?),
                Err(object_store::Error::NotFound { .. }) => Err(RemoteError::Missing(key.as_str().to_owned())),
                Err(e) => Err(e.into()),
            }
        })?;
        let bad = |problem: String| RemoteError::BadManifest { key: key.as_str().to_owned(), problem };
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a manifest: {e}")))?;
        validate_manifest(&manifest, key)?;
        Ok(manifest)
    }

    fn download_all(&self, manifest: &Manifest, out: &Path) -> Result<(), RemoteError> {
        self.runtime.block_on(async {
            stream::iter(manifest.files.iter())
                .map(|f| {
                    let store = self.store.clone();
                    let target = out.join(&f.path);
                    async move {
                        let blob = Self::blob_path(&f.blake3);
                        if let Some(parent) = target.parent() {
                            tokio::fs::create_dir_all(parent)
                                .await
                                .map_err(|source| RemoteError::LocalWrite { path: parent.to_path_buf(), source })?;
                        }
                        let mut sink = VerifiedFile::create(&target, &blob, f)?;
                        match store.get(&blob).await?.payload {
                            // A directory remote: one blocking copy with a large buffer, not
                            // object_store's stream of 8 KiB reads.
                            GetResultPayload::File(mut source, _) => tokio::task::spawn_blocking(move || {
                                let mut buf = vec![0u8; 1 << 20];
                                loop {
                                    let n = source.read(&mut buf)?;
                                    if n == 0 {
                                        return sink.finish();
                                    }
                                    sink.write(&buf[..n])?;
                                }
                            })
                            .await
                            .map_err(std::io::Error::other)?,
                            GetResultPayload::Stream(mut chunks) => {
                                while let Some(chunk) = chunks.next().await {
                                    sink.write(&chunk?)?;
                                }
                                sink.finish()
                            }
                        }
                    }
                })
                .buffer_unordered(PARALLEL_TRANSFERS)
                .try_collect::<Vec<()>>()
                .await
                .map(|_| ())
        })
    }
}

/// The contents of a published file as an upload payload, memory-mapped rather than read into
/// a buffer (reading 1 GB into fresh buffers cost more than the upload to a directory itself).
fn map_file(path: &Path, expected: u64) -> std::io::Result<PutPayload> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if size != expected {
        return Err(std::io::Error::other(format!("{}: {size} bytes, its manifest says {expected}", path.display())));
    }
    if size == 0 {
        return Ok(PutPayload::new());
    }
    // SAFETY: published files are read-only and never written in place (the store replaces
    // whole artifact directories by rename), so the mapping does not change under us.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    Ok(PutPayload::from(bytes::Bytes::from_owner(map)))
}

/// A downloaded blob being written to its place in the work directory, hashed as it arrives:
/// `finish` fails unless the size and blake3 are the manifest's.
struct VerifiedFile {
    file: std::io::BufWriter<std::fs::File>,
    target: PathBuf,
    hasher: blake3::Hasher,
    size: u64,
    blob: String,
    entry: ManifestEntry,
}

impl VerifiedFile {
    fn create(target: &Path, blob: &ObjectPath, entry: &ManifestEntry) -> Result<Self, RemoteError> {
        let file = std::fs::File::create(target).map_err(|source| RemoteError::LocalWrite { path: target.to_path_buf(), source })?;
        let file = std::io::BufWriter::with_capacity(1 << 20, file);
        Ok(Self {
            file,
            target: target.to_path_buf(),
            hasher: blake3::Hasher::new(),
            size: 0,
            blob: blob.to_string(),
            entry: entry.clone(),
        })
    }

    fn write_failed(&self, source: std::io::Error) -> RemoteError {
        RemoteError::LocalWrite { path: self.target.clone(), source }
    }

    fn corrupt(&self, problem: String) -> RemoteError {
        RemoteError::CorruptBlob { path: self.blob.clone(), file: self.entry.path.clone(), problem }
    }

    fn write(&mut self, chunk: &[u8]) -> Result<(), RemoteError> {
        self.size += chunk.len() as u64;
        if self.size > self.entry.size {
            return Err(self.corrupt(format!("longer than the {} bytes the manifest says", self.entry.size)));
        }
        self.hasher.update(chunk);
        self.file.write_all(chunk).map_err(|e| self.write_failed(e))
    }

    fn finish(self) -> Result<(), RemoteError> {
        if self.size != self.entry.size {
            return Err(self.corrupt(format!("{} bytes, the manifest says {}", self.size, self.entry.size)));
        }
        let hash = self.hasher.finalize().to_hex().to_string();
        if hash != self.entry.blake3 {
            return Err(self.corrupt(format!("blake3 {hash} differs from the manifest's {}", self.entry.blake3)));
        }
        // No fsync here: publishing syncs every file before the rename that makes it visible.
        let target = self.target;
        self.file.into_inner().map_err(|e| RemoteError::LocalWrite { path: target, source: e.into_error() })?;
        Ok(())
    }
}

/// `store` rooted at the path of `url` (`s3://bucket/a/b` -> `a/b/...`), if it has one.
fn with_prefix<T: ObjectStore>(store: T, url: &str) -> Arc<dyn ObjectStore> {
    let path = url.split_once("://").map_or("", |(_, rest)| rest.split_once('/').map_or("", |(_, p)| p));
    let prefix = path.trim_matches('/');
    if prefix.is_empty() {
        Arc::new(store)
    } else {
        Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
    }
}

/// Checks a manifest that came from elsewhere before anything is written.
pub fn validate_manifest(manifest: &Manifest, key: &Key) -> Result<(), RemoteError> {
    let bad = |problem: String| Err(RemoteError::BadManifest { key: key.as_str().to_owned(), problem });
    if manifest.key != key.as_str() {
        return bad(format!("it is for key {}", manifest.key));
    }
    let mut seen = std::collections::BTreeSet::new();
    for f in &manifest.files {
        let path = Path::new(&f.path);
        let clean = !f.path.is_empty() && !f.path.contains('\\') && path.components().all(|c| matches!(c, Component::Normal(_)));
        if !clean {
            return bad(format!("unsafe path `{}` (paths must be relative, without `..`)", f.path));
        }
        if !seen.insert(&f.path) {
            return bad(format!("path `{}` listed twice", f.path));
        }
        if f.blake3.len() != 64 || !f.blake3.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return bad(format!("bad hash for `{}`", f.path));
        }
    }
    if content_hash(&manifest.files) != manifest.content_hash {
        return bad("its content hash does not match its file list".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(paths: &[&str]) -> (Manifest, Key) {
        let key = Key::parse(&"ab".repeat(32)).unwrap();
        let files: Vec<ManifestEntry> =
            paths.iter().map(|p| ManifestEntry { path: p.to_string(), size: 1, blake3: "0".repeat(64) }).collect();
        let m = Manifest {
            key: key.as_str().into(),
            instance: "x".into(),
            content_hash: content_hash(&files),
            files,
            summary: String::new(),
            seconds: 0.0,
        };
        (m, key)
    }

    #[test]
    fn rejects_escaping_paths() {
        for bad in ["../x", "/etc/passwd", "a/../../b", "./a", "", "a\\..\\b"] {
            let (m, key) = manifest(&[bad]);
            assert!(validate_manifest(&m, &key).is_err(), "{bad}");
        }
        let (m, key) = manifest(&["a/b.txt", "c"]);
        assert!(validate_manifest(&m, &key).is_ok());
    }

    #[test]
    fn rejects_a_tampered_file_list() {
        let (mut m, key) = manifest(&["a"]);
        m.files[0].size = 2;
        assert!(validate_manifest(&m, &key).unwrap_err().to_string().contains("content hash"));
    }
}
