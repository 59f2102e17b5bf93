#!/usr/bin/python3
"""tests/golden/gen_coreloss.py - golden values for tests/unit/test_coreloss.c, from PyTorch autograd.
Writes tests/fixtures/coreloss_{paper,reference,ce}.safetensors: the inputs (h, labels, head weights,
draws), the mined pairs, the loss terms [total, ce, contrastive] and every gradient (dh, dfc, dc0w,
dc0b, dc2w, dc2b) of the total loss. Values are computed in float64 from the float32 inputs (soft
labels in float32, as the script and the C code build them). Run by hand with Debian's python3:
    /usr/bin/python3 tests/golden/gen_coreloss.py tests/fixtures
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import coretuning_ref  # noqa: E402
import safetensors_io  # noqa: E402

N, D, C, CD = 16, 64, 4, 32
TAU = 0.07
ETA = {"paper": 0.1, "reference": 1.0}
# class 3 has a single sample (paper: p(i) = i); the other classes several
LABELS = np.array([0, 1, 2, 0, 1, 1, 2, 0, 3, 1, 2, 0, 0, 1, 2, 1], dtype=np.int32)


def mix_label(ca, wa, cb, wb):
    """float32 soft label wa e_ca + wb e_cb, computed elementwise like torch on one-hots."""
    y = np.zeros(C, dtype=np.float32)
    oa = np.zeros(C, dtype=np.float32)
    ob = np.zeros(C, dtype=np.float32)
    oa[ca] = 1
    ob[cb] = 1
    y = np.float32(wa) * oa + np.float32(wb) * ob
    return y.astype(np.float32)


def paper_loss(h, labels, fc, c0w, c0b, c2w, c2b, partner, lam_neg, lam_pos, eta, tau):
    """CORE_TUNING.md, variant "paper", written plainly (loops; n is small)."""
    n = h.shape[0]
    hn = F.normalize(h.detach().float())
    sim = (hn @ hn.T).numpy()
    hp, hq = [], []
    for i in range(n):
        p = q = -1
        for j in range(n):
            if j == i:
                continue
            if labels[j] == labels[i]:
                if p < 0 or sim[i, j] < sim[i, p]:
                    p = j
            elif q < 0 or sim[i, j] > sim[i, q]:
                q = j
        hp.append(i if p < 0 else p)
        hq.append(q)
    rows, ys = [], []
    for i in range(n):
        rows.append(h[i])
        ys.append(mix_label(labels[i], 1.0, labels[i], 0.0))
    for i in range(n):
        k = int(partner[i])
        if k < 0:
            continue
        m = np.float32(lam_neg[i])
        a = np.float32(1.0) - m
        rows.append(float(a) * h[i] + float(m) * h[k])
        ys.append(mix_label(labels[i], a, labels[k], m))
    for i in range(n):
        p, q = hp[i], hq[i]
        if q < 0:
            continue
        l = np.float32(lam_pos[i])
        a = np.float32(1.0) - l
        rows.append(float(l) * h[p] + float(a) * h[q])
        ys.append(mix_label(labels[p], l, labels[q], a))
    X = torch.stack(rows)
    Y = np.stack(ys)
    dom = Y.argmax(axis=1)  # first index on ties
    logits = X @ fc.T
    ce = -(F.log_softmax(logits, dim=1) * torch.from_numpy(Y).to(X.dtype)).sum(1).mean()
    z = F.normalize(F.linear(F.relu(F.linear(X, c0w, c0b)), c2w, c2b))
    S = z @ z.T / tau
    R = X.shape[0]
    terms, nanch = [], 0
    for m in range(R):
        others = [k for k in range(R) if k != m]
        pos = [k for k in others if dom[k] == dom[m]]
        if not pos:
            continue
        nanch += 1
        lse = torch.logsumexp(S[m, others], dim=0)
        lp = S[m, pos] - lse
        terms.append(-((1 - torch.exp(lp)) * lp).sum() / len(pos))
    con = torch.stack(terms).sum() / nanch if nanch else torch.zeros((), dtype=X.dtype)
    return ce + eta * con, ce, con, hp, hq


def make_case(variant, seed):
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((N, D)).astype(np.float32)
    if variant == "reference":
        h = np.abs(h)  # post-ReLU-like features: the script's argmin quirk assumes sims >= 0
    w = {
        "fc": (rng.standard_normal((C, D)) * 0.3).astype(np.float32),
        "c0w": (rng.standard_normal((D, D)) / np.sqrt(D)).astype(np.float32),
        "c0b": (rng.standard_normal(D) * 0.1).astype(np.float32),
        "c2w": (rng.standard_normal((CD, D)) / np.sqrt(D)).astype(np.float32),
        "c2b": (rng.standard_normal(CD) * 0.1).astype(np.float32),
    }
    lam_neg = np.maximum(rng.beta(1.0, 1.0, N), 0.8).astype(np.float32)
    lam_pos = rng.beta(1.0, 1.0, N).astype(np.float32)
    if variant == "paper":
        lam_pos = np.maximum(lam_pos, 0.5).astype(np.float32)
        partner = np.array([rng.choice(np.nonzero(LABELS != LABELS[i])[0]) for i in range(N)], dtype=np.int32)
    else:
        partner = rng.permutation(N).astype(np.int32)
    return h, w, lam_neg, lam_pos, partner


def check_case(variant, h, partner, lam_neg, lam_pos, hp, hq):
    """Guards that make the fixture a fair test: the mined pairs must not hinge on float rounding
    (runner-up similarity at least 1e-4 away), and for the reference variant the script's own
    positive mask (10^c label encoding, float32) must equal the vector-equality mask we use."""
    hn = h / np.linalg.norm(h, axis=1, keepdims=True)
    sim = hn.astype(np.float64) @ hn.T.astype(np.float64)
    for i in range(N):
        if variant == "paper":
            same = [j for j in range(N) if j != i and LABELS[j] == LABELS[i]]
            diff = [j for j in range(N) if LABELS[j] != LABELS[i]]
            groups = [(same, hp[i], min), (diff, hq[i], max)]
        else:
            diff = [j for j in range(N) if LABELS[j] != LABELS[i]]
            groups = [(diff, hq[i], max)]
        for cand, chosen, _ in groups:
            if len(cand) < 2 or chosen not in cand:
                continue
            rest = [abs(sim[i, j] - sim[i, chosen]) for j in cand if j != chosen]
            assert min(rest) > 1e-4, (variant, i, "near tie in mining")
    if variant == "reference":
        leaves = torch.tensor(h, dtype=torch.float64, requires_grad=True)
        _, list_y, _, _ = coretuning_ref.feature_mixup(leaves, torch.as_tensor(LABELS, dtype=torch.int64), C,
                                                       partner, lam_neg, lam_pos)
        enc = (list_y @ torch.tensor(10.0 ** np.arange(C), dtype=torch.float32)).numpy()
        _, codes = np.unique(enc, return_inverse=True)  # what LabelEncoder does
        m_script = codes[:, None] == codes[None, :]
        m_ours = (list_y.unsqueeze(1) == list_y.unsqueeze(0)).all(dim=2).numpy()
        assert (m_script == m_ours).all(), "10^c encoding and vector equality disagree on this batch"


def grads_of(total, leaves):
    total.backward()
    return {k: v.grad.detach().float().numpy() if v.grad is not None else np.zeros(v.shape, np.float32)
            for k, v in leaves.items()}


def main(outdir):
    os.makedirs(outdir, exist_ok=True)
    torch.set_default_dtype(torch.float64)
    for variant, seed in (("paper", 1), ("reference", 2), ("ce", 3)):
        h, w, lam_neg, lam_pos, partner = make_case(variant, seed)
        leaves = {"h": torch.tensor(h, dtype=torch.float64, requires_grad=True)}
        for k, v in w.items():
            leaves[k] = torch.tensor(v, dtype=torch.float64, requires_grad=True)
        targets = torch.as_tensor(LABELS, dtype=torch.int64)
        args = (leaves["fc"], leaves["c0w"], leaves["c0b"], leaves["c2w"], leaves["c2b"])
        hp = hq = np.full(N, -1, np.int32)
        eta = ETA.get(variant, 0.0)
        if variant == "paper":
            total, ce, con, hp, hq = paper_loss(leaves["h"], LABELS, *args, partner, lam_neg, lam_pos, eta, TAU)
        elif variant == "reference":
            total, ce, con, hp, hq = coretuning_ref.reference_loss(
                leaves["h"], targets, C, *args, partner, lam_neg, lam_pos, eta, TAU)
            hp, hq = hp.numpy(), hq.numpy()
        else:
            logits = leaves["h"] @ leaves["fc"].T
            ce = F.cross_entropy(logits, targets)
            total, con = ce, torch.zeros(())
            # eval golden: summed CE and top-1 hits on the same batch
            eval_sum = F.cross_entropy(logits.detach(), targets, reduction="sum").item()
            eval_correct = int((logits.detach().argmax(1) == targets).sum())
        if variant != "ce":
            check_case(variant, h, partner, lam_neg, lam_pos, hp, hq)
        g = grads_of(total, leaves)
        t = {
            "h": h, "labels": LABELS, "fc": w["fc"], "c0w": w["c0w"], "c0b": w["c0b"], "c2w": w["c2w"],
            "c2b": w["c2b"], "lam_neg": lam_neg, "lam_pos": lam_pos, "partner": partner,
            "hard_pos": np.asarray(hp, np.int32), "hard_neg": np.asarray(hq, np.int32),
            "terms": np.array([total.item(), ce.item(), con.item()], np.float32),
            "dh": g["h"], "dfc": g["fc"], "dc0w": g["c0w"], "dc0b": g["c0b"], "dc2w": g["c2w"], "dc2b": g["c2b"],
        }
        meta = {"variant": variant, "eta": repr(float(eta)), "temperature": repr(TAU),
                "contrast_dim": str(CD), "generator": "tests/golden/gen_coreloss.py (torch %s)" % torch.__version__}
        if variant == "ce":
            t["eval"] = np.array([eval_sum], np.float32)
            t["eval_correct"] = np.array([eval_correct], np.int32)
        path = os.path.join(outdir, "coreloss_%s.safetensors" % variant)
        safetensors_io.write(path, t, meta)
        print("%s: total %.6f ce %.6f con %.6f  (%d bytes)" % (path, total.item(), ce.item(), con.item(),
                                                             os.path.getsize(path)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
