//! `extract.json`, the `extract` stage's report: its resolved parameters, what became of each
//! clip, and how the tensors were made. A `train` output carries a copy (`preprocessing.json`),
//! from which `pipeline predict` takes the parameters to preprocess new videos the same way.
//!
//! The parts whose types are the video crate's (the detection summary, the detector settings,
//! the tensor layout, the rejected clips) are kept as JSON values here.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use stage_api::{Params, StageError};

use crate::json::{read_json, write_json};

/// `extract.json`. The fields are in the file's key order (alphabetical), which the bytes of
/// every published cache have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractReport {
    /// Clips the stage was given (extracted + rejected).
    pub clips_in: usize,
    /// How the crop square is chosen, in words.
    pub crop: String,
    /// Face-detection rates over the extracted clips.
    pub detection: Value,
    /// The face detector's settings.
    pub detector: Value,
    pub extracted: usize,
    /// Clips with fewer distinct frames than T (some repeated).
    pub padded_clips: usize,
    /// The stage's resolved parameters.
    pub params: Params,
    /// Clips decoded a second time (a first pass found fewer frames than probed).
    pub redecoded_clips: usize,
    pub rejected: usize,
    /// Each rejected clip and why.
    pub rejects: Value,
    /// How frame i of T is chosen, in words.
    pub sampling: String,
    /// The shard files, in order.
    pub shards: Vec<String>,
    /// The tensor layout (dtype, shape) of a clip.
    pub tensor: Value,
}

impl ExtractReport {
    /// Writes `<dir>/extract.json`.
    pub fn write(&self, dir: &Path) -> Result<(), StageError> {
        write_json(&dir.join(super::EXTRACT_REPORT_FILE), self)
    }
}

/// The extract parameters recorded in a report at `path` (`extract.json`, or the copy next to a
/// model). Only `params` is needed, so reports of older caches with other fields still read.
pub fn read_extract_params(path: &Path) -> Result<Params, StageError> {
    /// The one field this reader needs.
    #[derive(Deserialize)]
    struct Recorded {
        params: Option<Params>,
    }
    let recorded: Recorded = read_json(path)?;
    recorded.params.ok_or_else(|| StageError::msg(format!("{}: no `params` recorded", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_writes_its_keys_in_order_and_its_params_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let params: Params = serde_json::from_str(r#"{"frames": 4, "size": 48}"#).unwrap();
        let report = ExtractReport {
            clips_in: 2,
            crop: "c".into(),
            detection: serde_json::json!({"rate": 1.0}),
            detector: Value::Null,
            extracted: 1,
            padded_clips: 0,
            params: params.clone(),
            redecoded_clips: 0,
            rejected: 1,
            rejects: serde_json::json!([{"clip_id": "x", "reason": "no frames"}]),
            sampling: "s".into(),
            shards: vec!["shards/00000.safetensors".into()],
            tensor: Value::Null,
        };
        report.write(dir.path()).unwrap();
        let path = dir.path().join(super::super::EXTRACT_REPORT_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let keys: Vec<&str> = text.lines().filter(|l| l.starts_with("  \"")).map(|l| l.trim().split('"').nth(1).unwrap()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "the published caches' key order");
        assert_eq!(read_extract_params(&path).unwrap(), params);
        std::fs::write(&path, r#"{"clips_in": 2}"#).unwrap();
        assert!(read_extract_params(&path).unwrap_err().message.contains("no `params` recorded"));
    }
}
