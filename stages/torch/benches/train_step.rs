//! Training-step benchmark: each ResNet-based architecture in Rust (tch) against the same
//! model in PyTorch (`benches/train_step.py`, run with the venv's python in the same run),
//! same batch, sizes, optimiser and thread count.
//!
//! ```text
//! cargo bench -p stages-torch --bench train_step -- [--threads 2] [--warmup 3] [--steps 5]
//!     [--rounds 2] [--batch 8] [--frames 10] [--size 112] [--arch r3d18 ...] [--device cuda]
//! ```
//!
//! `--device cuda` times both sides on the GPU (each step ends in a CUDA synchronise, so the
//! wall time is the step's); the CPU-time columns then measure only the host's share.
//!
//! A step is `forward_t(train) → cross-entropy → zero_grad → backward → Adam(lr 1e-4, wd 1e-4)`.
//! For each architecture the Python and Rust runs alternate `--rounds` times (Python, Rust,
//! Python, Rust, ...; each run builds its model and warms up anew), so that load from other
//! processes hits both sides alike. Two ratios are reported: of the fastest timed step's wall
//! time on each side (the step least disturbed by a shared machine), and of the median CPU time
//! per step (user + system, all threads of the process), which other processes on a busy
//! machine disturb far less than wall time. The table printed at the end is what
//! BENCHMARKS.md (top level) holds.

use std::process::Command;
use std::time::Instant;

use stages_torch::models::{build, Arch, ModelSpec, TemporalPool};
use stages_torch::train::adam::Adam;
use stages_torch::train::device::{device_name, DeviceChoice};
use tch::nn;
use tch::{Device, Kind, Tensor};

struct Options {
    threads: i32,
    warmup: usize,
    steps: usize,
    rounds: usize,
    batch: i64,
    frames: i64,
    size: i64,
    archs: Vec<Arch>,
    device: Device,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        threads: 2,
        warmup: 3,
        steps: 5,
        rounds: 2,
        batch: 8,
        frames: 10,
        size: 112,
        archs: vec![Arch::EarlyFusionResnet18, Arch::LateFusionResnet18, Arch::R3d18, Arch::Resnet18Lstm],
        device: Device::Cpu,
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
            "--rounds" => o.rounds = num(&value)? as usize,
            "--batch" => o.batch = num(&value)?,
            "--frames" => o.frames = num(&value)?,
            "--size" => o.size = num(&value)?,
            "--device" => {
                let choice: DeviceChoice = serde_json::from_value(serde_json::Value::String(value.clone()))
                    .map_err(|_| format!("--device {value}: cpu, cuda or auto"))?;
                o.device = stages_torch::train::device::resolve_device(choice).map_err(|e| e.message)?;
            }
            "--arch" => picked.push(
                serde_json::from_value(serde_json::Value::String(value.clone())).map_err(|_| format!("unknown architecture {value}"))?,
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
        None => std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/pipeline/torch-2.13.0/bin/python"),
    }
}

/// Wall and CPU seconds of each timed step.
#[derive(Default)]
struct Steps {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

/// The PyTorch side's script: where this crate was built, else (a binary carried to another
/// machine) under the working directory.
fn python_script() -> std::path::PathBuf {
    let built = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/train_step.py"));
    if built.is_file() {
        built.to_path_buf()
    } else {
        std::path::PathBuf::from("stages/torch/benches/train_step.py")
    }
}

fn python_steps(o: &Options, arch: Arch) -> Result<Steps, String> {
    let out = Command::new(python())
        .arg(python_script())
        .args(["--device", &device_name(o.device)])
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
    let list = |key: &str| {
        json[key]
            .as_array()
            .and_then(|a| a.iter().map(|v| v.as_f64()).collect::<Option<Vec<_>>>())
            .ok_or_else(|| format!("no {key} in {line}"))
    };
    Ok(Steps { wall: list("seconds")?, cpu: list("cpu_seconds")? })
}

/// This process's user + system CPU time in seconds (all threads), from /proc/self/stat.
fn cpu_time(ticks_per_second: f64) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / ticks_per_second
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn rust_steps(o: &Options, arch: Arch, ticks: f64) -> Result<Steps, String> {
    tch::manual_seed(0);
    let spec = ModelSpec { arch, frames: o.frames, size: o.size, num_classes: 8, temporal_pool: TemporalPool::Mean };
    let vs = nn::VarStore::new(o.device);
    let model = build(&vs.root(), &spec).map_err(|e| e.chain())?;
    // The trainer's own Adam (`train::adam`), so the step is the one training runs.
    let mut opt = Adam::new(&vs, 1e-4, 1e-4);
    let xs = Tensor::randn(spec.input_shape(o.batch), (Kind::Float, o.device));
    let ys = Tensor::randint(8, [o.batch], (Kind::Int64, o.device));
    let mut steps = Steps::default();
    for i in 0..o.warmup + o.steps {
        let (start, cpu_start) = (Instant::now(), cpu_time(ticks));
        opt.zero_grad();
        let loss = model.forward_t(&xs, true).cross_entropy_for_logits(&ys);
        loss.backward();
        opt.step();
        if let Device::Cuda(i) = o.device {
            tch::Cuda::synchronize(i as i64);
        }
        let (elapsed, cpu) = (start.elapsed().as_secs_f64(), cpu_time(ticks) - cpu_start);
        if i >= o.warmup {
            steps.wall.push(elapsed);
            steps.cpu.push(cpu);
        }
    }
    Ok(steps)
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
        "{}: batch {}, T {}, S {}, {} threads, {} rounds of {} warm-up + {} timed steps, python {}",
        device_name(o.device),
        o.batch,
        o.frames,
        o.size,
        tch::get_num_threads(),
        o.rounds,
        o.warmup,
        o.steps,
        python().display()
    );
    let ticks = clock_ticks();
    let mut rows = Vec::new();
    for &arch in &o.archs {
        let (mut py, mut rs) = (Steps::default(), Steps::default());
        for _ in 0..o.rounds.max(1) {
            match python_steps(&o, arch).and_then(|p| Ok((p, rust_steps(&o, arch, ticks)?))) {
                Ok((p, r)) => {
                    py.wall.extend(p.wall);
                    py.cpu.extend(p.cpu);
                    rs.wall.extend(r.wall);
                    rs.cpu.extend(r.cpu);
                }
                Err(e) => {
                    eprintln!("{arch}: {e}");
                    std::process::exit(1);
                }
            }
        }
        let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        println!("{arch}: python wall {:.3?} cpu {:.3?}", py.wall, py.cpu);
        println!("{arch}: rust   wall {:.3?} cpu {:.3?}", rs.wall, rs.cpu);
        let (pw, rw, pc, rc) = (min(&py.wall), min(&rs.wall), median(&py.cpu), median(&rs.cpu));
        rows.push(format!("| {arch} | {pw:.3} | {rw:.3} | {:.3} | {pc:.3} | {rc:.3} | {:.3} |", rw / pw, rc / pc));
    }
    println!(
        "\n| architecture | PyTorch wall s/step (min) | Rust wall s/step (min) | Rust / PyTorch (wall) | \
         PyTorch CPU s/step (median) | Rust CPU s/step (median) | Rust / PyTorch (CPU) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}
