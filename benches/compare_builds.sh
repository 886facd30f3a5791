#!/usr/bin/env bash
# Runs the same jobs with two builds of `pipeline` on one workspace, alternating, and prints
# CPU seconds per job (BENCHMARKS.md, "Clean build"): a forced extract, a forced training of
# early_fusion_cnn and a verify, ROUNDS times each. WORKSPACE must hold a finished run of the
# default pipeline (e.g. after `scripts/dev run`), so that only the forced stages compute.
# Each build's `pipeline-torch` must lie beside its `pipeline`. Afterwards it checks that both
# builds wrote the same bytes (cache shards and index, model weights).
#
#   benches/compare_builds.sh OLD_BIN NEW_BIN WORKSPACE [ROUNDS]
set -euo pipefail
old=$1 new=$2 ws=$3 rounds=${4:-2}
train='train[arch=early_fusion_cnn]'
out=$(mktemp -d)
cd "$ws"
digest() { (cd "$1" && find . -type f \( -name '*.safetensors' -o -name 'index.parquet' \) -exec sha256sum {} + | sort -k2 | sha256sum | cut -c1-16); }
for round in $(seq 1 "$rounds"); do
    for which in old new; do
        bin=$old; [ "$which" = new ] && bin=$new
        for job in extract train verify; do
            case $job in
                extract) args=(run extract --force extract) ;;
                train) args=(run "$train" --force "$train") ;;
                verify) args=(verify) ;;
            esac
            /usr/bin/time -f "$round $which $job %e s wall, %U + %S CPU-s" -a -o "$out/times" "$bin" -q "${args[@]}" >/dev/null
            if [ "$job" != verify ]; then
                stage=$([ "$job" = extract ] && echo extract || echo "$train")
                digest "$("$bin" show "$stage" | head -1 | sed 's/^[^:]*: //')" >> "$out/$job.$which"
            fi
        done
    done
done
cat "$out/times"
for job in extract train; do
    if [ "$(sort -u "$out/$job.old" "$out/$job.new" | wc -l)" = 1 ]; then echo "$job: same bytes from both builds"; else echo "$job: the builds wrote different bytes"; exit 1; fi
done
