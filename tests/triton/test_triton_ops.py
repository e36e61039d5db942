"""The ``dlgpu_triton::`` twins of the torch ops (``torch.library.triton_op`` + ``wrap_triton``).

Without a GPU they run eagerly on CPU tensors under TRITON_INTERPRET=1: same results as the
``dlgpu::`` custom ops (numba), same gradients, a schema/autograd/fake-tensor ``opcheck``, and a
clear error (never an empty graph) if torch.compile tries to trace interpreted kernels. The
gpu-marked tests check that torch.compile really traces into the kernels on CUDA.
"""

from __future__ import annotations

import importlib

import pytest
import torch

import dlgpu
from dlgpu.functional._common import TRITON_NAMESPACE, DualOp

MODULES = [
    importlib.import_module(f"dlgpu.functional.{m}")
    for m in ("activations", "conv", "dropout", "linear", "losses", "pooling", "recurrent", "regularizers")
]
DUAL_OPS = {name: op for mod in MODULES for name, op in vars(mod).items() if isinstance(op, DualOp)}
F32 = dict(dtype=torch.float32)


def _cases(gen: torch.Generator) -> list[tuple[DualOp, tuple, tuple[int, ...]]]:
    """(op, args, indices of the differentiable args) on small odd float32 shapes."""

    def r(*shape, scale=1.0, grad=True):
        return (torch.randn(*shape, generator=gen, **F32) * scale).requires_grad_(grad)

    names = ("activations", "conv", "dropout", "linear", "losses", "pooling", "recurrent", "regularizers")
    a, c, d, li, lo, p, r_, rg = (importlib.import_module(f"dlgpu.functional.{m}") for m in names)
    x, x4 = r(3, 5), r(2, 4, 7, 5)
    t = torch.randint(0, 5, (3,), generator=gen)
    seq, h0, c0 = r(3, 2, 4), r(2, 3, scale=0.5), r(2, 3, scale=0.5)

    def w(g):
        return [r(g * 3, 4, scale=0.5), r(g * 3, 3, scale=0.5), r(g * 3, scale=0.5), r(g * 3, scale=0.5)]

    return [
        (a._relu, (x,), (0,)),
        (a._leaky_relu, (x, 0.1), (0,)),
        (a._sigmoid, (x,), (0,)),
        (a._tanh, (x,), (0,)),
        (a._softplus, (x,), (0,)),
        (a._softmax, (x, 1), (0,)),
        (a._log_softmax, (x, 0), (0,)),
        (li._linear, (x, r(7, 5), r(7), "relu", 0.01), (0, 1, 2)),
        (c._conv2d, (x4, r(6, 2, 3, 3), r(6), [1, 2], [1, 0], [1, 1], 2, "tanh", 0.01), (0, 1, 2)),
        (c._lc2d, (x4, r(5, 3, 2, 4, 3, 3), None, [1, 1], [0, 0]), (0, 1)),
        (p._max_pool2d, (x4, [2, 2], [2, 1], [1, 0]), (0,)),
        (p._avg_pool2d, (x4, [3, 3], [2, 2], [1, 1], False), (0,)),
        (d._dropout, (x, 0.25, 9), (0,)),
        (lo._loss, ("cross_entropy", x, t, "mean", 1.0), (1,)),
        (lo._loss, ("pseudo_huber_loss", x, r(3, 5, grad=False), "none", 0.5), (1,)),
        (r_._rnn, (seq, h0, *w(1), "tanh"), (0, 1, 2, 3, 4, 5)),
        (r_._lstm, (seq, h0, c0, *w(4), None, "forget"), (0, 1, 2, 3, 4, 5, 6)),
        (r_._gated, ("gru", seq, h0, *w(3), "cudnn"), (1, 2, 3, 4, 5, 6)),
        (r_._gated, ("mgu", seq, h0, *w(2), ""), (1, 2, 3, 4, 5, 6)),
        (lo._loss, ("hinge_loss", x, torch.where(x.detach() > 0, 1.0, -1.0), "sum", 1.0), (1,)),
        (lo._loss, ("binary_cross_entropy", torch.sigmoid(x.detach()).requires_grad_(), r(3, 5, grad=False).sigmoid(),
                    "mean", 1.0), (1,)),  # fmt: skip
        (rg._penalty, ("l2", x, 0.3), (1,)),
        (rg._penalty_backward, ("l1", x.detach(), 0.3, torch.tensor(1.5)), ()),
        (p._max_pool2d_backward, (r(2, 4, 4, 5, grad=False), torch.randint(0, 35, (2, 4, 4, 5), generator=gen),
                                  [2, 4, 7, 5]), ()),  # fmt: skip
        (c._conv2d_backward, (r(2, 6, 7, 3, grad=False), x4.detach(), r(6, 4, 1, 3, grad=False),
                              r(2, 6, 7, 3, grad=False), [1, 1], [0, 0], [1, 1], 1, "none", 0.01), ()),  # fmt: skip
        (lo._loss_backward, (torch.tensor(0.7), r(3, 5, grad=False), "mean"), ()),
    ]


N_CASES = 26


def _outputs(out) -> list[torch.Tensor]:
    return [o for o in (out if isinstance(out, (tuple, list)) else (out,)) if o.is_floating_point()]


def test_every_op_has_a_triton_twin():
    assert len(DUAL_OPS) >= 30  # every forward and backward op of dlgpu.functional
    for name, op in DUAL_OPS.items():
        assert op.triton is not None, name
        twin = getattr(getattr(torch.ops, TRITON_NAMESPACE), op.name).default._schema
        custom = getattr(torch.ops.dlgpu, op.name).default._schema
        # same arguments and returns, only the namespace differs
        assert str(twin).split("::", 1)[1] == str(custom).split("::", 1)[1], name


@pytest.mark.parametrize("case", range(N_CASES))
def test_twin_matches_custom_op_forward_and_backward(case, seed):
    gen = torch.Generator().manual_seed(seed)
    op, args, diff = _cases(gen)[case]
    # numba on the CPU; dropout's mask comes from each backend's own RNG, so it is checked against
    # the triton backend called through the custom op
    with dlgpu.use_backend("triton" if op.name == "dropout" else "auto"):
        ref_out = op.custom(*args)
    out = op.triton(*args)  # the Triton kernels, interpreted
    ref_outs, outs = _outputs(ref_out), _outputs(out)
    assert len(outs) == len(ref_outs)
    for o, e in zip(outs, ref_outs):
        assert o.shape == e.shape and o.dtype == e.dtype
        torch.testing.assert_close(o, e, rtol=2e-5, atol=2e-5)
    # gradients through the twin's autograd registration against the custom op's
    if not diff:
        return
    diff_args = [args[i] for i in diff]
    cot = [torch.randn(o.shape, generator=gen, **F32) for o in ref_outs[:1]]
    g_ref = torch.autograd.grad(ref_outs[:1], diff_args, cot, allow_unused=True)
    g = torch.autograd.grad(outs[:1], diff_args, cot, allow_unused=True)
    for gi, ei in zip(g, g_ref):
        assert (gi is None) == (ei is None)
        if gi is not None:
            torch.testing.assert_close(gi, ei, rtol=5e-5, atol=5e-5)


@pytest.mark.parametrize("case", range(N_CASES))
def test_opcheck_twin(case):
    op, args, _ = _cases(torch.Generator().manual_seed(case))[case]
    # test_aot_dispatch_dynamic traces the kernels into a graph: that needs compiled (CUDA) Triton,
    # and runs in the gpu-marked test below
    torch.library.opcheck(op.triton, args, test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


def test_opcheck_mutating_twin(seed):
    from dlgpu.functional import regularizers as rg

    w = torch.randn(5, 7, generator=torch.Generator().manual_seed(seed)) * 3
    expected = w.clone()
    rg._max_norm_.custom(expected, 1.5)
    rg._max_norm_.triton(w, 1.5)  # in place, like the custom op
    torch.testing.assert_close(w, expected)
    torch.library.opcheck(rg._max_norm_.triton, (w, 1.5), test_utils=("test_schema", "test_faketensor"))


def test_dual_op_routes_cpu_tensors_to_the_custom_op(monkeypatch):
    calls = []
    op = DUAL_OPS["_relu"]
    monkeypatch.setattr(op, "triton", lambda *a: calls.append("triton"))
    x = torch.randn(3, 4)
    torch.testing.assert_close(op(x), x.clamp_min(0))
    assert calls == []


def test_tracing_interpreted_kernels_is_an_error_not_an_empty_graph():
    op = DUAL_OPS["_relu"]
    x = torch.randn(5, 3)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        torch.compile(lambda v: op.triton(v), backend="aot_eager", fullgraph=True)(x)


def test_wrap_triton_is_the_kernel_itself_in_eager():
    from dlgpu.kernels.triton import activations as A
    from dlgpu.kernels.triton._common import wrap_triton

    assert wrap_triton(A._act_fwd_kernel) is A._act_fwd_kernel


@pytest.mark.gpu
def test_compile_traces_into_triton_kernels_on_cuda():
    from torch._inductor.utils import run_and_get_code

    import dlgpu.functional as D

    x = torch.randn(64, 33, device="cuda")
    w, b = torch.randn(17, 33, device="cuda"), torch.randn(17, device="cuda")

    def f(x):
        return D.relu(D.linear(x, w, b, activation="tanh")).sum()

    with dlgpu.use_backend("auto"):
        out, code = run_and_get_code(torch.compile(f, fullgraph=True), x)
    torch.testing.assert_close(out, f(x))
    src = "\n".join(code)
    # inductor's output code defines the user kernels it traced into
    assert "_act_fwd_kernel" in src and "_linear_fwd_kernel" in src


@pytest.mark.gpu
@pytest.mark.parametrize("case", range(N_CASES))
def test_opcheck_twin_full_on_cuda(case):
    op, args, _ = _cases(torch.Generator().manual_seed(case))[case]
    cuda = tuple(a.detach().cuda().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a
                 for a in args)  # fmt: skip
    torch.library.opcheck(op.triton, cuda)
