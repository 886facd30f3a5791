//! Remote-cache scenarios shared by the tests of every backend: a directory (`tests/remote.rs`),
//! S3 (`tests/remote_s3.rs`, a real `s3s-fs` server on loopback), Azure (`tests/remote_azure.rs`,
//! Azurite) and read-only HTTP (`tests/remote_http.rs`). Two workspaces in separate directories
//! stand for two machines with the same pipeline.yaml and raw data.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::service::{find_exe, spawn_listening, Service};
use super::{counting, RunOutput, Workspace};

/// A remote the tests can reach, and whose objects they can read and damage behind the engine's
/// back. Object paths are relative to the remote's root (`blobs/..`, `manifests/<key>.json`).
pub trait Backend {
    /// What `remote:` in pipeline.yaml says.
    fn url(&self) -> String;
    /// Where a machine that pushes points (differs only for a read-only remote, which is
    /// filled through another URL).
    fn push_url(&self) -> String {
        self.url()
    }
    /// Environment every `pipeline` process needs to reach it.
    fn env(&self) -> Vec<(String, String)>;
    /// Paths of the objects whose path starts with `prefix`.
    fn list(&self, prefix: &str) -> Vec<String>;
    fn read(&self, path: &str) -> Vec<u8>;
    fn write(&self, path: &str, bytes: &[u8]);
}

/// The objects of a remote kept as files under `root` (a directory remote, s3s-fs's bucket).
pub struct FileObjects<'a>(pub &'a Path);

impl FileObjects<'_> {
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let mut paths: Vec<String> = files_under(self.0)
            .into_iter()
            .map(|p| p.strip_prefix(self.0).unwrap().to_str().unwrap().to_owned())
            .filter(|p| p.starts_with(prefix))
            .collect();
        paths.sort();
        paths
    }
    pub fn read(&self, path: &str) -> Vec<u8> {
        fs::read(self.0.join(path)).unwrap()
    }
    pub fn write(&self, path: &str, bytes: &[u8]) {
        fs::write(self.0.join(path), bytes).unwrap()
    }
}

/// A directory remote.
pub struct DirRemote(pub tempfile::TempDir);

impl DirRemote {
    pub fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }
}

impl Backend for DirRemote {
    fn url(&self) -> String {
        self.0.path().display().to_string()
    }
    fn env(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    fn list(&self, prefix: &str) -> Vec<String> {
        FileObjects(self.0.path()).list(prefix)
    }
    fn read(&self, path: &str) -> Vec<u8> {
        FileObjects(self.0.path()).read(path)
    }
    fn write(&self, path: &str, bytes: &[u8]) {
        FileObjects(self.0.path()).write(path, bytes)
    }
}

/// A real S3-compatible server (`s3s-fs`) on a free loopback port, serving a temporary
/// directory; the remote is `s3://BUCKET/team/cache`. The server is killed on drop.
pub struct S3Server {
    server: Service,
    dir: tempfile::TempDir,
}

const BUCKET: &str = "shared";
const PREFIX: &str = "team/cache";
const ACCESS_KEY: &str = "pipeline-test";
const SECRET_KEY: &str = "pipeline-test-secret";

impl S3Server {
    /// Starts `s3s-fs`; fails the test (it does not skip) when the binary is missing.
    pub fn start() -> Self {
        let exe = find_exe("s3s-fs", &[]).unwrap_or_else(|| {
            panic!("`s3s-fs` (the S3 server these tests start on loopback) is not installed: run scripts/setup.sh (it runs `cargo install s3s-fs@0.14.1 --features binary --locked`)")
        });
        let dir = tempfile::tempdir().unwrap();
        // s3s-fs maps a bucket to a directory under its root.
        fs::create_dir_all(dir.path().join(BUCKET)).unwrap();
        let server = spawn_listening("s3s-fs", &dir.path().join("s3s-fs.log"), |port| {
            let mut cmd = Command::new(&exe);
            cmd.args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(dir.path());
            cmd
        });
        Self { server, dir }
    }

    /// The directory that holds the remote's `blobs/` and `manifests/`.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join(BUCKET).join(PREFIX)
    }
}

impl Backend for S3Server {
    fn url(&self) -> String {
        format!("s3://{BUCKET}/{PREFIX}")
    }
    fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", self.server.port)),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
    fn list(&self, prefix: &str) -> Vec<String> {
        FileObjects(&self.root()).list(prefix)
    }
    fn read(&self, path: &str) -> Vec<u8> {
        FileObjects(&self.root()).read(path)
    }
    fn write(&self, path: &str, bytes: &[u8]) {
        FileObjects(&self.root()).write(path, bytes)
    }
}

fn yaml(remote: &str) -> String {
    format!(
        "remote: {remote}\nstages:\n  prep:\n    run: \"{}\"\n    deps: [raw]\n  train:\n    run: \"{}\"\n    needs: [prep]\n",
        counting(
            "prep",
            "mkdir -p $PIPELINE_OUT/shards; cat raw/* > $PIPELINE_OUT/shards/all.bin; cp -r raw $PIPELINE_OUT/raw; echo prepped"
        ),
        counting("train", "wc -c < $PIPELINE_IN_PREP/shards/all.bin > $PIPELINE_OUT/model.txt"),
    )
}

/// A workspace with the shared pipeline.yaml and raw data (alpha, beta), reading `remote`.
pub fn machine(remote: &dyn Backend) -> Workspace {
    machine_at(&remote.url(), remote)
}

/// Like [`machine`], for a machine that pushes to `remote`.
pub fn pushing_machine(remote: &dyn Backend) -> Workspace {
    machine_at(&remote.push_url(), remote)
}

fn machine_at(url: &str, remote: &dyn Backend) -> Workspace {
    let ws = Workspace::with_env(&yaml(url), remote.env());
    ws.write("raw/a.txt", "alpha\n");
    ws.write("raw/b.txt", "beta\n");
    ws
}

pub fn output_of(ws: &Workspace, stage: &str) -> PathBuf {
    let show = ws.pipeline(&["show", stage]).stdout;
    PathBuf::from(show.lines().next().unwrap().split(": ").nth(1).unwrap())
}

pub fn files_under(root: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()).map(|e| e.into_path()).collect()
}

/// The outputs of prep and train in `b` are byte-identical to those in `a`.
pub fn assert_same_outputs(a: &Workspace, b: &Workspace) {
    for stage in ["prep", "train"] {
        let (da, db) = (output_of(a, stage), output_of(b, stage));
        let files = files_under(&da);
        assert!(!files.is_empty());
        assert_eq!(files.len(), files_under(&db).len(), "{stage}");
        for fa in files {
            let fb = db.join(fa.strip_prefix(&da).unwrap());
            assert_eq!(fs::read(&fa).unwrap(), fs::read(&fb).unwrap(), "{}", fb.display());
        }
    }
}

/// A runs with `--push`; B runs and pulls everything, computes nothing, gets identical bytes.
pub fn second_machine_pulls_instead_of_computing(remote: &dyn Backend) {
    let a = pushing_machine(remote);
    let out = a.pipeline(&["run", "--push"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("prep: pushed to the remote"), "{}", out.stderr);
    assert!(out.stderr.contains("train: pushed to the remote"), "{}", out.stderr);

    let b = machine(remote);
    let out = b.pipeline(&["run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("prep: pulled from the remote"), "{}", out.stderr);
    assert!(out.stderr.contains("train: pulled from the remote"), "{}", out.stderr);
    assert_eq!((b.count("prep"), b.count("train")), (0, 0), "nothing was computed on B");
    assert_same_outputs(&a, &b);
    let verify = b.pipeline(&["verify"]);
    assert_eq!(verify.code, 0, "{}", verify.stdout);
    // The same content is stored once: pushing again uploads nothing.
    let again = a.pipeline(&["push"]);
    assert!(again.stdout.contains("pushed 2 artifacts, uploaded 0 B"), "{}", again.stdout);
}

/// `pipeline pull` fetches prep first, then train (whose key needs prep's output).
pub fn pull_command_fetches_upstream_first(remote: &dyn Backend) {
    let a = pushing_machine(remote);
    assert_eq!(a.pipeline(&["run"]).code, 0);
    let push = a.pipeline(&["push"]);
    assert!(push.stdout.contains("pushed 2 artifacts"), "{}\n{}", push.stdout, push.stderr);
    let b = machine(remote);
    let out = b.pipeline(&["pull"]);
    assert!(out.stdout.contains("pulled 2 artifacts"), "{}\n{}", out.stdout, out.stderr);
    let run = b.pipeline(&["run"]);
    assert!(run.stderr.contains("0 ran, 2 fresh"), "{}", run.stderr);
    assert_same_outputs(&a, &b);
}

/// A pushes; `damage` corrupts the remote; B must refuse the copy and compute prep locally.
pub fn refused_after(remote: &dyn Backend, damage: impl Fn(&dyn Backend)) -> (Workspace, RunOutput) {
    let a = pushing_machine(remote);
    let out = a.pipeline(&["run", "--push"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    damage(remote);
    let b = machine(remote);
    let out = b.pipeline(&["run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("prep: refused the remote copy"), "{}", out.stderr);
    assert_eq!(b.count("prep"), 1, "computed locally instead");
    let verify = b.pipeline(&["verify"]);
    assert_eq!(verify.code, 0, "{}", verify.stdout);
    assert_same_outputs(&a, &b);
    (b, out)
}

/// The largest blob is prep's shard (alpha + beta).
fn prep_blob(remote: &dyn Backend) -> String {
    remote.list("blobs/").into_iter().max_by_key(|p| remote.read(p).len()).unwrap()
}

pub fn corrupted_blob_is_refused(remote: &dyn Backend) {
    let (_, out) = refused_after(remote, |r| r.write(&prep_blob(r), b"alphX\nbeta\n"));
    assert!(out.stderr.contains("is corrupt: blake3"), "{}", out.stderr);
}

pub fn truncated_blob_is_refused(remote: &dyn Backend) {
    let (_, out) = refused_after(remote, |r| r.write(&prep_blob(r), b"alpha\n"));
    assert!(out.stderr.contains("is corrupt"), "{}", out.stderr);
}

pub fn manifest_with_parent_paths_is_refused_and_nothing_escapes(remote: &dyn Backend) {
    let (b, out) = refused_after(remote, |r| {
        for manifest in r.list("manifests/") {
            let text = String::from_utf8(r.read(&manifest)).unwrap();
            r.write(&manifest, text.replace("\"shards/all.bin\"", "\"../../../../escape.bin\"").as_bytes());
        }
    });
    assert!(out.stderr.contains("unsafe path `../../../../escape.bin`"), "{}", out.stderr);
    // `out/../../../../escape.bin` would land in the workspace; check its parent too.
    for dir in [b.store(), b.path().to_owned(), b.path().parent().unwrap().to_owned()] {
        assert!(!dir.join("escape.bin").exists(), "nothing written outside: {}", dir.display());
    }
}

/// Forty more raw files, so that uploads of prep's output take a while and overlap.
fn more_raw(ws: &Workspace) {
    for i in 0..40 {
        let text: String = (0..20_000).map(|j| char::from(b'a' + ((i * 7 + j) % 26) as u8)).collect();
        ws.write(&format!("raw/more{i:02}.txt"), &text);
    }
}

/// Two machines push the same artifacts at the same moment: both succeed, and a third machine
/// pulls a valid copy.
pub fn concurrent_pushes_of_the_same_key(remote: &dyn Backend) {
    let machines: Vec<Workspace> = (0..2)
        .map(|_| {
            let ws = pushing_machine(remote);
            more_raw(&ws);
            let out = ws.pipeline(&["run"]);
            assert_eq!(out.code, 0, "{}", out.stderr);
            ws
        })
        .collect();
    let children: Vec<_> =
        machines.iter().map(|ws| ws.command(&["push"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()).collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("pushed 2 artifacts"), "{stdout}");
    }
    let c = machine(remote);
    more_raw(&c);
    let out = c.pipeline(&["pull"]);
    assert!(out.stdout.contains("pulled 2 artifacts"), "{}\n{}", out.stdout, out.stderr);
    let verify = c.pipeline(&["verify"]);
    assert_eq!(verify.code, 0, "{}", verify.stdout);
    let run = c.pipeline(&["run"]);
    assert!(run.stderr.contains("0 ran, 2 fresh"), "{}", run.stderr);
    assert_same_outputs(&machines[0], &c);
}
