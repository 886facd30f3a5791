//! What the kubernetes executor sends and reads, without I/O: the Job of a task (name, labels,
//! container, resources) and a Job's state from its status.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use serde_json::json;

use crate::config::Resources;
use crate::executor::batch::SchedulerError;
use crate::fingerprint::Key;

/// Label on every Job of a run (the poll's and the cancel's selector).
pub const RUN_LABEL: &str = "pipeline.run-id";
/// Label with the first [`KEY_PREFIX`] hex digits of the task's key.
pub const KEY_LABEL: &str = "pipeline.key";
/// Annotations with what a label cannot hold.
pub const INSTANCE_ANNOTATION: &str = "pipeline.instance";
pub const FULL_KEY_ANNOTATION: &str = "pipeline.key";
/// Hex digits of the key in the Job's name and label.
pub const KEY_PREFIX: usize = 16;
/// A finished Job is removed by the cluster after this long (the run has long seen it end;
/// `pipeline status` can tell its state until then).
pub const TTL_AFTER_FINISHED_SECONDS: i32 = 24 * 3600;
/// Extended resource name of NVIDIA GPUs (the device plugin's).
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// The only container of a task's pod.
pub const CONTAINER: &str = "task";

/// What the Job of one task is made of.
pub struct JobSpec<'a> {
    pub run_id: &'a str,
    pub key: &'a Key,
    pub instance: &'a str,
    pub image: &'a str,
    /// The checkout inside the image (the container's working directory).
    pub workdir: &'a str,
    /// The container's command line (`pipeline --config FILE --remote URL exec-task KEY`).
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub resources: &'a Resources,
    /// An Indexed Job of this many completions (the shards of a data-parallel instance; the
    /// command reads its shard from `$(JOB_COMPLETION_INDEX)`), or `None` for one pod.
    pub indexes: Option<usize>,
}

/// The variable an Indexed Job's pod finds its completion index in (Kubernetes expands
/// `$(JOB_COMPLETION_INDEX)` in the container's command).
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// A valid label value (at most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends) made of `text`.
pub fn label_value(text: &str) -> String {
    let cleaned: String = text.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).take(63).collect();
    cleaned.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned()
}

/// `pipeline-<run id>-<key prefix>`: lower case, at most 63 characters (the run id is shortened
/// from its start when needed: its end, the coordinator's process id, tells runs apart).
pub fn job_name(run_id: &str, key: &Key) -> String {
    let key_part = &key.as_str()[..KEY_PREFIX];
    let run: String = run_id.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let room = 63 - "pipeline-".len() - 1 - key_part.len();
    let run = &run[run.len().saturating_sub(room)..];
    let run = run.trim_matches('-');
    if run.is_empty() {
        format!("pipeline-{key_part}")
    } else {
        format!("pipeline-{run}-{key_part}")
    }
}

/// `cpus` -> cpu request and limit, `mem` -> memory request and limit (MiB), `gpus` -> the
/// `nvidia.com/gpu` limit (extended resources are asked for through limits).
pub fn container_resources(r: &Resources) -> serde_json::Value {
    let mut requests = serde_json::Map::new();
    let mut limits = serde_json::Map::new();
    if let Some(cpus) = r.cpus {
        requests.insert("cpu".into(), cpus.to_string().into());
        limits.insert("cpu".into(), cpus.to_string().into());
    }
    if let Some(mb) = r.mem_mb {
        requests.insert("memory".into(), format!("{mb}Mi").into());
        limits.insert("memory".into(), format!("{mb}Mi").into());
    }
    if let Some(gpus) = r.gpus {
        limits.insert(GPU_RESOURCE.into(), gpus.to_string().into());
    }
    let mut out = serde_json::Map::new();
    if !requests.is_empty() {
        out.insert("requests".into(), requests.into());
    }
    if !limits.is_empty() {
        out.insert("limits".into(), limits.into());
    }
    out.into()
}

impl JobSpec<'_> {
    /// The batch/v1 Job: one pod, never restarted in place, not retried (`backoffLimit: 0`: a
    /// failed task is reported, and a rerun submits it again) unless it was preempted,
    /// removed a day after it finished.
    /// An Indexed Job runs all its indexes at once, none retried (`backoffLimitPerIndex: 0`),
    /// and a failed index does not stop the others.
    pub fn job(&self) -> Result<Job, SchedulerError> {
        let name = job_name(self.run_id, self.key);
        let labels = json!({
            RUN_LABEL: label_value(self.run_id),
            KEY_LABEL: &self.key.as_str()[..KEY_PREFIX],
            "app.kubernetes.io/managed-by": "pipeline",
        });
        let env: Vec<serde_json::Value> = self.env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
        let mut spec = json!({
            "backoffLimit": 0,
            // A pod preempted or evicted (condition DisruptionTarget) does not count as a
            // failure: the Job starts a new pod, which continues from the resumable state the
            // first left (`crate::resume`; `PIPELINE_RESUME_DIR` on a persistent volume).
            "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
            "ttlSecondsAfterFinished": TTL_AFTER_FINISHED_SECONDS,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": CONTAINER,
                        "image": self.image,
                        "command": self.command,
                        "workingDir": self.workdir,
                        "env": env,
                        "resources": container_resources(self.resources),
                    }],
                },
            },
        });
        if let Some(seconds) = self.resources.time_seconds() {
            spec["activeDeadlineSeconds"] = seconds.into();
        }
        if let Some(n) = self.indexes {
            let spec = spec.as_object_mut().expect("an object");
            spec.remove("backoffLimit");
            spec.insert("completionMode".into(), "Indexed".into());
            spec.insert("completions".into(), n.into());
            spec.insert("parallelism".into(), n.into());
            spec.insert("backoffLimitPerIndex".into(), 0.into());
        }
        let job = json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": {INSTANCE_ANNOTATION: self.instance, FULL_KEY_ANNOTATION: self.key.as_str()},
            },
            "spec": spec,
        });
        serde_json::from_value(job).map_err(|e| SchedulerError::client(format!("cannot build the Job of {}", self.instance), e))
    }
}

/// Where a Job is, from its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Not ended: `Pending`, `Starting`, `Running`, `Suspended`, `Succeeded (finishing)`...
    Active(String),
    /// The `Complete` condition is true.
    Complete,
    /// The `Failed` condition is true, with its reason and message.
    Failed { reason: String, message: String },
    /// No longer in the API server although it had not ended (deleted by someone).
    Gone,
}

impl JobState {
    pub fn ended(&self) -> bool {
        !matches!(self, JobState::Active(_))
    }
}

/// The state the Job's status conditions and pod counts say.
pub fn job_state(job: &Job) -> JobState {
    let status = job.status.clone().unwrap_or_default();
    for c in status.conditions.iter().flatten().filter(|c| c.status == "True") {
        match c.type_.as_str() {
            "Complete" => return JobState::Complete,
            "Failed" => {
                return JobState::Failed { reason: c.reason.clone().unwrap_or_default(), message: c.message.clone().unwrap_or_default() }
            }
            _ => {}
        }
    }
    if job.spec.as_ref().and_then(|s| s.suspend) == Some(true) {
        return JobState::Active("Suspended".into());
    }
    let (active, ready, succeeded, failed) =
        (status.active.unwrap_or(0), status.ready.unwrap_or(0), status.succeeded.unwrap_or(0), status.failed.unwrap_or(0));
    let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(1);
    if completions > 1 {
        // An Indexed Job: say how far its indexes are.
        let base = if ready > 0 {
            "Running"
        } else if active > 0 {
            "Starting"
        } else if succeeded + failed >= completions {
            "Finishing"
        } else {
            "Pending"
        };
        let failed = if failed > 0 { format!(", {failed} failed") } else { String::new() };
        return JobState::Active(format!("{base} ({succeeded} of {completions} indexes succeeded{failed})"));
    }
    let state = if succeeded > 0 {
        // Kubernetes >= 1.31 sets `SuccessCriteriaMet` first and `Complete` once the pods are gone.
        "Succeeded (finishing)"
    } else if ready > 0 {
        "Running"
    } else if active > 0 {
        "Starting"
    } else {
        "Pending"
    };
    if failed > 0 && succeeded == 0 {
        JobState::Active(format!("{state} ({failed} failed pod{}, retrying)", if failed == 1 { "" } else { "s" }))
    } else {
        JobState::Active(state.into())
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobState::Active(s) => f.write_str(s),
            JobState::Complete => f.write_str("Complete"),
            JobState::Failed { reason, message } => match (reason.is_empty(), message.is_empty()) {
                (true, true) => f.write_str("Failed"),
                (false, true) => write!(f, "Failed ({reason})"),
                (true, false) => write!(f, "Failed ({message})"),
                (false, false) => write!(f, "Failed ({reason}: {message})"),
            },
            JobState::Gone => f.write_str("deleted before it ended"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::parse(&"0123456789abcdef".repeat(4)).unwrap()
    }

    #[test]
    fn job_names_are_short_lower_case_and_keep_the_key() {
        let key = key();
        assert_eq!(job_name("1712345678901-4242", &key), "pipeline-1712345678901-4242-0123456789abcdef");
        let long = job_name(&format!("RUN_{}", "9".repeat(80)), &key);
        assert!(long.len() <= 63 && long.ends_with("-0123456789abcdef") && long.starts_with("pipeline-9"), "{long}");
        assert_eq!(job_name("--", &key), "pipeline-0123456789abcdef");
        assert_eq!(label_value("a b/c"), "a-b-c");
        assert_eq!(label_value("-x-"), "x");
    }

    #[test]
    fn resources_become_requests_and_limits() {
        let r = Resources { cpus: Some(2), mem_mb: Some(4096), time: Some("01:00:00".into()), gpus: Some(1), shards: None };
        assert_eq!(
            container_resources(&r),
            json!({"requests": {"cpu": "2", "memory": "4096Mi"}, "limits": {"cpu": "2", "memory": "4096Mi", "nvidia.com/gpu": "1"}})
        );
        assert_eq!(container_resources(&Resources::default()), json!({}));
    }

    #[test]
    fn the_job_of_a_task() {
        let key = key();
        let r = Resources { cpus: Some(1), mem_mb: None, time: Some("5".into()), gpus: Some(1), shards: None };
        let spec = JobSpec {
            run_id: "17-42",
            key: &key,
            instance: "train[arch=r3d]",
            image: "reg/pipeline:1",
            workdir: "/work",
            command: vec!["pipeline".into(), "exec-task".into(), key.as_str().into()],
            env: BTreeMap::from([("PIPELINE_TASK_CPUS".into(), "1".into())]),
            resources: &r,
            indexes: None,
        };
        let job = serde_json::to_value(spec.job().unwrap()).unwrap();
        assert_eq!(job["metadata"]["name"], "pipeline-17-42-0123456789abcdef");
        assert_eq!(job["metadata"]["labels"][RUN_LABEL], "17-42");
        assert_eq!(job["metadata"]["annotations"][INSTANCE_ANNOTATION], "train[arch=r3d]");
        assert_eq!(job["spec"]["activeDeadlineSeconds"], 300);
        assert_eq!(job["spec"]["backoffLimit"], 0);
        assert_eq!(job["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["type"], "DisruptionTarget");
        assert_eq!(job["spec"]["podFailurePolicy"]["rules"][0]["action"], "Ignore");
        let container = &job["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["workingDir"], "/work");
        assert_eq!(container["env"][0], json!({"name": "PIPELINE_TASK_CPUS", "value": "1"}));
        assert_eq!(container["resources"]["limits"][GPU_RESOURCE], "1");
        assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
        assert!(job["spec"].get("completionMode").is_none());

        let indexed = serde_json::to_value(JobSpec { indexes: Some(4), ..spec }.job().unwrap()).unwrap();
        assert_eq!(indexed["spec"]["completionMode"], "Indexed");
        assert_eq!((&indexed["spec"]["completions"], &indexed["spec"]["parallelism"]), (&json!(4), &json!(4)));
        assert_eq!(indexed["spec"]["backoffLimitPerIndex"], 0);
        assert!(indexed["spec"].get("backoffLimit").is_none(), "a failed index must not stop the others");
    }

    #[test]
    fn an_indexed_jobs_progress() {
        let job = |status: serde_json::Value| -> Job {
            serde_json::from_value(json!({"metadata": {"name": "j"}, "spec": {"completions": 4, "template": {}}, "status": status}))
                .unwrap()
        };
        assert_eq!(job_state(&job(json!({}))), JobState::Active("Pending (0 of 4 indexes succeeded)".into()));
        assert_eq!(
            job_state(&job(json!({"active": 2, "ready": 2, "succeeded": 1, "failed": 1}))),
            JobState::Active("Running (1 of 4 indexes succeeded, 1 failed)".into())
        );
        let failed = json!({"succeeded": 3, "failed": 1, "failedIndexes": "2", "conditions": [{"type": "Failed", "status": "True", "reason": "FailedIndexes", "message": "Job has failed indexes"}]});
        assert_eq!(job_state(&job(failed)).to_string(), "Failed (FailedIndexes: Job has failed indexes)");
    }

    fn with_status(status: serde_json::Value) -> Job {
        serde_json::from_value(json!({"metadata": {"name": "j"}, "status": status})).unwrap()
    }

    #[test]
    fn states_from_conditions_and_counts() {
        assert_eq!(job_state(&with_status(json!({}))), JobState::Active("Pending".into()));
        assert_eq!(job_state(&with_status(json!({"active": 1}))), JobState::Active("Starting".into()));
        assert_eq!(job_state(&with_status(json!({"active": 1, "ready": 1}))), JobState::Active("Running".into()));
        assert_eq!(
            job_state(&with_status(json!({"active": 1, "failed": 1}))),
            JobState::Active("Starting (1 failed pod, retrying)".into())
        );
        let met = json!({"succeeded": 1, "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}]});
        assert_eq!(job_state(&with_status(met)), JobState::Active("Succeeded (finishing)".into()));
        let done = json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]});
        assert_eq!(job_state(&with_status(done)), JobState::Complete);
        let failed = json!({"failed": 1, "conditions": [
            {"type": "FailureTarget", "status": "True"},
            {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline"}]});
        let state = job_state(&with_status(failed));
        assert_eq!(state.to_string(), "Failed (DeadlineExceeded: Job was active longer than specified deadline)");
        assert!(state.ended() && JobState::Gone.ended() && !JobState::Active("Running".into()).ended());
        let not_yet = json!({"conditions": [{"type": "Complete", "status": "False"}]});
        assert_eq!(job_state(&with_status(not_yet)), JobState::Active("Pending".into()));
    }
}
