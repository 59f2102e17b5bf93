#!/usr/bin/python3
"""tests/golden/gen_train.py — golden values for tests/unit/test_train_golden.c: three whole
Core-tuning (paper variant) training steps of resnet20 on 1x28x28 in PyTorch: backbone features,
every loss term, the feature gradient and every parameter gradient of every step, and the weights
after three SGD steps (Nesterov momentum 0.9, weight decay 1e-4 on all parameters, given learning
rates). The reference runs in float64 from the float32 inputs. The same run in PyTorch's float32
gives, for every compared quantity, how far float32 arithmetic itself strays from that reference
(`<name>.f32dev`, the largest absolute difference): a few steps into training the gradients of this
net are ill-conditioned (PyTorch float32 vs float64 differ by up to several percent in conv1's
gradient at step 3), so the C test allows a small multiple of PyTorch's own float32 error on top of
a tight base tolerance.
Backbone weights: model_twin.det_fill (recomputed by the C test, not committed); heads, images,
labels, draws and learning rates are in the fixture. Big tensors are summarised (sum, abs-sum, L2,
48 evenly spaced samples) to keep the fixture small.
Run by hand with Debian's python3:  /usr/bin/python3 tests/golden/gen_train.py tests/fixtures
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_coreloss  # noqa: E402
import gen_model  # noqa: E402
import model_twin  # noqa: E402
import safetensors_io  # noqa: E402

N, C, CD, STEPS = 16, 10, 32, 3
ETA, TAU, ALPHA = 0.1, 0.07, 1.0
LRS = [0.05, 0.04, 0.02]
MOMENTUM, WD = 0.9, 1e-4
LABELS = np.array([i % 5 if i < 14 else 7 for i in range(N)], dtype=np.int32)  # class 7: two samples
D = 64
HEADS = {
    "fc.weight": (model_twin.det_uniform(C * D, 900) / np.sqrt(D)).reshape(C, D),
    "contrastor.0.weight": (model_twin.det_uniform(D * D, 901) / np.sqrt(D)).reshape(D, D),
    "contrastor.0.bias": model_twin.det_uniform(D, 902) / np.sqrt(D),
    "contrastor.2.weight": (model_twin.det_uniform(CD * D, 903) / np.sqrt(D)).reshape(CD, D),
    "contrastor.2.bias": model_twin.det_uniform(CD, 904) / np.sqrt(D),
}


def inputs():
    """Images and draws of every step (float32), the same for both precisions."""
    rng = np.random.default_rng(7)
    steps = []
    for s in range(STEPS):
        images = model_twin.det_uniform(N * 28 * 28, 2000 + s).astype(np.float32).reshape(N, 1, 28, 28)
        partner = np.array([rng.choice(np.nonzero(LABELS != LABELS[i])[0]) for i in range(N)], np.int32)
        lam_neg = np.maximum(rng.beta(ALPHA, ALPHA, N), 0.8).astype(np.float32)
        lam_pos = np.maximum(rng.beta(ALPHA, ALPHA, N), 0.5).astype(np.float32)
        steps.append((images, partner, lam_neg, lam_pos))
    return steps


def summary(prefix, a, out):
    a = np.asarray(a, dtype=np.float64).ravel()
    idx = gen_model.sample_indices(a.size)
    out[prefix + ".stats"] = np.array([a.sum(), np.abs(a).sum(), np.sqrt((a * a).sum())])
    out[prefix + ".samples"] = a[idx]


def run(dtype, steps):
    """The three steps in one precision: {name: float64 array} of everything the test compares."""
    torch.set_default_dtype(dtype)
    backbone = model_twin.cifar_resnet(20, 1)
    model_twin.det_fill(backbone)
    backbone = backbone.to(dtype).train()
    heads = {k: torch.tensor(v.astype(np.float32), dtype=dtype, requires_grad=True) for k, v in HEADS.items()}
    params = list(backbone.parameters()) + list(heads.values())
    names = [n for n, _ in backbone.named_parameters()] + list(heads)
    opt = torch.optim.SGD(params, lr=LRS[0], momentum=MOMENTUM, nesterov=True, weight_decay=WD)
    out = {}
    for s, (images, partner, lam_neg, lam_pos) in enumerate(steps):
        opt.zero_grad()
        h = backbone(torch.from_numpy(images).to(dtype))
        h.retain_grad()
        total, ce, con, _, _ = gen_coreloss.paper_loss(
            h, LABELS, heads["fc.weight"], heads["contrastor.0.weight"], heads["contrastor.0.bias"],
            heads["contrastor.2.weight"], heads["contrastor.2.bias"], partner, lam_neg, lam_pos, ETA, TAU)
        total.backward()
        out[f"step{s}.terms"] = np.array([total.item(), ce.item(), con.item()])
        out[f"step{s}.h"] = h.detach().double().numpy()
        out[f"step{s}.dh"] = h.grad.double().numpy()
        for name, p in zip(names, params):
            summary(f"grad{s}." + name, p.grad.double().numpy(), out)
        for g in opt.param_groups:
            g["lr"] = LRS[s]
        opt.step()
    for name, p in zip(names, params):
        summary("final." + name, p.detach().double().numpy(), out)
    for name, b in backbone.named_buffers():
        if "running" in name:
            out["final." + name] = b.double().numpy()
    return out


def main(outdir):
    gen_coreloss.C = C  # its soft-label helper reads the class count from the module
    steps = inputs()
    want, f32 = run(torch.float64, steps), run(torch.float32, steps)
    out = [("labels", LABELS.astype(np.float32)), ("lrs", np.array(LRS, np.float32))]
    for k, v in HEADS.items():
        out.append(("init." + k, v.astype(np.float32)))
    for s, (images, partner, lam_neg, lam_pos) in enumerate(steps):
        out += [(f"step{s}.images", images), (f"step{s}.partner", partner.astype(np.float32)),
                (f"step{s}.lam_neg", lam_neg), (f"step{s}.lam_pos", lam_pos)]
    for k, v in want.items():
        out.append((k, v.astype(np.float32)))
        out.append((k + ".f32dev", np.array([np.abs(f32[k] - v).max()], np.float32)))
    safetensors_io.write(os.path.join(outdir, "train_golden.safetensors"), out, dtype=np.float32)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
