"""dlgpu.nn.losses against torch.nn's losses (or the formula where torch has none), and
dlgpu.nn.regularization: penalties against hand sums, max-norm bounds, clipping, Regularizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import dlgpu.functional as D
from dlgpu.nn.layers import Conv2d, Linear, LocallyConnected2d
from dlgpu.nn.losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HingeLoss,
    L1Loss,
    MSELoss,
    MultiClassHingeLoss,
    MultiClassSquaredHingeLoss,
    PseudoHuberLoss,
    SquaredHingeLoss,
)
from dlgpu.nn.regularization import MaxNorm, Regularizer, clip_grad_norm_, clip_grad_value_, l1_penalty, l2_penalty
from dlgpu.testing import assert_close, labels, randn, signs, uniform

DTYPES = [torch.float64, torch.float32]
REDUCTIONS = ["mean", "sum", "none"]
N, K = 7, 5  # scores [N, K]; elementwise losses on [3, 5, 7]


def _k(reduce: str):
    def ref(fn):
        def f(x, t):
            per = fn(x, t)
            return per.mean() if reduce == "mean" else per.sum() if reduce == "sum" else per

        return f

    return ref


def _ref(name: str, reduction: str):
    """torch's module, or the formula, as a function (input, target) -> loss in float64."""
    r = _k(reduction)
    mm = nn.MultiMarginLoss(reduction="none")
    mm2 = nn.MultiMarginLoss(p=2, reduction="none")
    return {
        "cross_entropy": nn.CrossEntropyLoss(reduction=reduction),
        "bce": nn.BCELoss(reduction=reduction),
        "bce_logits": nn.BCEWithLogitsLoss(reduction=reduction),
        "mse": nn.MSELoss(reduction=reduction),
        "l1": nn.L1Loss(reduction=reduction),
        "pseudo_huber": r(lambda x, t: 1.7**2 * (torch.sqrt(1 + ((x - t) / 1.7) ** 2) - 1)),
        "hinge": r(lambda x, t: torch.clamp(1 - x * t, min=0)),
        "squared_hinge": r(lambda x, t: torch.clamp(1 - x * t, min=0) ** 2),
        "mc_hinge": r(lambda x, t: K * mm(x, t)),  # torch averages over the K classes
        "mc_squared_hinge": r(lambda x, t: K * mm2(x, t)),
    }[name]


OURS = {
    "cross_entropy": CrossEntropyLoss,
    "bce": BCELoss,
    "bce_logits": BCEWithLogitsLoss,
    "mse": MSELoss,
    "l1": L1Loss,
    "pseudo_huber": lambda reduction: PseudoHuberLoss(1.7, reduction=reduction),
    "hinge": HingeLoss,
    "squared_hinge": SquaredHingeLoss,
    "mc_hinge": MultiClassHingeLoss,
    "mc_squared_hinge": MultiClassSquaredHingeLoss,
}


def _inputs(name: str, gen) -> tuple[np.ndarray, np.ndarray]:
    shape = (3, 5, 7)
    if name in ("cross_entropy", "mc_hinge", "mc_squared_hinge"):
        # scores spread so some margins are active and some not
        return randn((N, K), gen, scale=0.8), labels(N, K, gen)
    if name == "bce":
        return uniform(shape, gen, 0.02, 0.98), uniform(shape, gen, 0.0, 1.0)
    if name == "bce_logits":
        return randn(shape, gen, scale=3.0), uniform(shape, gen, 0.0, 1.0)
    if name in ("hinge", "squared_hinge"):
        return randn(shape, gen), signs(shape, gen)
    return randn(shape, gen, scale=2.0), randn(shape, gen)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", sorted(OURS))
def test_loss_matches_torch(name, reduction, dtype, gen):
    x, t = _inputs(name, gen)
    xo = torch.tensor(x, dtype=dtype, requires_grad=True)
    xt = xo.detach().double().requires_grad_(True)
    to = torch.tensor(t) if t.dtype.kind == "i" else torch.tensor(t, dtype=dtype)
    tt = to if t.dtype.kind == "i" else to.double()
    lo, lt = OURS[name](reduction=reduction)(xo, to), _ref(name, reduction)(xt, tt)
    d = str(dtype).replace("torch.", "")
    assert lo.shape == lt.shape and lo.dtype == dtype
    assert_close(lo, lt, name, d, name=f"{name} {reduction}")
    g = torch.tensor(randn(tuple(lt.shape), gen))
    lo.backward(g.to(dtype))
    lt.backward(g)
    assert_close(xo.grad, xt.grad, name, d, name=f"{name} {reduction} grad")


def test_loss_repr_and_attributes():
    assert repr(MSELoss()) == "MSELoss()"
    assert repr(CrossEntropyLoss(reduction="sum")) == "CrossEntropyLoss(reduction='sum')"
    assert repr(PseudoHuberLoss(0.5, "none")) == "PseudoHuberLoss(delta=0.5, reduction='none')"
    assert CrossEntropyLoss(None, None, -100, None, "sum").reduction == "sum"  # torch's positional order


BAD_LOSSES = [
    (lambda: MSELoss(reduction="avg"), ValueError, "reduction must be one of"),
    (lambda: HingeLoss(reduction="batchmean"), ValueError, "reduction must be one of"),
    (lambda: CrossEntropyLoss(weight=torch.ones(3)), ValueError, "weight must be None"),
    (lambda: CrossEntropyLoss(ignore_index=0), ValueError, "ignore_index must be -100"),
    (lambda: CrossEntropyLoss(label_smoothing=0.1), ValueError, "label_smoothing must be 0.0"),
    (lambda: BCEWithLogitsLoss(pos_weight=torch.ones(3)), ValueError, "pos_weight must be None"),
    (lambda: L1Loss(size_average=False), ValueError, "size_average is deprecated"),
    (lambda: BCELoss(reduce=True), ValueError, "reduce is deprecated"),
    (lambda: PseudoHuberLoss(0.0), ValueError, "delta must be a positive"),
    (lambda: PseudoHuberLoss("1"), TypeError, "delta must be a positive number"),
]


@pytest.mark.parametrize("make,exc,match", BAD_LOSSES, ids=[m for _, _, m in BAD_LOSSES])
def test_loss_bad_args(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_cross_entropy_has_no_ignore_index(gen):
    x = torch.tensor(randn((N, K), gen))
    t = torch.tensor(labels(N, K, gen))
    t[2] = -100
    with pytest.raises(ValueError, match="target class indices must be in"):
        CrossEntropyLoss()(x, t)


# ------------------------------------------------------------ regularization


def _model() -> nn.Module:
    return nn.Sequential(
        LocallyConnected2d(2, 3, 3, input_size=5, dtype=torch.float64),
        Conv2d(3, 4, 2, dtype=torch.float64),
        nn.Flatten(),
        Linear(16, 6, dtype=torch.float64),
        nn.RNN(6, 5, dtype=torch.float64),  # torch's own module: weight_ih_l0 / bias_hh_l0 names
    )


def _randomise(model: nn.Module, gen, scale: float = 1.0) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.tensor(randn(tuple(p.shape), gen, scale=scale)))


def _split(model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    weights = [model[0].weight, model[1].weight, model[3].weight, model[4].weight_ih_l0, model[4].weight_hh_l0]
    biases = [model[0].bias, model[1].bias, model[3].bias, model[4].bias_ih_l0, model[4].bias_hh_l0]
    return weights, biases


@pytest.mark.parametrize("kind", ["l1", "l2"])
@pytest.mark.parametrize("include_bias", [False, True])
def test_penalty_equals_hand_sum(kind, include_bias, gen):
    m = _model()
    _randomise(m, gen)
    weights, biases = _split(m)
    assert len(weights) + len(biases) == len(list(m.parameters()))
    lam = 0.37
    fn = l1_penalty if kind == "l1" else l2_penalty
    counted = weights + (biases if include_bias else [])
    if kind == "l1":
        hand = lam * sum(w.detach().abs().sum() for w in counted)
    else:
        hand = lam / 2 * sum((w.detach() ** 2).sum() for w in counted)
    pen = fn(m, lam, include_bias=include_bias)
    assert pen.ndim == 0
    assert_close(pen, hand, "penalty", "float64")
    pen.backward()
    for w in counted:
        want = lam * torch.sign(w.detach()) if kind == "l1" else lam * w.detach()
        assert_close(w.grad, want, "penalty", "float64")
    if not include_bias:
        assert all(b.grad is None for b in biases)
    # an explicit list of tensors is summed as given
    assert_close(fn(biases, lam), fn(m, lam, include_bias=True) - fn(m, lam), "penalty", "float64")


def test_penalty_bad_args():
    m = _model()
    with pytest.raises(ValueError, match="lam must be a non-negative"):
        l1_penalty(m, -0.1)
    with pytest.raises(TypeError, match="module must be an nn.Module"):
        l2_penalty(3, 0.1)
    with pytest.raises(TypeError, match="params must be tensors"):
        l2_penalty([m[0].weight, "w"], 0.1)
    with pytest.raises(ValueError, match="no parameters"):
        l2_penalty(nn.ReLU(), 0.1)


def _units(model: nn.Module) -> list[torch.Tensor]:
    """Every weight as [units, fan_in]: the vectors max-norm bounds."""
    weights, _ = _split(model)
    lc = weights[0]
    return [lc.reshape(-1, lc[0, 0, 0].numel())] + [w.reshape(w.shape[0], -1) for w in weights[1:]]


def test_max_norm_bounds_every_unit(gen):
    m = _model()
    _randomise(m, gen, scale=0.6)
    c = 1.5
    before = [u.detach().clone() for u in _units(m)]
    biases = [b.detach().clone() for b in _split(m)[1]]
    norms = torch.cat([u.norm(dim=1) for u in before])
    assert (norms > c).any() and (norms < c).any()  # both cases occur
    MaxNorm(c).apply(m)
    for u0, u in zip(before, _units(m)):
        n0, n = u0.norm(dim=1), u.detach().norm(dim=1)
        inside = n0 <= c
        assert torch.equal(u[inside], u0[inside])  # untouched, bit for bit
        assert torch.allclose(n[~inside], torch.full_like(n[~inside], c), rtol=1e-12)
        assert torch.allclose(u[~inside] * (n0[~inside] / c)[:, None], u0[~inside], rtol=1e-12)  # same direction
    for b0, b in zip(biases, _split(m)[1]):
        assert torch.equal(b0, b)


def test_max_norm_on_tensors_skips_1d(gen):
    w = torch.tensor(randn((6, 9), gen, scale=2.0))
    b = torch.tensor(randn((6,), gen, scale=10.0))
    b0 = b.clone()
    MaxNorm(0.5)([w, b])
    assert torch.all(w.norm(dim=1) <= 0.5 * (1 + 1e-12)) and torch.equal(b, b0)
    with pytest.raises(ValueError, match="max_norm must be a positive"):
        MaxNorm(0.0)
    with pytest.raises(TypeError, match="module_or_params must be"):
        MaxNorm(1.0).apply(5)


def _twins_with_grads(gen):  # noqa: ANN001, ANN202
    """Two equal models whose parameters hold the same random gradients."""
    ours, theirs = _model(), _model()
    _randomise(ours, gen)
    theirs.load_state_dict(ours.state_dict())
    for p, q in zip(ours.parameters(), theirs.parameters()):
        p.grad = torch.tensor(randn(tuple(p.shape), gen))
        q.grad = p.grad.clone()
    return ours, theirs


def test_clipping_reexported_and_like_torch(gen):
    assert clip_grad_norm_ is D.clip_grad_norm_ and clip_grad_value_ is D.clip_grad_value_
    ours, theirs = _twins_with_grads(gen)
    total = clip_grad_norm_(ours.parameters(), 0.7)
    total_t = nn.utils.clip_grad_norm_(theirs.parameters(), 0.7)
    assert_close(total, total_t, "clip", "float64")
    for p, q in zip(ours.parameters(), theirs.parameters()):
        assert_close(p.grad, q.grad, "clip", "float64")


def test_regularizer_step(gen):
    m = _model()
    _randomise(m, gen, scale=0.6)
    reg = Regularizer(m, l1=0.01, l2=0.1, max_norm=1.2, clip_value=0.05)
    assert repr(reg) == "Regularizer(l1=0.01, l2=0.1, clip_value=0.05, max_norm=1.2)"
    assert_close(reg.penalty(), l1_penalty(m, 0.01) + l2_penalty(m, 0.1), "penalty", "float64")
    x = torch.tensor(randn((3, 2, 5, 5), gen))
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    out, _ = m(x)
    loss = out.square().mean() + reg.penalty()
    loss.backward()
    assert reg.clip() is None
    assert max(p.grad.abs().max().item() for p in m.parameters()) <= 0.05
    opt.step()
    reg.constrain()
    assert max(u.detach().norm(dim=1).max().item() for u in _units(m)) <= 1.2 * (1 + 1e-12)
    off = Regularizer(m)
    assert off.penalty().item() == 0.0 and off.penalty().dtype == torch.float64
    with pytest.raises(ValueError, match="clip_norm must be a positive"):
        Regularizer(m, clip_norm=-1.0)
    with pytest.raises(TypeError, match="module must be an nn.Module"):
        Regularizer([m])


def test_regularizer_clips_by_value_then_by_norm_like_torch(gen):
    ours, theirs = _twins_with_grads(gen)
    total = Regularizer(ours, clip_norm=0.8, clip_value=0.3).clip()
    nn.utils.clip_grad_value_(theirs.parameters(), 0.3)
    total_t = nn.utils.clip_grad_norm_(theirs.parameters(), 0.8)
    assert_close(total, total_t, "clip", "float64")
    for p, q in zip(ours.parameters(), theirs.parameters()):
        assert_close(p.grad, q.grad, "clip", "float64")


@pytest.mark.parametrize("name", ["CrossEntropyLoss", "BCELoss", "BCEWithLogitsLoss", "MSELoss", "L1Loss"])
def test_the_torch_counterparts_are_torch_subclasses(name):
    """Code that checks isinstance(loss_fn, nn.MSELoss) or reads torch's attributes keeps working."""
    import dlgpu.nn.losses as L

    ours = getattr(L, name)(reduction="sum")
    assert isinstance(ours, getattr(nn, name)) and ours.reduction == "sum"
    assert ours.state_dict().keys() == getattr(nn, name)(reduction="sum").state_dict().keys()
    assert repr(ours) == f"{name}(reduction='sum')"
    with pytest.raises(ValueError, match="reduction must be one of"):
        getattr(L, name)(reduction="avg")
    if name == "CrossEntropyLoss":
        assert ours.ignore_index == -100 and ours.label_smoothing == 0.0 and ours.weight is None
