"""The pipeline's tensor cache and split as a PyTorch dataset, and predictions for `evaluate`.

Bring a model written in PyTorch into the pipeline's comparison (README: "Bring your own
model"). In a `run:` stage that needs `extract` and `split`:

    import pipeline_dataset as pds

    train = pds.CacheDataset(pds.input_dir("extract"), pds.input_dir("split"), "train")
    x, label = train[0]       # float32 [T, 3, S, S], ImageNet-normalised, as the pipeline's models see it
    ...
    test = pds.CacheDataset(pds.input_dir("extract"), pds.input_dir("split"), "test")
    pds.write_predictions(pds.output_dir(), test.clip_ids, probs, arch="my_model",
                          labels=test.labels, actors=test.actors)

and give that stage to an `evaluate` stage as its `train` input: `evaluate` computes the same
metrics as for the built-in architectures (accuracy with its 95 % interval, macro-F1, UAR,
per-class scores, confusion matrix) and `report` lists the model beside them.

Only torch, safetensors and pyarrow are needed (all in the venv of scripts/setup.sh).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors import safe_open

# RAVDESS emotions by label: the class order of every model (output index = label).
CLASS_NAMES = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
# The normalisation of the [0, 1] RGB input (torchvision's ImageNet statistics), as in
# stages/torch/src/preprocess.rs.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLITS = ("train", "val", "test")

INDEX_FILE = "index.parquet"  # in an `extract` output
ASSIGNMENT_FILE = "assignment.parquet"  # in a `split` output
PREDICTIONS_FILE = "predictions.parquet"  # what a model trained here writes for `evaluate`
CARD_FILE = "model.json"
HISTORY_FILE = "history.parquet"


def to_unit_float(clips: torch.Tensor) -> torch.Tensor:
    """uint8 [..., T, S, S, 3] (the cache layout) to float32 [..., T, 3, S, S] in [0, 1]."""
    if clips.dtype != torch.uint8 or clips.dim() < 4 or clips.shape[-1] != 3:
        raise ValueError(f"expected uint8 clips [..., T, S, S, 3], got {clips.dtype} {list(clips.shape)}")
    return clips.movedim(-1, -3).to(torch.float32) / 255.0


def normalize(x: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """[..., T, 3, S, S] in [0, 1] to (x - mean) / std per channel."""
    mean = torch.tensor(mean, dtype=torch.float32, device=x.device).view(3, 1, 1)
    std = torch.tensor(std, dtype=torch.float32, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def model_input(clips: torch.Tensor) -> torch.Tensor:
    """Both steps: what the pipeline's own models are fed (uint8 cache clips in)."""
    return normalize(to_unit_float(clips))


class CacheDataset(torch.utils.data.Dataset):
    """The clips of one split (`train`, `val` or `test`) of a `split` output, read from the
    `extract` output it was made from, in the assignment's order.

    Item `i` is `(x, label)`: `x` float32 [T, 3, S, S], normalised as the pipeline's models
    see it (`normalized=False`: in [0, 1], e.g. to augment before `normalize`), `label` the
    class index. `clip_ids`, `labels` and `actors` list the split's clips; `frames` (T) and
    `size` (S) the geometry. Shards are memory-mapped and each clip read when asked for.
    """

    def __init__(self, extract_dir, split_dir, split: str, normalized: bool = True):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
        self.extract_dir = Path(extract_dir)
        self.split = split
        self.normalized = normalized
        index = _read_table(self.extract_dir / INDEX_FILE, ["clip_id", "shard", "tensor", "frames", "size"], "an `extract` output")
        assignment_file = Path(split_dir) / ASSIGNMENT_FILE
        assignment = _read_table(assignment_file, ["clip_id", "actor", "label", "split"], "a `split` output")
        rows = {r["clip_id"]: r for r in index}
        chosen = [a for a in assignment if a["split"] == split]
        if not chosen:
            raise ValueError(f"{assignment_file}: the {split} split holds no clips")
        absent = [a["clip_id"] for a in chosen if a["clip_id"] not in rows]
        if absent:
            raise ValueError(
                f"{assignment_file}: clip(s) {', '.join(absent[:5])} are not in the tensor cache "
                f"{self.extract_dir}; was the split made from another `extract`?"
            )
        self.clip_ids = [a["clip_id"] for a in chosen]
        self.labels = [int(a["label"]) for a in chosen]
        self.actors = [int(a["actor"]) for a in chosen]
        self._where = [(rows[i]["shard"], rows[i]["tensor"]) for i in self.clip_ids]
        geometry = {(r["frames"], r["size"]) for r in index}
        if len(geometry) != 1:
            raise ValueError(f"{self.extract_dir / INDEX_FILE}: clips of different shapes in one cache: {sorted(geometry)}")
        self.frames, self.size = geometry.pop()
        self._shards = {}

    def __len__(self) -> int:
        return len(self.clip_ids)

    def __getitem__(self, i: int):
        x = to_unit_float(self.clip(i))
        return (normalize(x) if self.normalized else x), self.labels[i]

    def clip(self, i: int) -> torch.Tensor:
        """Clip `i` as stored: uint8 [T, S, S, 3], RGB."""
        shard, name = self._where[i]
        path = self._shard_path(shard)
        if path not in self._shards:
            self._shards[path] = safe_open(str(path), framework="pt")
        tensor = self._shards[path].get_tensor(name)
        expected = [self.frames, self.size, self.size, 3]
        if tensor.dtype != torch.uint8 or list(tensor.shape) != expected:
            raise ValueError(f"{path}: tensor `{name}` is {tensor.dtype} {list(tensor.shape)}, expected uint8 {expected}")
        return tensor

    def _shard_path(self, shard: str) -> Path:
        inside = self.extract_dir / "shards" / shard
        return inside if inside.is_file() else self.extract_dir / shard

    def __getstate__(self):
        # Open shards do not pickle (DataLoader workers that spawn): each process opens its own.
        state = dict(self.__dict__)
        state["_shards"] = {}
        return state


def input_dir(need: str) -> Path:
    """The output folder of the upstream stage `need` of this `run:` stage (PIPELINE_IN_<NEED>)."""
    var = "PIPELINE_IN_" + "".join(c if c.isalnum() else "_" for c in need.upper())
    value = os.environ.get(var)
    if not value:
        raise RuntimeError(f"{var} is not set: add `{need}` to this stage's `needs:`")
    if ":" in value:
        raise RuntimeError(f"{var} holds several folders ({value}): `{need}` is a matrix stage; pick one instance in `needs:`")
    return Path(value)


def output_dir() -> Path:
    """Where this `run:` stage writes its output (PIPELINE_OUT)."""
    value = os.environ.get("PIPELINE_OUT")
    if not value:
        raise RuntimeError("PIPELINE_OUT is not set: run this script as a `run:` stage of a pipeline")
    return Path(value)


def threads() -> int:
    """The CPU threads this stage may use (PIPELINE_THREADS; 1 outside a pipeline)."""
    return max(1, int(os.environ.get("PIPELINE_THREADS", "1")))


def param(name: str, default=None):
    """The `with:`/matrix parameter `name` (PIPELINE_PARAM_<NAME>): numbers, booleans and lists
    as Python values, strings as they are; `default` when not set."""
    value = os.environ.get("PIPELINE_PARAM_" + "".join(c if c.isalnum() else "_" for c in name.upper()))
    if value is None:
        return default
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def write_predictions(out_dir, clip_ids, probs: torch.Tensor, *, arch: str, labels=None, actors=None, **card) -> Path:
    """Writes `predictions.parquet` and its card `model.json` into `out_dir`, the output
    `evaluate` reads for a model trained elsewhere.

    `probs` are softmax probabilities [N, 8] (classes in label order), one row per id in
    `clip_ids`, which must be every clip of the evaluated split; `predicted` is their arg-max.
    `labels` and `actors` (optional) are checked by `evaluate` against the split. `arch`
    names the model in the report; other keyword arguments go into the card (the report
    shows `frames`, `size`, `parameter_count`, `train_seconds`, `epochs_run`, `augment`).
    """
    out_dir = Path(out_dir)
    probs = torch.as_tensor(probs, dtype=torch.float32).detach().cpu()
    clip_ids = [str(c) for c in clip_ids]
    if probs.shape != (len(clip_ids), len(CLASS_NAMES)):
        raise ValueError(f"probs must be [{len(clip_ids)} clips, {len(CLASS_NAMES)} classes], got {list(probs.shape)}")
    columns = {"clip_id": pa.array(clip_ids, pa.string())}
    for name, values, kind in (("actor", actors, pa.int32()), ("label", labels, pa.int64())):
        if values is not None:
            values = [int(v) for v in values]
            if len(values) != len(clip_ids):
                raise ValueError(f"{len(values)} {name}s for {len(clip_ids)} clips")
            columns[name] = pa.array(values, kind)
    columns["predicted"] = pa.array(probs.argmax(dim=1).tolist(), pa.int64())
    for k in range(len(CLASS_NAMES)):
        columns[f"prob_{k}"] = pa.array(probs[:, k].tolist(), pa.float32())
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / PREDICTIONS_FILE
    pq.write_table(pa.table(columns), path)
    card = {"kind": "predictions", "arch": arch, "class_names": list(CLASS_NAMES), **card}
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return path


def write_history(out_dir, epochs) -> Path:
    """Writes `history.parquet` (the training curves `evaluate` and `report` draw) from one
    dict per epoch with `epoch`, `train_loss`, `train_accuracy`, `val_loss`, `val_accuracy`
    and optionally `lr` and `seconds`."""
    epochs = list(epochs)
    columns = {"epoch": pa.array([int(e["epoch"]) for e in epochs], pa.int64())}
    for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"):
        if name in ("lr", "seconds") and not any(name in e for e in epochs):
            continue
        columns[name] = pa.array([None if e.get(name) is None else float(e[name]) for e in epochs], pa.float64())
    path = Path(out_dir) / HISTORY_FILE
    pq.write_table(pa.table(columns), path)
    return path


def _read_table(path: Path, columns, what: str):
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; is `{path.parent}` {what}?")
    table = pq.read_table(path)
    absent = [c for c in columns if c not in table.column_names]
    if absent:
        raise ValueError(f"{path}: no column(s) {', '.join(absent)}")
    return table.select(columns).to_pylist()
