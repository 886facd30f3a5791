//! Which files of a dataset folder become clips: walking the tree, parsing names, filtering, and choosing
//! one modality per recording. No file is opened here; probing comes after.
//!
//! The tree is walked in sorted order (never `read_dir` order) to a fixed depth; hidden files are skipped
//! and files that are not `.mp4` are counted as ignored (RAVDESS videos are all `.mp4`).
//! A file is rejected when its name is not RAVDESS, when it is audio-only (`03`), or when it sits in an
//! `Actor_NN` folder of another actor. Files that pass but are excluded by the filters are counted, not
//! rejected. The rest are grouped by recording (`clip_id`, the name without its modality) and each group
//! is ordered by preference: with `modality: video`, `02` (video-only) first, then `01` (audio-video);
//! the scan probes them in that order and keeps the first that is a readable video.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::ravdess::{Modality, RavdessName};

/// Deepest folder level looked at below the root (`root/Actor_NN/file` is depth 2).
const MAX_DEPTH: usize = 4;

/// A file set aside before probing, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub source: PathBuf,
    pub kind: &'static str,
    pub reason: String,
}

/// What the scan selects.
#[derive(Debug, Clone, PartialEq)]
pub struct ModalityChoice {
    /// Modalities in order of preference; others are filtered out.
    pub preference: Vec<Modality>,
}

impl ModalityChoice {
    /// `"video"` (02 then 01), `"02"` or `"01"`.
    pub fn parse(text: &str) -> Option<Self> {
        let preference = match text {
            "video" => vec![Modality::VideoOnly, Modality::AudioVideo],
            "02" | "2" => vec![Modality::VideoOnly],
            "01" | "1" => vec![Modality::AudioVideo],
            _ => return None,
        };
        Some(Self { preference })
    }
}

/// Filters on the name fields; an empty list admits everything.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub vocal_channels: Vec<u8>,
    pub emotions: Vec<u8>,
    pub actors: Vec<u8>,
}

impl Filters {
    fn admits(&self, n: &RavdessName) -> bool {
        let ok = |list: &[u8], v: u8| list.is_empty() || list.contains(&v);
        ok(&self.vocal_channels, n.vocal_channel.code()) && ok(&self.emotions, n.emotion) && ok(&self.actors, n.actor)
    }
}

/// One recording: its candidate files, most preferred first.
#[derive(Debug, Clone)]
pub struct Recording {
    pub clip_id: String,
    pub candidates: Vec<(RavdessName, PathBuf)>,
}

/// The result of walking and selecting.
#[derive(Debug, Default)]
pub struct Selection {
    pub files_seen: usize,
    pub recordings: Vec<Recording>,
    pub rejects: Vec<Reject>,
    /// Valid names excluded by the filters or the modality choice.
    pub filtered: usize,
    /// Files that are not `.mp4` (a README, `synth.json`, audio `.wav` files): not looked at.
    pub ignored: usize,
}

/// All regular files under `root`, sorted, hidden ones skipped.
pub fn list_files(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    walk(root, 0, &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
            continue;
        }
        if p.is_dir() {
            if depth < MAX_DEPTH {
                walk(&p, depth + 1, out)?;
            }
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// Parses, filters and groups `files`.
pub fn select(files: &[PathBuf], modality: &ModalityChoice, filters: &Filters) -> Selection {
    let mut sel = Selection { files_seen: files.len(), ..Default::default() };
    let mut groups: BTreeMap<String, Vec<(RavdessName, PathBuf)>> = BTreeMap::new();
    for path in files {
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let reject = |kind, reason: String| Reject { source: path.clone(), kind, reason };
        if !path.extension().is_some_and(|e| e.eq_ignore_ascii_case("mp4")) {
            sel.ignored += 1;
            continue;
        }
        let name = match RavdessName::parse_file_name(&file_name) {
            Ok(n) => n,
            Err(e) => {
                sel.rejects.push(reject("bad_name", e.to_string()));
                continue;
            }
        };
        if name.modality == Modality::AudioOnly {
            sel.rejects.push(reject("audio_only", format!("`{file_name}` is audio-only (modality 03): no picture to use")));
            continue;
        }
        if let Some(folder) = path.parent().and_then(|p| p.file_name()).map(|f| f.to_string_lossy().into_owned()) {
            if let Some(n) = folder.strip_prefix("Actor_").and_then(|n| n.parse::<u8>().ok()) {
                if n != name.actor {
                    sel.rejects
                        .push(reject("wrong_folder", format!("`{file_name}` names actor {:02} but sits in folder {folder}", name.actor)));
                    continue;
                }
            }
        }
        if !filters.admits(&name) || !modality.preference.contains(&name.modality) {
            sel.filtered += 1;
            continue;
        }
        groups.entry(name.clip_id()).or_default().push((name, path.clone()));
    }
    for (clip_id, mut candidates) in groups {
        let rank = |m: Modality| modality.preference.iter().position(|&p| p == m).unwrap_or(usize::MAX);
        candidates.sort_by(|a, b| rank(a.0.modality).cmp(&rank(b.0.modality)).then_with(|| a.1.cmp(&b.1)));
        sel.recordings.push(Recording { clip_id, candidates });
    }
    sel
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(names: &[&str]) -> Vec<PathBuf> {
        names.iter().map(|n| PathBuf::from(format!("/d/{n}"))).collect()
    }

    #[test]
    fn prefers_video_only_and_falls_back_to_audio_video_per_recording() {
        let files = paths(&["Actor_01/01-01-03-01-01-01-01.mp4", "Actor_01/02-01-03-01-01-01-01.mp4", "Actor_01/01-01-04-01-01-01-01.mp4"]);
        let sel = select(&files, &ModalityChoice::parse("video").unwrap(), &Filters::default());
        assert_eq!(sel.recordings.len(), 2);
        let first: Vec<_> = sel.recordings.iter().map(|r| r.candidates[0].1.clone()).collect();
        assert_eq!(first, paths(&["Actor_01/02-01-03-01-01-01-01.mp4", "Actor_01/01-01-04-01-01-01-01.mp4"]));
        assert_eq!(sel.recordings[0].candidates.len(), 2);
        let only02 = select(&files, &ModalityChoice::parse("02").unwrap(), &Filters::default());
        assert_eq!((only02.recordings.len(), only02.filtered), (1, 2));
    }

    #[test]
    fn rejects_bad_names_audio_only_and_wrong_folders_and_counts_filtered() {
        let files = paths(&[
            "Actor_01/03-01-03-01-01-01-01.mp4",
            "Actor_02/02-01-03-01-01-01-01.mp4",
            "notes.txt",
            "clip.mp4",
            "02-01-03-01-01-01-05.mp4",
            "02-02-03-01-01-01-05.mp4",
        ]);
        let filters = Filters { vocal_channels: vec![1], ..Default::default() };
        let sel = select(&files, &ModalityChoice::parse("video").unwrap(), &filters);
        let kinds: Vec<_> = sel.rejects.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, ["audio_only", "wrong_folder", "bad_name"]);
        assert_eq!((sel.filtered, sel.ignored), (1, 1));
        assert_eq!(sel.recordings.len(), 1);
        assert_eq!(sel.files_seen, 6);
    }
}
