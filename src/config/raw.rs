//! `pipeline.yaml` exactly as the user wrote it: serde structs, no I/O, no checks beyond types
//! and unknown keys. [`super::plan`] turns this into a validated plan.

use indexmap::IndexMap;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where the artifact store lives, relative to the file (default `.pipeline`).
    #[serde(default)]
    pub store: Option<String>,
    /// A shared remote cache (`s3://...`, `gs://...`, `az://...`, `https://...`, a directory).
    #[serde(default)]
    pub remote: Option<String>,
    pub stages: IndexMap<String, RawStage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    #[serde(default)]
    pub uses: Option<String>,
    #[serde(default)]
    pub run: Option<String>,
    #[serde(default)]
    pub needs: Vec<String>,
    #[serde(default)]
    pub with: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub matrix: IndexMap<String, Vec<serde_json::Value>>,
    #[serde(default)]
    pub deps: Vec<String>,
}
