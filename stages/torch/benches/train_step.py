"""PyTorch side of the training-step benchmark (benches/train_step.rs runs it).

Usage: python train_step.py --arch ARCH [--batch 8 --frames 10 --size 112 --classes 8
                            --threads 2 --warmup 3 --steps 5 --device cpu]

Times `zero_grad; loss = cross_entropy(model(x), y); loss.backward(); adam.step()` on the
PyTorch definition of the architecture (tests/python/study_models.py) in training mode and
prints one JSON line: {"arch": ..., "seconds": [wall seconds per timed step],
"cpu_seconds": [process user + system CPU seconds per timed step]}.
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
import study_models  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", required=True, choices=sorted(study_models.ARCHS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    device = torch.device(a.device)
    model = study_models.build(a.arch, a.frames, a.classes).train().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-4)
    x = torch.randn(a.batch, a.frames, 3, a.size, a.size, device=device)
    y = torch.randint(0, a.classes, (a.batch,), device=device)

    seconds, cpu_seconds = [], []
    for i in range(a.warmup + a.steps):
        start, cpu_start = time.perf_counter(), cpu_time()
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed, cpu = time.perf_counter() - start, cpu_time() - cpu_start
        if i >= a.warmup:
            seconds.append(elapsed)
            cpu_seconds.append(cpu)
    print(json.dumps({"arch": a.arch, "threads": torch.get_num_threads(), "seconds": seconds, "cpu_seconds": cpu_seconds}))


def cpu_time():
    t = os.times()
    return t.user + t.system


if __name__ == "__main__":
    main()
