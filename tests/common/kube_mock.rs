//! A mocked Kubernetes API server on 127.0.0.1 (plain HTTP) for the kubernetes executor's tests,
//! with a fake kubelet behind it. No real cluster can run on these machines.
//!
//! It answers the batch/v1 Job calls the executor makes (create, list by label selector, get,
//! delete, delete-collection) with the JSON shapes of a real API server, and records every
//! request. When a Job is created, the fake kubelet runs its container's command as a local
//! child process, the way a pod would run it: in the container's `workingDir`, with a clean
//! environment made of the container's `env`, `HOSTNAME` = a pod name, and a PATH on which
//! `pipeline` is the binary under test (the "image"). The Job's status follows: `active`/`ready`
//! while it runs, then the `Complete` or `Failed` condition (reason `BackoffLimitExceeded`) when
//! it exits. Deleting a Job sends SIGTERM to its processes, as the kubelet does to a pod's.
//! An Indexed Job (`completionMode: Indexed`) gets one pod per completion index, all at once,
//! each with `JOB_COMPLETION_INDEX` set and `$(VAR)` expanded in its command as Kubernetes
//! does; its status reports `completedIndexes` / `failedIndexes`, and `Failed` (reason
//! `FailedIndexes`) when an index failed.
//! [`KubeMock::preempt`] stops a Job's running pod as a preemption does (SIGTERM, pod condition
//! `DisruptionTarget`); the Job then follows its `podFailurePolicy`: with an `Ignore` rule for
//! that condition a new pod runs the same command (as the Job controller starts one), without
//! it the Job fails (`backoffLimit: 0`).
//!
//! [`KubeMock::env`] gives the coordinator a kubeconfig pointing at the mock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub body: Option<Value>,
}

/// What the fake kubelet does with a new Job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kubelet {
    /// Runs the container's command once.
    Run,
    /// Runs it twice at the same time (a duplicated pod), Complete when both succeeded.
    RunTwice,
    /// Runs nothing and reports the Job Complete (a lying or broken cluster).
    CompleteWithoutRunning,
    /// In an Indexed Job, this index's pod fails without running (evicted, say); the others run.
    FailIndex(usize),
}

struct MockJob {
    object: Value,
    /// Processes of its pods still running.
    pids: Vec<u32>,
}

struct State {
    jobs: BTreeMap<(String, String), MockJob>,
    requests: Vec<Recorded>,
    kubelet: Kubelet,
    /// Jobs whose processes were sent SIGTERM by a delete.
    killed: Vec<String>,
    /// Pod processes not yet exited, also those of Jobs already deleted (a deleted Job leaves
    /// `jobs` at once while its pods still handle their SIGTERM).
    running: BTreeSet<u32>,
    /// Jobs whose running pod was preempted and has not been handled yet.
    preempted: BTreeSet<String>,
    resource_version: u64,
}

pub struct KubeMock {
    dir: tempfile::TempDir,
    pub url: String,
    state: Arc<Mutex<State>>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl KubeMock {
    /// Starts the server; kubeconfig's context namespace is `namespace`.
    pub fn start(namespace: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("kube-mock-").tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        std::fs::write(
            dir.path().join("kubeconfig"),
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: mock\n  cluster:\n    server: {url}\ncontexts:\n- name: mock\n  context:\n    cluster: mock\n    user: tester\n    namespace: {namespace}\ncurrent-context: mock\nusers:\n- name: tester\n  user:\n    token: mock-token\n"
            ),
        )
        .unwrap();
        let state = Arc::new(Mutex::new(State {
            jobs: BTreeMap::new(),
            requests: Vec::new(),
            kubelet: Kubelet::Run,
            killed: Vec::new(),
            running: BTreeSet::new(),
            preempted: BTreeSet::new(),
            resource_version: 1,
        }));
        let (srv, st, logs) = (server.clone(), state.clone(), dir.path().join("logs"));
        let thread = std::thread::spawn(move || {
            for request in srv.incoming_requests() {
                let (st, logs) = (st.clone(), logs.clone());
                // One thread per request: a slow answer never holds up the others.
                std::thread::spawn(move || answer(request, &st, &logs));
            }
        });
        Self { dir, url, state, server, thread: Some(thread) }
    }

    /// What a process needs to talk to this mock (as `kubectl` would).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("KUBECONFIG".into(), self.kubeconfig().display().to_string())]
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub fn set_kubelet(&self, kubelet: Kubelet) {
        self.state.lock().unwrap().kubelet = kubelet;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The bodies of the Jobs created, in order.
    pub fn created(&self) -> Vec<Value> {
        self.requests().into_iter().filter(|r| r.method == "POST").filter_map(|r| r.body).collect()
    }

    /// List calls (GET of the collection).
    pub fn list_calls(&self) -> usize {
        self.requests().iter().filter(|r| r.method == "GET" && r.path.ends_with("/jobs")).count()
    }

    /// Names of the Jobs the server holds now.
    pub fn job_names(&self) -> Vec<String> {
        self.state.lock().unwrap().jobs.keys().map(|(_, n)| n.clone()).collect()
    }

    pub fn killed(&self) -> Vec<String> {
        self.state.lock().unwrap().killed.clone()
    }

    /// Everything the pods of Job `name` printed.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("logs").join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Preempts the running pod of Job `name` (SIGTERM to its process, condition
    /// `DisruptionTarget`); false when the Job has no running pod.
    pub fn preempt(&self, name: &str) -> bool {
        let mut st = self.state.lock().unwrap();
        let Some(pids) = st.jobs.iter().find(|((_, n), _)| n == name).map(|(_, j)| j.pids.clone()).filter(|p| !p.is_empty()) else {
            return false;
        };
        st.preempted.insert(name.to_owned());
        pids.into_iter().for_each(terminate);
        true
    }

    /// Whether every pod process has exited, those of deleted Jobs included.
    pub fn idle(&self) -> bool {
        let st = self.state.lock().unwrap();
        st.running.is_empty() && st.jobs.values().all(|j| j.pids.is_empty())
    }
}

impl Drop for KubeMock {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap();
        for job in state.jobs.values_mut() {
            for pid in job.pids.drain(..) {
                terminate(pid);
            }
        }
        drop(state);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn terminate(pid: u32) {
    // SAFETY: kill(2) with a pid of a child we spawned; no memory is involved.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": if code < 300 { "Success" } else { "Failure" },
           "message": message, "reason": reason, "code": code})
}

fn respond(request: tiny_http::Request, code: u16, body: &Value) {
    let header = tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap();
    let response = tiny_http::Response::from_string(body.to_string()).with_status_code(code).with_header(header);
    let _ = request.respond(response);
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

/// Percent-decoding (and `+` as a space) of a query component.
fn decode(text: &str) -> Option<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                out.push(u8::from_str_radix(std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Equality-based selectors (`a=b,c==d`), which is what the executor sends.
fn matches(job: &Value, selector: Option<&String>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else { return true };
    selector.split(',').all(|term| {
        let (k, v) = term.split_once("==").or_else(|| term.split_once('=')).unwrap_or((term, ""));
        job["metadata"]["labels"][k.trim()].as_str() == Some(v.trim())
    })
}

fn answer(mut request: tiny_http::Request, state: &Arc<Mutex<State>>, logs: &Path) {
    let method = request.method().as_str().to_owned();
    let url = request.url().to_owned();
    let (path, query) = url.split_once('?').map_or((url.as_str(), ""), |(p, q)| (p, q));
    let query = parse_query(query);
    let mut text = String::new();
    let _ = std::io::Read::read_to_string(request.as_reader(), &mut text);
    let body: Option<Value> = serde_json::from_str(&text).ok();
    let mut st = state.lock().unwrap();
    st.requests.push(Recorded { method: method.clone(), path: path.to_owned(), query: query.clone(), body: body.clone() });

    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (ns, name) = match parts.as_slice() {
        ["apis", "batch", "v1", "namespaces", ns, "jobs"] => (ns.to_string(), None),
        ["apis", "batch", "v1", "namespaces", ns, "jobs", name] => (ns.to_string(), Some(name.to_string())),
        _ => {
            drop(st);
            return respond(request, 404, &status_body(404, "NotFound", &format!("the mock serves no {path}")));
        }
    };
    st.resource_version += 1;
    let rv = st.resource_version.to_string();
    match (method.as_str(), name) {
        ("POST", None) => {
            let Some(mut job) = body else {
                drop(st);
                return respond(request, 400, &status_body(400, "BadRequest", "the body is not JSON"));
            };
            let name = job["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            if st.jobs.contains_key(&(ns.clone(), name.clone())) {
                drop(st);
                return respond(request, 409, &status_body(409, "AlreadyExists", &format!("jobs.batch \"{name}\" already exists")));
            }
            job["metadata"]["namespace"] = ns.clone().into();
            job["metadata"]["uid"] = format!("uid-{rv}").into();
            job["metadata"]["resourceVersion"] = rv.into();
            job["status"] = json!({});
            st.jobs.insert((ns.clone(), name.clone()), MockJob { object: job.clone(), pids: Vec::new() });
            let kubelet = st.kubelet;
            drop(st);
            let (state, logs) = (state.clone(), logs.to_owned());
            std::thread::spawn(move || run_pods(&state, &logs, &ns, &name, kubelet));
            respond(request, 201, &job);
        }
        ("GET", None) => {
            let items: Vec<Value> = st
                .jobs
                .iter()
                .filter(|((n, _), j)| *n == ns && matches(&j.object, query.get("labelSelector")))
                .map(|(_, j)| j.object.clone())
                .collect();
            drop(st);
            respond(
                request,
                200,
                &json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {"resourceVersion": rv}, "items": items}),
            );
        }
        ("GET", Some(name)) => {
            let job = st.jobs.get(&(ns, name.clone())).map(|j| j.object.clone());
            drop(st);
            match job {
                Some(job) => respond(request, 200, &job),
                None => respond(request, 404, &status_body(404, "NotFound", &format!("jobs.batch \"{name}\" not found"))),
            }
        }
        ("DELETE", one) => {
            let doomed: Vec<(String, String)> = st
                .jobs
                .iter()
                .filter(|((n, jn), j)| *n == ns && one.as_ref().map_or_else(|| matches(&j.object, query.get("labelSelector")), |o| o == jn))
                .map(|(k, _)| k.clone())
                .collect();
            let mut deleted = Vec::new();
            for key in doomed {
                let job = st.jobs.remove(&key).unwrap();
                if !job.pids.is_empty() {
                    st.killed.push(key.1.clone());
                }
                job.pids.into_iter().for_each(terminate);
                deleted.push(job.object);
            }
            drop(st);
            match one {
                Some(name) if deleted.is_empty() => {
                    respond(request, 404, &status_body(404, "NotFound", &format!("jobs.batch \"{name}\" not found")))
                }
                Some(name) => respond(request, 200, &status_body(200, "", &format!("jobs.batch \"{name}\" deleted"))),
                None => respond(
                    request,
                    200,
                    &json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {"resourceVersion": rv}, "items": deleted}),
                ),
            }
        }
        _ => {
            drop(st);
            respond(request, 405, &status_body(405, "MethodNotAllowed", &format!("{method} {path}")));
        }
    }
}

/// Sets `status` of Job `ns/name` if it still exists.
fn set_status(state: &Arc<Mutex<State>>, ns: &str, name: &str, status: Value, pids: Option<Vec<u32>>) -> bool {
    let mut st = state.lock().unwrap();
    st.resource_version += 1;
    let rv = st.resource_version.to_string();
    let Some(job) = st.jobs.get_mut(&(ns.to_owned(), name.to_owned())) else { return false };
    job.object["status"] = status;
    job.object["metadata"]["resourceVersion"] = rv.into();
    if let Some(pids) = pids {
        job.pids = pids;
    }
    true
}

/// The fake kubelet: runs the Job's pod(s) and reports the outcome in the Job's status.
fn run_pods(state: &Arc<Mutex<State>>, logs: &Path, ns: &str, name: &str, kubelet: Kubelet) {
    let complete = json!({"succeeded": 1, "active": 0, "ready": 0, "conditions": [
        {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"},
        {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"}]});
    // A moment in Pending, as a real pod spends being scheduled.
    std::thread::sleep(Duration::from_millis(50));
    if kubelet == Kubelet::CompleteWithoutRunning {
        set_status(state, ns, name, complete, None);
        return;
    }
    let Some(job) = state.lock().unwrap().jobs.get(&(ns.to_owned(), name.to_owned())).map(|j| j.object.clone()) else { return };
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    let command: Vec<String> =
        container["command"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect();
    let env: Vec<(String, String)> = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["name"].as_str().unwrap_or_default().to_owned(), e["value"].as_str().unwrap_or_default().to_owned()))
        .collect();
    let workdir = container["workingDir"].as_str().unwrap_or("/").to_owned();
    let log = std::fs::OpenOptions::new().create(true).append(true).open(logs.join(format!("{name}.log"))).unwrap();
    // The "image": the binary under test as `pipeline`, and the machine's tools.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_pipeline")).parent().unwrap().to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let indexed = job["spec"]["completionMode"] == "Indexed";
    let pods = if indexed {
        job["spec"]["completions"].as_u64().unwrap_or(1) as usize
    } else if kubelet == Kubelet::RunTwice {
        2
    } else {
        1
    };
    // A preempted pod's replacement is the next attempt (pod names go on counting).
    let mut attempt = 0;
    let (mut failed, mut succeeded) = loop {
        // (completion index, process); a pod that could not start counts as failed.
        let mut children = Vec::new();
        let mut failed_to_start = Vec::new();
        for pod in 0..pods {
            if indexed && kubelet == Kubelet::FailIndex(pod) {
                failed_to_start.push(pod);
                continue;
            }
            let mut pod_env = env.clone();
            if indexed {
                pod_env.push(("JOB_COMPLETION_INDEX".into(), pod.to_string()));
            }
            let expand = |arg: &String| pod_env.iter().fold(arg.clone(), |a, (k, v)| a.replace(&format!("$({k})"), v));
            let args: Vec<String> = command[1..].iter().map(expand).collect();
            let program = if command[0].contains('/') { PathBuf::from(&command[0]) } else { which(&command[0], &path) };
            let spawned = Command::new(program)
                .args(&args)
                .current_dir(&workdir)
                .env_clear()
                .env("PATH", &path)
                .env("HOME", std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .env("HOSTNAME", format!("{name}-pod{}", attempt * pods + pod))
                .envs(pod_env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log.try_clone().unwrap())
                .spawn();
            match spawned {
                Ok(child) => children.push((pod, child)),
                Err(e) => {
                    let _ = std::io::Write::write_all(&mut &log, format!("mock kubelet: cannot start {command:?}: {e}\n").as_bytes());
                    failed_to_start.push(pod);
                }
            }
        }
        let pids: Vec<u32> = children.iter().map(|(_, c)| c.id()).collect();
        state.lock().unwrap().running.extend(pids.iter().copied());
        if !set_status(state, ns, name, json!({"active": children.len(), "ready": children.len()}), Some(pids)) {
            // Deleted while starting.
            children.iter().for_each(|(_, c)| terminate(c.id()));
        }
        let mut failed = failed_to_start;
        let mut succeeded = Vec::new();
        for (pod, mut child) in children {
            let exited_ok = child.wait().map(|s| s.success()).unwrap_or(false);
            state.lock().unwrap().running.remove(&child.id());
            if exited_ok {
                succeeded.push(pod);
            } else {
                failed.push(pod);
            }
        }
        let preempted = state.lock().unwrap().preempted.remove(name);
        if preempted && !indexed && ignores_disruption(&job) {
            let _ = std::io::Write::write_all(&mut &log, b"mock kubelet: pod preempted (DisruptionTarget), the Job starts a new one\n");
            attempt += 1;
            continue;
        }
        break (failed, succeeded);
    };
    failed.sort();
    let list = |v: &[usize]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let mut status = if failed.is_empty() {
        complete
    } else if indexed {
        json!({"conditions": [
            {"type": "FailureTarget", "status": "True", "reason": "FailedIndexes", "message": "Job has failed indexes"},
            {"type": "Failed", "status": "True", "reason": "FailedIndexes", "message": "Job has failed indexes"}]})
    } else {
        json!({"failed": 1, "active": 0, "ready": 0, "conditions": [
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"},
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]})
    };
    if indexed {
        status["succeeded"] = succeeded.len().into();
        status["failed"] = failed.len().into();
        status["active"] = 0.into();
        status["ready"] = 0.into();
        succeeded.sort();
        status["completedIndexes"] = list(&succeeded).into();
        if !failed.is_empty() {
            status["failedIndexes"] = list(&failed).into();
        }
    }
    set_status(state, ns, name, status, Some(Vec::new()));
}

/// Whether the Job's `podFailurePolicy` ignores pods failed with condition `DisruptionTarget`.
fn ignores_disruption(job: &Value) -> bool {
    job["spec"]["podFailurePolicy"]["rules"].as_array().into_iter().flatten().any(|rule| {
        rule["action"] == "Ignore" && rule["onPodConditions"].as_array().into_iter().flatten().any(|c| c["type"] == "DisruptionTarget")
    })
}

fn which(program: &str, path: &str) -> PathBuf {
    path.split(':').map(|d| Path::new(d).join(program)).find(|p| p.is_file()).unwrap_or_else(|| PathBuf::from(program))
}
