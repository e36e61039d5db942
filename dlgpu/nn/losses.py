"""Loss modules over dlgpu.functional's losses: ``loss_fn = CrossEntropyLoss(); loss_fn(input, target)``.

The five that torch.nn has (CrossEntropyLoss, BCELoss, BCEWithLogitsLoss, MSELoss, L1Loss) subclass
torch's (``isinstance(loss, torch.nn.MSELoss)`` holds, torch's attributes are there) and take
torch's constructor arguments in torch's order, so ``CrossEntropyLoss(None, reduction="sum")``
means the same in both; the options dlgpu's kernels do not implement (class ``weight``,
``pos_weight``, a non-default ``ignore_index``, ``label_smoothing``) must keep their defaults, and the
deprecated ``size_average`` / ``reduce`` must be None: anything else raises ValueError. Every
loss takes ``reduction`` = "mean" | "sum" | "none". No gradient flows to ``target``.

dlgpu's cross entropy has no ignore_index: every target must be a class in [0, K) (a -100 label
raises ValueError in the op, it is never silently skipped).
"""

from __future__ import annotations

from torch import Tensor, nn

from .. import functional as F
from ..reference._validate import check_positive, check_reduction

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "HingeLoss",
    "L1Loss",
    "MSELoss",
    "MultiClassHingeLoss",
    "MultiClassSquaredHingeLoss",
    "PseudoHuberLoss",
    "SquaredHingeLoss",
]


class _DlgpuLoss:
    """Mixin: ``forward`` through ``_fn`` (a dlgpu.functional loss) with ``self.reduction``."""

    _fn = staticmethod(F.mse_loss)
    reduction: str

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """The loss: a scalar for 'mean' / 'sum'; per element (per row for K-class losses) for 'none'."""
        return self._fn(input, target, reduction=self.reduction)

    def extra_repr(self) -> str:
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


class _Loss(_DlgpuLoss, nn.Module):
    """Base of the losses torch.nn lacks: holds and checks ``reduction``."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        check_reduction(reduction)
        self.reduction = reduction


def _torch_defaults(size_average: object = None, reduce: object = None, **unsupported: tuple[object, object]) -> None:
    """ValueError for a torch option dlgpu cannot honour; ``unsupported`` maps name -> (value, default)."""
    for name, value in (("size_average", size_average), ("reduce", reduce)):
        if value is not None:
            raise ValueError(f"{name} is deprecated in torch and unsupported by dlgpu: use reduction=; got {value!r}")
    for name, (value, default) in unsupported.items():
        if (value is not None) if default is None else (value != default):
            raise ValueError(f"{name} must be {default!r} (not supported by dlgpu's kernels), got {value!r}")


class CrossEntropyLoss(_DlgpuLoss, nn.CrossEntropyLoss):
    """-log softmax(input)[target] per row, torch.nn.CrossEntropyLoss with class-index targets.

    Shapes: input [N, K] logits, target [N] int64 in [0, K) -> scalar, or [N] for reduction='none'.
    """

    _fn = staticmethod(F.cross_entropy)

    def __init__(
        self,
        weight: Tensor | None = None,
        size_average: bool | None = None,
        ignore_index: int = -100,
        reduce: bool | None = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        _torch_defaults(
            size_average, reduce, weight=(weight, None), ignore_index=(ignore_index, -100),
            label_smoothing=(label_smoothing, 0.0),
        )  # fmt: skip
        check_reduction(reduction)
        nn.CrossEntropyLoss.__init__(self, reduction=reduction)


class BCELoss(_DlgpuLoss, nn.BCELoss):
    """-(t log y + (1 - t) log(1 - y)) on probabilities y, torch.nn.BCELoss (logs clamped at -100).

    Shapes: input (probabilities in [0, 1]) and target of the same shape -> scalar, or that shape.
    """

    _fn = staticmethod(F.binary_cross_entropy)

    def __init__(
        self,
        weight: Tensor | None = None,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: str = "mean",
    ) -> None:
        _torch_defaults(size_average, reduce, weight=(weight, None))
        check_reduction(reduction)
        nn.BCELoss.__init__(self, reduction=reduction)


class BCEWithLogitsLoss(_DlgpuLoss, nn.BCEWithLogitsLoss):
    """Binary cross-entropy on logits, torch.nn.BCEWithLogitsLoss (stable for large |x|).

    Shapes: input (logits) and target in [0, 1] of the same shape -> scalar, or that shape.
    """

    _fn = staticmethod(F.binary_cross_entropy_with_logits)

    def __init__(
        self,
        weight: Tensor | None = None,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: str = "mean",
        pos_weight: Tensor | None = None,
    ) -> None:
        _torch_defaults(size_average, reduce, weight=(weight, None), pos_weight=(pos_weight, None))
        check_reduction(reduction)
        nn.BCEWithLogitsLoss.__init__(self, reduction=reduction)


class MSELoss(_DlgpuLoss, nn.MSELoss):
    """(y - t)^2, torch.nn.MSELoss. Shapes: input and target of the same shape -> scalar, or that shape."""

    _fn = staticmethod(F.mse_loss)

    def __init__(self, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean") -> None:
        _torch_defaults(size_average, reduce)
        check_reduction(reduction)
        nn.MSELoss.__init__(self, reduction=reduction)


class L1Loss(_DlgpuLoss, nn.L1Loss):
    """|y - t|, torch.nn.L1Loss. Shapes: input and target of the same shape -> scalar, or that shape."""

    _fn = staticmethod(F.l1_loss)

    def __init__(self, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean") -> None:
        _torch_defaults(size_average, reduce)
        check_reduction(reduction)
        nn.L1Loss.__init__(self, reduction=reduction)


class PseudoHuberLoss(_Loss):
    """delta^2 (sqrt(1 + ((y - t)/delta)^2) - 1): quadratic near 0, linear (slope delta) far away.

    A smooth cousin of torch.nn.HuberLoss (not equal to it). delta > 0.
    Shapes: input and target of the same shape -> scalar, or that shape.
    """

    def __init__(self, delta: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.delta = check_positive(delta, "delta")

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """The loss: a scalar for 'mean' / 'sum', input's shape for 'none'."""
        return F.pseudo_huber_loss(input, target, self.delta, reduction=self.reduction)

    def extra_repr(self) -> str:
        return ", ".join([f"delta={self.delta}"] + ([super().extra_repr()] if self.reduction != "mean" else []))


class HingeLoss(_Loss):
    """Binary hinge max(0, 1 - y t), targets t in {-1, +1} (torch has no such module).

    Shapes: input scores and target of the same shape -> scalar, or that shape.
    """

    _fn = staticmethod(F.hinge_loss)


class SquaredHingeLoss(_Loss):
    """Binary squared hinge max(0, 1 - y t)^2, targets t in {-1, +1}.

    Shapes: input scores and target of the same shape -> scalar, or that shape.
    """

    _fn = staticmethod(F.squared_hinge_loss)


class MultiClassHingeLoss(_Loss):
    """K-class hinge sum_{j != t} max(0, 1 - (y_t - y_j)) per row (K times torch.nn.MultiMarginLoss's
    per-row value, which averages over the K classes).

    Shapes: input [N, K] scores, target [N] int64 in [0, K) -> scalar, or [N] for reduction='none'.
    """

    _fn = staticmethod(F.multiclass_hinge_loss)


class MultiClassSquaredHingeLoss(_Loss):
    """K-class squared hinge sum_{j != t} max(0, 1 - (y_t - y_j))^2 per row.

    Shapes: input [N, K] scores, target [N] int64 in [0, K) -> scalar, or [N] for reduction='none'.
    """

    _fn = staticmethod(F.multiclass_squared_hinge_loss)
