//! The `download` stage against a local HTTP server on 127.0.0.1 serving zips of synthetic clips:
//! an interrupted transfer resumes with a Range request, a corrupt or truncated zip is never unpacked.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use stage_api::{NoProgress, Params, SameStore, Stage, StageContext, StageError};
use stages_video::download::DownloadStage;
use stages_video::synth::SynthStage;

/// How the server misbehaves for one path.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Good,
    /// The first GET sends half the body, then closes the connection.
    InterruptOnce,
}

struct Server {
    base: String,
    /// Every request line plus its Range header.
    log: Arc<Mutex<Vec<String>>>,
}

fn serve(files: HashMap<String, (Vec<u8>, Mode)>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = Arc::clone(&log);
    std::thread::spawn(move || {
        let mut interrupted: Vec<String> = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut range_from = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    range_from = v.trim().trim_end_matches('-').parse::<usize>().ok();
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("").to_owned();
            log2.lock().unwrap().push(format!("{path} range={range_from:?}"));
            let Some((body, mode)) = files.get(&path) else {
                let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                continue;
            };
            let from = range_from.unwrap_or(0);
            if from > body.len() || (from == body.len() && from > 0) {
                let _ = stream.write_all(b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                continue;
            }
            let rest = &body[from..];
            let head = if range_from.is_some() {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{}\r\nConnection: close\r\n\r\n",
                    rest.len(),
                    body.len() - 1,
                    body.len()
                )
            } else {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", rest.len())
            };
            let _ = stream.write_all(head.as_bytes());
            if *mode == Mode::InterruptOnce && !interrupted.contains(&path) {
                interrupted.push(path.clone());
                let _ = stream.write_all(&rest[..rest.len() / 2]);
                let _ = stream.flush();
                drop(stream); // connection closed mid-body
                continue;
            }
            let _ = stream.write_all(rest);
        }
    });
    Server { base, log }
}

fn zip_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut cursor = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut cursor);
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (name, bytes) in files {
            w.start_file(name.as_str(), options).unwrap();
            w.write_all(bytes).unwrap();
        }
        w.finish().unwrap();
    }
    cursor.into_inner()
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn run(server: &Server, dest: &Path, actors: &[u8], vocal_channels: &[u8]) -> Result<String, StageError> {
    let raw: Params = serde_json::from_value(serde_json::json!({
        "base_url": format!("{}/files/", server.base),
        "api_url": format!("{}/api/records/1188976", server.base),
        "actors": actors,
        "vocal_channels": vocal_channels,
        "dest": dest.display().to_string(),
    }))
    .unwrap();
    let params = DownloadStage.resolve_params(&raw).unwrap();
    let out = tempfile::tempdir().unwrap();
    let ctx = StageContext {
        params: &params,
        inputs: &[],
        out_dir: out.path(),
        base_dir: dest,
        progress: &NoProgress,
        threads: 1,
        artifacts: &SameStore,
        resume_dir: None,
    };
    DownloadStage.run(&ctx).map(|o| o.summary)
}

#[test]
fn resumes_an_interrupted_download_and_never_unpacks_a_bad_one() {
    // Real synthetic clips to put in the zips.
    let clips = tempfile::tempdir().unwrap();
    let p = SynthStage
        .resolve_params(&serde_json::from_str(r#"{"actors": 3, "emotions": ["angry"], "intensities": [2], "duration_s": 0.2}"#).unwrap())
        .unwrap();
    let ctx = StageContext {
        params: &p,
        inputs: &[],
        out_dir: clips.path(),
        base_dir: clips.path(),
        progress: &NoProgress,
        threads: 2,
        artifacts: &SameStore,
        resume_dir: None,
    };
    SynthStage.run(&ctx).unwrap();
    let zip_for = |actor: u8| {
        let rel = format!("Actor_{actor:02}/02-01-05-02-01-01-{actor:02}.mp4");
        zip_of(&[(rel.clone(), std::fs::read(clips.path().join(&rel)).unwrap())])
    };
    let (good, corrupt, truncated) = (zip_for(1), zip_for(2), zip_for(3));
    let mut corrupt_served = corrupt.clone();
    let mid = corrupt_served.len() / 2;
    corrupt_served[mid] ^= 0xff;
    let record = serde_json::json!({"files": [
        {"key": "Video_Speech_Actor_01.zip", "checksum": format!("md5:{}", md5_hex(&good)), "size": good.len()},
        {"key": "Video_Speech_Actor_02.zip", "checksum": format!("md5:{}", md5_hex(&corrupt)), "size": corrupt.len()},
        {"key": "Video_Speech_Actor_03.zip", "checksum": format!("md5:{}", md5_hex(&truncated)), "size": truncated.len()},
    ]});
    let files: HashMap<String, (Vec<u8>, Mode)> = [
        ("/api/records/1188976".to_owned(), (record.to_string().into_bytes(), Mode::Good)),
        ("/files/Video_Speech_Actor_01.zip".to_owned(), (good.clone(), Mode::InterruptOnce)),
        ("/files/Video_Speech_Actor_02.zip".to_owned(), (corrupt_served, Mode::Good)),
        ("/files/Video_Speech_Actor_03.zip".to_owned(), (truncated[..truncated.len() * 2 / 3].to_vec(), Mode::Good)),
    ]
    .into_iter()
    .collect();
    let server = serve(files);
    let dest = tempfile::tempdir().unwrap();
    let clip1 = dest.path().join("Actor_01/02-01-05-02-01-01-01.mp4");

    // 1. Interrupted: an error that says so, half a file kept aside, nothing unpacked.
    let err = run(&server, dest.path(), &[1], &[1]).unwrap_err().chain();
    assert!(err.contains("interrupted"), "{err}");
    assert!(!clip1.exists() && !dest.path().join("Actor_01").exists());
    let part = dest.path().join(".download/Video_Speech_Actor_01.zip.part");
    let kept = std::fs::metadata(&part).unwrap().len() as usize;
    assert!(kept > 0 && kept < good.len());

    // 2. Resumed from where it stopped, verified, unpacked.
    let summary = run(&server, dest.path(), &[1], &[1]).unwrap();
    assert!(summary.starts_with("1 zips unpacked"), "{summary}");
    assert!(server.log.lock().unwrap().iter().any(|l| l == &format!("/files/Video_Speech_Actor_01.zip range=Some({kept})")));
    let want = std::fs::read(clips.path().join("Actor_01/02-01-05-02-01-01-01.mp4")).unwrap();
    assert_eq!(std::fs::read(&clip1).unwrap(), want);
    assert!(!part.exists());
    // 3. Done before: not fetched again.
    let before = server.log.lock().unwrap().len();
    assert!(run(&server, dest.path(), &[1], &[1]).unwrap().contains("1 already present"));
    assert_eq!(server.log.lock().unwrap().len(), before + 1, "only the record metadata was read");

    // Corrupt: checksum mismatch, deleted, never unpacked.
    let err = run(&server, dest.path(), &[2], &[1]).unwrap_err().chain();
    assert!(err.contains("checksum mismatch") && err.contains("Video_Speech_Actor_02.zip"), "{err}");
    assert!(!dest.path().join("Actor_02").exists());
    assert!(!dest.path().join(".download/Video_Speech_Actor_02.zip.part").exists());

    // Truncated on the server: incomplete, never unpacked.
    let err = run(&server, dest.path(), &[3], &[1]).unwrap_err().chain();
    assert!(err.contains("incomplete"), "{err}");
    assert!(!dest.path().join("Actor_03").exists());

    // A zip the record does not list (RAVDESS has no songs of some actors) is skipped, not an error.
    let summary = run(&server, dest.path(), &[1], &[2]).unwrap();
    assert!(summary.starts_with("0 zips unpacked"), "{summary}");
}
