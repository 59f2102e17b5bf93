#!/usr/bin/python3
"""tests/golden/gen_train.py — golden values for tests/unit/test_train_golden.c: three whole
Core-tuning (paper variant) training steps of resnet20 on 1x28x28 in PyTorch, float64 from float32
inputs: backbone forward, every loss term, every parameter gradient of step 1, and the weights after
each SGD step (Nesterov momentum 0.9, weight decay 1e-4 on all parameters, given learning rates).
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

N, C, CD, STEPS = 16, 10, 32, 3
ETA, TAU, ALPHA = 0.1, 0.07, 1.0
LRS = [0.05, 0.04, 0.02]
MOMENTUM, WD = 0.9, 1e-4
LABELS = np.array([i % 5 if i < 14 else 7 for i in range(N)], dtype=np.int32)  # class 7: two samples


def summary(prefix, a, out):
    a = np.asarray(a, dtype=np.float64).ravel()
    idx = gen_model.sample_indices(a.size)
    out.append((prefix + ".stats", np.array([a.sum(), np.abs(a).sum(), np.sqrt((a * a).sum())], np.float32)))
    out.append((prefix + ".samples", a[idx].astype(np.float32)))


def main(outdir):
    gen_coreloss.C = C  # its soft-label helper reads the class count from the module
    torch.set_default_dtype(torch.float64)
    rng = np.random.default_rng(7)
    backbone = model_twin.cifar_resnet(20, 1)
    model_twin.det_fill(backbone)
    backbone = backbone.double().train()
    d = 64
    heads = {
        "fc.weight": (model_twin.det_uniform(C * d, 900) / np.sqrt(d)).reshape(C, d),
        "contrastor.0.weight": (model_twin.det_uniform(d * d, 901) / np.sqrt(d)).reshape(d, d),
        "contrastor.0.bias": model_twin.det_uniform(d, 902) / np.sqrt(d),
        "contrastor.2.weight": (model_twin.det_uniform(CD * d, 903) / np.sqrt(d)).reshape(CD, d),
        "contrastor.2.bias": model_twin.det_uniform(CD, 904) / np.sqrt(d),
    }
    head_params = {k: torch.tensor(v.astype(np.float32).astype(np.float64), requires_grad=True)
                   for k, v in heads.items()}
    params = list(backbone.parameters()) + list(head_params.values())
    names = [n for n, _ in backbone.named_parameters()] + list(head_params)
    opt = torch.optim.SGD(params, lr=LRS[0], momentum=MOMENTUM, nesterov=True, weight_decay=WD)

    out = [("labels", LABELS.astype(np.float32)), ("lrs", np.array(LRS, np.float32))]
    for k, v in heads.items():
        out.append(("init." + k, v.astype(np.float32)))
    for s in range(STEPS):
        images = model_twin.det_uniform(N * 28 * 28, 2000 + s).astype(np.float32).reshape(N, 1, 28, 28)
        partner = np.array([rng.choice(np.nonzero(LABELS != LABELS[i])[0]) for i in range(N)], np.int32)
        lam_neg = np.maximum(rng.beta(ALPHA, ALPHA, N), 0.8).astype(np.float32)
        lam_pos = np.maximum(rng.beta(ALPHA, ALPHA, N), 0.5).astype(np.float32)
        out += [(f"step{s}.images", images), (f"step{s}.partner", partner.astype(np.float32)),
                (f"step{s}.lam_neg", lam_neg), (f"step{s}.lam_pos", lam_pos)]
        opt.zero_grad()
        h = backbone(torch.from_numpy(images.astype(np.float64)))
        h.retain_grad()
        total, ce, con, _, _ = gen_coreloss.paper_loss(
            h, LABELS, head_params["fc.weight"], head_params["contrastor.0.weight"],
            head_params["contrastor.0.bias"], head_params["contrastor.2.weight"],
            head_params["contrastor.2.bias"], partner, lam_neg, lam_pos, ETA, TAU)
        total.backward()
        out.append((f"step{s}.terms", np.array([total.item(), ce.item(), con.item()], np.float32)))
        if s == 0:
            out.append(("step0.h", h.detach().numpy().astype(np.float32)))
            out.append(("step0.dh", h.grad.numpy().astype(np.float32)))
            for name, p in zip(names, params):
                summary("grad0." + name, p.grad.numpy(), out)
        for g in opt.param_groups:
            g["lr"] = LRS[s]
        opt.step()
    for name, p in zip(names, params):
        summary("final." + name, p.detach().numpy(), out)
    for name, b in backbone.named_buffers():
        if "running" in name:
            out.append(("final." + name, b.numpy().astype(np.float32)))
    gen_model.write_safetensors(os.path.join(outdir, "train_golden.safetensors"), out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
