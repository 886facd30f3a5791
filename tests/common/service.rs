//! Servers the tests start on loopback (S3, Azure emulators): found on PATH or where
//! `scripts/setup.sh` installs them, started on a free port, killed on drop.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server process listening on `127.0.0.1:port`; killed when dropped.
pub struct Service {
    child: Child,
    pub port: u16,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name` on PATH, else in one of `dirs`, else in `~/.cargo/bin`.
pub fn find_exe(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    let on_path: Vec<PathBuf> = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    let cargo_bin = std::env::var_os("CARGO_HOME").map(PathBuf::from).or_else(|| home().map(|h| h.join(".cargo"))).map(|c| c.join("bin"));
    on_path.into_iter().chain(dirs.iter().cloned()).chain(cargo_bin).map(|d| d.join(name)).find(|p| p.is_file())
}

pub fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// The folder `scripts/setup.sh` installs test services into (`~/.cache/pipeline`).
pub fn setup_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| home().map(|h| h.join(".cache"))).unwrap().join("pipeline")
}

/// Starts `command(port)` on a free port and waits until it accepts connections. The port is
/// picked before the server binds it, so another process may take it meanwhile: a server that
/// exits early is retried on another port. Its output goes to `log` (a pipe nobody reads could
/// fill up and stall it).
pub fn spawn_listening(name: &str, log: &Path, command: impl Fn(u16) -> Command) -> Service {
    for _attempt in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = command(port)
            .stdin(Stdio::null())
            .stdout(fs::File::create(log).unwrap())
            .stderr(fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Some(status) = child.try_wait().unwrap() {
                let err = fs::read_to_string(log.with_extension("err")).unwrap_or_default();
                eprintln!("{name} on port {port} exited ({status}): {err}");
                break; // port taken meanwhile: try another
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Service { child, port };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("{name} did not start listening on 127.0.0.1");
}
