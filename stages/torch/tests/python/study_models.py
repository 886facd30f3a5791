"""PyTorch reference implementations of the study's five architectures.

The Rust models in stages/torch/src/models/ mirror these module for module, parameter name for
parameter name; the parity tests (parity.py) and the training-step benchmark
(benches/train_step.py) both build their Python side from here. Input: [B, T, 3, S, S].
"""
import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.models.video import r3d_18


class EarlyFusionCnn(nn.Module):
    def __init__(self, frames, num_classes):
        super().__init__()
        widths = [3 * frames, 64, 128, 256, 512]
        self.blocks = nn.Sequential(*[
            nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))
            for c_in, c_out in zip(widths, widths[1:])
        ])
        self.classifier = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Dropout(0.5), nn.Linear(1024, num_classes))

    def forward(self, x):
        x = self.blocks(x.flatten(1, 2))
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class EarlyFusionResnet18(nn.Module):
    """torchvision resnet18 with a 3T-channel conv1; state-dict names are torchvision's."""

    def __init__(self, frames, num_classes):
        super().__init__()
        net = resnet18(num_classes=num_classes)
        if frames != 1:
            net.conv1 = nn.Conv2d(3 * frames, 64, 7, 2, 3, bias=False)
        self.net = net

    def forward(self, x):
        return self.net(x.flatten(1, 2))

    def state_dict(self, *args, **kwargs):
        return self.net.state_dict(*args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        return self.net.load_state_dict(*args, **kwargs)


def trunk():
    net = resnet18()
    net.fc = nn.Identity()
    return net


class LateFusionResnet18(nn.Module):
    def __init__(self, frames, num_classes, pool="mean"):
        super().__init__()
        self.pool = pool
        self.backbone = trunk()
        self.fc = nn.Linear(512 * (frames if pool == "concat" else 1), num_classes)

    def forward(self, x):
        b, t = x.shape[:2]
        f = self.backbone(x.flatten(0, 1)).view(b, t, 512)
        f = f.mean(1) if self.pool == "mean" else f.flatten(1, 2)
        return self.fc(f)


class R3d18(nn.Module):
    def __init__(self, frames, num_classes):
        super().__init__()
        self.net = r3d_18(num_classes=num_classes)

    def forward(self, x):
        return self.net(x.permute(0, 2, 1, 3, 4))

    def state_dict(self, *args, **kwargs):
        return self.net.state_dict(*args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        return self.net.load_state_dict(*args, **kwargs)


class Resnet18Lstm(nn.Module):
    def __init__(self, frames, num_classes):
        super().__init__()
        self.backbone = trunk()
        self.lstm = nn.LSTM(512, 512, batch_first=True)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        b, t = x.shape[:2]
        f = self.backbone(x.flatten(0, 1)).view(b, t, 512)
        _, (h, _) = self.lstm(f)
        return self.fc(h[-1])


ARCHS = {
    "early_fusion_cnn": EarlyFusionCnn,
    "early_fusion_resnet18": EarlyFusionResnet18,
    "late_fusion_resnet18": LateFusionResnet18,
    "r3d18": R3d18,
    "resnet18_lstm": Resnet18Lstm,
}


def build(arch, frames, num_classes):
    return ARCHS[arch](frames, num_classes)
