#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine with Rust. Source it (it exports the build
# environment) or run it (it only installs). Skips whatever is already there.
#
#   Debian packages       ffmpeg, pkg-config, libfontconfig1-dev, fonts-dejavu-core, chromium,
#                         slurm-wlm and munge (the one-node Slurm cluster tests/slurm.rs starts)
#                         (when root; otherwise it says what is missing). Without root, ffmpeg
#                         comes from the static build in the imageio-ffmpeg wheel (venv below).
#   libtorch              PyPI's torch==$TORCH_VERSION in a venv kept in a per-user cache
#                         folder keyed by the version, so fresh clones and CI reuse it.
#                         Override the folder with PIPELINE_TORCH_VENV.
#   python test clients   safetensors, pyarrow, numpy in the same venv.
#   s3s-fs                the S3-compatible server the remote-cache tests start on loopback
#                         (tests/remote_s3.rs), `cargo install`ed into ~/.cargo/bin when missing.
#   azurite               Microsoft's Azure Blob Storage emulator for tests/remote_azure.rs,
#                         `npm install`ed into ~/.cache/pipeline/azurite when missing (needs
#                         node and npm; as root on Debian they come from apt).
#
# PIPELINE_SETUP_FOR=run (what `scripts/dev run` and `scripts/install` set) installs only what
# running pipelines needs: no chromium, Slurm, munge, s3s-fs or Azurite (the tests' services).
set -euo pipefail
SETUP_FOR="${PIPELINE_SETUP_FOR:-test}"

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/pipeline"
VENV="${PIPELINE_TORCH_VENV:-$CACHE_ROOT/torch-$TORCH_VERSION}"

log() { printf 'setup: %s\n' "$*" >&2; }

# Debian packages: ffmpeg (video), pkg-config + fontconfig headers and a font (plotters builds
# against fontconfig and draws text with it), chromium (the report test renders report.html).
install_debian_packages() {
    local missing=()
    command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || missing+=(ffmpeg)
    command -v pkg-config >/dev/null || missing+=(pkg-config)
    pkg-config --exists fontconfig 2>/dev/null || missing+=(libfontconfig1-dev)
    [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
    if [ "$SETUP_FOR" = test ]; then
        command -v chromium >/dev/null || missing+=(chromium)
        # Daemons live in /usr/sbin, which is not on every user's PATH.
        [ -x /usr/sbin/slurmctld ] && command -v sbatch >/dev/null || missing+=(slurm-wlm)
        [ -x /usr/sbin/munged ] || missing+=(munge)
    fi
    [ ${#missing[@]} -eq 0 ] && return
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing Debian packages: ${missing[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        log "missing (install them with your package manager): ${missing[*]}"
    fi
}

install_venv() {
    local stamp="$VENV/.pipeline-ready-v2"  # bump when the package list changes
    if [ -f "$stamp" ]; then return; fi
    log "creating python venv with torch==$TORCH_VERSION in $VENV (one time, a few minutes)"
    mkdir -p "$(dirname "$VENV")"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q "torch==$TORCH_VERSION" torchvision==0.28.0 safetensors pyarrow numpy pillow
    if ! command -v ffmpeg >/dev/null; then
        "$VENV/bin/pip" install -q imageio-ffmpeg
    fi
    touch "$stamp"
}

link_static_ffmpeg() {
    # Without root there is no Debian ffmpeg: expose the wheel's static binary on PATH.
    if command -v ffmpeg >/dev/null; then return; fi
    local exe
    exe=$("$VENV/bin/python" -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())' 2>/dev/null) || return 0
    ln -sf "$exe" "$VENV/bin/ffmpeg"
}

# s3s-fs 0.14.1: newer versions need a newer rustc. Builds in about 2 minutes, once.
install_s3s_fs() {
    local cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
    if command -v s3s-fs >/dev/null || [ -x "$cargo_bin/s3s-fs" ]; then return; fi
    log "installing s3s-fs@0.14.1 (S3 server for the remote-cache tests, about 2 minutes)"
    cargo install -q s3s-fs@0.14.1 --features binary --locked \
        || cargo install -q s3s-fs@0.14.1 --features binary
}

# Azurite 3 (Azure Blob Storage emulator): about 15 s and 190 MB, once.
install_azurite() {
    local dir="$CACHE_ROOT/azurite"
    if command -v azurite-blob >/dev/null || [ -x "$dir/node_modules/.bin/azurite-blob" ]; then return; fi
    if ! command -v npm >/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            log "installing Debian packages: nodejs npm"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
        else
            log "missing (install them with your package manager): nodejs npm"
            return
        fi
    fi
    log "installing azurite@3 into $dir (Azure emulator for the remote-cache tests)"
    mkdir -p "$dir"
    npm install -q --prefix "$dir" --no-audit --no-fund azurite@3 >/dev/null
}

install_debian_packages
install_venv
link_static_ffmpeg
if [ "$SETUP_FOR" = test ]; then
    install_s3s_fs
    install_azurite
fi

export PIPELINE_TORCH_VENV="$VENV"
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
export LIBTORCH_BYPASS_VERSION_CHECK="${LIBTORCH_BYPASS_VERSION_CHECK:-0}"
