"""reproduce/protocol.py — the reproduction protocol, shared by the daemon driver (run.py) and the
PyTorch twin (torch_protocol.py) so both run exactly the same data, model and hyper-parameters.
Python standard library only.

Protocol (docs/results.md):
 1. pre-train resnet20 (1x28x28) with SimCLR on Fashion-MNIST training images, labels unused;
 2. fine-tune it on a fixed labelled subset (PER_CLASS images per class, drawn once with SUBSET_SEED)
    with ce_tuning, core_tuning (paper) and core_tuning (reference), SEEDS each, same optimiser;
 3. report top-1 accuracy of the last epoch on the Fashion-MNIST test images.
"""
import gzip
import os
import random
import struct

FMNIST = "/usr/share/datasets/fashion-mnist"

# Full protocol (make reproduce) and a minutes-long sanity run (make reproduce-quick).
PROFILES = {
    "full": {
        "pretrain_images": 20000, "pretrain_epochs": 3, "pretrain_batch": 256, "pretrain_lr": 0.3,
        "per_class": 100, "seeds": [1, 2, 3], "finetune_epochs": 20, "finetune_batch": 64,
        "test_images": 10000, "valid_every": 20,
    },
    "quick": {
        "pretrain_images": 4096, "pretrain_epochs": 2, "pretrain_batch": 128, "pretrain_lr": 0.3,
        "per_class": 20, "seeds": [1], "finetune_epochs": 10, "finetune_batch": 32,
        "test_images": 2000, "valid_every": 10,
    },
}
SUBSET_SEED = 2021
PRETRAIN_HP = {"temperature": 0.5, "contrast_dim": 128, "weight_decay": 5e-4, "momentum": 0.9,
               "nesterov": True, "lr_schedule": "cosine", "gradient_accumulation_steps": 1}
# The authors' CIFAR-10 values (CORE_TUNING.md) except batch and epochs, which the profile sets.
FINETUNE_HP = {"learning_rate": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4,
               "lr_schedule": "cosine", "gradient_accumulation_steps": 1}
CORE_HP = {"eta": 0.1, "mixup_alpha": 1.0, "temperature": 0.07, "contrast_dim": 256}
METHODS = [("ce_tuning", None), ("core_tuning", "paper"), ("core_tuning", "reference")]


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 0x803:
        rows, cols = struct.unpack(">II", data[8:16])
        return n, rows, cols, data[16:]
    return n, 0, 0, data[8:]


def write_subset(out_dir, split, per_class=None, limit=None, seed=SUBSET_SEED):
    """Write an IDX pair holding a fixed subset of a Fashion-MNIST split: per_class images of each
    class (seeded), or the first `limit` images. Returns the directory (registered with the daemon
    as a dataset, read by the PyTorch twin)."""
    prefix = "train" if split == "train" else "t10k"
    n, rows, cols, pix = read_idx(f"{FMNIST}/{prefix}-images-idx3-ubyte.gz")
    _, _, _, labels = read_idx(f"{FMNIST}/{prefix}-labels-idx1-ubyte.gz")
    if per_class:
        rng = random.Random(seed)
        by_class = {}
        for i in range(n):
            by_class.setdefault(labels[i], []).append(i)
        idx = sorted(i for c in sorted(by_class) for i in rng.sample(by_class[c], per_class))
    else:
        idx = list(range(min(n, limit or n)))
    os.makedirs(out_dir, exist_ok=True)
    size = rows * cols
    with open(os.path.join(out_dir, "train-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(idx), rows, cols))
        for i in idx:
            f.write(pix[i * size:(i + 1) * size])
    with open(os.path.join(out_dir, "train-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 0x801, len(idx)))
        f.write(bytes(labels[i] for i in idx))
    return out_dir
