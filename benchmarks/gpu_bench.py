"""GPU benchmark: dlgpu's Triton kernels against torch/cuDNN, side by side in one run.

Every dlgpu result is checked against torch (which is itself checked against the reference in the
tests) before it is timed: a wrong kernel is reported and not timed. Timing is
``triton.testing.do_bench`` (median of reps after warm-up, L2 flushed between reps). Each row gives
the median time, TFLOP/s or GB/s from an explicit flop/byte formula, and the fraction of the device's
peak measured at start-up (a large device-to-device copy for bandwidth, a large bf16 matmul for
throughput).

    python benchmarks/gpu_bench.py [--dtype bfloat16] [--csv benchmarks/results/<device>.csv] [--md FILE]

Targets (issue: Triton kernels, H100): LSTM/GRU forward T=100 >= 1.0x cuDNN at B=64 and >= 2x at B <= 8;
MGU >= 1.5x cuDNN LSTM; conv2d forward bf16 >= 0.9x cuDNN; conv+bias+ReLU fused >= 1.2x cuDNN conv then
torch bias+ReLU; conv backward >= 0.5x cuDNN; pooling, activations, losses >= 85% of copy bandwidth.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Bench:
    """One timed comparison: ours against torch's, on the same inputs."""

    name: str
    ours: Callable[[], object]
    theirs: Callable[[], object]
    flops: float = 0.0  # per call
    bytes: float = 0.0  # per call, minimum traffic (read inputs once, write outputs once)
    target: float = 1.0  # torch time / ours
    check: Callable[[object, object], float] | None = None  # returns a relative error


def _rel(a: object, b: object) -> float:
    a = a[0] if isinstance(a, tuple) else a
    b = b[0] if isinstance(b, tuple) else b
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30))


def _no_grad(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        with torch.no_grad():
            return module(x)

    return run


def _cases(dtype: torch.dtype, dev: str) -> list[Bench]:
    from dlgpu import ops

    def t(*shape, scale=1.0):
        return (torch.randn(*shape, device=dev) * scale).to(dtype)

    es = torch.tensor([], dtype=dtype).element_size()
    out: list[Bench] = []
    # ---- recurrent (T=100): LSTM, GRU, MGU vs cuDNN
    for h in (256, 512, 1024):
        for b in (1, 8, 64):
            T, I = 100, h
            x = t(T, b, I)
            h0 = torch.zeros(b, h, device=dev, dtype=dtype)
            lstm = torch.nn.LSTM(I, h).to(dev, dtype)
            gru = torch.nn.GRU(I, h).to(dev, dtype)
            wl = [p.detach() for p in lstm.parameters()]
            wg = [p.detach() for p in gru.parameters()]
            flops_l = 2 * T * b * 4 * h * (I + h)
            # inference timings: torch runs under no_grad (see _no_grad), ours builds no graph
            out.append(Bench(f"lstm fwd T=100 B={b} H={h}", lambda x=x, h0=h0, w=wl: ops.lstm_forward(
                x, h0, h0, *w, backend="triton"), _no_grad(lstm, x), flops=flops_l,
                target=2.0 if b <= 8 else 1.0, check=_rel))  # fmt: skip
            out.append(Bench(f"gru fwd T=100 B={b} H={h}", lambda x=x, h0=h0, w=wg: ops.gru_forward(
                x, h0, *w, backend="triton"), _no_grad(gru, x), flops=flops_l * 3 / 4,
                target=2.0 if b <= 8 else 1.0, check=_rel))  # fmt: skip
            wm = [t(2 * h, I, scale=h**-0.5), t(2 * h, h, scale=h**-0.5), t(2 * h), t(2 * h)]
            out.append(Bench(f"mgu fwd T=100 B={b} H={h} (vs cuDNN LSTM)", lambda x=x, h0=h0, w=wm:
                ops.mgu_forward(x, h0, *w, backend="triton"), _no_grad(lstm, x),
                flops=flops_l / 2, target=1.5))  # fmt: skip
    # ---- conv2d: ResNet-18 / VGG layer shapes
    for n, c, hw, o, k, s in ((32, 64, 56, 64, 3, 1), (32, 128, 28, 128, 3, 1), (32, 256, 14, 256, 3, 1),
                              (32, 64, 56, 128, 3, 2), (16, 256, 56, 256, 3, 1), (32, 3, 224, 64, 7, 2)):  # fmt: skip
        p = k // 2
        x, w, bias = t(n, c, hw, hw), t(o, c, k, k, scale=(c * k * k) ** -0.5), t(o)
        oh = (hw + 2 * p - k) // s + 1
        fl = 2 * n * o * oh * oh * c * k * k
        by = (x.numel() + w.numel() + n * o * oh * oh) * es
        label = f"{n}x{c}x{hw}x{hw} -> {o} k{k} s{s}"
        out.append(Bench(f"conv2d fwd {label}",
            lambda x=x, w=w, s=s, p=p: ops.conv2d_forward(x, w, None, s, p, backend="triton"),
            lambda x=x, w=w, s=s, p=p: F.conv2d(x, w, None, s, p),
            flops=fl, bytes=by, target=0.9, check=_rel))  # fmt: skip
        out.append(Bench(f"conv2d+bias+relu fused {label}",
            lambda x=x, w=w, b=bias, s=s, p=p: ops.conv2d_forward(x, w, b, s, p, activation="relu", backend="triton"),
            lambda x=x, w=w, b=bias, s=s, p=p: F.relu(F.conv2d(x, w, None, s, p) + b[:, None, None]),
            flops=fl, bytes=by, target=1.2, check=_rel))  # fmt: skip
        y = F.conv2d(x, w, None, s, p)
        dy = torch.randn_like(y)
        xg, wg_ = x.clone().requires_grad_(), w.clone().requires_grad_()
        yt = F.conv2d(xg, wg_, None, s, p)
        out.append(Bench(f"conv2d bwd {label}", lambda dy=dy, x=x, w=w, s=s, p=p:
            ops.conv2d_backward(dy, x, w, s, p, backend="triton"),
            lambda yt=yt, dy=dy, xg=xg, wg_=wg_: torch.autograd.grad(yt, (xg, wg_), dy, retain_graph=True),
            flops=2 * fl, bytes=3 * by, target=0.5))  # fmt: skip
    # ---- memory-bound ops vs the measured copy bandwidth
    xp = t(64, 64, 112, 112)
    out.append(Bench("max_pool2d 64x64x112x112 3x3/2", lambda: ops.max_pool2d_forward(xp, 3, 2, 1, backend="triton"),
                     lambda: F.max_pool2d(xp, 3, 2, 1, return_indices=True), bytes=xp.numel() * es * (1 + 0.25 * 3),
                     check=_rel))  # fmt: skip
    out.append(Bench("avg_pool2d 64x64x112x112 2x2", lambda: ops.avg_pool2d_forward(xp, 2, backend="triton"),
                     lambda: F.avg_pool2d(xp, 2), bytes=xp.numel() * es * 1.25, check=_rel))  # fmt: skip
    xa = t(8192, 8192)
    for name, op, fn in (("relu", "relu_forward", torch.relu), ("sigmoid", "sigmoid_forward", torch.sigmoid),
                         ("tanh", "tanh_forward", torch.tanh)):  # fmt: skip
        out.append(Bench(f"{name} 8192x8192", lambda op=op: ops.call(op, xa, backend="triton"), lambda fn=fn: fn(xa),
                         bytes=2 * xa.numel() * es, check=_rel))  # fmt: skip
    out.append(Bench("softmax 8192x8192", lambda: ops.softmax_forward(xa, backend="triton"),
                     lambda: F.softmax(xa, -1), bytes=2 * xa.numel() * es, check=_rel))  # fmt: skip
    logits = t(8192, 32000)
    tgt = torch.randint(0, 32000, (8192,), device=dev)

    def ce_torch():
        y = logits.detach().requires_grad_()
        F.cross_entropy(y.float(), tgt).backward()
        return y.grad

    out.append(Bench("cross_entropy fwd+grad 8192x32000",
                     lambda: ops.cross_entropy_forward(logits, tgt, "mean", backend="triton")[1], ce_torch,
                     bytes=2 * logits.numel() * es))  # fmt: skip
    yl, tl_ = t(1 << 26), t(1 << 26)
    out.append(Bench("mse_loss fwd+grad 2^26", lambda: ops.mse_loss_forward(yl, tl_, "mean", backend="triton")[1],
                     lambda: 2 * (yl - tl_) / yl.numel(), bytes=3 * yl.numel() * es))  # fmt: skip
    return out


def _peaks(dev: str) -> tuple[float, float]:
    """(copy bandwidth in B/s, bf16 matmul rate in FLOP/s), measured here and now."""
    from triton.testing import do_bench

    a = torch.empty(1 << 28, dtype=torch.uint8, device=dev)
    b = torch.empty_like(a)
    ms = do_bench(lambda: b.copy_(a))
    bw = 2 * a.numel() / (ms * 1e-3)
    m = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    ms = do_bench(lambda: m @ m)
    return bw, 2 * 8192**3 / (ms * 1e-3)


def main(argv: list[str] | None = None) -> int:
    """Run every comparison, print a markdown table, optionally write CSV and markdown."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--csv", default=None)
    p.add_argument("--md", default=None)
    args = p.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    if not torch.cuda.is_available():
        print("error: no CUDA device; the GPU benchmark needs one (see benchmarks/cpu_bench.py for the CPU one)",
              file=sys.stderr)  # fmt: skip
        return 2
    from triton.testing import do_bench

    dev = "cuda"
    bw, peak = _peaks(dev)
    name = torch.cuda.get_device_name(0)
    print(f"device {name}: copy bandwidth {bw / 1e9:.0f} GB/s, bf16 matmul {peak / 1e12:.0f} TFLOP/s")
    rows = []
    for bch in _cases(dtype, dev):
        row = dict(name=bch.name, device=name, dtype=args.dtype)
        try:
            mine, ref = bch.ours(), bch.theirs()
            if bch.check is not None:
                err = bch.check(mine, ref)
                row["rel_err"] = f"{err:.1e}"
                if not err < 2e-2:
                    row["status"] = "FAIL (not timed)"
                    rows.append(row)
                    print(row, flush=True)
                    continue
            t_ours, t_torch = do_bench(bch.ours), do_bench(bch.theirs)
        except Exception as e:  # reported, not hidden
            row["status"] = f"ERROR {type(e).__name__}: {e}"[:200]
            rows.append(row)
            print(row, flush=True)
            continue
        speedup = t_torch / t_ours
        row.update(status="ok", ours_ms=f"{t_ours:.4f}", torch_ms=f"{t_torch:.4f}", speedup=f"{speedup:.2f}",
                   target=bch.target, met="yes" if speedup >= bch.target else "no")  # fmt: skip
        if bch.flops:
            row["tflops"] = f"{bch.flops / t_ours / 1e9:.1f}"
            row["frac_peak_flops"] = f"{bch.flops / (t_ours * 1e-3) / peak:.2f}"
        if bch.bytes:
            row["gbps"] = f"{bch.bytes / t_ours / 1e6:.0f}"
            row["frac_copy_bw"] = f"{bch.bytes / (t_ours * 1e-3) / bw:.2f}"
        rows.append(row)
        print(row, flush=True)
    keys = ["name", "status", "rel_err", "ours_ms", "torch_ms", "speedup", "target", "met", "tflops",
            "frac_peak_flops", "gbps", "frac_copy_bw", "device", "dtype"]  # fmt: skip
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
    md = ["| " + " | ".join(keys[:-2]) + " |", "|" + "---|" * (len(keys) - 2)]
    md += ["| " + " | ".join(str(r.get(k, "")) for k in keys[:-2]) + " |" for r in rows]
    text = f"# GPU benchmark on {name} ({args.dtype})\n\nCommand: `python benchmarks/gpu_bench.py " \
        f"{' '.join(argv if argv is not None else sys.argv[1:])}`\n\n" + "\n".join(md)  # fmt: skip
    print(text)
    if args.md:
        with open(args.md, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
