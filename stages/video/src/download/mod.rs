//! The `download` stage: fetches RAVDESS's video zips from Zenodo (record 1188976) and unpacks them into
//! the dataset folder (`dest`, default `data/ravdess`), for machines with internet access.
//!
//! Per zip (`Video_Speech_Actor_NN.zip`, `Video_Song_Actor_NN.zip`):
//! 1. skipped when `<dest>/.download/<zip>.done` says it was unpacked before;
//! 2. downloaded into `<dest>/.download/<zip>.part`, resuming a partial file with an HTTP `Range` request
//!    (a server that ignores the range restarts it from zero);
//! 3. its size and MD5 checked against the record's metadata (the `md5` parameter, or the record's JSON at
//!    `api_url`); a mismatch deletes the partial file and fails, so the next run starts clean;
//! 4. unpacked into a private folder under `.download/`, then each file is renamed into `dest` (an
//!    `Actor_NN/` folder of a speech zip and of a song zip merge), and the `.done` marker is written last.
//!
//! An interrupted or corrupt download is therefore never unpacked, and an interrupted unpack is redone.
//! `.download/` is hidden, so `scan` does not see it. The stage's own output is `download.json` (files,
//! bytes fetched, seconds); the dataset itself lives outside the pipeline's cache, where scan reads it.

mod fetch;
mod unpack;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use stage_api::{typed_params, ParamError, Params, Stage, StageContext, StageError, StageOutcome};

pub use fetch::{fetch_record_checksums, Fetcher, RemoteFile};

/// Parameters of `uses: download`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadParams {
    /// Where the zips are fetched from (`<base_url><zip name>`).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The record's metadata, read for checksums when `md5` is absent.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// Zip name -> MD5 (hex); when given, `api_url` is not read.
    #[serde(default)]
    pub md5: Option<BTreeMap<String, String>>,
    #[serde(default = "default_actors")]
    pub actors: Vec<u8>,
    /// 1 speech (`Video_Speech_*`), 2 song (`Video_Song_*`).
    #[serde(default = "default_vocal_channels")]
    pub vocal_channels: Vec<u8>,
    /// The dataset folder the zips are unpacked into.
    #[serde(default = "default_dest")]
    pub dest: String,
}

fn default_base_url() -> String {
    "https://zenodo.org/records/1188976/files/".into()
}
fn default_api_url() -> String {
    "https://zenodo.org/api/records/1188976".into()
}
fn default_actors() -> Vec<u8> {
    (1..=24).collect()
}
fn default_vocal_channels() -> Vec<u8> {
    vec![1, 2]
}
fn default_dest() -> String {
    crate::scan::DEFAULT_ROOT.into()
}

impl DownloadParams {
    fn validated(mut self) -> Result<Self, ParamError> {
        for (name, list, max) in [("actors", &mut self.actors, 24u8), ("vocal_channels", &mut self.vocal_channels, 2)] {
            list.sort_unstable();
            list.dedup();
            if list.is_empty() || list.iter().any(|&v| v < 1 || v > max) {
                return Err(ParamError::new(Some(name), format!("{name} must be a non-empty list of 1..{max}, got {list:?}")));
            }
        }
        if !self.base_url.ends_with('/') {
            self.base_url.push('/');
        }
        if let Some(map) = &mut self.md5 {
            for (k, v) in map.iter_mut() {
                *v = v.trim().trim_start_matches("md5:").to_ascii_lowercase();
                if v.len() != 32 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(ParamError::new(Some("md5"), format!("md5 of {k} must be 32 hex digits, got `{v}`")));
                }
            }
        }
        Ok(self)
    }

    /// The zip names the parameters ask for.
    pub fn zip_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for &vc in &self.vocal_channels {
            for &a in &self.actors {
                out.push(format!("Video_{}_Actor_{a:02}.zip", if vc == 1 { "Speech" } else { "Song" }));
            }
        }
        out
    }
}

/// What happened to one zip.
#[derive(Debug, Clone, Serialize)]
pub struct ZipReport {
    pub name: String,
    /// `unpacked`, `already_present` or `not_in_record`.
    pub status: &'static str,
    pub bytes_fetched: u64,
    pub files_unpacked: usize,
}

/// Fetches, verifies and unpacks every requested zip into `dest` (library entry point).
pub fn download_all(
    fetcher: &Fetcher,
    params: &DownloadParams,
    checksums: &BTreeMap<String, RemoteFile>,
    dest: &Path,
    on_done: &dyn Fn(&ZipReport),
) -> Result<Vec<ZipReport>, StageError> {
    let work = dest.join(".download");
    std::fs::create_dir_all(&work).map_err(|e| StageError::with_source(format!("creating {}", work.display()), e))?;
    let mut reports = Vec::new();
    for name in params.zip_names() {
        let done = work.join(format!("{name}.done"));
        let report = if done.exists() {
            ZipReport { name, status: "already_present", bytes_fetched: 0, files_unpacked: 0 }
        } else if let Some(remote) = checksums.get(&name) {
            let part = work.join(format!("{name}.part"));
            let url = format!("{}{name}", params.base_url);
            let bytes_fetched = fetcher.fetch_resumable(&url, &part, remote)?;
            let files_unpacked = unpack::unpack_into(&part, dest, &work.join(format!("{name}.unpack")))?;
            std::fs::write(&done, format!("{}\n", remote.md5))
                .map_err(|e| StageError::with_source(format!("writing {}", done.display()), e))?;
            // The verified zip is no longer needed once its files are in place.
            let _ = std::fs::remove_file(&part);
            ZipReport { name, status: "unpacked", bytes_fetched, files_unpacked }
        } else {
            // RAVDESS has no song recordings of actor 18; anything else missing is reported the same way.
            ZipReport { name, status: "not_in_record", bytes_fetched: 0, files_unpacked: 0 }
        };
        on_done(&report);
        reports.push(report);
    }
    Ok(reports)
}

/// `uses: download`.
pub struct DownloadStage;

impl DownloadStage {
    fn typed(params: &Params) -> Result<DownloadParams, ParamError> {
        let (p, _): (DownloadParams, Params) = typed_params(params)?;
        p.validated()
    }
}

impl Stage for DownloadStage {
    fn kind(&self) -> &'static str {
        "download"
    }

    fn version(&self) -> u32 {
        1
    }

    fn resolve_params(&self, params: &Params) -> Result<Params, ParamError> {
        let p = Self::typed(params)?;
        match serde_json::to_value(&p) {
            Ok(serde_json::Value::Object(map)) => Ok(map),
            _ => Err(ParamError::new(None, "download parameters did not serialise to a mapping")),
        }
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        let p = Self::typed(ctx.params).map_err(|e| StageError::msg(e.message))?;
        let dest: PathBuf = ctx.resolve_path(&p.dest);
        let started = Instant::now();
        let fetcher = Fetcher::new();
        let checksums = match &p.md5 {
            Some(map) => map.iter().map(|(k, v)| (k.clone(), RemoteFile { md5: v.clone(), size: None })).collect(),
            None => fetch_record_checksums(&fetcher, &p.api_url)?,
        };
        let names = p.zip_names();
        ctx.progress.start(names.len() as u64, "zips");
        let reports = download_all(&fetcher, &p, &checksums, &dest, &|r| {
            if r.status == "not_in_record" {
                ctx.progress.note(&format!("{} is not in the record's file list: skipped", r.name));
            }
            ctx.progress.advance(1);
        })?;
        let fetched: u64 = reports.iter().map(|r| r.bytes_fetched).sum();
        let unpacked = reports.iter().filter(|r| r.status == "unpacked").count();
        let seconds = started.elapsed().as_secs_f64();
        let summary = serde_json::json!({
            "params": p,
            "dest": dest.display().to_string(),
            "zips": reports,
            "bytes_fetched": fetched,
            "seconds": seconds,
        });
        let path = ctx.out_dir.join("download.json");
        let text = serde_json::to_string_pretty(&summary).map_err(|e| StageError::with_source("serialising download.json", e))?;
        std::fs::write(&path, text + "\n").map_err(|e| StageError::with_source(format!("writing {}", path.display()), e))?;
        Ok(StageOutcome::new(format!(
            "{unpacked} zips unpacked into {} ({:.1} MB fetched), {} already present",
            dest.display(),
            fetched as f64 / 1e6,
            reports.iter().filter(|r| r.status == "already_present").count()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_params() {
        let p = DownloadStage::typed(&serde_json::from_str(r#"{"actors": [2, 1], "base_url": "http://x/f"}"#).unwrap()).unwrap();
        assert_eq!(p.base_url, "http://x/f/");
        assert_eq!(
            p.zip_names(),
            ["Video_Speech_Actor_01.zip", "Video_Speech_Actor_02.zip", "Video_Song_Actor_01.zip", "Video_Song_Actor_02.zip"]
        );
        let bad = DownloadStage.resolve_params(&serde_json::from_str(r#"{"md5": {"a.zip": "xyz"}}"#).unwrap());
        assert_eq!(bad.unwrap_err().param.as_deref(), Some("md5"));
        assert!(DownloadStage.resolve_params(&serde_json::from_str(r#"{"actors": [0]}"#).unwrap()).is_err());
    }
}
