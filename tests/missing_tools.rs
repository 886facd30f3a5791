//! A machine without ffmpeg: the video stages fail with one clear message, not a panic, and
//! nothing is published.

mod common;
use common::Workspace;

#[test]
fn scan_without_ffmpeg_or_ffprobe_on_path_says_so() {
    let empty_bin = tempfile::tempdir().unwrap();
    let ws = Workspace::with_env(
        "stages:\n  scan:\n    uses: scan\n    with: {root: videos}\n",
        vec![("PATH".into(), empty_bin.path().display().to_string())],
    );
    ws.write("videos/Actor_01/02-01-03-02-01-01-01.mp4", "not really a video, never probed\n");
    let out = ws.pipeline(&["run"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("neither ffprobe nor ffmpeg was found on PATH"), "{all}");
    assert!(!all.contains("panicked"), "{all}");
    let status = ws.pipeline(&["status"]);
    assert!(status.stdout.contains("scan: stale"), "nothing may be published: {}", status.stdout);
}
