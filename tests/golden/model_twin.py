"""tests/golden/model_twin.py — PyTorch twins of the coretuned backbones, for fixture generation only.

cifar_resnet(depth, in_ch): He et al. 2016 CIFAR ResNet-20/32/56 with torchvision parameter names
(conv1, bn1, layer1..3, projection shortcut `downsample.0/.1`), as trainer/model.c builds it.
torchvision_resnet(arch, in_ch, small_stem): torchvision's own model, optionally with the 3x3 stride-1
stem and no max pool. Both return the backbone (fc = Identity), so forward gives the pooled feature.
det_fill(): the deterministic weight formula the C test recomputes (no weights are committed).
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torchvision


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        sc = x if self.downsample is None else self.downsample(x)
        return self.relu(out + sc)


class CifarResNet(nn.Module):
    def __init__(self, depth, in_ch):
        super().__init__()
        assert (depth - 2) % 6 == 0
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_ch, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        cin = 16
        for i, (c, s) in enumerate([(16, 1), (32, 2), (64, 2)]):
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(cin, c, s if b == 0 else 1))
                cin = c
            setattr(self, "layer%d" % (i + 1), nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(self.avgpool(x), 1)


def cifar_resnet(depth, in_ch):
    return CifarResNet(depth, in_ch)


def torchvision_resnet(arch, in_ch=3, small_stem=False, num_classes=1000, keep_fc=False):
    m = getattr(torchvision.models, arch)(num_classes=num_classes)
    if small_stem:
        m.conv1 = nn.Conv2d(in_ch, 64, 3, 1, 1, bias=False)
        m.maxpool = nn.Identity()
    elif in_ch != 3:
        m.conv1 = nn.Conv2d(in_ch, 64, 7, 2, 3, bias=False)
    if not keep_fc:
        m.fc = nn.Identity()
    return m


def det_uniform(n, stream):
    """n values in [-1, 1) from splitmix64 of (stream << 32) + i, computed in exact uint64 arithmetic
    so the C test reproduces them bit for bit: u = (z >> 11) * 2^-53, value = 2u - 1 (float64)."""
    x = (np.uint64(stream) << np.uint64(32)) + np.arange(n, dtype=np.uint64)
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53 * 2.0 - 1.0


def det_fill(model):
    """Deterministic weights: the k-th parameter tensor (named_parameters order) gets, with
    v = det_uniform(numel, k): conv sqrt(6/fan_in) v (Kaiming variance), BN weight 1 + 0.2 v,
    BN bias 0.1 v; each rounded to float32."""
    with torch.no_grad():
        for k, (name, p) in enumerate(model.named_parameters()):
            v = det_uniform(p.numel(), k)
            if p.dim() == 4:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                v = math.sqrt(6.0 / fan_in) * v
            elif name.endswith("weight"):
                v = 1.0 + 0.2 * v
            else:
                v = 0.1 * v
            p.copy_(torch.from_numpy(v.astype(np.float32)).view_as(p))
