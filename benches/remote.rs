//! Benchmark: pushing and pulling a ~1 GB cache to a remote, against plain copy tools.
//!
//! A stage writes N files of 5 MB of random bytes (default 200, 1.05 GB; `BENCH_FILES=N` for
//! another count). Then, in the same run:
//! - directory remote: `pipeline push` vs `cp -r` of the same files into a directory, and
//!   `pipeline pull` (into a second workspace) vs `cp -r` back out of it;
//! - S3 on loopback (`s3s-fs`, as in the tests): `pipeline push` / `pipeline pull` vs the AWS
//!   CLI (`aws s3 cp --recursive`), installed with pip into the project's venv
//!   (`$PIPELINE_TORCH_VENV`, default ~/.cache/pipeline/torch-2.13.0) when missing.
//!
//! Run: `cargo bench --bench remote` (set `BENCH_DIR` to choose where the files go).

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FILE_SIZE: usize = 5 * 1024 * 1024;
const ACCESS_KEY: &str = "bench";
const SECRET_KEY: &str = "bench-secret";

fn main() {
    let count: usize = std::env::var("BENCH_FILES").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    let parent: PathBuf = std::env::var("BENCH_DIR").map(Into::into).unwrap_or_else(|_| std::env::temp_dir());
    let dir = tempfile::tempdir_in(parent).expect("tempdir");
    let root = dir.path();
    let gb = (count * FILE_SIZE) as f64 / 1e9;
    let aws = aws_cli();

    // The cache: the output of one stage.
    let a = root.join("a");
    fs::create_dir_all(a.join("gen")).unwrap();
    fs::write(a.join("gen/make.py"), GENERATOR).unwrap();
    let yaml = format!("stages:\n  cache:\n    run: \"python3 gen/make.py $PIPELINE_OUT {count} {FILE_SIZE}\"\n    deps: [gen]\n");
    fs::write(a.join("pipeline.yaml"), &yaml).unwrap();
    pipeline(&a, &["run", "-q"], &[]);
    let out = output_dir(&a);
    println!("{count} files of {} MB, {gb:.2} GB in {}", FILE_SIZE >> 20, out.display());
    let workspace_b = |name: &str| {
        let b = root.join(name);
        fs::create_dir_all(&b).unwrap();
        fs::write(b.join("pipeline.yaml"), &yaml).unwrap();
        fs::create_dir_all(b.join("gen")).unwrap();
        fs::write(b.join("gen/make.py"), GENERATOR).unwrap();
        b
    };

    let mut rows = Vec::new();

    // Directory remote.
    let remote = root.join("remote-dir");
    let copy = root.join("cp-remote");
    let push_cp = time(|| run(Command::new("cp").arg("-r").arg(&out).arg(&copy)));
    let push = time(|| pipeline(&a, &["push", "--remote", remote.to_str().unwrap()], &[]));
    let b = workspace_b("b-dir");
    let back = root.join("cp-back");
    let pull_cp = time(|| run(Command::new("cp").arg("-r").arg(&copy).arg(&back)));
    let pull = time(|| pipeline(&b, &["--remote", remote.to_str().unwrap(), "pull"], &[]));
    check_same(&out, &output_dir(&b));
    // A pull publishes durably (fsync before the rename); so does `cp -r` followed by `sync`.
    let back_synced = root.join("cp-back-synced");
    let pull_cp_sync = time(|| {
        run(Command::new("cp").arg("-r").arg(&copy).arg(&back_synced));
        run(&mut Command::new("sync"));
    });
    rows.push(("push to a directory", push, "`cp -r`", push_cp));
    rows.push(("pull from a directory", pull, "`cp -r`", pull_cp));
    rows.push(("pull from a directory", pull, "`cp -r && sync`", pull_cp_sync));
    for p in [&remote, &copy, &back, &back_synced, &b] {
        remove(p);
    }

    // S3 on loopback.
    let server = S3sFs::start(&root.join("s3"));
    fs::create_dir_all(root.join("s3/bench")).unwrap();
    let env = server.env();
    let push_aws = time(|| {
        run(Command::new(&aws)
            .args(["s3", "cp", "--recursive", "--quiet", "--endpoint-url", &server.endpoint()])
            .arg(&out)
            .arg("s3://bench/aws/")
            .envs(env.iter().cloned()))
    });
    let push = time(|| pipeline(&a, &["push", "--remote", "s3://bench/ours"], &env));
    let b = workspace_b("b-s3");
    let back = root.join("aws-back");
    let pull_aws = time(|| {
        run(Command::new(&aws)
            .args(["s3", "cp", "--recursive", "--quiet", "--endpoint-url", &server.endpoint(), "s3://bench/aws/"])
            .arg(&back)
            .envs(env.iter().cloned()))
    });
    let pull = time(|| pipeline(&b, &["--remote", "s3://bench/ours", "pull"], &env));
    check_same(&out, &output_dir(&b));
    check_same(&out, &back);
    rows.push(("push to S3 (s3s-fs on loopback)", push, "`aws s3 cp --recursive`", push_aws));
    rows.push(("pull from S3 (s3s-fs on loopback)", pull, "`aws s3 cp --recursive`", pull_aws));
    drop(server);

    println!("| transfer | ours (s) | ours (GB/s) | baseline | baseline (s) | ours / baseline time |");
    println!("|---|---|---|---|---|---|");
    for (what, ours, base, base_s) in rows {
        println!("| {what} | {ours:.2} | {:.2} | {base} | {base_s:.2} | {:.2} |", gb / ours, ours / base_s);
    }
    // Published artifacts are read-only: make them removable for the temp dir's cleanup.
    let _ = Command::new("chmod").arg("-R").arg("u+w").arg(root).status();
}

/// Writes COUNT files of SIZE random bytes into OUT (a stage's output).
const GENERATOR: &str = r#"import os, sys
out, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(f"{out}/shards", exist_ok=True)
for i in range(count):
    with open(f"{out}/shards/{i:04}.bin", "wb") as f:
        f.write(os.urandom(size))
print(f"{count} shards")
"#;

/// Times `f`, after flushing the dirty pages earlier steps left (so that no step pays for
/// another's writeback).
fn time(f: impl FnOnce()) -> f64 {
    run(&mut Command::new("sync"));
    let started = Instant::now();
    f();
    started.elapsed().as_secs_f64()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

fn pipeline(dir: &Path, args: &[&str], env: &[(String, String)]) {
    run(Command::new(env!("CARGO_BIN_EXE_pipeline")).args(args).current_dir(dir).envs(env.iter().cloned()));
}

fn output_dir(ws: &Path) -> PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline")).args(["show", "cache"]).current_dir(ws).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(text.lines().next().expect("show prints the output dir").split(": ").nth(1).unwrap())
}

/// Same file names and sizes, and the same bytes for a sample of them.
fn check_same(a: &Path, b: &Path) {
    let list = |d: &Path| {
        let mut v: Vec<(PathBuf, u64)> = walkdir::WalkDir::new(d)
            .into_iter()
            .map(Result::unwrap)
            .filter(|e| e.file_type().is_file())
            .map(|e| (e.path().strip_prefix(d).unwrap().to_owned(), e.metadata().unwrap().len()))
            .collect();
        v.sort();
        v
    };
    let (la, lb) = (list(a), list(b));
    assert_eq!(la, lb, "{} vs {}", a.display(), b.display());
    for (rel, _) in la.iter().step_by(37) {
        assert_eq!(fs::read(a.join(rel)).unwrap(), fs::read(b.join(rel)).unwrap(), "{}", rel.display());
    }
}

fn remove(p: &Path) {
    let _ = Command::new("chmod").arg("-R").arg("u+w").arg(p).status();
    fs::remove_dir_all(p).unwrap();
}

/// The AWS CLI from the project's venv, installed with pip when missing.
fn aws_cli() -> PathBuf {
    let venv = std::env::var_os("PIPELINE_TORCH_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/pipeline/torch-2.13.0"));
    let aws = venv.join("bin/aws");
    if !aws.is_file() {
        eprintln!("installing awscli into {}", venv.display());
        run(Command::new(venv.join("bin/pip")).args(["install", "-q", "awscli"]));
    }
    aws
}

/// An `s3s-fs` server on a free loopback port; killed on drop.
struct S3sFs {
    child: Child,
    port: u16,
}

impl S3sFs {
    fn start(dir: &Path) -> Self {
        fs::create_dir_all(dir).unwrap();
        let exe = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .chain(std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin")))
            .map(|d| d.join("s3s-fs"))
            .find(|p| p.is_file())
            .expect("s3s-fs is not installed: run scripts/setup.sh");
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(exe)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
