//! `pipeline-torch`: the worker process the `pipeline` engine starts for the stages that need
//! libtorch, so that only these processes load it (see `stage_api::worker`).
//!
//! - `pipeline-torch stage`: one stage job on stdin, events on stdout (the engine's protocol);
//! - `pipeline-torch predict MODEL_DIR THREADS VIDEO...`: what `pipeline predict` prints, as JSON
//!   (one `{"ok": {...}}` or `{"error": "..."}` per video, in order);
//! - `pipeline-torch devices`: what libtorch sees (`cuda: true, 1 device`), for checking a build.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("stage") => {
            let stages = stages_torch::stages();
            let refs: Vec<&dyn stage_api::Stage> = stages.iter().map(|s| s.as_ref()).collect();
            stage_api::worker::serve(&refs)
        }
        Some("predict") if args.len() >= 4 => predict(&args[1], &args[2], &args[3..]),
        Some("devices") => {
            let cuda = tch::Cuda::is_available();
            println!("cuda: {cuda}, {} device(s); cudnn: {}", tch::Cuda::device_count(), tch::Cuda::cudnn_is_available());
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: pipeline-torch stage | predict MODEL_DIR THREADS VIDEO... | devices");
            eprintln!("(the `pipeline` binary starts this worker; it is not meant to be run by hand)");
            ExitCode::from(2)
        }
    }
}

fn predict(model_dir: &str, threads: &str, videos: &[String]) -> ExitCode {
    let Ok(threads) = threads.parse::<usize>() else {
        eprintln!("pipeline-torch predict: THREADS must be a number, got `{threads}`");
        return ExitCode::from(2);
    };
    let videos: Vec<PathBuf> = videos.iter().map(PathBuf::from).collect();
    match stages_torch::predict::predict_videos(model_dir.as_ref(), &videos, threads) {
        Ok(results) => {
            let rows: Vec<serde_json::Value> = results
                .into_iter()
                .map(|r| match r {
                    Ok(p) => serde_json::json!({ "ok": p }),
                    Err(e) => serde_json::json!({ "error": e.chain() }),
                })
                .collect();
            println!("{}", serde_json::Value::Array(rows));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", e.chain());
            ExitCode::from(1)
        }
    }
}
