//! Build script of the one crate that links libtorch (`stages-torch`: the `pipeline-torch`
//! worker, its tests and benches; the `pipeline` binary does not link it): embeds an rpath to libtorch's directory so the binary runs without
//! `LD_LIBRARY_PATH`, and links with `--no-as-needed` so `libtorch_cuda.so` is kept: Rust links
//! with `--as-needed`, nothing references libtorch_cuda's symbols directly, and without it CUDA
//! silently vanishes (`tch::Cuda::is_available()` returns false on a GPU machine).
//!
//! libtorch is found as torch-sys finds it: `LIBTORCH` (a libtorch folder), or with
//! `LIBTORCH_USE_PYTORCH=1` the `torch` package of the active Python.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-env-changed=VIRTUAL_ENV");
    let Some(lib) = torch_lib_dir() else {
        println!("cargo:warning=libtorch not found: set LIBTORCH or LIBTORCH_USE_PYTORCH=1 (run `source scripts/setup.sh`)");
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-L{}", lib.display());
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-ltorch");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}

fn torch_lib_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("LIBTORCH") {
        return Some(PathBuf::from(dir).join("lib"));
    }
    if std::env::var("LIBTORCH_USE_PYTORCH").is_ok() {
        let python = std::env::var_os("VIRTUAL_ENV")
            .map(|v| PathBuf::from(v).join("bin").join("python"))
            .unwrap_or_else(|| PathBuf::from("python3"));
        let out = Command::new(python)
            .args(["-c", "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))"])
            .output()
            .ok()?;
        let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
        return dir.is_dir().then_some(dir);
    }
    None
}
