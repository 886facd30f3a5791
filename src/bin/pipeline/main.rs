//! The `pipeline` binary: parse flags, run, map the outcome to an exit status
//! (0 success, 1 a stage failed, 2 bad configuration or usage). The built-in stages and what
//! `predict` and `metrics diff` do come from [`builtin`].

use clap::Parser;

mod builtin;

fn main() {
    // Die quietly on a closed pipe (`pipeline show x | head -1`) like other Unix tools, instead
    // of Rust's default of ignoring SIGPIPE and panicking in `println!`.
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let argv: Vec<String> = std::env::args().collect();
    let cli = pipeline::cli::Cli::parse();
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
