//! The `pipeline` binary: parse flags, run, map the outcome to an exit status
//! (0 success, 1 a stage failed, 2 bad configuration or usage). The built-in stages and what
//! `predict` and `metrics diff` do come from [`builtin`].

use clap::Parser;

mod builtin;

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let cli = pipeline::cli::Cli::parse();
    // A command that only prints dies quietly on a closed pipe (`pipeline show x | head -1`)
    // like other Unix tools, instead of Rust's default of ignoring SIGPIPE and panicking in
    // `println!`. Commands that start workers keep SIGPIPE ignored: a worker killed before it
    // read its job (the OOM killer, say) must be a failed stage, an EPIPE on its stdin, not a
    // signal that kills the coordinator and every other stage with it.
    #[cfg(unix)]
    if prints_only(&cli.command) {
        // SAFETY: no thread exists yet (parsing starts none); SIG_DFL is a valid handler.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let code = match pipeline::cli::run(cli, &argv, &builtin::Builtin) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    std::process::exit(0);
                }
            }
            eprintln!("error: {e:#}");
            2
        }
    };
    std::process::exit(code);
}

/// Whether `command` only reads the workspace and prints (no worker, no child processes).
fn prints_only(command: &pipeline::cli::Command) -> bool {
    use pipeline::cli::Command;
    matches!(command, Command::Status { .. } | Command::Dag { .. } | Command::Show { .. } | Command::Runs | Command::Metrics(_))
}
