#!/usr/bin/python3
"""reproduce/torch_protocol.py [--quick] — the same protocol as reproduce/run.py, in PyTorch (Debian's
python3-torch): the same resnet20 (tests/golden/model_twin.py), data files (written by run.py into
reproduce/out/<profile>/), augmentations (SimCLR: random resized crop scale 0.2-1 + flip; fine-tuning:
3-pixel pad crop + flip; Fashion-MNIST mean/std), hyper-parameters (reproduce/protocol.py), losses
(NT-Xent; CE; Core-tuning paper variant, bench/torch_step.py; reference variant, the authors' loss code
as re-implemented in tests/golden/coretuning_ref.py) and SGD with a per-step cosine schedule.
Writes reproduce/out/<profile>/torch.json. Run reproduce/run.py first (it writes the data files)."""
import argparse
import json
import math
import os
import platform
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import coretuning_ref  # noqa: E402
import model_twin  # noqa: E402
import protocol  # noqa: E402
import safetensors_io  # noqa: E402
import torch_step  # noqa: E402

MEAN, STD = 0.2860, 0.3530


def load_idx(d):
    with open(os.path.join(d, "train-images-idx3-ubyte"), "rb") as f:
        _, n, r, c = struct.unpack(">IIII", f.read(16))
        x = np.frombuffer(f.read(), np.uint8).reshape(n, 1, r, c)
    with open(os.path.join(d, "train-labels-idx1-ubyte"), "rb") as f:
        f.read(8)
        y = np.frombuffer(f.read(), np.uint8).astype(np.int64)
    return torch.from_numpy((x.astype(np.float32) / 255 - MEAN) / STD), torch.from_numpy(y)


def pad_crop_flip(x, gen, pad=3):
    """torchvision RandomCrop(28, padding=3) + RandomHorizontalFlip on a batch. The padding is a black
    pixel normalised, as torchvision pads the PIL image before Normalize (and as our loader does)."""
    n, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad), value=(0 - MEAN) / STD)
    out = torch.empty_like(x)
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    for i in range(n):
        v = xp[i, :, oy[i]:oy[i] + h, ox[i]:ox[i] + w]
        out[i] = v.flip(-1) if flip[i] else v
    return out


def resized_crop_flip(x, gen, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3)):
    """torchvision RandomResizedCrop(28, scale, ratio) + RandomHorizontalFlip, per image."""
    n, c, h, w = x.shape
    out = torch.empty_like(x)
    area = h * w
    for i in range(n):
        for _ in range(10):
            a = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(1, generator=gen).item())
            logr = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * torch.rand(1, generator=gen).item()
            r = math.exp(logr)
            cw, ch = int(round(math.sqrt(a * r))), int(round(math.sqrt(a / r)))
            if 0 < cw <= w and 0 < ch <= h:
                break
        else:
            cw, ch = w, h
        y0 = torch.randint(0, h - ch + 1, (1,), generator=gen).item()
        x0 = torch.randint(0, w - cw + 1, (1,), generator=gen).item()
        v = F.interpolate(x[i:i + 1, :, y0:y0 + ch, x0:x0 + cw], size=(h, w), mode="bilinear", align_corners=False)[0]
        out[i] = v.flip(-1) if torch.rand(1, generator=gen).item() < 0.5 else v
    return out


def init_like_torchvision(net):
    """The initialisation coretuned's model_init uses (torchvision's ResNet init), so both pre-trainings
    start from the same distribution: convs kaiming-normal (fan_out, relu), BN weight 1 bias 0."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return net


def load_backbone(path):
    """A backbone coretuned wrote (safetensors, torchvision names) as a state_dict for the twin."""
    t = safetensors_io.read(path)
    return {k: torch.from_numpy(v) for k, v in t.items() if not k.startswith(("fc.", "contrastor."))}


class Heads(nn.Module):
    def __init__(self, d, classes, cd):
        super().__init__()
        self.fc = nn.Linear(d, classes, bias=False) if classes else None
        self.contrastor = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, cd)) if cd else None


def cosine_lr(base, step, total):
    return 0.5 * base * (1 + math.cos(math.pi * step / total))


def sgd(params, lr, hp):
    return torch.optim.SGD(params, lr=lr, momentum=hp["momentum"], nesterov=hp["nesterov"],
                           weight_decay=hp["weight_decay"])


def pretrain(x, prof, gen):
    net = init_like_torchvision(model_twin.cifar_resnet(20, 1))
    heads = Heads(64, 0, protocol.PRETRAIN_HP["contrast_dim"])
    params = list(net.parameters()) + list(heads.parameters())
    hp = protocol.PRETRAIN_HP
    opt = sgd(params, prof["pretrain_lr"], hp)
    b, tau = prof["pretrain_batch"], hp["temperature"]
    steps = len(x) // b
    total = steps * prof["pretrain_epochs"]
    net.train()
    for epoch in range(prof["pretrain_epochs"]):
        order = torch.randperm(len(x), generator=gen)
        for s in range(steps):
            idx = order[s * b:(s + 1) * b]
            v = torch.cat([resized_crop_flip(x[idx], gen), resized_crop_flip(x[idx], gen)])
            z = F.normalize(heads.contrastor(net(v)))
            sim = z @ z.T / tau
            sim.fill_diagonal_(float("-inf"))
            target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)])
            loss = F.cross_entropy(sim, target)
            for g in opt.param_groups:
                g["lr"] = cosine_lr(prof["pretrain_lr"], epoch * steps + s, total)
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"  simclr epoch {epoch + 1}: loss {loss.item():.4f}", flush=True)
    return net.state_dict()


def finetune(backbone, x, y, xt, yt, method, variant, seed, prof, lr=None, eta=None):
    """lr, eta: overrides of protocol.FINETUNE_HP / CORE_HP (a sweep's choice)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = model_twin.cifar_resnet(20, 1)
    net.load_state_dict(backbone)
    core = method == "core_tuning"
    heads = Heads(64, 10, protocol.CORE_HP["contrast_dim"] if core else 0)
    hp = dict(protocol.FINETUNE_HP)
    if lr is not None:
        hp["learning_rate"] = lr
    params = list(net.parameters()) + list(heads.parameters())
    opt = sgd(params, hp["learning_rate"], hp)
    b = prof["finetune_batch"]
    steps = len(x) // b
    total = steps * prof["finetune_epochs"]
    c = dict(protocol.CORE_HP)
    if eta is not None:
        c["eta"] = eta
    for epoch in range(prof["finetune_epochs"]):
        net.train()
        order = torch.randperm(len(x), generator=gen)
        for s in range(steps):
            idx = order[s * b:(s + 1) * b]
            h = net(pad_crop_flip(x[idx], gen))
            labels = y[idx]
            if not core:
                loss = F.cross_entropy(heads.fc(h), labels)
            else:
                cw = (heads.fc.weight, heads.contrastor[0].weight, heads.contrastor[0].bias,
                      heads.contrastor[2].weight, heads.contrastor[2].bias)
                if variant == "paper":
                    partner, lam_neg, lam_pos = torch_step.sample_draws(labels, gen)
                    loss = torch_step.core_loss(h, labels, *cw, partner, lam_neg, lam_pos, eta=c["eta"],
                                                tau=c["temperature"], num_classes=10)[0]
                else:
                    beta = torch.distributions.Beta(torch.tensor(c["mixup_alpha"]), torch.tensor(c["mixup_alpha"]))
                    order_k = torch.randperm(b, generator=gen)
                    loss = coretuning_ref.reference_loss(h, labels, 10, *cw, order_k, beta.sample((b,)).numpy(),
                                                         beta.sample((b,)).numpy(), c["eta"], c["temperature"])[0]
            for g in opt.param_groups:
                g["lr"] = cosine_lr(hp["learning_rate"], epoch * steps + s, total)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(xt), 500):
            correct += (heads.fc(net(xt[i:i + 500])).argmax(1) == yt[i:i + 500]).sum().item()
    return correct / len(xt)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--our-backbone", action="store_true",
                    help="fine-tune from the backbone coretuned pre-trained (reproduce/run.py) instead of "
                         "pre-training in PyTorch: compares the fine-tuning alone")
    ap.add_argument("--sweeps", action="store_true",
                    help="the settings reproduce/sweeps.py chose, fine-tuned from its backbone with its seeds")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.sweeps:
        return sweeps_main(args)
    name = "quick" if args.quick else "full"
    prof = protocol.PROFILES[name]
    out = os.path.join(HERE, "out", name)
    xp, _ = load_idx(os.path.join(out, "pretrain"))
    x, y = load_idx(os.path.join(out, "labelled"))
    xt, yt = load_idx(os.path.join(out, "test"))
    results = {"profile": name, "machine": platform.processor() or platform.machine(), "threads": args.threads,
               "torch": torch.__version__, "runs": []}
    t_all = time.time()
    t0 = time.time()
    if args.our_backbone:
        ours = json.load(open(os.path.join(out, "ours.json")))
        path = os.path.join(out, "var", "jobs", ours["pretrain"]["job"], "final.safetensors")
        backbone = load_backbone(path)
        results["pretrain"] = {"seconds": 0.0, "backbone": path}
    else:
        backbone = pretrain(xp, prof, torch.Generator().manual_seed(0))
        results["pretrain"] = {"seconds": time.time() - t0}
    for method, variant in protocol.METHODS:
        for seed in prof["seeds"]:
            t0 = time.time()
            acc = finetune(backbone, x, y, xt, yt, method, variant, seed, prof)
            print(f"{method}/{variant or '-'}/seed {seed}: test accuracy {acc:.4f} ({time.time() - t0:.0f} s)",
                  flush=True)
            results["runs"].append({"method": method, "variant": variant, "seed": seed, "test_accuracy": acc,
                                    "seconds": time.time() - t0})
    results["seconds"] = time.time() - t_all
    name = "torch-our-backbone.json" if args.our_backbone else "torch.json"
    with open(os.path.join(out, name), "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {os.path.join(out, name)} ({results['seconds']:.0f} s)")


def sweeps_main(args):
    """PyTorch beside reproduce/sweeps.py: its chosen hyper-parameters, its backbone, its data, its seeds."""
    import sweeps as sw
    name = "quick" if args.quick else "full"
    prof = sw.PROFILES[name]
    out = os.path.join(HERE, "out", f"sweeps-{name}")
    res = json.load(open(os.path.join(out, "sweeps.json")))
    backbone = load_backbone(os.path.join(out, "var", "jobs", res["pretrain"]["job"], "final.safetensors"))
    x, y = load_idx(os.path.join(out, "labelled"))
    xt, yt = load_idx(os.path.join(out, "test"))
    results = {"profile": name, "machine": platform.processor() or platform.machine(), "threads": args.threads,
               "torch": torch.__version__, "runs": []}
    t_all = time.time()
    for method in ("ce_tuning", "core_tuning"):
        chosen = res[method]["chosen"]["parameters"]
        lr = next(v for k, v in chosen.items() if k.endswith(".learning_rate")) if any(
            k.endswith(".learning_rate") for k in chosen) else None
        eta = next((v for k, v in chosen.items() if k.endswith(".eta")), None)
        for seed in prof["seeds"]:
            t0 = time.time()
            acc = finetune(backbone, x, y, xt, yt, method, "paper" if method == "core_tuning" else None, seed, prof,
                           lr=lr, eta=eta)
            print(f"{method} lr={lr} eta={eta} seed {seed}: test accuracy {acc:.4f} ({time.time() - t0:.0f} s)",
                  flush=True)
            results["runs"].append({"method": method, "lr": lr, "eta": eta, "seed": seed, "test_accuracy": acc,
                                    "seconds": time.time() - t0})
    results["seconds"] = time.time() - t_all
    with open(os.path.join(out, "torch.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {os.path.join(out, 'torch.json')} ({results['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
