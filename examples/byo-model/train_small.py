"""A small PyTorch model trained on the pipeline's tensor cache: the `train_pytorch` stage of
examples/byo-model/pipeline.yaml (README: "Bring your own model").

Reads the `extract` and `split` outputs through python/pipeline_dataset.py, trains a two-layer
3D CNN with Adam on CPU (PIPELINE_THREADS threads), keeps the epoch with the best validation
accuracy, and writes for `evaluate`: its test-split predictions (`predictions.parquet`), its
card (`model.json`) and its training curves (`history.parquet`).

Parameters (`with:`): epochs, batch_size, lr, seed.
"""

import copy
import time

import torch
from torch import nn

import pipeline_dataset as pds

ARCH = "pytorch_tiny3d"


class Tiny3d(nn.Module):
    """Two 3x3x3 convolutions over (time, height, width), global average pooling, a linear head."""

    def __init__(self, classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(3, 16, 3, padding=1),
            nn.BatchNorm3d(16),
            nn.ReLU(),
            nn.MaxPool3d((1, 2, 2)),
            nn.Conv3d(16, 32, 3, padding=1),
            nn.BatchNorm3d(32),
            nn.ReLU(),
            nn.AdaptiveAvgPool3d(1),
        )
        self.head = nn.Linear(32, classes)

    def forward(self, x):
        # The pipeline's layout is [B, T, 3, S, S]; Conv3d wants [B, 3, T, S, S].
        return self.head(self.features(x.transpose(1, 2)).flatten(1))


def run_epoch(model, loader, loss_fn, optimizer=None):
    """One pass; trains when an optimizer is given. Returns (mean loss, accuracy)."""
    model.train(optimizer is not None)
    total_loss, correct, seen = 0.0, 0, 0
    with torch.set_grad_enabled(optimizer is not None):
        for x, y in loader:
            logits = model(x)
            loss = loss_fn(logits, y)
            if optimizer is not None:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            total_loss += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
    return total_loss / seen, correct / seen


def main():
    epochs, batch_size = int(pds.param("epochs", 10)), int(pds.param("batch_size", 8))
    lr, seed = float(pds.param("lr", 1e-3)), int(pds.param("seed", 0))
    torch.set_num_threads(pds.threads())
    torch.manual_seed(seed)

    extract, split = pds.input_dir("extract"), pds.input_dir("split")
    train, val, test = (pds.CacheDataset(extract, split, s) for s in ("train", "val", "test"))
    shuffled = torch.utils.data.DataLoader(train, batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))

    def in_order(dataset):
        return torch.utils.data.DataLoader(dataset, batch_size)

    model = Tiny3d(len(pds.CLASS_NAMES))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    history, best = [], (-1.0, 0, None)
    started = time.monotonic()
    for epoch in range(1, epochs + 1):
        t0 = time.monotonic()
        train_loss, train_acc = run_epoch(model, shuffled, loss_fn, optimizer)
        val_loss, val_acc = run_epoch(model, in_order(val), loss_fn)
        history.append(
            dict(epoch=epoch, train_loss=train_loss, train_accuracy=train_acc, val_loss=val_loss, val_accuracy=val_acc, lr=lr, seconds=time.monotonic() - t0)
        )
        print(f"epoch {epoch}/{epochs}: train loss {train_loss:.3f} acc {train_acc:.1%}, val loss {val_loss:.3f} acc {val_acc:.1%}", flush=True)
        if val_acc > best[0]:
            best = (val_acc, epoch, copy.deepcopy(model.state_dict()))
    train_seconds = time.monotonic() - started

    model.load_state_dict(best[2])
    model.eval()
    with torch.no_grad():
        probs = torch.cat([model(x).softmax(dim=1) for x, _ in in_order(test)])
    out = pds.output_dir()
    pds.write_predictions(
        out,
        test.clip_ids,
        probs,
        arch=ARCH,
        labels=test.labels,
        actors=test.actors,
        frames=train.frames,
        size=train.size,
        augment=False,
        parameter_count=sum(p.numel() for p in model.parameters()),
        train_seconds=train_seconds,
        epochs_run=epochs,
        best_epoch=best[1],
        best_val_accuracy=best[0],
        hyperparameters=dict(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed),
    )
    pds.write_history(out, history)
    print(f"{ARCH}: best val accuracy {best[0]:.1%} at epoch {best[1]} of {epochs}; {len(test)} test clips predicted")


if __name__ == "__main__":
    main()
