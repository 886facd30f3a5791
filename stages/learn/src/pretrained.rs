//! Where a `train` stage's `pretrained:` weights come from, fetched once into a per-user cache
//! and checked before any key or training uses them.
//!
//! - `torchvision:resnet18` / `torchvision:r3d_18`: the files torchvision publishes
//!   (`resnet18-f37072fd.pth`, ImageNet-1k; `r3d_18-b3b3357e.pth`, Kinetics-400), from
//!   `https://download.pytorch.org/models` (`PIPELINE_TORCHVISION_URL` for a mirror);
//! - `https://...` / `http://...`: any file; when its name ends in `-<hex>.<ext>` (torchvision's
//!   and torch.hub's scheme) the hex digits must begin its SHA-256;
//! - anything else: a path relative to `pipeline.yaml` (a file, or a `train` output folder).
//!
//! Downloads land in `PIPELINE_WEIGHTS_DIR`, else `$XDG_CACHE_HOME/pipeline/weights`, else
//! `~/.cache/pipeline/weights` (beside the torch venv), so every workspace and CI job reuses
//! them. A file torch.hub already holds (`$TORCH_HOME/hub/checkpoints`, else
//! `~/.cache/torch/hub/checkpoints`) is copied from there instead of downloaded. A download is
//! written beside its final name, hashed while it streams, and renamed into place only when
//! complete and matching, so the cache never holds a half or a wrong file. The file's content
//! hash enters the train key through [`crate::train::TrainStage`]'s raw inputs.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use stage_api::StageError;

/// Overrides where `torchvision:` files are downloaded from (a mirror, or a test server).
pub const TORCHVISION_URL_VAR: &str = "PIPELINE_TORCHVISION_URL";
/// Overrides the per-user weights cache folder.
pub const WEIGHTS_DIR_VAR: &str = "PIPELINE_WEIGHTS_DIR";
const TORCHVISION_URL: &str = "https://download.pytorch.org/models";

/// A file torchvision publishes, by the name torchvision's model builders use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TorchvisionWeights {
    pub name: &'static str,
    pub file: &'static str,
    pub what: &'static str,
}

/// The weights the study's models start from.
pub const TORCHVISION: [TorchvisionWeights; 2] = [
    TorchvisionWeights { name: "resnet18", file: "resnet18-f37072fd.pth", what: "ResNet-18, ImageNet-1k (IMAGENET1K_V1)" },
    TorchvisionWeights { name: "r3d_18", file: "r3d_18-b3b3357e.pth", what: "R3D-18, Kinetics-400 (KINETICS400_V1)" },
];

/// Why `pretrained:` weights cannot be had. The text names the file or URL and the problem,
/// causes included (they are part of the text, not a `source()`), so it reads the same as a
/// [`StageError`] or a [`stage_api::ParamError`].
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("unknown torchvision weights `{name}`; known: {}", known_torchvision())]
    UnknownTorchvision { name: String },
    #[error("`{url}` names no file (the URL must end in a file name)")]
    NoFileName { url: String },
    #[error("no folder for downloaded weights: set {WEIGHTS_DIR_VAR} (or HOME)")]
    NoCacheFolder,
    #[error("{}: not a file in the weights cache", .path.display())]
    NotInCache { path: PathBuf },
    /// `action` is what failed: `open`, `read`, `write`, `create the weights cache`.
    #[error("cannot {action} {}: {error}", .path.display())]
    Io { action: &'static str, path: PathBuf, error: io::Error },
    #[error("cannot move {} to {}: {error}", .from.display(), .to.display())]
    Move { from: PathBuf, to: PathBuf, error: io::Error },
    #[error("cannot copy {} into {}: {error}", .from.display(), .to.display())]
    Copy { from: PathBuf, to: PathBuf, error: io::Error },
    #[error("fetching {url}: {error}")]
    Fetch { url: String, error: ureq::Error },
    #[error("fetching {url}: HTTP {status}")]
    HttpStatus { url: String, status: u16 },
    #[error("the download of {url} broke off after {received} bytes: {error}")]
    BrokeOff { url: String, received: u64, error: io::Error },
    #[error("the download of {url} is truncated: {received} of {expected} bytes")]
    Truncated { url: String, received: u64, expected: u64 },
    /// `what` names the file or URL.
    #[error("{what}: its SHA-256 is {digest}, but its name promises one starting with {prefix}: refusing a corrupt or different file")]
    WrongHash { what: String, digest: String, prefix: String },
    /// A file already in the weights cache that fails its check.
    #[error("{0}; delete it and run again to download it anew")]
    BadCachedFile(Box<WeightsError>),
    /// A download that failed, with what to do without network.
    #[error(
        "cannot get the {what} weights: {problem}. Without network, download {url} elsewhere and put it in {} \
         (or point `pretrained:` at the file)",
        .dir.display()
    )]
    Unavailable { what: String, url: String, dir: PathBuf, problem: Box<WeightsError> },
}

impl WeightsError {
    fn io(action: &'static str, path: &Path, error: io::Error) -> Self {
        Self::Io { action, path: path.to_owned(), error }
    }
}

impl From<WeightsError> for StageError {
    fn from(e: WeightsError) -> Self {
        StageError::msg(e.to_string())
    }
}

fn known_torchvision() -> String {
    TORCHVISION.iter().map(|w| format!("torchvision:{} ({})", w.name, w.what)).collect::<Vec<_>>().join(", ")
}

/// What `pretrained:` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightSource {
    /// Relative to the folder of `pipeline.yaml` (or absolute).
    Path(PathBuf),
    Url(String),
    Torchvision(TorchvisionWeights),
}

impl WeightSource {
    pub fn parse(text: &str) -> Result<Self, WeightsError> {
        if let Some(name) = text.strip_prefix("torchvision:") {
            return TORCHVISION
                .iter()
                .find(|w| w.name == name)
                .map(|w| Self::Torchvision(*w))
                .ok_or_else(|| WeightsError::UnknownTorchvision { name: text.to_owned() });
        }
        if text.starts_with("https://") || text.starts_with("http://") {
            if url_file_name(text).is_none() {
                return Err(WeightsError::NoFileName { url: text.to_owned() });
            }
            return Ok(Self::Url(text.to_owned()));
        }
        Ok(Self::Path(PathBuf::from(text)))
    }

    /// Where the file or folder is, or will be once [`Self::resolve`] has fetched it.
    pub fn location(&self, base_dir: &Path) -> Result<PathBuf, WeightsError> {
        match self {
            Self::Path(path) => Ok(base_dir.join(path)),
            Self::Url(url) => Ok(weights_dir()?.join("url").join(url_folder(url)).join(url_file_name(url).expect("checked in parse"))),
            Self::Torchvision(weights) => Ok(weights_dir()?.join(weights.file)),
        }
    }

    /// The local file or folder, downloading into the weights cache when needed.
    pub fn resolve(&self, base_dir: &Path) -> Result<PathBuf, WeightsError> {
        let target = self.location(base_dir)?;
        match self {
            Self::Path(_) => Ok(target),
            Self::Url(url) => fetch_cached(url, target, &format!("`{url}`"), false),
            Self::Torchvision(weights) => {
                let base = std::env::var(TORCHVISION_URL_VAR).unwrap_or_else(|_| TORCHVISION_URL.to_owned());
                let url = format!("{}/{}", base.trim_end_matches('/'), weights.file);
                fetch_cached(&url, target, &format!("torchvision:{} ({})", weights.name, weights.what), true)
            }
        }
    }
}

/// The per-user cache folder of downloaded weights.
pub fn weights_dir() -> Result<PathBuf, WeightsError> {
    if let Some(dir) = std::env::var_os(WEIGHTS_DIR_VAR) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(cache) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(cache).join("pipeline").join("weights"));
    }
    match std::env::var_os("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("pipeline").join("weights")),
        None => Err(WeightsError::NoCacheFolder),
    }
}

/// The hex digits a `name-<hex>.<ext>` file name promises as the start of its SHA-256.
pub fn hash_prefix(file_name: &str) -> Option<&str> {
    let stem = file_name.split('.').next()?;
    let (_, hex) = stem.rsplit_once('-')?;
    (hex.len() >= 8 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())).then_some(hex)
}

fn url_file_name(url: &str) -> Option<&str> {
    let path = url.split(['?', '#']).next()?;
    let name = path.rsplit('/').next()?;
    (!name.is_empty() && !path.ends_with("//") && path.matches('/').count() > 2).then_some(name)
}

/// One folder per URL, so two servers' `model.pth` do not collide.
fn url_folder(url: &str) -> String {
    let digest = Sha256::digest(url.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// `target` in the weights cache, downloaded from `url` if it is not there yet (or copied from
/// torch.hub's cache); `what` names it in messages.
fn fetch_cached(url: &str, target: PathBuf, what: &str, look_in_torch_hub: bool) -> Result<PathBuf, WeightsError> {
    let (Some(dir), Some(file)) = (target.parent(), target.file_name().and_then(|f| f.to_str())) else {
        return Err(WeightsError::NotInCache { path: target });
    };
    let prefix = hash_prefix(file);
    if target.is_file() {
        verify_once(&target, prefix)?;
        return Ok(target);
    }
    fs::create_dir_all(dir).map_err(|e| WeightsError::io("create the weights cache", dir, e))?;
    let hub = if look_in_torch_hub { torch_hub_dir().map(|d| d.join(file)).filter(|p| p.is_file()) } else { None };
    let result = match hub {
        Some(found) => copy_verified(&found, &target, prefix),
        None => download(url, &target, prefix).map_err(|problem| WeightsError::Unavailable {
            what: what.to_owned(),
            url: url.to_owned(),
            dir: dir.to_owned(),
            problem: Box::new(problem),
        }),
    };
    result.map(|()| target)
}

/// torch.hub's checkpoint folder, where torchvision keeps what it downloaded.
fn torch_hub_dir() -> Option<PathBuf> {
    match std::env::var_os("TORCH_HOME") {
        Some(home) => Some(PathBuf::from(home).join("hub").join("checkpoints")),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("torch").join("hub").join("checkpoints")),
    }
}

/// Streams `url` into a temporary file beside `target`, then checks length and hash prefix
/// and renames it into place. Nothing is left behind on failure.
fn download(url: &str, target: &Path, prefix: Option<&str>) -> Result<(), WeightsError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_body(Some(Duration::from_secs(300)))
        .build()
        .into();
    let response = agent.get(url).call().map_err(|error| WeightsError::Fetch { url: url.to_owned(), error })?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(WeightsError::HttpStatus { url: url.to_owned(), status });
    }
    let expected: Option<u64> = response.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    eprintln!(
        "pretrained: downloading {url}{} into {}",
        expected.map(|n| format!(" ({:.1} MB)", n as f64 / 1e6)).unwrap_or_default(),
        target.parent().map_or_else(String::new, |p| p.display().to_string())
    );
    let partial = partial_path(target);
    let outcome = (|| {
        let cannot_write = |e| WeightsError::io("write", &partial, e);
        let mut out = File::create(&partial).map_err(cannot_write)?;
        let mut body = response.into_body().into_reader();
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match body.read(&mut buf) {
                Ok(n) => n,
                Err(error) => return Err(WeightsError::BrokeOff { url: url.to_owned(), received, error }),
            };
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(cannot_write)?;
            received += n as u64;
        }
        if let Some(expected) = expected.filter(|&e| e != received) {
            return Err(WeightsError::Truncated { url: url.to_owned(), received, expected });
        }
        let digest = hex(&hasher.finalize());
        check_prefix(&digest, prefix, url)?;
        out.sync_all().map_err(cannot_write)?;
        drop(out);
        fs::rename(&partial, target).map_err(|error| WeightsError::Move { from: partial.clone(), to: target.to_owned(), error })?;
        write_marker(target, &digest);
        Ok(())
    })();
    if outcome.is_err() {
        let _ = fs::remove_file(&partial);
    }
    outcome
}

/// Copies a file found elsewhere (torch.hub's cache) into the weights cache once it checks out.
fn copy_verified(found: &Path, target: &Path, prefix: Option<&str>) -> Result<(), WeightsError> {
    let digest = sha256_file(found)?;
    check_prefix(&digest, prefix, &found.display().to_string())?;
    let partial = partial_path(target);
    let copied = fs::copy(found, &partial).and_then(|_| fs::rename(&partial, target));
    if let Err(error) = copied {
        let _ = fs::remove_file(&partial);
        return Err(WeightsError::Copy { from: found.to_owned(), to: target.to_owned(), error });
    }
    eprintln!("pretrained: using {} (torch.hub's copy), now also in {}", found.display(), target.display());
    write_marker(target, &digest);
    Ok(())
}

/// Checks a cached file's hash prefix, once per content: a marker beside it records the hash
/// with the size and modification time it was computed for (a file put there by hand, or
/// changed since, is hashed again).
fn verify_once(path: &Path, prefix: Option<&str>) -> Result<(), WeightsError> {
    let Some(prefix) = prefix else { return Ok(()) };
    if let (Ok(marker), Some(stamp)) = (fs::read_to_string(marker_path(path)), stamp(path)) {
        if let Some((digest, rest)) = marker.trim().split_once(' ') {
            if rest == stamp && digest.starts_with(prefix) {
                return Ok(());
            }
        }
    }
    let digest = sha256_file(path)?;
    check_prefix(&digest, Some(prefix), &path.display().to_string()).map_err(|e| WeightsError::BadCachedFile(Box::new(e)))?;
    write_marker(path, &digest);
    Ok(())
}

fn check_prefix(digest: &str, prefix: Option<&str>, what: &str) -> Result<(), WeightsError> {
    match prefix {
        Some(p) if !digest.starts_with(p) => {
            Err(WeightsError::WrongHash { what: what.to_owned(), digest: digest.to_owned(), prefix: p.to_owned() })
        }
        _ => Ok(()),
    }
}

fn write_marker(path: &Path, digest: &str) {
    // Only a shortcut for the next check: failing to write it costs a re-hash, nothing more.
    if let Some(stamp) = stamp(path) {
        let _ = fs::write(marker_path(path), format!("{digest} {stamp}\n"));
    }
}

fn stamp(path: &Path) -> Option<String> {
    let meta = fs::metadata(path).ok()?;
    let modified = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(format!("{} {}", meta.len(), modified.as_nanos()))
}

fn marker_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".sha256");
    path.with_file_name(name)
}

/// Unique per process and call: two threads (or processes) fetching the same file never share
/// a temporary file; the last rename wins, with identical content.
fn partial_path(target: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".partial-{}-{n}", std::process::id()));
    target.with_file_name(name)
}

fn sha256_file(path: &Path) -> Result<String, WeightsError> {
    let mut file = File::open(path).map_err(|e| WeightsError::io("open", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| WeightsError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(WeightSource::parse("torchvision:resnet18").unwrap(), WeightSource::Torchvision(TORCHVISION[0]));
        assert_eq!(WeightSource::parse("torchvision:r3d_18").unwrap(), WeightSource::Torchvision(TORCHVISION[1]));
        let err = WeightSource::parse("torchvision:resnet50").unwrap_err().to_string();
        assert!(err.contains("unknown torchvision weights `torchvision:resnet50`") && err.contains("torchvision:r3d_18"), "{err}");
        assert_eq!(
            WeightSource::parse("https://example.org/m/resnet18-f37072fd.pth").unwrap(),
            WeightSource::Url("https://example.org/m/resnet18-f37072fd.pth".into())
        );
        assert!(WeightSource::parse("https://example.org/").is_err());
        assert_eq!(WeightSource::parse("weights/a.pth").unwrap(), WeightSource::Path("weights/a.pth".into()));
    }

    #[test]
    fn hash_prefix_follows_torch_hub_names() {
        assert_eq!(hash_prefix("resnet18-f37072fd.pth"), Some("f37072fd"));
        assert_eq!(hash_prefix("r3d_18-b3b3357e.pth"), Some("b3b3357e"));
        assert_eq!(hash_prefix("model.pth"), None);
        assert_eq!(hash_prefix("my-model.pth"), None, "too short to be a hash");
        assert_eq!(hash_prefix("x-ABCDEF12.pth"), None, "torch.hub's digits are lower case");
    }

    #[test]
    fn a_cached_file_with_the_wrong_hash_is_refused_and_a_right_one_is_marked() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = b"some weights";
        let digest = hex(&Sha256::digest(bytes));
        let good = dir.path().join(format!("w-{}.pth", &digest[..8]));
        fs::write(&good, bytes).unwrap();
        verify_once(&good, hash_prefix(&good.file_name().unwrap().to_string_lossy())).unwrap();
        assert!(fs::read_to_string(marker_path(&good)).unwrap().starts_with(&digest));
        let bad = dir.path().join("w-00000000.pth");
        fs::write(&bad, bytes).unwrap();
        let err = verify_once(&bad, Some("00000000")).unwrap_err().to_string();
        assert!(err.contains("name promises one starting with 00000000") && err.contains("delete it"), "{err}");
        // Changing a marked file makes it checked again.
        fs::write(&good, b"other weights").unwrap();
        assert!(verify_once(&good, Some(&digest[..8])).is_err());
    }
}
