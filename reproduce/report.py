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


def table(ours, torch):
    rows = ["| method | coretuned (C) top-1 % | PyTorch top-1 % | runs |", "|---|---|---|---|"]
    for method, variant in protocol.METHODS:
        cells = []
        for res in (ours, torch):
            accs = [100 * r["test_accuracy"] for r in (res or {}).get("runs", [])
                    if r["method"] == method and r["variant"] == variant]
            if not accs:
                cells.append("—")
            elif len(accs) == 1:
                cells.append(f"{accs[0]:.2f}")
            else:
                cells.append(f"{statistics.mean(accs):.2f} ± {statistics.stdev(accs):.2f}")
        n = len([r for r in ours.get("runs", []) if r["method"] == method and r["variant"] == variant])
        name = method + (f" ({variant})" if variant else "")
        rows.append(f"| {name} | {cells[0]} | {cells[1]} | {n} seeds |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    name = "quick" if args.quick else "full"
    out = os.path.join(HERE, "out", name)
    load = lambda f: json.load(open(os.path.join(out, f))) if os.path.exists(os.path.join(out, f)) else None
    ours, torch = load("ours.json"), load("torch.json")
    if not ours:
        raise SystemExit(f"no {out}/ours.json: run reproduce/run.py first")
    t = table(ours, torch)
    print(t)
    if args.quick:
        return
    prof = ours["protocol"]
    doc = f"""# Results: Core-tuning against CE-tuning on Fashion-MNIST, through the service

Produced by `make reproduce` (`reproduce/run.py` drives a real `bin/coretuned` over HTTP as a user would;
`reproduce/torch_protocol.py` runs the same protocol in PyTorch {torch['torch'] if torch else '(not run)'};
`reproduce/report.py` wrote this page). Machine: {ours['machine']}, {ours['threads']} threads.

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

## Commands

```sh
make reproduce         # = /usr/bin/python3 reproduce/run.py && /usr/bin/python3 reproduce/torch_protocol.py
                       #   && /usr/bin/python3 reproduce/report.py
make reproduce-quick   # the same path on a small subset, in minutes
```
"""
    with open(os.path.join(HERE, "..", "docs", "results.md"), "w") as f:
        f.write(doc)
    print("wrote docs/results.md")


if __name__ == "__main__":
    main()
