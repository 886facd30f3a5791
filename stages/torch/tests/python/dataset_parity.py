"""python/pipeline_dataset.py against the Rust side (run by tests/python_dataset.rs).

argv: EXTRACT_DIR SPLIT_DIR RUST_TENSORS EXPECTED_JSON OUT_DIR. RUST_TENSORS holds, per split,
what the pipeline feeds its models for that split's clips (`<split>`: normalised, `<split>_unit`:
in [0, 1]); EXPECTED_JSON the split's clip ids and labels. Every tensor must be identical. Then
writes predictions for the test split into OUT_DIR (class (label + 1) % 8 with p = 0.3), which
the Rust test reads as `evaluate` does.
"""

import json
import sys

import torch
from safetensors.torch import load_file

import pipeline_dataset as pds

extract, split, rust_file, expected_file, out = sys.argv[1:6]
rust = load_file(rust_file)
with open(expected_file) as f:
    expected = json.load(f)

for name in pds.SPLITS:
    for normalized, key in ((True, name), (False, f"{name}_unit")):
        ds = pds.CacheDataset(extract, split, name, normalized=normalized)
        assert ds.clip_ids == expected[name]["clip_ids"], (key, ds.clip_ids, expected[name]["clip_ids"])
        assert ds.labels == expected[name]["labels"], (key, ds.labels, expected[name]["labels"])
        xs = torch.stack([ds[i][0] for i in range(len(ds))])
        ys = [ds[i][1] for i in range(len(ds))]
        assert ys == ds.labels, (key, ys)
        ref = rust[key]
        if xs.dtype != ref.dtype or xs.shape != ref.shape or not torch.equal(xs, ref):
            diff = (xs.double() - ref.double()).abs().max().item() if xs.shape == ref.shape else "n/a"
            sys.exit(f"{key}: python gives {xs.dtype} {list(xs.shape)}, rust {ref.dtype} {list(ref.shape)}; max |diff| {diff}")
        # A DataLoader batch and model_input on stacked raw clips give the same tensors.
        batch, _ = next(iter(torch.utils.data.DataLoader(ds, batch_size=len(ds))))
        assert torch.equal(batch, xs), key
        if normalized:
            raw = torch.stack([ds.clip(i) for i in range(len(ds))])
            assert torch.equal(pds.model_input(raw), xs), key
        print(f"{key}: {len(ds)} clips of {list(xs.shape[1:])} identical to the Rust side")

try:
    pds.CacheDataset(extract, split, "dev")
    sys.exit("an unknown split was accepted")
except ValueError as e:
    assert "train, val, test" in str(e), e

test = pds.CacheDataset(extract, split, "test")
probs = torch.full((len(test), len(pds.CLASS_NAMES)), 0.1)
for row, label in enumerate(test.labels):
    probs[row, (label + 1) % len(pds.CLASS_NAMES)] = 0.3
pds.write_predictions(out, test.clip_ids, probs, arch="parity", labels=test.labels, actors=test.actors, frames=test.frames, size=test.size)
print(f"wrote {len(test)} predictions")
