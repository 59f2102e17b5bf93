# bench/conv_torch.py — PyTorch 1.13 reference timings for bench_kernels.c: the same conv shapes,
# torch.nn.functional.conv2d forward + backward (input and weight grads), NCHW float32, minimum over reps.
# Usage: /usr/bin/python3 bench/conv_torch.py [threads] [reps]. Stand-alone, prints a table.
import sys, time, torch
import torch.nn.functional as F

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 10
torch.set_num_threads(threads)
layers = [  # name, cin, cout, k, stride, pad, n, h, w, count, need_din
    ("r20 stem 1->16 3x3 @28", 1, 16, 3, 1, 1, 128, 28, 28, 1, False),
    ("r20 16->16 3x3 @28", 16, 16, 3, 1, 1, 128, 28, 28, 6, True),
    ("r20 16->32 3x3 s2 @28", 16, 32, 3, 2, 1, 128, 28, 28, 1, True),
    ("r20 16->32 1x1 s2 @28", 16, 32, 1, 2, 0, 128, 28, 28, 1, True),
    ("r20 32->32 3x3 @14", 32, 32, 3, 1, 1, 128, 14, 14, 5, True),
    ("r20 32->64 3x3 s2 @14", 32, 64, 3, 2, 1, 128, 14, 14, 1, True),
    ("r20 32->64 1x1 s2 @14", 32, 64, 1, 2, 0, 128, 14, 14, 1, True),
    ("r20 64->64 3x3 @7", 64, 64, 3, 1, 1, 128, 7, 7, 5, True),
    ("r18 64->64 3x3 @32 b64", 64, 64, 3, 1, 1, 64, 32, 32, 4, True),
]
print(f"torch {torch.__version__}, threads {threads}, reps {reps} (minimum)")
print(f"{'layer':26s} {'fwd ms':>9s} {'bwd ms':>9s} {'f+b ms':>9s} {'count':>7s}")
tf20 = tb20 = 0.0
for name, cin, cout, k, s, p, n, h, w, count, need_din in layers:
    x = torch.randn(n, cin, h, w, requires_grad=need_din)
    wt = (torch.randn(cout, cin, k, k) * 0.1).requires_grad_()
    oh = (h + 2 * p - k) // s + 1
    g = torch.randn(n, cout, oh, (w + 2 * p - k) // s + 1)
    tf, tb = [], []
    for r in range(reps + 2):
        t0 = time.perf_counter()
        y = F.conv2d(x, wt, stride=s, padding=p)
        t1 = time.perf_counter()
        y.backward(g)
        t2 = time.perf_counter()
        wt.grad = None
        if need_din: x.grad = None
        if r >= 2:
            tf.append(t1 - t0); tb.append(t2 - t1)
    f = min(tf) * 1e3; b = min(tb) * 1e3  # minimum: shared, noisy machines
    print(f"{name:26s} {f:9.2f} {b:9.2f} {f + b:9.2f} {count:7d}")
    if name.startswith("r20"):
        tf20 += f * count; tb20 += b * count
print(f"resnet20 all convs (weighted by count): fwd {tf20:.1f} ms, bwd {tb20:.1f} ms, total {tf20 + tb20:.1f} ms")
