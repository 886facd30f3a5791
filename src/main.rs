//! The `pipeline` binary: parse flags, run, map the outcome to an exit status
//! (0 success, 1 a stage failed, 2 bad configuration or usage).

use clap::Parser;

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let cli = pipeline::cli::Cli::parse();
    let code = match pipeline::cli::run(cli, &argv) {
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
