//! A read-only `http://` remote: a directory remote (filled by pushing to the directory) served
//! over plain HTTP on loopback by a tiny server in the test process. It answers GET and HEAD of
//! files and 404 for anything missing, like a static web server in front of a shared folder,
//! and records every request so tests can assert which ones the engine made.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::remote::{Backend, FileObjects};

/// Served at `http://127.0.0.1:PORT/cache`, pushed to at `<tempdir>/cache`.
pub struct HttpRemote {
    dir: tempfile::TempDir,
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl HttpRemote {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("cache")).unwrap();
        // Bound here, before the first request: no free-port race.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, requests) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let (root, stopping, log) = (dir.path().to_owned(), stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let (Ok(stream), root, log) = (stream, root.clone(), log.clone()) else { continue };
                std::thread::spawn(move || {
                    let _ = answer(stream, &root, &log);
                });
            }
        });
        Self { dir, port, stop, thread: Some(thread), requests }
    }

    /// The requests served so far, as `METHOD /path`.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("cache")
    }
}

/// Answers one request and closes the connection (`Connection: close` keeps the server simple;
/// clients open a new connection per request).
fn answer(stream: TcpStream, root: &Path, log: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut words = line.split_whitespace();
    let (method, target) = (words.next().unwrap_or("").to_owned(), words.next().unwrap_or("").to_owned());
    // Skip the headers: GET and HEAD carry no body.
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim_end().is_empty() {
            break;
        }
    }
    log.lock().unwrap().push(format!("{method} {target}"));
    let rel = target.split('?').next().unwrap_or("").trim_start_matches('/');
    let file = root.join(rel);
    let body = (!rel.split('/').any(|c| c == "..") && file.is_file()).then(|| std::fs::read(&file)).transpose()?;
    let mut out = stream;
    let status = match (method.as_str(), &body) {
        ("GET" | "HEAD", Some(_)) => "200 OK",
        ("GET" | "HEAD", None) => "404 Not Found",
        _ => "405 Method Not Allowed",
    };
    let len = body.as_ref().map_or(0, Vec::len);
    write!(out, "HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")?;
    if let (Some(body), "GET") = (&body, method.as_str()) {
        out.write_all(body)?;
    }
    out.flush()
}

impl Drop for HttpRemote {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wakes the accept loop
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Backend for HttpRemote {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/cache", self.port)
    }
    fn push_url(&self) -> String {
        self.root().display().to_string()
    }
    fn env(&self) -> Vec<(String, String)> {
        Vec::new()
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
