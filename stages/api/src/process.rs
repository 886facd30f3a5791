//! Child processes that do not outlive the `pipeline` process that started them, also when it
//! is killed with SIGKILL (which nothing in it can catch). On Linux the kernel sends the child a
//! signal when its parent dies (`PR_SET_PDEATHSIG`); elsewhere these are no-ops.
//!
//! The signal is sent when the *thread* that spawned the child exits, so spawn from a thread
//! that waits for the child (as every stage does).

use std::process::Command;

/// The child gets SIGKILL when this process dies: for programs that start no children of their
/// own (ffmpeg, ffprobe, the `pipeline-torch` worker).
pub fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    set_death_signal(command, libc::SIGKILL, false);
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// The child leads a process group of its own and gets SIGUSR1 when this process dies: for a
/// shell that must take its whole tree down with it (it traps SIGUSR1 and kills its group, see
/// [`GROUP_GUARD`]). SIGUSR1 rather than SIGTERM, so that a scheduler's SIGTERM to every process
/// of a job (`scancel`) keeps its usual effect and `exec-task` reports the cancellation itself. Being its own group, it does not receive the terminal's Ctrl-C directly;
/// the death of `pipeline` reaches it instead.
pub fn group_dies_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    set_death_signal(command, libc::SIGUSR1, true);
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// A `sh` script that runs its first argument as `sh -c` would, and kills its whole process
/// group (the command and everything it started) when it gets SIGUSR1 (its parent died):
/// `sh -c GROUP_GUARD sh COMMAND`, spawned with [`group_dies_with_parent`].
pub const GROUP_GUARD: &str = r#"trap 'kill -9 0' USR1; sh -c "$1" & wait $!"#;

#[cfg(target_os = "linux")]
fn set_death_signal(command: &mut Command, signal: libc::c_int, own_group: bool) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: setpgid, prctl, getppid and _exit are async-signal-safe; nothing is allocated.
    unsafe {
        command.pre_exec(move || {
            if own_group && libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}
