//! Training-step benchmark: each ResNet-based architecture in Rust (tch) against the same
//! model in PyTorch (`benches/train_step.py`, run with the venv's python in the same run),
//! same batch, sizes, optimiser and thread count.
//!
//! ```text
//! cargo bench -p stages-learn --bench train_step -- [--threads 2] [--warmup 3] [--steps 5]
//!     [--batch 8] [--frames 10] [--size 112] [--arch r3d18 ...]
//! ```
//!
//! A step is `forward_t(train) → cross-entropy → zero_grad → backward → Adam(lr 1e-4, wd 1e-4)`.
//! For each architecture the Python and Rust runs alternate (Python, Rust) and the median
//! timed step of each is compared; the table printed at the end is what BENCH-models.md holds.

use std::process::Command;
use std::time::Instant;

use stages_learn::models::{build, Arch, ModelSpec, TemporalPool};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

struct Options {
    threads: i32,
    warmup: usize,
    steps: usize,
    batch: i64,
    frames: i64,
    size: i64,
    archs: Vec<Arch>,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        threads: 2,
        warmup: 3,
        steps: 5,
        batch: 8,
        frames: 10,
        size: 112,
        archs: vec![Arch::EarlyFusionResnet18, Arch::LateFusionResnet18, Arch::R3d18, Arch::Resnet18Lstm],
    };
    let mut picked = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--bench" {
            continue; // added by `cargo bench`
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<i64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--threads" => o.threads = num(&value)? as i32,
            "--warmup" => o.warmup = num(&value)? as usize,
            "--steps" => o.steps = num(&value)? as usize,
            "--batch" => o.batch = num(&value)?,
            "--frames" => o.frames = num(&value)?,
            "--size" => o.size = num(&value)?,
            "--arch" => picked.push(
                serde_json::from_value(serde_json::Value::String(value.clone()))
                    .map_err(|_| format!("unknown architecture {value}"))?,
            ),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if !picked.is_empty() {
        o.archs = picked;
    }
    Ok(o)
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn python() -> std::path::PathBuf {
    match std::env::var_os("PIPELINE_TORCH_VENV") {
        Some(venv) => std::path::PathBuf::from(venv).join("bin/python"),
        None => std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/pipeline/torch-2.13.0/bin/python"),
    }
}

fn python_steps(o: &Options, arch: Arch) -> Result<Vec<f64>, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/train_step.py");
    let out = Command::new(python())
        .arg(script)
        .args(["--arch", arch.name()])
        .args(["--threads", &o.threads.to_string(), "--warmup", &o.warmup.to_string()])
        .args(["--steps", &o.steps.to_string(), "--batch", &o.batch.to_string()])
        .args(["--frames", &o.frames.to_string(), "--size", &o.size.to_string()])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python().display()))?;
    if !out.status.success() {
        return Err(format!("train_step.py failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(line.trim()).map_err(|e| format!("{e}: {line}"))?;
    json["seconds"]
        .as_array()
        .and_then(|a| a.iter().map(|v| v.as_f64()).collect::<Option<Vec<_>>>())
        .ok_or_else(|| format!("no seconds in {line}"))
}

fn rust_steps(o: &Options, arch: Arch) -> Result<Vec<f64>, String> {
    tch::manual_seed(0);
    let spec = ModelSpec { arch, frames: o.frames, size: o.size, num_classes: 8, temporal_pool: TemporalPool::Mean };
    let vs = nn::VarStore::new(Device::Cpu);
    let model = build(&vs.root(), &spec).map_err(|e| e.chain())?;
    let mut opt = nn::Adam { wd: 1e-4, ..Default::default() }.build(&vs, 1e-4).map_err(|e| e.to_string())?;
    let xs = Tensor::randn(spec.input_shape(o.batch), (Kind::Float, Device::Cpu));
    let ys = Tensor::randint(8, [o.batch], (Kind::Int64, Device::Cpu));
    let mut seconds = Vec::new();
    for i in 0..o.warmup + o.steps {
        let start = Instant::now();
        opt.zero_grad();
        let loss = model.forward_t(&xs, true).cross_entropy_for_logits(&ys);
        loss.backward();
        opt.step();
        let elapsed = start.elapsed().as_secs_f64();
        if i >= o.warmup {
            seconds.push(elapsed);
        }
    }
    Ok(seconds)
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("train_step: {e}");
            std::process::exit(2);
        }
    };
    tch::set_num_threads(o.threads);
    println!(
        "batch {}, T {}, S {}, {} threads, {} warm-up + {} timed steps, torch {}",
        o.batch,
        o.frames,
        o.size,
        tch::get_num_threads(),
        o.warmup,
        o.steps,
        python().display()
    );
    let mut rows = Vec::new();
    for &arch in &o.archs {
        let result = python_steps(&o, arch).and_then(|py| Ok((py, rust_steps(&o, arch)?)));
        match result {
            Ok((py, rs)) => {
                let (py, rs) = (median(&py), median(&rs));
                println!("{arch}: python {py:.3} s/step, rust {rs:.3} s/step, ratio {:.3}", rs / py);
                rows.push(format!("| {arch} | {py:.3} | {rs:.3} | {:.3} |", rs / py));
            }
            Err(e) => {
                eprintln!("{arch}: {e}");
                std::process::exit(1);
            }
        }
    }
    println!("\n| architecture | PyTorch s/step (median) | Rust s/step (median) | Rust / PyTorch |");
    println!("|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}
