"""Every op of the non-recurrent CUDA C families through ``dlgpu.ops.call(..., backend="cupy")``
against the float64 reference, on torch tensors (float32, float16, bfloat16) and on cupy arrays
(float32, float16), at the odd "quick" shapes and a few larger, targeted ones. Each test runs on
both targets (conftest): a CUDA device through CuPy (``gpu``: skipped without one), and the CPU
through the same ``.cu`` sources compiled with g++ (``host``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu import ops
from dlgpu.reference import activations as ref_act
from dlgpu.reference import losses as ref_losses
from dlgpu.reference import pooling as ref_pool
from dlgpu.reference.locally_connected import locally_connected2d_output_shape
from dlgpu.testing.cases import Case, _conv_case, _linear_case, all_cases, run_case, torch_inputs
from dlgpu.testing.harness import assert_close, randn, to_numpy

FAMILIES = ("activations", "linear", "conv", "locally_connected", "pooling", "dropout", "losses", "regularizers")
CASES = {c.name: c for c in all_cases(seed=5, size="quick") if ops.OPS[c.forward] in FAMILIES}


@pytest.fixture(scope="module")
def cupy():
    return pytest.importorskip("cupy")


def _call(op, *args, **kwargs):
    return ops.call(op, *args, backend="cupy", **kwargs)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_torch_tensors_match_reference(target, name, dtype):
    res = run_case(CASES[name], "cupy", dtype, seed=5, convert=torch_inputs(dtype, target.device))
    assert not res.error, res.error
    assert res.reports and res.ok, "\n".join(str(r) for r in res.reports if not r.ok)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_cupy_arrays_match_reference(target, name, dtype):
    def convert(a):
        return target.array(a.astype(dtype) if a.dtype.kind == "f" else a)

    res = run_case(CASES[name], "cupy", dtype, seed=5, convert=convert)
    assert not res.error, res.error
    assert res.reports and res.ok, "\n".join(str(r) for r in res.reports if not r.ok)


# ------------------------------------------------------------------ targeted shapes and modes


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_softmax_column_and_block_modes(target, gen, dtype):
    _t = target.tensor
    for shape, axis in (((6, 37, 5), 1), ((9, 4), 0), ((3, 3001), -1), ((2, 9000), 1)):
        x = gen.standard_normal(shape) * 3
        xr = to_numpy(_t(x, dtype))  # the inputs the kernel sees
        for fwd, bwd in (("softmax_forward", "softmax_backward"), ("log_softmax_forward", "log_softmax_backward")):
            y = _call(fwd, _t(x, dtype), axis=axis)
            assert_close(y, getattr(ref_act, fwd)(xr, axis=axis), op="softmax", dtype=dtype)
            dy = gen.standard_normal(shape)
            yr = getattr(ref_act, fwd)(xr, axis=axis)
            dx = _call(bwd, _t(dy, dtype), _t(yr, dtype), axis=axis)
            want = getattr(ref_act, bwd)(to_numpy(_t(dy, dtype)), to_numpy(_t(yr, dtype)), axis=axis)
            assert_close(dx, want, op="softmax", dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_large_class_counts_and_int32_labels(target, gen, dtype):
    _t = target.tensor
    n, k = 37, 5003  # one block per row
    y = gen.standard_normal((n, k)) * 4
    t = gen.integers(0, k, n).astype(np.int32)
    for op in ("cross_entropy_forward", "multiclass_hinge_loss_forward"):
        for red in ("mean", "none"):
            loss, grad = _call(op, _t(y, dtype), torch.from_numpy(t).to(target.device), red)
            rl, rg = getattr(ref_losses, op)(to_numpy(_t(y, dtype)), t, red)
            assert_close(loss, rl, op="cross_entropy", dtype=dtype)
            assert_close(grad, rg, op="cross_entropy", dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_conv_and_linear_with_split_k_and_groups(target, gen, dtype):
    for c in (
        _conv_case(gen, 9, 12, 23, 19, 15, 3, 2, 2, 2, 3, "sigmoid"),  # groups 3, dilation 2, stride 2
        _conv_case(gen, 3, 5, 40, 37, 7, 5, 1, 2, 1, 1, "leaky_relu"),  # P = 4440: several K splits
        _linear_case(gen, 3001, 67, 33, "relu"),  # N = 3001 rows: split-K weight gradient
    ):
        res = run_case(c, "cupy", dtype, seed=9, convert=torch_inputs(dtype, target.device))
        assert res.ok, res.error or str(res.worst)


# Non-square windows, and strides, paddings and dilations that differ between H and W: each row
# mixes up the two axes where an H term used for W (or KH for KW) changes the result. The quick
# cases above are square and symmetric, so they cannot tell the axes apart.
_CONV_GEOMETRY = [  # (N, C, H, W, O, (KH, KW), stride, padding, dilation, groups, activation)
    (2, 4, 11, 9, 6, (3, 2), (2, 1), (1, 2), (1, 2), 2, "tanh"),
    (2, 3, 8, 12, 4, (2, 3), (1, 3), (2, 0), (2, 1), 1, "none"),
]
_POOL_GEOMETRY = [((3, 2), (1, 2), (1, 1)), ((2, 3), (3, 1), (0, 1))]  # (kernel, stride, padding)
_LC_GEOMETRY = [((3, 2), (2, 1), (1, 0)), ((2, 3), (1, 3), (0, 1))]  # (kernel, stride, padding)


def _asymmetric_cases(gen) -> list[Case]:
    out = []
    for n, c, h, w, o, (kh, kw), stride, padding, dilation, groups, act in _CONV_GEOMETRY:
        x, wt = randn((n, c, h, w), gen), randn((o, c // groups, kh, kw), gen, scale=(c * kh * kw / groups) ** -0.5)
        kw_ = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, activation=act)

        def mk(outs, g, _x=x, _w=wt, _kw=kw_):
            return (randn(outs[0].shape, g), _x, _w), {**_kw, "out": outs[0]}

        out.append(Case(f"conv2d{kw_}", "conv2d", "conv2d_forward", (x, wt, randn((o,), gen)), kw_,
                        "conv2d_backward", mk))  # fmt: skip
    x = (gen.permutation(2 * 3 * 9 * 10).reshape(2, 3, 9, 10) / 540 + 0.01).astype(np.float64)  # no ties
    for k, s, p in _POOL_GEOMETRY:

        def mk_max(outs, g):
            return (randn(outs[0].shape, g), outs[1], x.shape), {}

        out.append(Case(f"max_pool2d[{k},{s},{p}]", "max_pool2d", "max_pool2d_forward", (x, k, s, p), {},
                        "max_pool2d_backward", mk_max))  # fmt: skip
        for cip in (True, False):

            def mk_avg(outs, g, _k=k, _s=s, _p=p, _c=cip):
                return (randn(outs[0].shape, g), x.shape, _k, _s, _p, _c), {}

            out.append(Case(f"avg_pool2d[{k},{s},{p},{cip}]", "avg_pool2d", "avg_pool2d_forward", (x, k, s, p, cip),
                            {}, "avg_pool2d_backward", mk_avg))  # fmt: skip
    for (kh, kw), stride, padding in _LC_GEOMETRY:
        xl = randn((2, 3, 9, 8), gen)
        oh, ow = locally_connected2d_output_shape(xl.shape, (kh, kw), stride, padding)
        wl = randn((oh, ow, 4, 3, kh, kw), gen, scale=(3 * kh * kw) ** -0.5)
        kw_ = dict(stride=stride, padding=padding)

        def mk_lc(outs, g, _x=xl, _w=wl, _kw=kw_):
            return (randn(outs[0].shape, g), _x, _w), dict(_kw)

        out.append(Case(f"locally_connected2d{kw_}", "locally_connected2d", "locally_connected2d_forward",
                        (xl, wl, randn((4, oh, ow), gen)), kw_, "locally_connected2d_backward", mk_lc))  # fmt: skip
    return out


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_conv_pooling_and_locally_connected_tell_h_from_w(target, gen, dtype):
    bad = []
    for case in _asymmetric_cases(gen):
        res = run_case(case, "cupy", dtype, seed=7, convert=torch_inputs(dtype, target.device))
        if not res.ok or not res.reports:
            bad.append(f"{case.name}: {res.error or [str(r) for r in res.reports if not r.ok]}")
    assert not bad, "\n".join(bad)


def test_max_pool_ties_and_nan_follow_the_reference(target):
    _t = target.tensor
    x = np.zeros((1, 2, 5, 6))
    x[0, 0, 1, 1] = x[0, 0, 1, 2] = 3.0  # a tie: the first in scan order wins
    x[0, 1, 2, 2] = np.nan
    x[0, 1, 2, 3] = np.nan  # several NaNs: the last is reported
    y, idx = _call("max_pool2d_forward", _t(x), 3, 2, 1)
    ry, ridx = ref_pool.max_pool2d_forward(x, 3, 2, 1)
    np.testing.assert_array_equal(idx.cpu().numpy(), ridx)
    np.testing.assert_array_equal(to_numpy(y), ry)  # NaN compare equal in assert_array_equal


def test_dropout_seed_is_reproducible_and_keeps_1_minus_p(target, gen):
    _t = target.tensor
    x = _t(gen.standard_normal((517, 333)) + 5)  # no zeros: y == 0 exactly where dropped
    p = 0.3
    y1 = _call("dropout_forward", x, p, seed=1234)
    y2 = _call("dropout_forward", x, p, seed=1234)
    assert torch.equal(y1, y2)
    keep = y1 != 0
    frac = keep.double().mean().item()
    sigma = (p * (1 - p) / x.numel()) ** 0.5
    assert abs(frac - (1 - p)) < 6 * sigma
    torch.testing.assert_close(y1[keep], x[keep] / (1 - p))
    dy = _t(gen.standard_normal((517, 333)))
    dx = _call("dropout_backward", dy, p, seed=1234)
    torch.testing.assert_close(dx, torch.where(keep, dy / (1 - p), torch.zeros_like(dy)))
    from dlgpu.kernels.cuda.dropout import dropout_mask, dropout_mask_host

    assert torch.equal(dropout_mask(tuple(x.shape), p, 1234, like=x), keep)
    np.testing.assert_array_equal(keep.cpu().numpy(), dropout_mask_host(tuple(x.shape), p, 1234))
    assert not torch.equal(_call("dropout_forward", x, p, seed=1235), y1)
    if target.name == "gpu":  # without a like= array the mask is a cupy array (no cupy on the host)
        mask_cp = dropout_mask(tuple(x.shape), p, 1234)
        assert isinstance(mask_cp, target.xp.ndarray)
        np.testing.assert_array_equal(target.to_f64(mask_cp), keep.cpu().numpy())


def test_dropout_seed_keys_philox_with_all_64_bits(target, gen):
    """The key's high word is the seed's bits 32..63: seeds 2^32 apart draw different masks, and the
    kernels' mask for a seed past 32 bits is the host model's (test_dropout_seed_is_reproducible...
    only uses a seed below 2^32, whose high word is 0)."""
    from dlgpu.kernels.cuda.dropout import dropout_mask, dropout_mask_host

    x = target.tensor(gen.standard_normal((37, 29)) + 5)  # no zeros: y == 0 exactly where dropped
    keeps = {}
    for seed in (77, 2**32 + 77, 2**63 + 2**40 + 77):
        keeps[seed] = _call("dropout_forward", x, 0.4, seed=seed) != 0
        np.testing.assert_array_equal(keeps[seed].cpu().numpy(), dropout_mask_host(tuple(x.shape), 0.4, seed))
        assert torch.equal(dropout_mask(tuple(x.shape), 0.4, seed, like=x), keeps[seed])
    assert not torch.equal(keeps[77], keeps[2**32 + 77])
    assert not torch.equal(keeps[2**32 + 77], keeps[2**63 + 2**40 + 77])


def test_reductions_are_bitwise_reproducible(target, gen):
    _t = target.tensor
    y = _t(gen.standard_normal((3001, 129)))
    t = torch.from_numpy(gen.integers(0, 129, 3001)).to(target.device)
    a = _call("cross_entropy_forward", y, t)[0]
    b = _call("cross_entropy_forward", y, t)[0]
    assert torch.equal(a, b)
    w = _t(gen.standard_normal((1000, 999)))
    assert torch.equal(_call("l2_penalty_forward", w, 0.1), _call("l2_penalty_forward", w, 0.1))


@pytest.mark.gpu
def test_runs_on_torchs_current_stream(cupy, gen):
    x = gen.standard_normal((4096, 513))
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        xt = torch.from_numpy(x).float().cuda()
        y = _call("tanh_forward", xt)
        z = _call("tanh_backward", y, y)  # ordered after the forward on the same stream
    s.synchronize()
    assert_close(y, np.tanh(x), op="tanh", dtype="float32")
    assert_close(z, np.tanh(x) * (1 - np.tanh(x) ** 2), op="tanh", dtype="float32")


def test_device_errors(target):
    _t = target.tensor
    with pytest.raises(ValueError, match="target must contain only -1 and \\+1"):
        _call("hinge_loss_forward", _t(np.ones(5)), _t(np.array([1, -1, 0.5, 1, 1.0])))
    with pytest.raises(ValueError, match=r"target class indices must be in \[0, 4\)"):
        _call("cross_entropy_forward", _t(np.ones((2, 4))), torch.tensor([1, 9], device=target.device))
    with pytest.raises(TypeError, match="x must be one of float32, float16, bfloat16"):
        _call("relu_forward", target.array(np.ones(3)))
    out = _call("relu_forward", target.array(np.array([-1.0, 2.0], np.float32)))
    assert isinstance(out, target.xp.ndarray) and out.tolist() == [0.0, 2.0]
