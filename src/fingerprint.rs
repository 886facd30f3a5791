//! Cache keys.
//!
//! A stage instance's key is blake3 over its [`Fingerprint`], one field per input:
//!
//! - `action`: the built-in kind and its implementation version (bumped whenever a stage's code
//!   changes its output), or the exact command text of a `run:` stage;
//! - `params`: `with:` plus matrix values, after the stage filled in its defaults, in canonical
//!   form (sorted keys, `1.0` == `1`), so spelling and key order do not matter;
//! - `upstream`: the content hash of each upstream output (the hash of its manifest's file
//!   list, not of its key: an upstream that reruns and produces identical files does not make
//!   this stage stale);
//! - `deps`: the content hash of every file matched by `deps:`, by path relative to the
//!   directory of `pipeline.yaml`;
//! - `raw_inputs`: the content hash of every file below the raw inputs a built-in stage
//!   declares (a dataset folder), by path relative to that folder.
//!
//! What never goes in: modification times, inode numbers, absolute paths of the workspace,
//! host names or the time of day. So a `touch` or a `git checkout` that leaves contents
//! unchanged is not a change, and two machines with the same inputs compute the same keys
//! (the basis for sharing caches). [`Fingerprint::key`] destructures the struct, so a new field
//! cannot be added without deciding how it is hashed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use stage_api::Params;
use walkdir::WalkDir;

use crate::config::{Action, Instance};
use crate::filehash::HashMemo;

/// Bumped when the way keys are computed changes; every key changes with it.
const KEY_SCHEMA: &str = "pipeline-key-v1";

/// A cache key: 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key(String);

impl Key {
    pub fn parse(text: &str) -> Option<Key> {
        (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())).then(|| Key(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn short(&self) -> &str {
        &self.0[..12]
    }

    /// The key of shard `index` of `count` of the instance with this key: where that shard's
    /// partial result is stored. The instance key does not depend on the shard count (the merged
    /// result is the same bytes), the shards' keys do.
    pub fn shard(&self, index: usize, count: usize) -> Key {
        let text = format!("shard\0{}\0{index}\0{count}", self.0);
        Key(blake3::hash(text.as_bytes()).to_hex().to_string())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ActionId {
    Builtin { kind: String, version: u32 },
    Shell { command: String },
}

impl ActionId {
    pub fn of(action: &Action) -> Self {
        match action {
            Action::Builtin(stage) => ActionId::Builtin { kind: stage.kind().to_owned(), version: stage.version() },
            Action::Shell { command } => ActionId::Shell { command: command.clone() },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamInput {
    pub instance: String,
    pub content_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub action: ActionId,
    pub params: Params,
    pub upstream: Vec<UpstreamInput>,
    pub deps: BTreeMap<String, String>,
    pub raw_inputs: BTreeMap<String, String>,
}

impl Fingerprint {
    pub fn key(&self) -> Key {
        let Fingerprint { action, params, upstream, deps, raw_inputs } = self;
        let mut hasher = blake3::Hasher::new();
        let mut field = |name: &str, value: &dyn erased::Json| {
            hasher.update(name.as_bytes());
            hasher.update(&[0]);
            hasher.update(&value.to_json());
            hasher.update(&[0]);
        };
        field("schema", &KEY_SCHEMA);
        field("action", action);
        field("params", params);
        field("upstream", upstream);
        field("deps", deps);
        field("raw_inputs", raw_inputs);
        Key(hasher.finalize().to_hex().to_string())
    }
}

mod erased {
    /// Canonical JSON bytes of a key field (serde_json maps are sorted by key).
    pub trait Json {
        fn to_json(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Vec<u8> {
            serde_json::to_vec(self).expect("key fields serialise")
        }
    }
}

/// Why a key could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("raw input {path} does not exist (declared by `{instance}`)")]
    MissingRawInput { instance: String, path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("`deps` pattern `{pattern}` of `{instance}` is invalid: {message}")]
    Pattern { instance: String, pattern: String, message: String },
    #[error("`{instance}`: {}", source.chain())]
    PrepareRawInput { instance: String, source: stage_api::StageError },
}

/// Computes an instance's fingerprint from its upstream content hashes.
pub fn compute(instance: &Instance, upstream: Vec<UpstreamInput>, base_dir: &Path, memo: &HashMemo) -> Result<Fingerprint, KeyError> {
    if let Action::Builtin(stage) = &instance.action {
        stage
            .prepare_raw_inputs(&instance.params, base_dir)
            .map_err(|source| KeyError::PrepareRawInput { instance: instance.name.clone(), source })?;
    }
    Ok(Fingerprint {
        action: ActionId::of(&instance.action),
        params: instance.params.clone(),
        upstream,
        deps: hash_deps(instance, base_dir, memo)?,
        raw_inputs: hash_raw_inputs(instance, base_dir, memo)?,
    })
}

fn hash_deps(instance: &Instance, base_dir: &Path, memo: &HashMemo) -> Result<BTreeMap<String, String>, KeyError> {
    let mut files = Vec::new();
    for pattern in &instance.deps {
        let full = base_dir.join(pattern);
        let matches = glob::glob(&full.to_string_lossy()).map_err(|e| KeyError::Pattern {
            instance: instance.name.clone(),
            pattern: pattern.clone(),
            message: e.to_string(),
        })?;
        for path in matches.filter_map(Result::ok) {
            if path.is_dir() {
                files.extend(files_below(&path)?);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files.dedup();
    hash_named(&files, memo, |p| relative_name(p, base_dir))
}

fn hash_raw_inputs(instance: &Instance, base_dir: &Path, memo: &HashMemo) -> Result<BTreeMap<String, String>, KeyError> {
    let many = instance.raw_inputs.len() > 1;
    let mut all = BTreeMap::new();
    for (i, declared) in instance.raw_inputs.iter().enumerate() {
        let root = base_dir.join(declared);
        if !root.exists() {
            return Err(KeyError::MissingRawInput { instance: instance.name.clone(), path: root });
        }
        let files = if root.is_dir() { files_below(&root)? } else { vec![root.clone()] };
        let prefix = if many { format!("{i}:") } else { String::new() };
        let named = hash_named(&files, memo, |p| {
            let rel = if root.is_dir() {
                relative_name(p, &root)
            } else {
                p.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            };
            format!("{prefix}{rel}")
        })?;
        all.extend(named);
    }
    Ok(all)
}

fn hash_named(files: &[PathBuf], memo: &HashMemo, name: impl Fn(&Path) -> String) -> Result<BTreeMap<String, String>, KeyError> {
    files
        .iter()
        .zip(memo.hash_files(files))
        .map(|(path, hash)| {
            let hash = hash.map_err(|source| KeyError::Read { path: path.clone(), source })?;
            Ok((name(path), hash))
        })
        .collect()
}

fn files_below(root: &Path) -> Result<Vec<PathBuf>, KeyError> {
    let mut files = Vec::new();
    for entry in WalkDir::new(root).sort_by_file_name() {
        let entry =
            entry.map_err(|e| KeyError::Read { path: e.path().map_or_else(|| root.to_path_buf(), Path::to_path_buf), source: e.into() })?;
        if entry.file_type().is_file() || (entry.file_type().is_symlink() && entry.path().is_file()) {
            files.push(entry.into_path());
        }
    }
    Ok(files)
}

fn relative_name(path: &Path, base: &Path) -> String {
    let rel = path.strip_prefix(base).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fingerprint(params: serde_json::Value) -> Fingerprint {
        Fingerprint {
            action: ActionId::Shell { command: "echo".into() },
            params: params.as_object().unwrap().clone(),
            upstream: vec![],
            deps: BTreeMap::new(),
            raw_inputs: BTreeMap::new(),
        }
    }

    #[test]
    fn key_depends_on_every_field_and_not_on_map_order() {
        let a = fingerprint(json!({"x": 1, "y": 2}));
        let b = fingerprint(json!({"y": 2, "x": 1}));
        assert_eq!(a.key(), b.key());
        assert_ne!(a.key(), fingerprint(json!({"x": 1, "y": 3})).key());
        let mut c = a.clone();
        c.deps.insert("s.py".into(), "00".into());
        assert_ne!(a.key(), c.key());
        let mut d = a.clone();
        d.upstream.push(UpstreamInput { instance: "u".into(), content_hash: "11".into() });
        assert_ne!(a.key(), d.key());
        let mut e = a.clone();
        e.action = ActionId::Shell { command: "echo ".into() };
        assert_ne!(a.key(), e.key());
    }

    #[test]
    fn key_parse_accepts_only_lowercase_hex_of_length_64() {
        assert!(Key::parse(&"a".repeat(64)).is_some());
        assert!(Key::parse(&"A".repeat(64)).is_none());
        assert!(Key::parse("abc").is_none());
        assert!(Key::parse(&"../".repeat(22)[..64]).is_none());
    }
}
