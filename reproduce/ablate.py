#!/usr/bin/python3
"""reproduce/ablate.py — why Core-tuning does (not) beat CE-tuning here: fine-tune the backbone that
reproduce/run.py pre-trained with one change at a time (eta, temperature, batch size, fine-tuning
length), through `bin/coretune train` on the same labelled subset and test images, and write
reproduce/out/full/ablate.json (reproduce/report.py puts it in docs/results.md). Standard library only."""
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import protocol  # noqa: E402

TWO, THREE = [1, 2], [1, 2, 3]
# (label, method, hyper-parameter overrides, fine-tuning epochs multiplier, seeds)
CONFIGS = [
    ("core, eta 0 (generated rows in the CE only)", "core_tuning", {"eta": 0.0}, None, TWO),
    ("core, eta 0.01", "core_tuning", {"eta": 0.01}, None, TWO),
    ("core, eta 1.0", "core_tuning", {"eta": 1.0}, None, THREE),
    ("core, temperature 0.5", "core_tuning", {"temperature": 0.5}, None, TWO),
    ("ce, batch 256", "ce_tuning", {"batch_size": 256}, None, TWO),
    ("core, batch 256", "core_tuning", {"batch_size": 256}, None, TWO),
    ("ce, 3x epochs", "ce_tuning", {}, 3, THREE),
    ("core, 3x epochs", "core_tuning", {}, 3, THREE),
    ("core, eta 1.0, 3x epochs", "core_tuning", {"eta": 1.0}, 3, THREE),
]


def main():
    prof = protocol.PROFILES["full"]
    out = os.path.join(HERE, "out", "full")
    ours = json.load(open(os.path.join(out, "ours.json")))
    backbone = os.path.join(out, "var", "jobs", ours["pretrain"]["job"], "final.safetensors")
    threads = sys.argv[1] if len(sys.argv) > 1 else "1"
    path_json = os.path.join(out, "ablate.json")
    runs = json.load(open(path_json))["runs"] if os.path.exists(path_json) else []
    done = {(r["label"], r["seed"]) for r in runs}
    for label, method, over, mult, seeds in CONFIGS:
        for seed in seeds:
            if (label, seed) in done:  # a rerun only adds what is missing
                continue
            hp = dict(protocol.FINETUNE_HP, n_epochs=prof["finetune_epochs"] * (mult or 1),
                      batch_size=prof["finetune_batch"])
            if method == "core_tuning":
                hp.update(protocol.CORE_HP, variant="paper")
            hp.update(over)
            spec = {"model": backbone, "training_file": os.path.join(out, "labelled"),
                    "validation_file": os.path.join(out, "test"), "seed": seed,
                    "method": {"type": method, method: {"hyperparameters": hp}},
                    "data": {"valid_every": hp["n_epochs"]}}
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "spec.json")
                json.dump(spec, open(path, "w"))
                t0 = time.time()
                p = subprocess.run([os.path.join(ROOT, "bin", "coretune"), "train", path, "--out", d,
                                    "--threads", threads], capture_output=True, text=True)
                if p.returncode != 0:
                    raise SystemExit(f"{label}: {p.stderr}")
                summary = json.loads(p.stdout.splitlines()[-1])
            acc = summary["final_valid_accuracy"]
            print(f"{label} / seed {seed}: {acc:.4f} ({time.time() - t0:.0f} s)", flush=True)
            runs.append({"label": label, "method": method, "overrides": over, "epochs": hp["n_epochs"],
                         "seed": seed, "test_accuracy": acc})
            json.dump({"backbone": backbone, "runs": runs}, open(path_json, "w"), indent=1)


if __name__ == "__main__":
    main()
