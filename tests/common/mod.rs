//! Test builders: a temporary workspace with a `pipeline.yaml`, and the real binary run in it.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod azurite;
pub mod http_remote;
#[cfg(feature = "kubernetes")]
pub mod kube_mock;
pub mod remote;
pub mod service;
pub mod slurm;

/// `synth -> scan -> extract (T=2, S=32) -> split (actors 1 / 2 / 3)`: the smallest dataset
/// that trains, as the `stages:` section of a pipeline file (append more stages to it).
pub fn tiny_dataset(synth_with: &str) -> String {
    format!(
        "stages:
  synth:
    uses: synth
    with: {synth_with}
  scan: {{uses: scan, needs: [synth]}}
  extract:
    uses: extract
    needs: [scan]
    with: {{frames: 2, size: 32}}
  split:
    uses: split
    needs: [extract]
    with: {{train_actors: [1], val_actors: [2], test_actors: [3]}}
"
    )
}

/// The smallest synth settings: 3 actors, 2 emotions, half-second clips at 320x180.
pub const SMALL_SYNTH: &str = "{actors: 3, emotions: [neutral, happy], intensities: [1], duration_s: 0.5, width: 320, height: 180}";

/// One process as `/proc/PID/stat` shows it.
pub struct ProcessInfo {
    pub pid: u32,
    /// The command name (at most 15 characters).
    pub name: String,
    /// `R`, `S`, `Z` (a zombie: exited, not yet reaped), ...
    pub state: String,
    pub parent: u32,
}

/// `/proc/PID/stat` of `pid`, if it exists.
pub fn process_info(pid: u32) -> Option<ProcessInfo> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let mut rest = stat[close + 1..].split_whitespace();
    let state = rest.next()?.to_owned();
    let parent = rest.next()?.parse().ok()?;
    Some(ProcessInfo { pid, name: stat[open + 1..close].to_owned(), state, parent })
}

/// The running children of `parent` (zombies left out).
pub fn children_of(parent: u32) -> Vec<ProcessInfo> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter_map(process_info)
        .filter(|p| p.parent == parent && p.state != "Z")
        .collect()
}

/// Whether `pid` is a running process (a zombie has released everything it held).
pub fn alive(pid: u32) -> bool {
    process_info(pid).is_some_and(|p| p.state != "Z")
}

/// The synth settings of the tiny datasets that train a model: 3 actors, 4 emotions, 1 s.
pub const TRAINABLE_SYNTH: &str =
    "{actors: 3, emotions: [neutral, happy, sad, angry], intensities: [1], duration_s: 1.0, width: 640, height: 360}";

pub struct Workspace {
    pub dir: tempfile::TempDir,
    /// Extra environment for every `pipeline` process run in this workspace.
    pub env: Vec<(String, String)>,
}

pub struct RunOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// The stage lines ("name: ...") of stderr.
    pub fn line_for(&self, instance: &str) -> Vec<String> {
        let prefix = format!("{instance}: ");
        self.stderr.lines().filter(|l| l.starts_with(&prefix)).map(str::to_owned).collect()
    }
}

impl Workspace {
    pub fn new(yaml: &str) -> Self {
        Self::with_env(yaml, Vec::new())
    }

    pub fn with_env(yaml: &str, env: Vec<(String, String)>) -> Self {
        let ws = Self { dir: tempfile::tempdir().expect("tempdir"), env };
        ws.write("pipeline.yaml", yaml);
        fs::create_dir_all(ws.path().join("counts")).unwrap();
        ws
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipeline"));
        cmd.args(args).current_dir(self.path()).envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    pub fn pipeline(&self, args: &[&str]) -> RunOutput {
        RunOutput::from(self.command(args).output().expect("run pipeline"))
    }

    /// How many times a counting stage ran (each run appends one line to counts/NAME).
    pub fn count(&self, name: &str) -> usize {
        fs::read_to_string(self.path().join("counts").join(name)).map_or(0, |s| s.lines().count())
    }

    pub fn store(&self) -> PathBuf {
        self.path().join(".pipeline")
    }

    /// Starts `pipeline ARGS` in the background; its stderr comes line by line on the channel.
    pub fn spawn_run(&self, args: &[&str]) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
        use std::io::BufRead;
        let mut child = self.command(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        (child, rx)
    }
}

/// Lines from `rx` until one contains `needle` (at most 60 s); returns that line, and keeps
/// every line read in `all`.
pub fn read_until(rx: &std::sync::mpsc::Receiver<String>, needle: &str, all: &mut Vec<String>) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(100)) {
            all.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }
    panic!("no line with {needle:?} in:\n{}", all.join("\n"));
}

/// instance -> (relative path -> bytes) of every artifact in a workspace's store.
pub fn artifacts_of(ws: &Workspace) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<u8>>> {
    artifacts_in(&ws.store())
}

/// (manifest, artifact folder) of every artifact in the store at `store` (none when it is empty).
fn manifests_in(store: &Path) -> Vec<(serde_json::Value, PathBuf)> {
    if !store.join("objects").exists() {
        return Vec::new();
    }
    walkdir::WalkDir::new(store.join("objects"))
        .min_depth(2)
        .max_depth(2)
        .into_iter()
        .map(|entry| {
            let dir = entry.unwrap().into_path();
            let manifest = serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
            (manifest, dir)
        })
        .collect()
}

/// instance -> (relative path -> bytes) of every artifact in the store at `store` (empty when
/// there is none).
pub fn artifacts_in(store: &Path) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<u8>>> {
    manifests_in(store)
        .into_iter()
        .map(|(manifest, dir)| {
            let files = manifest["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    let rel = f["path"].as_str().unwrap().to_owned();
                    let bytes = fs::read(dir.join("out").join(&rel)).unwrap();
                    (rel, bytes)
                })
                .collect();
            (manifest["instance"].as_str().unwrap().to_owned(), files)
        })
        .collect()
}

/// instance -> output folder (`.../out`) of every artifact in `store`.
pub fn outputs_in(store: &Path) -> std::collections::BTreeMap<String, PathBuf> {
    manifests_in(store).into_iter().map(|(manifest, dir)| (manifest["instance"].as_str().unwrap().to_owned(), dir.join("out"))).collect()
}

/// The keys under `manifests/` or `tasks/` of a directory remote, sorted (none when it has no
/// such folder).
pub fn remote_keys(remote: &Path, sub: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(remote.join(sub)) else { return Vec::new() };
    let mut keys: Vec<String> = entries.map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".json").to_owned()).collect();
    keys.sort();
    keys
}

/// A `run:` command that records that stage NAME ran and writes `text` as its output.
pub fn counting(name: &str, body: &str) -> String {
    format!("echo run >> counts/{name}; {body}")
}
