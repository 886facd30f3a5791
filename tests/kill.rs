//! Nothing outlives a killed run: `pipeline run` killed with SIGKILL at random moments, many
//! rounds, while `run:` stages (with children of their own) and ffmpeg (started by `synth`) are
//! at work. After each kill no descendant survives and no side effect is written afterwards;
//! at the end one run completes and the store verifies.
//!
//! The test process makes itself a child subreaper, so that every orphaned descendant of a
//! killed `pipeline` becomes its child and can be counted. That is process-wide, hence this
//! file holds this one test.

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::Workspace;

const ROUNDS: usize = 12;

fn pipeline_yaml() -> String {
    // `a` leaves its effect from a grandchild; `b` from the stage's shell itself.
    r#"stages:
  synth:
    uses: synth
    with: {actors: 4, emotions: [neutral, happy, sad, angry], intensities: [1], duration_s: 1.0, width: 320, height: 180}
  a:
    run: "sh -c 'sleep 1.5; echo a >> effects.txt' & wait; echo done > $PIPELINE_OUT/a"
  b:
    run: "sleep 1; echo b >> effects.txt; echo done > $PIPELINE_OUT/b"
    needs: [a]
  c:
    run: "ls $PIPELINE_IN_SYNTH > $PIPELINE_OUT/listing"
    needs: [synth, b]
"#
    .to_owned()
}

/// Children of this process that are still running (zombies are reaped on the way).
fn live_children() -> Vec<(u32, String)> {
    loop {
        // SAFETY: waitpid on any child without blocking; we only reap, never inspect.
        let reaped = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if reaped <= 0 {
            break;
        }
    }
    common::children_of(std::process::id()).into_iter().map(|p| (p.pid, p.name)).collect()
}

fn effects(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("effects.txt")).map_or(0, |s| s.lines().count())
}

#[test]
fn sigkill_at_random_moments_leaves_no_process_and_no_late_side_effect() {
    // SAFETY: a plain prctl on this process.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) }, 0, "{}", std::io::Error::last_os_error());
    let ws = Workspace::new(&pipeline_yaml());
    let mut seed = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    println!("seed {seed}");
    let mut next_ms = |max: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % max
    };
    let (mut kills, mut survivors_seen, mut late_effects) = (0, 0, 0);
    for round in 0..ROUNDS {
        // Every round computes everything again, so kills land anywhere in the run.
        let mut child = ws
            .command(&["run", "-q", "--force", "synth", "--force", "a", "--force", "b", "--force", "c"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let delay = Duration::from_millis(next_ms(3500));
        std::thread::sleep(delay);
        let finished_first = child.try_wait().unwrap().is_some();
        if !finished_first {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
            kills += 1;
        }
        child.wait().unwrap();
        let at_kill = effects(ws.path());
        // The kernel signals the children at once; allow a moment for the guard shell's trap.
        // A survivor would live on for up to 1.5 s (a's grandchild), far past this.
        let deadline = Instant::now() + Duration::from_millis(300);
        let mut left = live_children();
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            left = live_children();
        }
        survivors_seen += left.len();
        assert!(left.is_empty(), "round {round} (kill after {delay:?}): survivors {left:?}");
        // Nothing of the killed run writes afterwards (a's grandchild would, 1.5 s in).
        std::thread::sleep(Duration::from_millis(1600));
        late_effects += effects(ws.path()) - at_kill;
        assert_eq!(effects(ws.path()), at_kill, "round {round} (kill after {delay:?}): a side effect after the kill");
        println!("round {round}: {} after {delay:?}", if finished_first { "finished" } else { "killed" });
    }
    let last = ws.pipeline(&["run"]);
    assert_eq!(last.code, 0, "{}", last.stderr);
    let verify = ws.pipeline(&["verify"]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    let again = ws.pipeline(&["run"]);
    assert!(again.stderr.contains("0 ran"), "everything is fresh after the last run:\n{}", again.stderr);
    println!("{ROUNDS} rounds, {kills} kills, {survivors_seen} surviving processes, {late_effects} side effects after a kill");
}
