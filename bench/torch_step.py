#!/usr/bin/python3
"""bench/torch_step.py — the PyTorch twin of bench/bench_step.c: the same model (tests/golden/model_twin.py),
batch, threads and Core-tuning step (paper variant: hard pair mining by masked cosine similarity, generated
rows, focal SupCon on the contrastor, soft-label CE; /work/shared/CORE_TUNING.md), written vectorised the
way a PyTorch user would, then torch.optim.SGD(nesterov, momentum 0.9, weight decay 1e-4). Synthetic data
made once (not timed). Prints one JSON line with the same fields as bench_step.
  /usr/bin/python3 bench/torch_step.py ARCH IN_CH SIZE SMALL_STEM BATCH THREADS [core|ce [paper [WARMUP [ITERS]]]]
  /usr/bin/python3 bench/torch_step.py --check   vectorised loss vs tests/golden/gen_coreloss.py's paper_loss
Needs Debian's python3-torch + python3-torchvision (the pyenv python3 on PATH has no torch).
"""
import json
import os
import resource
import sys
import time

# torch.set_num_threads() does not reach the OpenBLAS that Debian's torch calls for some GEMMs: left
# alone, OpenBLAS runs a second thread in the "1 thread" case (seen using up to 0.4 core when the other
# core is free). OpenBLAS (like libgomp) reads its thread count when it is loaded, so set it here,
# before torch is imported.
if len(sys.argv) > 6 and sys.argv[6].isdigit():
    os.environ["OPENBLAS_NUM_THREADS"] = sys.argv[6]
    os.environ["OMP_NUM_THREADS"] = sys.argv[6]

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "golden"))
import model_twin  # noqa: E402

NUM_CLASSES, CONTRAST_DIM = 10, 256
ETA, TAU, ALPHA = 0.1, 0.07, 1.0


def sample_draws(labels, gen):
    """Paper variant draws (CORE_TUNING.md): a uniformly random other-class partner (-1: none),
    m = max(Beta, 0.8), l = max(Beta, 0.5). Vectorised; the stream differs from the C one (same law)."""
    n = labels.shape[0]
    other = labels[:, None] != labels[None, :]
    has = other.any(1)
    w = torch.where(has[:, None], other.float(), torch.ones(n, n))
    partner = torch.multinomial(w, 1, generator=gen).squeeze(1)
    partner = torch.where(has, partner, torch.full_like(partner, -1))
    beta = torch.distributions.Beta(torch.tensor(ALPHA), torch.tensor(ALPHA))
    lam_neg = beta.sample((n,)).clamp_(min=0.8)
    lam_pos = beta.sample((n,)).clamp_(min=0.5)
    return partner, lam_neg, lam_pos


def core_loss(h, labels, fc, c0w, c0b, c2w, c2b, partner, lam_neg, lam_pos, eta=ETA, tau=TAU, num_classes=None):
    """Core-tuning loss, variant "paper", vectorised. h [n, d] (grad flows through all 3n rows),
    labels int64 [n], partner int64 [n] (-1 = no semi-hard row), lam_* float32 [n].
    Returns total, ce, con, hard_pos, hard_neg."""
    n = h.shape[0]
    C = num_classes if num_classes is not None else fc.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    # 1. mining on cosine similarity of the detached features (float32, ties -> lowest index)
    hn = F.normalize(h.detach().float())
    sim = hn @ hn.T
    same = labels[:, None] == labels[None, :]
    pos_m, neg_m = same & ~eye, ~same
    hp = sim.masked_fill(~pos_m, float("inf")).argmin(1)
    hp = torch.where(pos_m.any(1), hp, torch.arange(n))      # no same-class sample: p(i) = i
    hq = sim.masked_fill(~neg_m, float("-inf")).argmax(1)
    has_q = neg_m.any(1)
    hq = torch.where(has_q, hq, torch.full_like(hq, -1))
    # 2. generated rows and soft labels (float32, as CORE_TUNING.md / the script)
    onehot = F.one_hot(labels, C).float()
    kn = partner >= 0
    k = partner[kn]
    m = lam_neg[kn].float()
    a = 1.0 - m
    x_neg = a.to(h.dtype)[:, None] * h[kn] + m.to(h.dtype)[:, None] * h[k]
    y_neg = a[:, None] * onehot[kn] + m[:, None] * onehot[k]
    p, q = hp[has_q], hq[has_q]
    l = lam_pos[has_q].float()
    b = 1.0 - l
    x_pos = l.to(h.dtype)[:, None] * h[p] + b.to(h.dtype)[:, None] * h[q]
    y_pos = l[:, None] * onehot[p] + b[:, None] * onehot[q]
    X = torch.cat([h, x_neg, x_pos])
    Y = torch.cat([onehot, y_neg, y_pos])
    dom = Y.argmax(1)                                            # first index on ties
    # 3. smoothed CE on the classifier
    ce = -(F.log_softmax(X @ fc.T, dim=1) * Y.to(X.dtype)).sum(1).mean()
    # 4. focal SupCon on the contrastor
    z = F.normalize(F.linear(F.relu(F.linear(X, c0w, c0b)), c2w, c2b))
    S = z @ z.T / tau
    R = X.shape[0]
    diag = torch.eye(R, dtype=torch.bool)
    lse = torch.logsumexp(S.masked_fill(diag, float("-inf")), dim=1, keepdim=True)
    lp = S - lse                                                 # diagonal is finite, masked below
    posm = (dom[:, None] == dom[None, :]) & ~diag
    npos = posm.sum(1)
    per = -(((1 - lp.exp()) * lp) * posm.to(lp.dtype)).sum(1)
    anchors = npos > 0
    nanch = int(anchors.sum())
    con = (per[anchors] / npos[anchors].to(lp.dtype)).sum() / nanch if nanch else torch.zeros((), dtype=X.dtype)
    return ce + eta * con, ce, con, hp, hq


def check():
    """The vectorised loss against gen_coreloss.paper_loss (loops) on random cases, float64: loss terms,
    mined pairs and every gradient. Exits non-zero on a mismatch."""
    import gen_coreloss  # tests/golden, imports coretuning_ref
    torch.set_default_dtype(torch.float64)
    worst = 0.0
    for seed in range(4):
        rng = np.random.default_rng(seed)
        n, d, C, cd = (16, 24, 4, 8) if seed < 2 else (33, 40, 10, 16)
        gen_coreloss.C = C                                       # mix_label reads the module's C
        labels = rng.integers(0, C, n).astype(np.int64)
        if seed == 0:
            labels[:] = np.array([0, 1, 2, 0, 1, 1, 2, 0, 3, 1, 2, 0, 0, 1, 2, 1])  # class 3: a singleton
        if seed == 3:
            labels[:] = 2                                        # one class: no negatives, no generated rows
        h = rng.standard_normal((n, d))
        w = [rng.standard_normal((C, d)) * 0.3, rng.standard_normal((d, d)) / np.sqrt(d), rng.standard_normal(d) * 0.1,
             rng.standard_normal((cd, d)) / np.sqrt(d), rng.standard_normal(cd) * 0.1]
        lab_t = torch.as_tensor(labels)
        torch.manual_seed(seed)                                  # the Beta draws use the global generator
        partner, lam_neg, lam_pos = sample_draws(lab_t, torch.Generator().manual_seed(seed))
        lam_pos[: n // 2] = 0.5                                  # exact ties in the soft labels: argmax picks the lower class
        outs = []
        for fn in ("loop", "vec"):
            leaves = [torch.tensor(v, requires_grad=True) for v in [h] + w]
            if fn == "loop":
                tot, ce, con, hp, hq = gen_coreloss.paper_loss(leaves[0], labels.astype(np.int32), *leaves[1:],
                                                               partner.numpy(), lam_neg.numpy(), lam_pos.numpy(), ETA, TAU)
            else:
                tot, ce, con, hp, hq = core_loss(leaves[0], lab_t, *leaves[1:], partner, lam_neg, lam_pos,
                                                 num_classes=C)
                hp, hq = hp.tolist(), hq.tolist()
            tot.backward()
            outs.append(([tot.item(), ce.item(), con.item()], list(hp), list(hq), [v.grad.numpy() for v in leaves]))
        (t0, p0, q0, g0), (t1, p1, q1, g1) = outs
        assert p0 == p1 and q0 == q1, ("mined pairs differ", seed, p0, p1, q0, q1)
        err = max([abs(a - b) / max(1.0, abs(a)) for a, b in zip(t0, t1)] +
                  [float(np.abs(a - b).max() / max(1.0, np.abs(a).max())) for a, b in zip(g0, g1)])
        worst = max(worst, err)
        print("check seed %d n %d C %d: total %.10f (loop) %.10f (vectorised), max rel err %.2e"
              % (seed, n, C, t0[0], t1[0], err))
        assert err < 1e-10, ("vectorised loss differs from paper_loss", seed, err)
    print("check passed: vectorised paper loss == gen_coreloss.paper_loss (worst rel err %.1e)" % worst)
    return 0


class Net(nn.Module):
    """Backbone + classifier (no bias) + contrastor, so one optimiser covers every parameter."""

    def __init__(self, arch, in_ch, small_stem, core):
        super().__init__()
        if arch.startswith("resnet") and arch[6:] in ("20", "32", "56"):
            self.backbone = model_twin.cifar_resnet(int(arch[6:]), in_ch)
            d = 64
        else:
            self.backbone = model_twin.torchvision_resnet(arch, in_ch, bool(small_stem))
            d = 2048 if arch in ("resnet50", "resnet101", "resnet152") else 512
        self.fc = nn.Linear(d, NUM_CLASSES, bias=False)
        self.contrastor = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, CONTRAST_DIM)) if core else None


def bench(argv):
    arch, in_ch, size, small_stem, batch, threads = argv[0], int(argv[1]), int(argv[2]), int(argv[3]), int(argv[4]), int(argv[5])
    method = argv[6] if len(argv) > 6 else "core"
    variant = argv[7] if len(argv) > 7 else "paper"
    warmup = int(argv[8]) if len(argv) > 8 else 2
    iters = int(argv[9]) if len(argv) > 9 else 10
    if method not in ("core", "ce") or variant != "paper":
        sys.exit("torch_step: method core|ce, variant paper only")
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    core = method == "core"
    net = Net(arch, in_ch, small_stem, core)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4, nesterov=True)
    x = torch.randn(batch, in_ch, size, size)                    # synthetic, as if normalised; made once
    y = torch.arange(batch) % NUM_CLASSES
    gen = torch.Generator().manual_seed(2)
    ips, cps, tf, tl, tb, ts = [], [], [], [], [], []
    last = float("nan")
    for it in range(-warmup, iters):
        c0, t0 = time.process_time(), time.perf_counter()
        opt.zero_grad(set_to_none=True)
        h = net.backbone(x)
        t1 = time.perf_counter()
        if core:
            c = net.contrastor
            draws = sample_draws(y, gen)
            loss = core_loss(h, y, net.fc.weight, c[0].weight, c[0].bias, c[2].weight, c[2].bias, *draws)[0]
        else:
            loss = F.cross_entropy(net.fc(h), y)
        t2 = time.perf_counter()
        loss.backward()                                          # loss heads + backbone backward
        t3 = time.perf_counter()
        opt.step()
        t4, c4 = time.perf_counter(), time.process_time()
        last = loss.item()
        if it >= 0:
            ips.append(batch / (t4 - t0))
            cps.append(batch / (c4 - c0))
            tf.append((t1 - t0) * 1e3); tl.append((t2 - t1) * 1e3); tb.append((t3 - t2) * 1e3); ts.append((t4 - t3) * 1e3)
    nparams = sum(p.numel() for p in net.parameters())
    nbuf = sum(b.numel() for b in net.buffers() if b.is_floating_point())
    med = lambda v: float(np.median(v))  # noqa: E731
    print(json.dumps({
        "impl": "torch", "torch": torch.__version__, "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "arch": arch, "in_ch": in_ch, "size": size,
        "small_stem": small_stem, "batch": batch, "threads": threads, "method": method, "variant": variant,
        "warmup": warmup, "iters": iters, "img_s_median": round(med(ips), 2), "img_s_min": round(min(ips), 2),
        "img_s_max": round(max(ips), 2), "img_cpu_s_median": round(med(cps), 2), "ms_forward": round(med(tf), 2), "ms_loss": round(med(tl), 2),
        "ms_backward": round(med(tb), 2), "ms_optim": round(med(ts), 2),
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        # parameters + gradients + momentum + float buffers (activations are PyTorch's business)
        "state_bytes": 4 * (3 * nparams + nbuf), "params": nparams, "last_loss": round(last, 6)}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "--check":
        sys.exit(check())
    if len(sys.argv) < 7:
        sys.exit(__doc__)
    sys.exit(bench(sys.argv[1:]))
