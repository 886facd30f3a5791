//! `pretrained:` weights from the network, against a server on loopback (these machines cannot
//! reach download.pytorch.org): the files are random-weight torchvision models written by the
//! venv's torchvision, served under torchvision's name scheme (`NAME-<first SHA-256 hex>.pth`).
//! A right file is downloaded once into the per-user cache, trained from and hashed into the
//! key; a wrong hash, a truncated download and no network are errors that name the file and
//! leave nothing in the cache; without network the message says where to put the file by hand.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::Workspace;

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("PIPELINE_TORCH_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/pipeline/torch-2.13.0"));
    venv.join("bin/python")
}

/// A random-weight torchvision ResNet-18 state dict saved as torchvision publishes it.
fn random_resnet18(path: &Path, seed: u32) {
    let python = venv_python();
    assert!(python.is_file(), "{} is missing: run scripts/setup.sh or set PIPELINE_TORCH_VENV", python.display());
    let script = format!(
        "import torch, torchvision; torch.manual_seed({seed}); torch.save(torchvision.models.resnet18().state_dict(), {:?})",
        path.display().to_string()
    );
    let out = Command::new(python).args(["-c", &script]).env("OMP_NUM_THREADS", "1").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_owned()
}

/// What the server sends for a path: the whole file, or its first half under the whole
/// file's Content-Length (a connection that breaks off).
#[derive(Clone)]
enum Reply {
    Whole(Vec<u8>),
    Truncated(Vec<u8>),
}

/// A minimal HTTP/1.1 file server on 127.0.0.1 that counts its GETs per path.
struct Server {
    port: u16,
    routes: Arc<Mutex<BTreeMap<String, Reply>>>,
    gets: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl Server {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let routes: Arc<Mutex<BTreeMap<String, Reply>>> = Arc::default();
        let gets: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
        let (r, g) = (routes.clone(), gets.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, g) = (r.clone(), g.clone());
                std::thread::spawn(move || serve(stream, &r, &g));
            }
        });
        Self { port, routes, gets }
    }

    fn route(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.to_owned(), reply);
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn gets(&self, path: &str) -> usize {
        self.gets.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

fn serve(stream: TcpStream, routes: &Mutex<BTreeMap<String, Reply>>, gets: &Mutex<BTreeMap<String, usize>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).map_or(true, |n| n == 0) || header.trim().is_empty() {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
    *gets.lock().unwrap().entry(path.clone()).or_default() += 1;
    let reply = routes.lock().unwrap().get(&path).cloned();
    let mut out = stream;
    let _ = match reply {
        Some(Reply::Whole(body)) => out
            .write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).as_bytes())
            .and_then(|()| out.write_all(&body)),
        Some(Reply::Truncated(body)) => out
            .write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).as_bytes())
            .and_then(|()| out.write_all(&body[..body.len() / 2])),
        None => out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    };
    let _ = out.shutdown(std::net::Shutdown::Both);
}

/// The tiny dataset and one early-fusion ResNet-18 training from `pretrained`.
fn pipeline_yaml(pretrained: &str) -> String {
    common::tiny_dataset(common::SMALL_SYNTH)
        + &format!(
            "  train:
    uses: train
    needs: [extract, split]
    with: {{arch: early_fusion_resnet18, epochs: 1, batch_size: 2, threads: 1, pretrained: \"{pretrained}\"}}
"
        )
}

/// Every file below `dir` (relative names), to see that nothing half-written is left.
fn files_below(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(dir).into_iter().flatten().filter(|e| e.file_type().is_file()) {
        found.push(entry.path().strip_prefix(dir).unwrap().display().to_string());
    }
    found.sort();
    found
}

#[test]
fn weights_are_fetched_once_checked_and_keyed_and_bad_downloads_leave_nothing() {
    let files = tempfile::tempdir().unwrap();
    let weights = files.path().join("resnet18-random.pth");
    random_resnet18(&weights, 0);
    let bytes = std::fs::read(&weights).unwrap();
    let digest = sha256(&weights);
    let right_name = format!("resnet18-{}.pth", &digest[..8]);

    let server = Server::start();
    server.route(&format!("/models/{right_name}"), Reply::Whole(bytes.clone()));
    // Under torchvision's real name, whose hash these random weights do not have.
    server.route("/models/resnet18-f37072fd.pth", Reply::Whole(bytes.clone()));
    server.route(&format!("/cut/{right_name}"), Reply::Truncated(bytes.clone()));

    let cache = tempfile::tempdir().unwrap();
    let torch_home = tempfile::tempdir().unwrap();
    let env = |torchvision: &str| {
        vec![
            ("PIPELINE_WEIGHTS_DIR".to_owned(), cache.path().display().to_string()),
            ("PIPELINE_TORCHVISION_URL".to_owned(), torchvision.to_owned()),
            ("TORCH_HOME".to_owned(), torch_home.path().display().to_string()),
        ]
    };
    let good_url = server.url(&format!("/models/{right_name}"));
    let ws = Workspace::with_env(&pipeline_yaml(&good_url), env(&server.url("/models")));

    // The right file: downloaded once, checked, trained from.
    let first = ws.pipeline(&["run"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(first.stderr.contains(&format!("pretrained: downloading {good_url} ({:.1} MB)", bytes.len() as f64 / 1e6)), "{}", first.stderr);
    let cached: Vec<String> = files_below(cache.path()).into_iter().filter(|f| f.ends_with(".pth")).collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].ends_with(&right_name), "{cached:?}");
    assert_eq!(std::fs::read(cache.path().join(&cached[0])).unwrap(), bytes);
    let train_files = &common::artifacts_of(&ws)["train"];
    let log = train_files.get("log.txt").map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default() + &first.stderr;
    assert!(log.contains("pretrained: 99 tensors from"), "the training loaded the file:\n{log}");
    assert_eq!(server.gets(&format!("/models/{right_name}")), 1);

    // A second run downloads nothing and has nothing to do.
    let second = ws.pipeline(&["run"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(second.stderr.contains("0 ran"), "{}", second.stderr);
    assert_eq!(server.gets(&format!("/models/{right_name}")), 1, "served from the cache");

    // Other weights (another seed): their content is part of the key, so train is stale.
    let other = files.path().join("other.pth");
    random_resnet18(&other, 1);
    let other_name = format!("resnet18-{}.pth", &sha256(&other)[..8]);
    server.route(&format!("/models/{other_name}"), Reply::Whole(std::fs::read(&other).unwrap()));
    ws.write("pipeline.yaml", &pipeline_yaml(&server.url(&format!("/models/{other_name}"))));
    let status = ws.pipeline(&["status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let train_line = status.stdout.lines().find(|l| l.trim_start().starts_with("train")).unwrap_or_default().to_owned();
    assert!(
        train_line.contains(&other_name) && train_line.contains(&right_name),
        "stale because its input file changed: {}",
        status.stdout
    );

    // torchvision's name with other content: refused, nothing kept.
    ws.write("pipeline.yaml", &pipeline_yaml("torchvision:resnet18"));
    let wrong = ws.pipeline(&["run"]);
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains(&format!("its SHA-256 is {digest}, but its name promises one starting with f37072fd")),
        "{}",
        wrong.stderr
    );
    assert!(wrong.stderr.contains("torchvision:resnet18 (ResNet-18, ImageNet-1k"), "{}", wrong.stderr);
    assert!(!cache.path().join("resnet18-f37072fd.pth").exists());
    assert!(files_below(cache.path()).iter().all(|f| !f.contains(".partial")), "{:?}", files_below(cache.path()));

    // A download that breaks off: an error, nothing kept.
    let cut_url = server.url(&format!("/cut/{right_name}"));
    ws.write("pipeline.yaml", &pipeline_yaml(&cut_url));
    let cut = ws.pipeline(&["run"]);
    assert_eq!(cut.code, 1, "{}", cut.stderr);
    assert!(cut.stderr.contains(&format!("the download of {cut_url}")), "{}", cut.stderr);
    let left = files_below(cache.path());
    assert!(left.iter().all(|f| !f.contains(".partial")), "{left:?}");
    assert_eq!(left.iter().filter(|f| f.ends_with(".pth")).count(), 2, "only the two good files (status fetched the second): {left:?}");

    // No network (nothing listens there): the message says where to put the file by hand.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let offline = Workspace::with_env(&pipeline_yaml("torchvision:resnet18"), env(&format!("http://127.0.0.1:{closed}/models")));
    let run = offline.pipeline(&["run"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let hint = format!(
        "Without network, download http://127.0.0.1:{closed}/models/resnet18-f37072fd.pth elsewhere and put it in {}",
        cache.path().display()
    );
    assert!(run.stderr.contains(&hint), "{}", run.stderr);

    // A file put there by hand is checked too: these random weights are not torchvision's.
    std::fs::copy(&weights, cache.path().join("resnet18-f37072fd.pth")).unwrap();
    let by_hand = offline.pipeline(&["run"]);
    assert_eq!(by_hand.code, 1, "{}", by_hand.stderr);
    assert!(
        by_hand.stderr.contains("name promises one starting with f37072fd") && by_hand.stderr.contains("delete it"),
        "{}",
        by_hand.stderr
    );

    // torch.hub's copy (what torchvision downloaded before) is used instead of the network.
    std::fs::remove_file(cache.path().join("resnet18-f37072fd.pth")).unwrap();
    let hub = torch_home.path().join("hub/checkpoints");
    std::fs::create_dir_all(&hub).unwrap();
    std::fs::copy(&weights, hub.join("resnet18-f37072fd.pth")).unwrap();
    let from_hub = offline.pipeline(&["run"]);
    assert_eq!(from_hub.code, 1, "the hub's copy is checked as well: {}", from_hub.stderr);
    assert!(
        from_hub.stderr.contains(&format!("{}: its SHA-256 is {digest}", hub.join("resnet18-f37072fd.pth").display())),
        "{}",
        from_hub.stderr
    );
}
