#!/usr/bin/python3
"""reproduce/report.py [--quick] — turn reproduce/out/<profile>/{ours,torch}.json into docs/results.md
(the full profile) or print the table (quick). Standard library only."""
import argparse
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import protocol  # noqa: E402


def cell(res, method, variant):
    accs = [100 * r["test_accuracy"] for r in (res or {}).get("runs", [])
            if r["method"] == method and r["variant"] == variant]
    if not accs:
        return "—"
    if len(accs) == 1:
        return f"{accs[0]:.2f}"
    return f"{statistics.mean(accs):.2f} ± {statistics.stdev(accs):.2f}"


def table(ours, torch, torch_ours):
    rows = ["| method | coretuned (C), its own SimCLR backbone | PyTorch, coretuned's backbone "
            "| PyTorch, its own SimCLR backbone | seeds |", "|---|---|---|---|---|"]
    for method, variant in protocol.METHODS:
        n = len([r for r in ours.get("runs", []) if r["method"] == method and r["variant"] == variant])
        name = method + (f" ({variant})" if variant else "")
        rows.append(f"| {name} | {cell(ours, method, variant)} | {cell(torch_ours, method, variant)} "
                    f"| {cell(torch, method, variant)} | {n} |")
    return "\n".join(rows)


def ablation_table(abl):
    rows = ["| change (paper variant unless CE) | top-1 % | seeds |", "|---|---|---|"]
    labels = []
    for r in abl["runs"]:
        if r["label"] not in labels:
            labels.append(r["label"])
    for label in labels:
        accs = [100 * r["test_accuracy"] for r in abl["runs"] if r["label"] == label]
        m = statistics.mean(accs)
        sd = f" ± {statistics.stdev(accs):.2f}" if len(accs) > 1 else ""
        rows.append(f"| {label} | {m:.2f}{sd} | {len(accs)} |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    name = "quick" if args.quick else "full"
    out = os.path.join(HERE, "out", name)
    load = lambda f: json.load(open(os.path.join(out, f))) if os.path.exists(os.path.join(out, f)) else None
    ours, torch, torch_ours, abl = load("ours.json"), load("torch.json"), load("torch-our-backbone.json"), \
        load("ablate.json")
    if not ours:
        raise SystemExit(f"no {out}/ours.json: run reproduce/run.py first")
    t = table(ours, torch, torch_ours)
    print(t)
    if args.quick:
        return
    prof = ours["protocol"]
    doc = f"""# Results: Core-tuning against CE-tuning on Fashion-MNIST, through the service

Produced by `make reproduce` (`reproduce/run.py` drives a real `bin/coretuned` over HTTP as a user would;
`reproduce/torch_protocol.py` runs the same protocol in PyTorch {torch['torch'] if torch else '(not run)'},
once with its own SimCLR pre-training and once fine-tuning the backbone coretuned pre-trained;
`reproduce/ablate.py` varies one thing at a time; `reproduce/report.py` wrote this page). Machine: {ours['machine']};
coretuned ran with {ours['threads']} thread(s){f", PyTorch with {torch['threads']}" if torch else ""}, on a machine
shared with other work, so the wall times below are indicative only.

## Protocol

1. SimCLR pre-training of resnet20 (1x28x28, CIFAR-style, 3x3 stem) on the first {prof['pretrain_images']}
   Fashion-MNIST training images without labels: {prof['pretrain_epochs']} epochs, batch {prof['pretrain_batch']}
   (2 x {prof['pretrain_batch']} views), random resized crop (scale 0.2-1) + horizontal flip, NT-Xent,
   hyper-parameters {json.dumps(dict(protocol.PRETRAIN_HP, learning_rate=prof['pretrain_lr']))}.
2. Fine-tuning on a fixed labelled subset of {10 * prof['per_class']} training images ({prof['per_class']} per class,
   drawn once with seed {protocol.SUBSET_SEED}), {prof['finetune_epochs']} epochs, batch {prof['finetune_batch']},
   3-pixel pad crop + flip, {json.dumps(protocol.FINETUNE_HP)}; Core-tuning adds {json.dumps(protocol.CORE_HP)}.
   Seeds {prof['seeds']} for each method.
3. Top-1 accuracy after the last epoch on the {prof['test_images']} Fashion-MNIST test images (the test set
   is not used to pick an epoch).

## Results (mean ± std over seeds)

{t}

Wall time: coretuned {ours['seconds'] / 60:.1f} min (pre-training {ours['pretrain']['seconds'] / 60:.1f} min){
f", PyTorch {torch['seconds'] / 60:.1f} min (pre-training {torch['pretrain']['seconds'] / 60:.1f} min)" if torch else ""}.
SimCLR positive-pair accuracy on held-out view pairs after pre-training:
{ours['pretrain'].get('contrastive_accuracy')}.

{"## Why Core-tuning loses with the authors' settings here: one change at a time" + chr(10) + chr(10) + "Fine-tuning coretuned's backbone again with `reproduce/ablate.py` (`bin/coretune train`, same subset and test images; seeds in the last column):" + chr(10) + chr(10) + ablation_table(abl) + chr(10) if abl else ""}
{open(os.path.join(HERE, "findings.md")).read() if os.path.exists(os.path.join(HERE, "findings.md")) else ""}
## Commands

```sh
make reproduce         # = reproduce/run.py, torch_protocol.py, torch_protocol.py --our-backbone,
                       #   ablate.py, report.py (each with /usr/bin/python3)
make reproduce-quick   # the same path on a small subset, in minutes
```
"""
    path = os.path.join(HERE, "..", "docs", "results.md")
    old = open(path).read() if os.path.exists(path) else ""
    begin, end = "<!-- sweeps: begin", "<!-- sweeps: end -->"
    if begin in old and end in old:  # reproduce/sweeps_report.py's section stays
        doc = doc.rstrip("\n") + "\n\n" + old[old.index(begin):old.index(end) + len(end)] + "\n"
    with open(path, "w") as f:
        f.write(doc)
    print("wrote docs/results.md")


if __name__ == "__main__":
    main()
