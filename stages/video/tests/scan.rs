//! The `scan` stage on a generated RAVDESS tree with planted bad files, and on a real RAVDESS clip.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow_array::{Array, Float64Array, Int32Array, Int64Array, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use stage_api::{NoProgress, Params, SameStore, Stage, StageContext, StageInput};
use stages_video::scan::probe::Prober;
use stages_video::scan::{scan, ScanParams, ScanStage};
use stages_video::synth::SynthStage;

const REAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/real/01-01-08-02-01-01-19.mp4");

fn params<T: serde::de::DeserializeOwned>(stage: &dyn Stage, json: &str) -> (T, Params) {
    let p = stage.resolve_params(&serde_json::from_str(json).unwrap()).unwrap();
    (serde_json::from_value(serde_json::Value::Object(p.clone())).unwrap(), p)
}

/// A synthetic tree (2 actors x happy/sad strong, with 01 copies) plus one planted file per problem.
/// Returns the root and the planted files by the reject kind they must get.
fn planted_tree(dir: &Path) -> BTreeMap<&'static str, PathBuf> {
    let (_, p): (serde_json::Value, Params) = params(
        &SynthStage,
        r#"{"actors": 2, "emotions": ["happy", "sad"], "intensities": [2], "duration_s": 0.4, "audio_video_copies": true}"#,
    );
    let ctx = StageContext {
        params: &p,
        inputs: &[],
        out_dir: dir,
        base_dir: dir,
        progress: &NoProgress,
        threads: 2,
        artifacts: &SameStore,
        resume_dir: None,
    };
    SynthStage.run(&ctx).unwrap();
    let good = dir.join("Actor_01/02-01-03-02-01-01-01.mp4");
    let bytes = std::fs::read(&good).unwrap();
    let mut planted = BTreeMap::new();
    let mut plant = |kind: &'static str, rel: &str, content: &[u8]| {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        planted.insert(kind, path);
    };
    plant("zero_byte", "Actor_01/02-01-05-01-01-01-01.mp4", b"");
    plant("not_video", "Actor_01/02-01-06-01-01-01-01.mp4", b"this is a text file, not a video\n");
    plant("truncated", "Actor_02/02-01-07-01-01-01-02.mp4", &bytes[..bytes.len() / 2]);
    plant("bad_name", "Actor_02/clip_final.mp4", &bytes);
    plant("audio_only", "Actor_01/03-01-03-02-01-01-01.mp4", &bytes);
    plant("wrong_folder", "Actor_01/02-01-04-02-01-01-09.mp4", &bytes);
    // A recording that exists only as audio-video (01): accepted through the fallback.
    plant("fallback", "Actor_02/01-01-02-02-01-01-02.mp4", &bytes);
    // An mp4 holding only a sound track.
    let audio = dir.join("Actor_02/02-01-08-02-02-01-02.mp4");
    let made = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "0.3", "-c:a", "aac", "-y"])
        .arg(&audio)
        .status()
        .unwrap();
    assert!(made.success());
    planted.insert("no_video_stream", audio);
    planted
}

#[test]
fn rejects_each_planted_file_with_its_reason_and_keeps_the_good_clips() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let planted = planted_tree(&root);
    let (p, _): (ScanParams, _) = params(&ScanStage, "{}");
    for prober in [Prober::find("ffprobe").unwrap(), Prober::find("ffmpeg").unwrap()] {
        let result = scan(&root, &p, &prober, 2, &NoProgress).unwrap();
        let label = prober.name();
        for (kind, path) in &planted {
            if *kind == "fallback" {
                continue;
            }
            let r = result.rejects.iter().find(|r| &r.source == path).unwrap_or_else(|| panic!("{label}: {path:?} not rejected"));
            assert_eq!(r.kind, *kind, "{label}: {}: {}", path.display(), r.reason);
            assert!(!r.reason.is_empty());
        }
        let dups: Vec<_> = result.rejects.iter().filter(|r| r.kind == "duplicate").collect();
        assert_eq!(dups.len(), 4, "{label}: every 01 copy of a kept 02 clip: {dups:#?}");
        assert!(dups.iter().all(|r| r.source.file_name().unwrap().to_string_lossy().starts_with("01-")));
        assert_eq!(result.rejects.len(), 7 + 4, "{label}: {:#?}", result.rejects);
        let ids: Vec<String> = result.clips.iter().map(|c| c.name.clip_id()).collect();
        assert_eq!(
            ids,
            ["01-02-02-01-01-02", "01-03-02-01-01-01", "01-03-02-01-01-02", "01-04-02-01-01-01", "01-04-02-01-01-02"],
            "{label}"
        );
        for c in &result.clips {
            let want_modality = if c.name.emotion == 2 { 1 } else { 2 };
            assert_eq!(c.name.modality.code(), want_modality, "{label}");
            assert_eq!((c.info.width, c.info.height, c.info.frame_count), (1280, 720, 12), "{label}: {c:?}");
            assert!((c.info.fps - 30.0).abs() < 1e-6 && (c.info.duration_s - 0.4).abs() < 0.05, "{label}: {c:?}");
        }
    }
}

fn column<'a, T: 'static>(batch: &'a arrow_array::RecordBatch, name: &str) -> &'a T {
    batch.column_by_name(name).unwrap_or_else(|| panic!("column {name}")).as_any().downcast_ref::<T>().unwrap()
}

#[test]
fn stage_writes_tables_and_strict_names_the_bad_files() {
    let data = tempfile::tempdir().unwrap();
    let planted = planted_tree(data.path());
    let out = tempfile::tempdir().unwrap();
    // Without `root`, the `synth` need is the dataset.
    let inputs = [StageInput { kind: Some("synth".into()), ..StageInput::new("synth", data.path()) }];
    let (_, p): (ScanParams, Params) = params(&ScanStage, r#"{"emotions": ["calm", "happy", "sad", "angry"]}"#);
    let ctx = StageContext {
        params: &p,
        inputs: &inputs,
        out_dir: out.path(),
        base_dir: Path::new("/nonexistent"),
        progress: &NoProgress,
        threads: 2,
        artifacts: &SameStore,
        resume_dir: None,
    };
    let outcome = ScanStage.run(&ctx).unwrap();
    assert_eq!(outcome.summary, "5 clips accepted, 8 rejected (4 duplicates), 3 filtered out");
    let file = std::fs::File::open(out.path().join("clips.parquet")).unwrap();
    let batch = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap().next().unwrap().unwrap();
    assert_eq!(batch.num_rows(), 5);
    assert_eq!(column::<StringArray>(&batch, "clip_id").value(0), "01-02-02-01-01-02");
    assert_eq!(column::<StringArray>(&batch, "emotion").value(0), "calm");
    assert_eq!(column::<Int32Array>(&batch, "label").value(1), 2);
    assert_eq!(column::<Int32Array>(&batch, "modality").value(0), 1);
    assert_eq!(column::<Int64Array>(&batch, "frame_count").value(0), 12);
    assert_eq!(column::<Float64Array>(&batch, "fps").value(0), 30.0);
    assert!(Path::new(column::<StringArray>(&batch, "source").value(0)).is_absolute());
    let file = std::fs::File::open(out.path().join("rejects.parquet")).unwrap();
    let rejects = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap().next().unwrap().unwrap();
    assert_eq!(rejects.num_rows(), 8);
    assert!(column::<StringArray>(&rejects, "reason").len() == 8);
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join("scan.json")).unwrap()).unwrap();
    assert_eq!(summary["accepted"], 5);
    assert_eq!(summary["rejected_by_kind"]["duplicate"], 4);
    assert_eq!(summary["accepted_by_emotion"]["happy"], 2);

    let (_, strict): (ScanParams, Params) = params(&ScanStage, r#"{"strict": true}"#);
    let out2 = tempfile::tempdir().unwrap();
    let ctx = StageContext { params: &strict, out_dir: out2.path(), ..ctx };
    let err = ScanStage.run(&ctx).unwrap_err().to_string();
    for kind in ["zero_byte", "not_video", "truncated", "bad_name", "audio_only", "no_video_stream"] {
        let name = planted[kind].file_name().unwrap().to_string_lossy().into_owned();
        assert!(err.contains(&name), "{kind}: {name} not named in: {err}");
    }
}

#[test]
fn a_missing_dataset_folder_is_a_clear_error() {
    let base = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (_, p): (ScanParams, Params) = params(&ScanStage, "{}");
    let ctx = StageContext {
        params: &p,
        inputs: &[],
        out_dir: out.path(),
        base_dir: base.path(),
        progress: &NoProgress,
        threads: 1,
        artifacts: &SameStore,
        resume_dir: None,
    };
    let err = ScanStage.run(&ctx).unwrap_err().to_string();
    assert!(err.contains("data/ravdess") && err.contains("does not exist"), "{err}");
}

#[test]
fn probes_the_real_ravdess_clip_with_ffprobe_and_with_ffmpeg() {
    for prober in [Prober::find("ffprobe").unwrap(), Prober::find("ffmpeg").unwrap()] {
        let info = prober.probe(Path::new(REAL)).unwrap();
        assert_eq!((info.width, info.height, info.frame_count), (720, 720, 122), "{}", prober.name());
        assert!((info.fps - 29.97).abs() < 0.01, "{}: {info:?}", prober.name());
        assert!((info.duration_s - 4.07).abs() < 0.05, "{}: {info:?}", prober.name());
    }
}

#[test]
fn scans_a_folder_holding_the_real_clip() {
    let dir = tempfile::tempdir().unwrap();
    let actor = dir.path().join("Actor_19");
    std::fs::create_dir(&actor).unwrap();
    std::os::unix::fs::symlink(REAL, actor.join("01-01-08-02-01-01-19.mp4")).unwrap();
    let (p, _): (ScanParams, _) = params(&ScanStage, "{}");
    let result = scan(dir.path(), &p, &Prober::find("auto").unwrap(), 1, &NoProgress).unwrap();
    assert!(result.rejects.is_empty(), "{:?}", result.rejects);
    let clip = &result.clips[0];
    assert_eq!((clip.name.clip_id().as_str(), clip.name.emotion_name(), clip.name.actor), ("01-08-02-01-01-19", "surprised", 19));
}

/// The same dataset inside workspaces at different paths (three machines) gives byte-identical
/// tables, so every key downstream of scan is the same on both: sources are workspace-relative.
#[test]
fn tables_do_not_depend_on_where_the_workspace_is() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    // A third machine keeps the videos elsewhere and links them into its workspace.
    let c = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(c.path().join("data")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), c.path().join("data/ravdess")).unwrap();
    let (_, synth): (serde_json::Value, Params) =
        params(&SynthStage, r#"{"actors": 1, "emotions": ["happy"], "intensities": [2], "duration_s": 0.3}"#);
    let (_, p): (ScanParams, Params) = params(&ScanStage, r#"{"root": "data/ravdess"}"#);
    let mut tables = Vec::new();
    for workspace in [a.path().to_path_buf(), b.path().join("deeper/than/a"), c.path().to_path_buf()] {
        let data = workspace.join("data/ravdess");
        std::fs::create_dir_all(&data).unwrap();
        let ctx = StageContext {
            params: &synth,
            inputs: &[],
            out_dir: &data,
            base_dir: &data,
            progress: &NoProgress,
            threads: 2,
            artifacts: &SameStore,
            resume_dir: None,
        };
        SynthStage.run(&ctx).unwrap();
        let out = workspace.join("scan-out");
        std::fs::create_dir_all(&out).unwrap();
        let ctx = StageContext {
            params: &p,
            inputs: &[],
            out_dir: &out,
            base_dir: &workspace,
            progress: &NoProgress,
            threads: 2,
            artifacts: &SameStore,
            resume_dir: None,
        };
        ScanStage.run(&ctx).unwrap();
        let file = std::fs::File::open(out.join("clips.parquet")).unwrap();
        let batch = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap().next().unwrap().unwrap();
        let source = column::<StringArray>(&batch, "source").value(0).to_string();
        assert!(source.starts_with("data/ravdess/Actor_01/"), "{source}");
        assert!(workspace.join(&source).is_file(), "{source} resolves against the workspace");
        let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("scan.json")).unwrap()).unwrap();
        assert_eq!(summary["root"], "data/ravdess");
        tables.push((std::fs::read(out.join("clips.parquet")).unwrap(), std::fs::read(out.join("scan.json")).unwrap()));
    }
    assert!(tables[0] == tables[1], "two workspaces at different paths wrote different scan outputs");
    assert!(tables[0] == tables[2], "a dataset linked into the workspace gave different scan outputs");
}

/// The files of a (flat) output directory, name -> bytes.
fn files_in(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().into(), std::fs::read(&p).unwrap()))
        .collect()
}

/// The probing split into 1 to 5 shards (a shard may be empty, and duplicates, fallbacks and
/// every reject kind land in different shards), merged: the same tables as one run. A merge
/// whose parts miss a recording fails and says which file.
#[test]
fn shards_of_the_probing_merge_to_the_same_tables() {
    let data = tempfile::tempdir().unwrap();
    planted_tree(data.path());
    let inputs = [StageInput { kind: Some("synth".into()), ..StageInput::new("synth", data.path()) }];
    let (_, p): (ScanParams, Params) = params(&ScanStage, r#"{"emotions": ["calm", "happy", "sad", "angry"]}"#);
    let whole = tempfile::tempdir().unwrap();
    let ctx = StageContext {
        params: &p,
        inputs: &inputs,
        out_dir: whole.path(),
        base_dir: Path::new("/nonexistent"),
        progress: &NoProgress,
        threads: 2,
        artifacts: &SameStore,
        resume_dir: None,
    };
    let expected = ScanStage.run(&ctx).unwrap().summary;
    assert!(ScanStage.shardable());
    for count in 1..=5 {
        let parts: Vec<tempfile::TempDir> = (0..count).map(|_| tempfile::tempdir().unwrap()).collect();
        for (index, part) in parts.iter().enumerate() {
            ScanStage.run_shard(&StageContext { out_dir: part.path(), ..ctx }, stage_api::Shard { index, count }).unwrap();
        }
        let merged = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = parts.iter().map(|d| d.path().to_path_buf()).collect();
        let outcome = ScanStage.merge(&StageContext { out_dir: merged.path(), ..ctx }, &dirs).unwrap();
        assert_eq!(outcome.summary, expected, "{count} shards");
        assert!(files_in(merged.path()) == files_in(whole.path()), "{count} shards: the merged tables differ from one run's");
        if count == 3 {
            let merged = tempfile::tempdir().unwrap();
            let err = ScanStage.merge(&StageContext { out_dir: merged.path(), ..ctx }, &dirs[..2]).unwrap_err().to_string();
            assert!(err.contains("the shards did not probe") && err.contains(".mp4"), "{err}");
        }
    }
}
