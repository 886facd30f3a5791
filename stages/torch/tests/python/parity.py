"""Writes the reference side of the Rust import-parity tests (tests/models_parity.rs).

Usage: python parity.py OUT_DIR

For each case: random-weight model (BatchNorm statistics randomised too, so eval-mode BN is
exercised), its state dict saved with `torch.save(model.state_dict(), path)` (the zip-pickled
OrderedDict format torchvision publishes), a fixed input and the eval-mode logits, both as
safetensors (`input`, `logits`).
"""
import os
import sys

import torch
from safetensors.torch import save_file
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import study_models  # noqa: E402

S = 32
T = 4


def randomise(model):
    """Random affine and running statistics for every BatchNorm, so eval mode is non-trivial."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.weight.data = 0.5 + torch.rand(n, generator=g)
            m.bias.data = 0.1 * torch.randn(n, generator=g)
            m.running_mean = 0.1 * torch.randn(n, generator=g)
            m.running_var = 0.5 + torch.rand(n, generator=g)
            m.num_batches_tracked.fill_(7)
    return model


def write(out, name, model, x, state_dict=None):
    model.eval()
    with torch.no_grad():
        logits = model(x)
    torch.save(state_dict if state_dict is not None else model.state_dict(), os.path.join(out, f"{name}.pth"))
    save_file({"input": x.contiguous(), "logits": logits.contiguous()}, os.path.join(out, f"{name}.safetensors"))
    print(f"{name}: logits {tuple(logits.shape)} max |logit| {logits.abs().max():.3f}")


def main(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)

    # torchvision resnet18, 1000 classes: the early-fusion model with T = 1 is this network
    # (its state dict is torchvision's).
    ef = randomise(study_models.EarlyFusionResnet18(1, 1000))
    write(out, "resnet18", ef, torch.randn(2, 1, 3, S, S))
    tv = ef.net

    # The same torchvision file loaded into late fusion (mean pool, 1000 classes): the
    # backbone takes resnet18's trunk, fc its classifier.
    late = study_models.LateFusionResnet18(T, 1000)
    late.backbone.load_state_dict({k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")})
    late.fc.load_state_dict({"weight": tv.fc.weight, "bias": tv.fc.bias})
    xt = torch.randn(2, T, 3, S, S)
    late.eval()
    with torch.no_grad():
        logits = late(xt)
    save_file({"input": xt, "logits": logits}, os.path.join(out, "resnet18_into_late_fusion.safetensors"))

    # torchvision r3d_18, 400 classes (Kinetics-400's head); fc scaled up from torchvision's
    # N(0, 0.01) so that the logits are of order one.
    r3d = randomise(study_models.R3d18(T, 400))
    r3d.net.fc.weight.data *= 10
    write(out, "r3d18", r3d, xt)

    # The study models in our own layout (8 classes), torch.nn.LSTM included.
    for arch in ["early_fusion_cnn", "late_fusion_resnet18", "resnet18_lstm"]:
        model = randomise(study_models.build(arch, T, 8))
        if arch == "early_fusion_cnn":
            model.classifier[3].weight.data *= 10
        write(out, arch, model, xt)


if __name__ == "__main__":
    main(sys.argv[1])
