//! What one shard of a sharded scan hands to the merge: `probes.json`, the prober's name and
//! every probe it made, keyed by the file's path relative to the dataset folder (a cluster
//! worker sees the folder at another path than the coordinator).
//!
//! Floats are stored as their bit patterns, so the merge rebuilds exactly the values a
//! single run would have written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use stage_api::StageError;

use super::probe::{ProbeError, VideoInfo, KINDS};

const FILE: &str = "probes.json";

#[derive(Debug, Serialize, Deserialize)]
struct Part {
    prober: String,
    probes: Vec<ProbeRecord>,
}

/// One probe: the video's facts, or why it was rejected.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProbeRecord {
    path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    info: Option<InfoBits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<(String, String)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct InfoBits {
    width: u32,
    height: u32,
    fps_bits: u64,
    frame_count: u64,
    duration_bits: u64,
}

/// `path` relative to `root`, `/`-separated.
pub fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

impl ProbeRecord {
    pub fn new(root: &Path, path: &Path, outcome: &Result<VideoInfo, ProbeError>) -> Self {
        let (info, error) = match outcome {
            Ok(i) => (
                Some(InfoBits {
                    width: i.width,
                    height: i.height,
                    fps_bits: i.fps.to_bits(),
                    frame_count: i.frame_count,
                    duration_bits: i.duration_s.to_bits(),
                }),
                None,
            ),
            Err(e) => (None, Some((e.kind.to_owned(), e.detail.clone()))),
        };
        ProbeRecord { path: relative(root, path), info, error }
    }

    /// The probe's result; `Err` when the record is damaged (the error names `file`, the
    /// part it was read from).
    fn outcome(&self, file: &Path) -> Result<Result<VideoInfo, ProbeError>, StageError> {
        match (&self.info, &self.error) {
            (Some(i), None) => Ok(Ok(VideoInfo {
                width: i.width,
                height: i.height,
                fps: f64::from_bits(i.fps_bits),
                frame_count: i.frame_count,
                duration_s: f64::from_bits(i.duration_bits),
            })),
            (None, Some((kind, detail))) => {
                let kind = KINDS
                    .iter()
                    .find(|k| **k == kind)
                    .ok_or_else(|| StageError::msg(format!("{}: unknown reject kind `{kind}`", file.display())))?;
                Ok(Err(ProbeError { kind, detail: detail.clone() }))
            }
            _ => Err(StageError::msg(format!("{}: the probe of {} has neither a result nor an error", file.display(), self.path))),
        }
    }
}

/// Writes a shard's part into `dir`, sorted by path.
pub fn write(dir: &Path, prober: &str, mut probes: Vec<ProbeRecord>) -> Result<(), StageError> {
    probes.sort_by(|a, b| a.path.cmp(&b.path));
    let part = Part { prober: prober.to_owned(), probes };
    let text = serde_json::to_vec_pretty(&part).map_err(|e| StageError::with_source("serialising the shard's probes", e))?;
    let path = dir.join(FILE);
    std::fs::write(&path, text).map_err(|e| StageError::with_source(format!("writing {}", path.display()), e))
}

/// Every probe by recording path.
pub type Probes = BTreeMap<String, Result<VideoInfo, ProbeError>>;

/// The prober's name and every probe of the shards `parts` (their output directories).
pub fn read(parts: &[PathBuf]) -> Result<(String, Probes), StageError> {
    let mut prober: Option<String> = None;
    let mut probes = BTreeMap::new();
    for dir in parts {
        let path = dir.join(FILE);
        let bytes = std::fs::read(&path).map_err(|e| StageError::with_source(format!("reading the shard part {}", path.display()), e))?;
        let part: Part = serde_json::from_slice(&bytes)
            .map_err(|e| StageError::with_source(format!("the shard part {} is damaged", path.display()), e))?;
        match &prober {
            Some(p) if *p != part.prober => {
                return Err(StageError::msg(format!(
                "the shards probed with different programs ({p} and {}): give `prober:` explicitly, or install the same ffmpeg everywhere",
                part.prober
            )))
            }
            _ => prober = Some(part.prober.clone()),
        }
        for record in part.probes {
            let outcome = record.outcome(&path)?;
            probes.insert(record.path, outcome);
        }
    }
    Ok((prober.unwrap_or_default(), probes))
}
