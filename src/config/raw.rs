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
    /// Where stage instances run (default: this machine).
    #[serde(default)]
    pub executor: Option<RawExecutor>,
    pub stages: IndexMap<String, RawStage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExecutor {
    #[serde(default)]
    pub kind: RawExecutorKind,
    #[serde(default)]
    pub partition: Option<String>,
    /// Seconds between two scheduler queries.
    #[serde(default)]
    pub poll_seconds: Option<f64>,
    /// Where job logs go, relative to the file (default `<store>/slurm-logs`).
    #[serde(default)]
    pub log_dir: Option<String>,
    /// Passed to `sbatch` as they are (`--account=x`, `--qos=y`).
    #[serde(default)]
    pub sbatch_args: Vec<String>,
    /// Kubernetes: the namespace of the run's Jobs (default: the kubeconfig's, else `default`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Kubernetes: the container image holding the `pipeline` binary and the checkout.
    #[serde(default)]
    pub image: Option<String>,
    /// Kubernetes: where the coordinator's working directory is inside the image (default: the
    /// same path).
    #[serde(default)]
    pub workdir: Option<String>,
    /// `default` and stage names.
    #[serde(default)]
    pub resources: IndexMap<String, RawResources>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawExecutorKind {
    #[default]
    Local,
    Slurm,
    Kubernetes,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResources {
    #[serde(default)]
    pub cpus: Option<u32>,
    /// `4G`, `500M`, or a number of megabytes.
    #[serde(default)]
    pub mem: Option<RawMem>,
    /// Slurm's time format: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM:SS`.
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub gpus: Option<u32>,
    /// Split a data-parallel stage into this many tasks (a Slurm job array, a Kubernetes
    /// Indexed Job), merged afterwards.
    #[serde(default)]
    pub shards: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawMem {
    Megabytes(u64),
    Text(String),
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
