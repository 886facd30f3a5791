//! HTTP side of the download stage: the record's checksums and resumable, verified fetching of one file.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::time::Duration;

use md5::{Digest, Md5};
use stage_api::StageError;

/// What the record says about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Lower-case hex MD5.
    pub md5: String,
    pub size: Option<u64>,
}

/// An HTTP client (ureq agent) with generous timeouts for multi-gigabyte files.
pub struct Fetcher {
    agent: ureq::Agent,
}

impl Default for Fetcher {
    fn default() -> Self {
        Self::new()
    }
}

impl Fetcher {
    pub fn new() -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_body(Some(Duration::from_secs(120)))
            .build()
            .into();
        Self { agent }
    }

    /// Downloads `url` into `part`, continuing a partial file with a `Range` request, then checks size
    /// and MD5. Returns the bytes transferred by this call. On a checksum or size mismatch the partial
    /// file is deleted; on an interrupted transfer it is kept for the next run to resume.
    pub fn fetch_resumable(&self, url: &str, part: &Path, remote: &RemoteFile) -> Result<u64, StageError> {
        let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        let complete = remote.size.is_some_and(|s| s == have);
        let mut fetched = 0;
        if !complete {
            let mut request = self.agent.get(url);
            if have > 0 {
                request = request.header("Range", &format!("bytes={have}-"));
            }
            let response = request.call().map_err(|e| StageError::with_source(format!("fetching {url}"), e))?;
            let status = response.status().as_u16();
            let append = match status {
                206 => {
                    let range = response.headers().get("content-range").and_then(|v| v.to_str().ok()).unwrap_or("");
                    if !range.starts_with(&format!("bytes {have}-")) {
                        return Err(StageError::msg(format!("fetching {url}: asked for bytes {have}- but got range `{range}`")));
                    }
                    true
                }
                200 => false,
                416 if have > 0 => {
                    // Nothing left to send: the partial file is as long as the server's, let the checksum judge.
                    return self.verify(url, part, remote).map(|_| 0);
                }
                _ => return Err(StageError::msg(format!("fetching {url}: HTTP {status}"))),
            };
            let file = OpenOptions::new()
                .create(true)
                .write(true)
                .append(append)
                .truncate(!append)
                .open(part)
                .map_err(|e| StageError::with_source(format!("opening {}", part.display()), e))?;
            let mut out = BufWriter::new(file);
            let mut body = response.into_body().into_reader();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                match body.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        out.write_all(&buf[..n]).map_err(|e| StageError::with_source(format!("writing {}", part.display()), e))?;
                        fetched += n as u64;
                    }
                    Err(e) => {
                        let _ = out.flush();
                        return Err(StageError::with_source(
                            format!(
                                "download of {url} interrupted after {} bytes (kept in {}; run again to resume)",
                                if append { have + fetched } else { fetched },
                                part.display()
                            ),
                            e,
                        ));
                    }
                }
            }
            out.flush().map_err(|e| StageError::with_source(format!("writing {}", part.display()), e))?;
        }
        self.verify(url, part, remote)?;
        Ok(fetched)
    }

    fn verify(&self, url: &str, part: &Path, remote: &RemoteFile) -> Result<(), StageError> {
        let len = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        if let Some(size) = remote.size {
            if len < size {
                return Err(StageError::msg(format!(
                    "download of {url} is incomplete: {len} of {size} bytes (kept in {}; run again to resume)",
                    part.display()
                )));
            }
        }
        let actual = md5_file(part)?;
        if actual != remote.md5 || remote.size.is_some_and(|s| s != len) {
            let _ = std::fs::remove_file(part);
            return Err(StageError::msg(format!(
                "checksum mismatch for {url}: MD5 {actual} ({len} bytes), the record says {}{}; the download was deleted \
                 and nothing was unpacked",
                remote.md5,
                remote.size.map(|s| format!(" ({s} bytes)")).unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// GETs `url` as text (at most 16 MB).
    pub fn get_text(&self, url: &str) -> Result<String, StageError> {
        let response = self.agent.get(url).call().map_err(|e| StageError::with_source(format!("fetching {url}"), e))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(StageError::msg(format!("fetching {url}: HTTP {status}")));
        }
        let mut text = String::new();
        response
            .into_body()
            .into_reader()
            .take(16 << 20)
            .read_to_string(&mut text)
            .map_err(|e| StageError::with_source(format!("reading {url}"), e))?;
        Ok(text)
    }
}

/// Hex MD5 of a file.
pub fn md5_file(path: &Path) -> Result<String, StageError> {
    let mut file = std::fs::File::open(path).map_err(|e| StageError::with_source(format!("opening {}", path.display()), e))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| StageError::with_source(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The files of a Zenodo record (`{"files": [{"key", "checksum": "md5:..", "size"}]}`) by name.
pub fn fetch_record_checksums(fetcher: &Fetcher, api_url: &str) -> Result<BTreeMap<String, RemoteFile>, StageError> {
    let text = fetcher.get_text(api_url)?;
    parse_record(&text, api_url)
}

/// The record's files; the error names `api_url`, where `text` came from.
fn parse_record(text: &str, api_url: &str) -> Result<BTreeMap<String, RemoteFile>, StageError> {
    let bad = |problem: &str| StageError::msg(format!("reading the record metadata at {api_url}: {problem}"));
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(&e.to_string()))?;
    let files = json["files"].as_array().ok_or_else(|| bad("no `files` list"))?;
    let mut out = BTreeMap::new();
    for f in files {
        let (Some(key), Some(sum)) = (f["key"].as_str(), f["checksum"].as_str()) else { continue };
        let Some(md5) = sum.strip_prefix("md5:") else { continue };
        out.insert(key.to_owned(), RemoteFile { md5: md5.to_ascii_lowercase(), size: f["size"].as_u64() });
    }
    if out.is_empty() {
        return Err(bad("no file with an md5 checksum"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_zenodo_record_json() {
        let text = r#"{"files": [{"key": "Video_Speech_Actor_01.zip", "checksum": "md5:ABCDEF0123456789abcdef0123456789", "size": 12},
                                 {"key": "x.zip", "checksum": "sha1:00"}]}"#;
        let map = parse_record(text, "https://zenodo.org/api/records/1").unwrap();
        assert_eq!(map.len(), 1);
        assert_eq!(map["Video_Speech_Actor_01.zip"], RemoteFile { md5: "abcdef0123456789abcdef0123456789".into(), size: Some(12) });
        let err = parse_record("{}", "https://zenodo.org/api/records/1").unwrap_err();
        assert_eq!(err.message, "reading the record metadata at https://zenodo.org/api/records/1: no `files` list");
    }

    #[test]
    fn md5_of_a_known_string() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(md5_file(&p).unwrap(), "900150983cd24fb0d6963f7d28e17f72");
    }
}
