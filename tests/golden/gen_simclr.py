#!/usr/bin/python3
"""tests/golden/gen_simclr.py - golden values for tests/unit/test_simclr.c, from PyTorch autograd.
Writes tests/fixtures/simclr_t050.safetensors and simclr_t020.safetensors (tau = 0.5 and 0.2): the
inputs (h [2n x d], rows 0..n-1 view 1, n..2n-1 view 2; projector weights w0, b0, w2, b2), the
NT-Xent loss, the contrastive top-1 accuracy and every gradient (dh, dw0, db0, dw2, db2) of the loss.
The loss is written the usual way (masked similarity matrix + cross-entropy on the positive's
index), independently of the C code's loops; values in float64 from the float32 inputs.
Run by hand with Debian's python3:
    /usr/bin/python3 tests/golden/gen_simclr.py tests/fixtures
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

N, D, P = 8, 64, 32
CASES = (("t050", 0.5, 11), ("t020", 0.2, 12))


def ntxent(h, w0, b0, w2, b2, tau):
    """SimCLR NT-Xent over 2n rows; returns (loss, similarity matrix / tau)."""
    n2 = h.shape[0]
    n = n2 // 2
    z = F.normalize(F.linear(F.relu(F.linear(h, w0, b0)), w2, b2), dim=1)
    s = z @ z.T / tau
    s = s.masked_fill(torch.eye(n2, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(n, n2), torch.arange(0, n)])
    return F.cross_entropy(s, target), s.detach(), target


def make_case(seed):
    rng = np.random.default_rng(seed)
    # backbone features are post-ReLU averages (non-negative); the second view is a perturbed copy,
    # so some positives win and some lose (accuracy strictly between 0 and 1)
    base = np.abs(rng.standard_normal((N, D)))
    v1 = np.abs(base + 0.9 * rng.standard_normal((N, D)))
    v2 = np.abs(base + 0.9 * rng.standard_normal((N, D)))
    h = np.concatenate([v1, v2]).astype(np.float32)
    w = {
        "w0": (rng.standard_normal((D, D)) / np.sqrt(D)).astype(np.float32),
        "b0": (rng.standard_normal(D) * 0.1).astype(np.float32),
        "w2": (rng.standard_normal((P, D)) / np.sqrt(D)).astype(np.float32),
        "b2": (rng.standard_normal(P) * 0.1).astype(np.float32),
    }
    return h, w


def main(outdir):
    os.makedirs(outdir, exist_ok=True)
    torch.set_default_dtype(torch.float64)
    for tag, tau, seed in CASES:
        h, w = make_case(seed)
        leaves = {"h": torch.tensor(h, requires_grad=True)}
        for k, v in w.items():
            leaves[k] = torch.tensor(v, requires_grad=True)
        loss, s, target = ntxent(leaves["h"], leaves["w0"], leaves["b0"], leaves["w2"], leaves["b2"], tau)
        loss.backward()
        # accuracy: positive strictly above every other row; guard that no decision is within
        # float rounding (1e-4 in s) and no pre-ReLU unit sits on the kink
        pos = s[torch.arange(2 * N), target]
        s_neg = s.clone()
        s_neg[torch.arange(2 * N), target] = float("-inf")
        best_neg = s_neg.max(dim=1).values
        margin = (pos - best_neg).abs().min().item()
        assert margin > 1e-4, ("near tie in accuracy", tag, margin)
        pre = F.linear(leaves["h"], leaves["w0"], leaves["b0"]).detach()
        assert pre.abs().min().item() > 1e-5, "pre-activation on the ReLU kink"
        acc = (pos > best_neg).double().mean().item()
        assert 0.0 < acc < 1.0, ("accuracy not informative", tag, acc)
        g = {k: v.grad.detach().float().numpy() for k, v in leaves.items()}
        t = {"h": h, "w0": w["w0"], "b0": w["b0"], "w2": w["w2"], "b2": w["b2"],
             "loss": np.array([loss.item()], np.float32), "acc": np.array([acc], np.float32),
             "dh": g["h"], "dw0": g["w0"], "db0": g["b0"], "dw2": g["w2"], "db2": g["b2"]}
        meta = {"temperature": repr(tau), "n": str(N), "loss_f64": repr(loss.item()),
                "generator": "tests/golden/gen_simclr.py (torch %s)" % torch.__version__}
        path = os.path.join(outdir, "simclr_%s.safetensors" % tag)
        safetensors_io.write(path, t, meta)
        print("%s: tau %.2f loss %.6f acc %.4f  (%d bytes)" % (path, tau, loss.item(), acc, os.path.getsize(path)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
