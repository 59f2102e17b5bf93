#!/usr/bin/python3
"""reproduce/sweeps.py [--phase pretrain|all] [--quick] — the paper's claim redone the honest way, with the
product: a longer SimCLR pre-training (a stronger backbone), then CE-tuning's learning rate and
Core-tuning's eta and learning rate chosen by sweeps on a validation split of the labelled subset, each
chosen setting trained with 3 seeds and evaluated once on the 10k test images. Everything goes through
bin/coretuned's API as a user would (sweeps, jobs, the test_file of a sweep). State is kept in
reproduce/out/sweeps-<profile>/ so an interrupted run continues (the daemon's own data dir and
state.json with the ids made so far). Results: reproduce/out/sweeps-<profile>/sweeps.json.
Standard library only."""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import protocol  # noqa: E402
from run import cpu_model, start_daemon  # noqa: E402

PROFILES = {
    "full": {"pretrain_images": 20000, "pretrain_epochs": 12, "pretrain_batch": 256, "pretrain_lr": 0.3,
             "per_class": 100, "valid_fraction": 0.2, "finetune_epochs": 20, "finetune_batch": 64,
             "ce_lr": [0.003, 0.01, 0.03], "core_eta": [0.1, 1.0, 3.0], "core_lr": [0.01, 0.03],
             "seeds": [1, 2, 3], "max_parallel": 2, "test_images": 10000},
    "quick": {"pretrain_images": 2048, "pretrain_epochs": 2, "pretrain_batch": 128, "pretrain_lr": 0.3,
              "per_class": 20, "valid_fraction": 0.2, "finetune_epochs": 4, "finetune_batch": 32,
              "ce_lr": [0.01, 0.03], "core_eta": [0.1, 1.0], "core_lr": [0.01],
              "seeds": [1, 2], "max_parallel": 2, "test_images": 2000},
}
CORE_LR = "method.core_tuning.hyperparameters.learning_rate"
CORE_ETA = "method.core_tuning.hyperparameters.eta"
CE_LR = "method.ce_tuning.hyperparameters.learning_rate"


def wait_sweep(api, sid, label):
    last = 0
    while True:
        w = api.call("GET", f"/v1/fine_tuning/sweeps/{sid}")
        done = w["status"] in ("succeeded", "failed", "cancelled")
        tested = not w.get("test_file") or (w.get("best") or {}).get("test_accuracy") is not None
        if done and (tested or w["status"] != "succeeded"):
            return w
        if time.time() - last > 60:
            n = sum(t["status"] == "succeeded" for t in w["trials"])
            print(f"  {label}: {w['status']}, {n}/{len(w['trials'])} trials done", flush=True)
            last = time.time()
        time.sleep(3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--phase", choices=["pretrain", "all"], default="all")
    ap.add_argument("--threads", type=int, default=1, help="trainer threads per job (max_parallel jobs at once)")
    args = ap.parse_args()
    name = "quick" if args.quick else "full"
    prof = PROFILES[name]
    out = os.path.join(HERE, "out", f"sweeps-{name}")
    data_dir = os.path.join(out, "var")
    os.makedirs(data_dir, exist_ok=True)
    state_path = os.path.join(out, "state.json")
    state = json.load(open(state_path)) if os.path.exists(state_path) else {}

    def save():
        with open(state_path + ".tmp", "w") as f:
            json.dump(state, f, indent=1)
        os.replace(state_path + ".tmp", state_path)

    datasets = {
        "fmnist-labelled": protocol.write_subset(os.path.join(out, "labelled"), "train", per_class=prof["per_class"]),
        "fmnist-pretrain": protocol.write_subset(os.path.join(out, "pretrain"), "train", limit=prof["pretrain_images"]),
        "fmnist-test": protocol.write_subset(os.path.join(out, "test"), "test", limit=prof["test_images"]),
    }
    proc, api = start_daemon(data_dir, datasets, args.threads, workers=prof["max_parallel"])
    try:
        if "pretrain" not in state:
            pre = api.call("POST", "/v1/fine_tuning/jobs", {
                "model": "resnet20", "training_file": "fmnist-pretrain", "seed": 0, "suffix": "simclr",
                "method": {"type": "simclr", "simclr": {"hyperparameters": dict(
                    protocol.PRETRAIN_HP, n_epochs=prof["pretrain_epochs"], batch_size=prof["pretrain_batch"],
                    learning_rate=prof["pretrain_lr"], threads=args.threads)}},
                "data": {"valid_fraction": 0.02, "valid_every": 1}})
            state["pretrain"] = {"job": pre["id"], "started": time.time()}
            save()
        pre = api.wait(state["pretrain"]["job"], "simclr")
        if pre["status"] != "succeeded":
            raise SystemExit(f"pre-training {pre['status']}: {pre.get('error')}")
        state["pretrain"].update(model=pre["fine_tuned_model"], positive_pair_accuracy=pre["final_valid_accuracy"],
                                 seconds=(pre["finished_at"] or 0) - (pre["started_at"] or 0))
        save()
        print(f"backbone {pre['fine_tuned_model']}: positive-pair accuracy {pre['final_valid_accuracy']:.4f}, "
              f"{state['pretrain']['seconds'] / 60:.1f} min", flush=True)
        if args.phase == "pretrain":
            return
        backbone = pre["fine_tuned_model"]

        def job(method):
            hp = dict(protocol.FINETUNE_HP, n_epochs=prof["finetune_epochs"], batch_size=prof["finetune_batch"],
                      threads=args.threads)
            if method == "core_tuning":
                hp.update(protocol.CORE_HP, variant="paper")
            # selection on a validation split of the labelled subset; the test images never choose
            return {"model": backbone, "training_file": "fmnist-labelled", "seed": 1,
                    "method": {"type": method, method: {"hyperparameters": hp}},
                    "data": {"valid_fraction": prof["valid_fraction"]}}

        plans = {
            "ce_tuning": {"job": job("ce_tuning"), "parameters": {CE_LR: prof["ce_lr"]}},
            "core_tuning": {"job": job("core_tuning"), "parameters": {CORE_ETA: prof["core_eta"], CORE_LR: prof["core_lr"]}},
        }
        for method, plan in plans.items():
            key = f"sweep_{method}"
            if key not in state:
                w = api.call("POST", "/v1/fine_tuning/sweeps", dict(
                    plan, objective={"metric": "valid_accuracy", "goal": "maximize"},
                    max_parallel=prof["max_parallel"]))
                state[key] = {"id": w["id"]}
                save()
            w = wait_sweep(api, state[key]["id"], f"{method} sweep")
            if w["status"] != "succeeded":
                raise SystemExit(f"{method} sweep {w['status']}")
            state[key]["sweep"] = w
            save()
            # the chosen setting, trained on the whole labelled subset with 3 seeds, tested once each
            key = f"final_{method}"
            if key not in state:
                body = json.loads(json.dumps(plan["job"]))
                body["validation_file"] = "fmnist-test"
                body["data"] = {"valid_every": prof["finetune_epochs"]}
                for path, value in w["best"]["parameters"].items():
                    o = body
                    parts = path.split(".")
                    for p in parts[:-1]:
                        o = o.setdefault(p, {})
                    o[parts[-1]] = value
                f = api.call("POST", "/v1/fine_tuning/sweeps", {
                    "job": body, "parameters": {path: [value] for path, value in w["best"]["parameters"].items()},
                    "seeds": prof["seeds"], "max_parallel": prof["max_parallel"]})
                state[key] = {"id": f["id"]}
                save()
            f = wait_sweep(api, state[key]["id"], f"{method} final")
            state[key]["sweep"] = f
            save()
        results = {"profile": name, "protocol": prof, "machine": cpu_model(), "threads": args.threads,
                   "pretrain": state["pretrain"]}
        for method in plans:
            trials = state[f"final_{method}"]["sweep"]["trials"]
            results[method] = {
                "leaderboard": state[f"sweep_{method}"]["sweep"]["trials"],
                "chosen": state[f"sweep_{method}"]["sweep"]["best"],
                # the final runs validate on the test images only at their last epoch: that is the test score
                "test_accuracy": [t["objective"] for t in trials],
                "final_jobs": [t["job_id"] for t in trials]}
        with open(os.path.join(out, "sweeps.json"), "w") as fo:
            json.dump(results, fo, indent=1)
        print(json.dumps({m: results[m]["test_accuracy"] for m in plans}), flush=True)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
