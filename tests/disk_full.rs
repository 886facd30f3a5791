//! A full disk while `extract` or `train` writes its output, or while `pipeline pull` downloads:
//! the command fails with exit status 1 and an error that names the file it could not write and
//! says why ("No space left on device"), nothing of the failed stage is published, what was
//! published before (upstream stages, an earlier version of the stage) is intact and verifies,
//! and once there is space again the next run succeeds and verifies.
//!
//! The store (`store:` in pipeline.yaml) lies on a small tmpfs mounted in the workspace. To make
//! the failure land in the target stage every time, the upstream stages run with the disk
//! empty, then a filler file takes all but a few KiB of it (less than the target stage writes);
//! removing the filler gives the space back. Mounting needs root (the test container and CI run
//! as root); a refused mount fails the test with a message, it is not skipped. The tmpfs is
//! unmounted when the test ends, also when it fails.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::remote::{Backend, DirRemote};
use common::{artifacts_in, tiny_dataset, RunOutput, Workspace, TRAINABLE_SYNTH};

/// Size of every test's tmpfs: the tiny datasets' stages need a few MiB.
const DISK_SIZE: &str = "64m";

/// What the filler leaves free: less than any target stage writes, so it fails part way.
const LEFT_FREE: u64 = 16 << 10;

/// A tmpfs mounted at `dir` for the life of the value, with a filler file to take its space.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Self {
        fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("cannot start `mount`");
        assert!(
            out.status.success(),
            "cannot mount a {size} tmpfs at {} (this test needs root and permission to mount, as in the CI container): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Self { dir: dir.to_owned() }
    }

    /// Bytes free for an unprivileged writer (`statvfs`).
    fn free(&self) -> u64 {
        let path = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: statvfs fills the struct we pass; the path is a valid C string.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut st) }, 0, "{}", std::io::Error::last_os_error());
        st.f_bavail as u64 * st.f_frsize as u64
    }

    fn filler(&self) -> PathBuf {
        self.dir.join("filler")
    }

    /// Writes a filler file that leaves `left` bytes (rounded to pages) free.
    fn fill_leaving(&self, left: u64) {
        let mut remaining = self.free().saturating_sub(left) & !4095;
        let mut file = fs::OpenOptions::new().create(true).append(true).open(self.filler()).unwrap();
        let chunk = vec![0x5a_u8; 1 << 20];
        while remaining > 0 {
            let n = remaining.min(chunk.len() as u64) as usize;
            file.write_all(&chunk[..n]).unwrap();
            remaining -= n as u64;
        }
        file.sync_all().unwrap();
        let free = self.free();
        assert!(free <= left + 4096, "the filler left {free} bytes free, wanted {left}");
    }

    /// Gives the filler's space back.
    fn unfill(&self) {
        fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let plain = Command::new("umount").arg(&self.dir).status();
        if !plain.is_ok_and(|s| s.success()) {
            // Something still holds a file open (a failing test's straggler): detach it lazily,
            // so that no mount outlives the test either way.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// A workspace whose store is `disk/store` on a fresh small tmpfs. The disk is declared after
/// the workspace by the callers, so it is unmounted before the workspace is removed.
fn workspace_on_small_disk(stages: &str, env: Vec<(String, String)>) -> (Workspace, SmallDisk) {
    let ws = Workspace::with_env(&format!("store: disk/store\n{stages}"), env);
    let disk = SmallDisk::mount(&ws.path().join("disk"), DISK_SIZE);
    (ws, disk)
}

fn store_of(ws: &Workspace) -> PathBuf {
    ws.path().join("disk/store")
}

fn assert_ok(what: &str, out: &RunOutput) {
    assert_eq!(out.code, 0, "{what} failed:\n{}\n{}", out.stdout, out.stderr);
}

/// The failed command's exit status and message: status 1 (not a usage error), the OS's "No
/// space left on device", and the path of a file in the store it could not write.
fn assert_names_full_disk(what: &str, out: &RunOutput, store: &Path) {
    let text = format!("{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.code, 1, "{what}: exit status 1 on a full disk:\n{text}");
    assert!(text.contains("No space left on device"), "{what}: the error says the disk is full:\n{text}");
    let store = store.display().to_string();
    let named = text.lines().filter(|l| l.contains("No space left on device")).any(|l| l.contains(&format!("{store}/")));
    assert!(named, "{what}: the error names the file in {store} it could not write:\n{text}");
    println!("{what}:\n{}", text.lines().filter(|l| l.contains("No space left")).collect::<Vec<_>>().join("\n"));
}

/// Nothing of a failed stage is left in the store's work area (the next run would clean it, but
/// it would hold space on a disk that is already full).
fn assert_no_work_left(store: &Path) {
    let left: Vec<_> = fs::read_dir(store.join("tmp")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "work directories left behind: {left:?}");
}

fn verify(ws: &Workspace, args: &[&str]) -> String {
    let out = ws.pipeline(args);
    assert_ok("verify", &out);
    out.stdout
}

#[test]
fn full_disk_while_extract_writes_its_cache() {
    let config = |frames: u32| tiny_dataset(TRAINABLE_SYNTH).replace("frames: 2,", &format!("frames: {frames},"));
    assert_ne!(config(2), config(3));
    let (ws, disk) = workspace_on_small_disk(&config(2), Vec::new());
    let store = store_of(&ws);
    assert_ok("the first run", &ws.pipeline(&["run"]));
    ws.write("v1.yaml", &format!("store: disk/store\n{}", config(2)));
    let (before, keys_before) = (artifacts_in(&store), published(&store));
    assert_eq!(keys_before.len(), 4, "synth, scan, extract, split: {:?}", before.keys());
    let extract_bytes: usize = before["extract"].values().map(Vec::len).sum();
    assert!(extract_bytes as u64 > 4 * LEFT_FREE, "extract writes {extract_bytes} bytes, too few to fill the disk");

    // More frames per clip: a new key for extract (and split), synth and scan stay fresh.
    ws.write("pipeline.yaml", &format!("store: disk/store\n{}", config(3)));
    disk.fill_leaving(LEFT_FREE);
    let failed = ws.pipeline(&["run"]);
    assert_names_full_disk("extract on a full disk", &failed, &store);
    assert!(failed.line_for("extract").iter().any(|l| l.starts_with("extract: FAILED")), "{}", failed.stderr);
    assert!(failed.line_for("synth").iter().any(|l| l == "synth: fresh"), "{}", failed.stderr);
    assert!(failed.stderr.contains("split: not run"), "{}", failed.stderr);
    assert_eq!(published(&store), keys_before, "nothing published");
    assert_eq!(artifacts_in(&store), before, "nothing changed");
    assert_no_work_left(&store);
    // What was there verifies, the disk still full: the upstream stages, and the earlier extract.
    let current = verify(&ws, &["verify"]);
    assert!(current.contains("synth: ok") && current.contains("scan: ok"), "{current}");
    let earlier = verify(&ws, &["--config", "v1.yaml", "verify"]);
    assert!(earlier.contains("extract: ok") && earlier.contains("split: ok"), "{earlier}");

    disk.unfill();
    let rerun = ws.pipeline(&["run"]);
    assert_ok("the run after freeing space", &rerun);
    assert!(rerun.line_for("extract").iter().any(|l| l.starts_with("extract: done")), "{}", rerun.stderr);
    assert!(verify(&ws, &["verify"]).contains("extract: ok"));
    assert!(verify(&ws, &["--config", "v1.yaml", "verify"]).contains("extract: ok"));
    assert_eq!(published(&store).len(), 6, "the new extract and split beside the earlier ones");
}

#[test]
fn full_disk_while_train_writes_its_model_or_checkpoint() {
    let config = |epochs: u32| {
        format!(
            "executor: {{resources: {{train: {{cpus: 1}}}}}}
{}  train:
    uses: train
    needs: [extract, split]
    with: {{arch: early_fusion_cnn, epochs: {epochs}, batch_size: 2, device: cpu}}
",
            tiny_dataset(TRAINABLE_SYNTH)
        )
    };
    let (ws, disk) = workspace_on_small_disk(&config(1), vec![("PIPELINE_CPUS".into(), "2".into())]);
    let store = store_of(&ws);
    assert_ok("the first run", &ws.pipeline(&["run"]));
    ws.write("v1.yaml", &format!("store: disk/store\n{}", config(1)));
    let (before, keys_before) = (artifacts_in(&store), published(&store));
    assert_eq!(keys_before.len(), 5, "{:?}", before.keys());
    let model_bytes = before["train"]["model.safetensors"].len();
    assert!(model_bytes as u64 > 4 * LEFT_FREE, "the model is {model_bytes} bytes, too small to fill the disk");

    ws.write("pipeline.yaml", &format!("store: disk/store\n{}", config(2)));
    disk.fill_leaving(LEFT_FREE);
    let failed = ws.pipeline(&["run"]);
    assert_names_full_disk("train on a full disk", &failed, &store);
    assert!(failed.line_for("train").iter().any(|l| l.starts_with("train: FAILED")), "{}", failed.stderr);
    for upstream in ["synth", "scan", "extract", "split"] {
        assert!(failed.line_for(upstream).iter().any(|l| l.ends_with(": fresh")), "{upstream}:\n{}", failed.stderr);
    }
    assert_eq!(published(&store), keys_before, "nothing published");
    assert_eq!(artifacts_in(&store), before, "nothing changed");
    assert_no_work_left(&store);
    let current = verify(&ws, &["verify"]);
    assert!(current.contains("extract: ok") && current.contains("split: ok"), "{current}");
    assert!(verify(&ws, &["--config", "v1.yaml", "verify"]).contains("train: ok"));

    disk.unfill();
    let rerun = ws.pipeline(&["run"]);
    assert_ok("the run after freeing space", &rerun);
    assert!(rerun.line_for("train").iter().any(|l| l.starts_with("train: done")), "{}", rerun.stderr);
    assert!(verify(&ws, &["verify"]).contains("train: ok"));
    assert!(verify(&ws, &["--config", "v1.yaml", "verify"]).contains("train: ok"));
    assert_eq!(published(&store).len(), 6, "the new train beside the earlier one");
}

/// Two `run:` stages with outputs of 1 and 2 MiB (the pull must fail part way through a file).
fn pull_stages(remote: &str) -> String {
    format!(
        "remote: {remote}
stages:
  prep:
    run: \"yes p | head -c 1048576 > $PIPELINE_OUT/prep.bin; echo prepped\"
  train:
    run: \"cat $PIPELINE_IN_PREP/prep.bin $PIPELINE_IN_PREP/prep.bin | tr p t > $PIPELINE_OUT/model.bin; echo trained\"
    needs: [prep]
"
    )
}

#[test]
fn full_disk_while_pull_downloads() {
    let remote = DirRemote::new();
    let a = Workspace::new(&pull_stages(&remote.url()));
    assert_ok("machine A's run", &a.pipeline(&["run", "--push"]));
    assert_eq!(published(&a.store()).len(), 2);

    let (b, disk) = workspace_on_small_disk(&pull_stages(&remote.url()), Vec::new());
    let store = store_of(&b);
    let first = b.pipeline(&["pull", "prep"]);
    assert_ok("pulling prep", &first);
    assert!(first.stdout.contains("pulled 1 artifacts"), "{}", first.stdout);
    let before = artifacts_in(&store);
    assert_eq!(before.keys().collect::<Vec<_>>(), ["prep"]);

    disk.fill_leaving(LEFT_FREE);
    let failed = b.pipeline(&["pull"]);
    assert_names_full_disk("pull on a full disk", &failed, &store);
    assert!(failed.stderr.contains("train: "), "the error names the instance:\n{}", failed.stderr);
    assert_eq!(artifacts_in(&store), before, "nothing published, nothing changed");
    assert_no_work_left(&store);
    assert!(verify(&b, &["verify"]).contains("prep: ok"));
    // A run pulls too: the download fails the same way, then computing it here does.
    let run = b.pipeline(&["run"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("train: could not store the remote copy (cannot write "), "{}", run.stderr);
    // The command's own error message went to a file on the full disk: the failure says why.
    let failed_line = run.line_for("train").into_iter().find(|l| l.starts_with("train: FAILED")).unwrap_or_default();
    assert!(
        failed_line.contains("No space left on device") && failed_line.contains(&format!("{}/tmp/", store.display())),
        "the failure names the full disk:\n{}",
        run.stderr
    );
    println!("run on a full disk:\n{}", run.line_for("train").join("\n"));
    assert_eq!(artifacts_in(&store), before, "nothing published, nothing changed");
    assert_no_work_left(&store);

    disk.unfill();
    let pulled = b.pipeline(&["pull"]);
    assert_ok("the pull after freeing space", &pulled);
    assert!(pulled.stdout.contains("pulled 1 artifacts"), "{}", pulled.stdout);
    let fresh = b.pipeline(&["run"]);
    assert_ok("the run after the pull", &fresh);
    assert!(fresh.stderr.contains("0 ran, 2 fresh"), "{}", fresh.stderr);
    assert!(verify(&b, &["verify"]).contains("train: ok"));
    assert_eq!(artifacts_in(&store), artifacts_in(&a.store()), "B holds A's bytes");
}

/// The keys of every artifact published in `store` (`artifacts_in` keeps one per instance name,
/// and here two versions of a stage lie side by side).
fn published(store: &Path) -> Vec<String> {
    let mut keys: Vec<String> = walkdir::WalkDir::new(store.join("objects"))
        .min_depth(2)
        .max_depth(2)
        .into_iter()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    keys.sort();
    keys
}
