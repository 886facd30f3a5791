//! Why a task has no result, as data: the runner prints the message after `FAILED:` and keeps
//! the whole value in the run record (`failure`, tagged by `kind`), so a tool reading records
//! can tell a stage that failed from a job that was lost or a disk that was full.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunError {
    /// The stage itself failed (its own message, from this process or the job's worker).
    #[error("{message}")]
    Stage { message: String },
    /// The task could not be prepared here (work or resumable-state folder, an upstream
    /// manifest without a valid key).
    #[error("{message}")]
    Setup { message: String },
    /// The stage succeeded but its output could not be published (a full disk, say); nothing
    /// half-published is left.
    #[error("{message}")]
    Publish { message: String },
    /// A batch backend could not hand the task over (no remote, the spec not written, the
    /// scheduler refused the job).
    #[error("{message}")]
    Submit { message: String },
    /// The job ended without publishing a result (failed, cancelled, deleted, its scheduler
    /// unreachable too long).
    #[error("{message}")]
    NoResult { message: String },
    /// A job published a result that could not be brought into the local store.
    #[error("{message}")]
    Collect { message: String },
    /// Some shards of a data-parallel instance failed; the others are kept for the rerun.
    #[error("{} of {count} shards failed ({} finished and are kept for the rerun):\n  {}", .shards.len(), .count - .shards.len(), .shards.join("\n  "))]
    Shards {
        count: usize,
        /// One line per failed shard: `extract[shard 2/4]: ...`.
        shards: Vec<String>,
    },
}

impl RunError {
    pub fn stage(message: impl Into<String>) -> Self {
        Self::Stage { message: message.into() }
    }

    pub fn setup(message: impl Into<String>) -> Self {
        Self::Setup { message: message.into() }
    }

    pub fn publish(message: impl Into<String>) -> Self {
        Self::Publish { message: message.into() }
    }

    pub fn submit(message: impl Into<String>) -> Self {
        Self::Submit { message: message.into() }
    }

    pub fn no_result(message: impl Into<String>) -> Self {
        Self::NoResult { message: message.into() }
    }

    pub fn collect(message: impl Into<String>) -> Self {
        Self::Collect { message: message.into() }
    }

    /// The same failure with `prefix` before its message (`merging the 4 shards failed: ...`).
    pub fn context(self, prefix: &str) -> Self {
        let with = |message: String| format!("{prefix}: {message}");
        match self {
            Self::Stage { message } => Self::Stage { message: with(message) },
            Self::Setup { message } => Self::Setup { message: with(message) },
            Self::Publish { message } => Self::Publish { message: with(message) },
            Self::Submit { message } => Self::Submit { message: with(message) },
            Self::NoResult { message } => Self::NoResult { message: with(message) },
            Self::Collect { message } => Self::Collect { message: with(message) },
            shards @ Self::Shards { .. } => shards,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_the_text_and_the_kind_is_data() {
        let e = RunError::no_result("slurm job 12 ended CANCELLED");
        assert_eq!(e.to_string(), "slurm job 12 ended CANCELLED");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json, serde_json::json!({"kind": "no_result", "message": "slurm job 12 ended CANCELLED"}));
        assert_eq!(serde_json::from_value::<RunError>(json).unwrap(), e);
        assert_eq!(RunError::stage("boom").context("merging the 2 shards failed").to_string(), "merging the 2 shards failed: boom");
        let shards = RunError::Shards { count: 4, shards: vec!["x[shard 1/4]: a".into(), "x[shard 3/4]: b".into()] };
        assert_eq!(
            shards.to_string(),
            "2 of 4 shards failed (2 finished and are kept for the rerun):\n  x[shard 1/4]: a\n  x[shard 3/4]: b"
        );
    }
}
