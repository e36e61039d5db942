"""Feed-forward layers: torch.nn.Module drop-ins whose forward runs dlgpu.functional.

Every layer that torch.nn has subclasses torch's own module, so it takes the same constructor
arguments, registers the same parameters (names, shapes, ``bias=None`` when disabled), draws the
same default initialisation from the same RNG stream and prints the same ``repr``; only
``forward`` is replaced. Hence ``dlgpu.nn.Conv2d(...).load_state_dict(torch.nn.Conv2d(...).state_dict())``
works, ``isinstance(layer, torch.nn.Conv2d)`` holds (so user init code keyed on torch's classes
still applies), and with the same ``torch.manual_seed`` both draw identical weights.

Options torch has but the dlgpu kernels do not (``padding_mode`` other than zeros, ``ceil_mode``,
pooling ``dilation``, ``divisor_override``, softplus ``beta``/``threshold`` other than the
defaults, asymmetric ``padding='same'``) raise ValueError at construction, never silently change
the result. ``inplace=True`` (ReLU, LeakyReLU, Dropout) is accepted, but the output is always a
new tensor: use the returned value.

Two extensions over torch: ``Linear`` and ``Conv2d`` take keyword-only ``activation`` /
``negative_slope`` (fused into the kernel's epilogue), and ``LocallyConnected2d`` (an unshared
convolution, no torch counterpart).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dlgpu.reference._validate import check_int

from .. import functional as F
from ..reference._validate import check_activation, check_probability, pair
from ..reference.locally_connected import locally_connected2d_output_shape

IntOrPair = int | Sequence[int]

__all__ = [
    "AvgPool2d",
    "Conv2d",
    "Dropout",
    "Flatten",
    "LeakyReLU",
    "Linear",
    "LocallyConnected2d",
    "LogSoftmax",
    "MaxPool2d",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
]


# ------------------------------------------------------------------ checks


def _check_fused(activation: str, negative_slope: float) -> float:
    return check_activation(activation, negative_slope)


def _fused_repr(activation: str, negative_slope: float) -> str:
    if activation == "none":
        return ""
    slope = f", negative_slope={negative_slope}" if activation == "leaky_relu" else ""
    return f", activation={activation}{slope}"


def _check_pool_padding(kernel: tuple[int, int], padding: IntOrPair) -> None:
    # torch refuses it too: a window made only of padding has no maximum / a zero divisor
    p = pair(padding, "padding", minimum=0)
    if p[0] > kernel[0] // 2 or p[1] > kernel[1] // 2:
        raise ValueError(
            f"padding must be at most half the kernel size per axis (<= {(kernel[0] // 2, kernel[1] // 2)} "
            f"for kernel_size {kernel}), got {padding!r}"
        )


# ------------------------------------------------------------ dense layers


class Linear(nn.Linear):
    """y = act(x W^T + b), torch.nn.Linear with an optional fused activation.

    Args (torch's, plus keyword-only):
        activation: none | relu | leaky_relu | sigmoid | tanh, applied inside the kernel.
        negative_slope: leaky_relu's slope.
    Parameters: weight [out_features, in_features], bias [out_features] or None; init as torch
    (kaiming_uniform(a=sqrt(5)), i.e. U(+-1/sqrt(in_features)), for both).
    Shapes: input [..., in_features] -> output [..., out_features].
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        activation: str = "none",
        negative_slope: float = 0.01,
    ) -> None:
        check_int(in_features, "in_features")
        check_int(out_features, "out_features")
        slope = _check_fused(activation, negative_slope)
        super().__init__(in_features, out_features, bias=bool(bias), device=device, dtype=dtype)
        self.activation, self.negative_slope = activation, slope

    def forward(self, input: Tensor) -> Tensor:
        """[..., in_features] -> [..., out_features]."""
        return F.linear(input, self.weight, self.bias, self.activation, self.negative_slope)

    def extra_repr(self) -> str:
        return super().extra_repr() + _fused_repr(self.activation, self.negative_slope)


class Conv2d(nn.Conv2d):
    """2-D convolution, torch.nn.Conv2d with an optional fused activation.

    Args (torch's, plus keyword-only activation / negative_slope as in Linear). padding is an int,
    a pair, 'valid' or 'same' (stride 1 and an even total padding per axis: dlgpu pads
    symmetrically); padding_mode must be 'zeros'.
    Parameters: weight [out_channels, in_channels/groups, KH, KW], bias [out_channels] or None;
    init as torch (U(+-1/sqrt(fan_in)), fan_in = in_channels/groups * KH * KW).
    Shapes: input [N, in_channels, H, W] -> output [N, out_channels, OH, OW].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrPair,
        stride: IntOrPair = 1,
        padding: IntOrPair | str = 0,
        dilation: IntOrPair = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        activation: str = "none",
        negative_slope: float = 0.01,
    ) -> None:
        check_int(in_channels, "in_channels")
        check_int(out_channels, "out_channels")
        check_int(groups, "groups")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups must divide in_channels and out_channels, got groups={groups}, "
                f"in_channels={in_channels}, out_channels={out_channels}"
            )
        k = pair(kernel_size, "kernel_size", minimum=1)
        s = pair(stride, "stride", minimum=1)
        d = pair(dilation, "dilation", minimum=1)
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(f"padding must be an int, a pair, 'valid' or 'same'; got {padding!r}")
            if padding == "same":
                if s != (1, 1):
                    raise ValueError(f"padding='same' needs stride 1, got stride={stride!r}")
                if any(dd * (kk - 1) % 2 for kk, dd in zip(k, d)):
                    raise ValueError(
                        f"padding='same' needs an even total padding dilation*(kernel_size-1) per axis "
                        f"(dlgpu pads symmetrically); kernel_size={kernel_size!r}, dilation={dilation!r}"
                    )
        else:
            pair(padding, "padding", minimum=0)
        if padding_mode != "zeros":
            raise ValueError(f"padding_mode must be 'zeros' (the only mode dlgpu's conv2d has), got {padding_mode!r}")
        slope = _check_fused(activation, negative_slope)
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
            groups=groups, bias=bool(bias), padding_mode=padding_mode, device=device, dtype=dtype,
        )  # fmt: skip
        self.activation, self.negative_slope = activation, slope

    def forward(self, input: Tensor) -> Tensor:
        """[N, in_channels, H, W] -> [N, out_channels, OH, OW]."""
        return F.conv2d(
            input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
            activation=self.activation, negative_slope=self.negative_slope,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return super().extra_repr() + _fused_repr(self.activation, self.negative_slope)


class LocallyConnected2d(nn.Module):
    """Unshared convolution: every output position (i, j) has its own filters and its own biases.

    Args:
        in_channels, out_channels: C and O.
        kernel_size, stride, padding: int or (h, w) pair (zero padding).
        input_size: the (H, W) the layer is built for (int or pair); the weight depends on it.
        bias: learn a bias per output unit.
    Attributes:
        output_size: (OH, OW).
    Parameters: weight [OH, OW, O, C, KH, KW], bias [O, OH, OW] or None. Init is torch's conv rule
    per position: U(+-1/sqrt(C*KH*KW)) for both (torch's fan-in helper would misread the 6-D weight).
    Parameter count OH*OW*O*(C*KH*KW + 1).
    Shapes: input [N, C, H, W] -> output [N, O, OH, OW].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrPair,
        input_size: IntOrPair,
        stride: IntOrPair = 1,
        padding: IntOrPair = 0,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels")
        self.out_channels = check_int(out_channels, "out_channels")
        self.kernel_size = pair(kernel_size, "kernel_size", minimum=1)
        self.input_size = pair(input_size, "input_size", minimum=1)
        self.stride = pair(stride, "stride", minimum=1)
        self.padding = pair(padding, "padding", minimum=0)
        self.output_size = locally_connected2d_output_shape(
            (1, in_channels, *self.input_size), self.kernel_size, self.stride, self.padding
        )
        oh, ow = self.output_size
        kw = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty((oh, ow, out_channels, in_channels, *self.kernel_size), **kw))
        if bias:
            self.bias = nn.Parameter(torch.empty((out_channels, oh, ow), **kw))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """U(+-1/sqrt(fan_in)) for weight and bias, fan_in = C*KH*KW (torch's conv default)."""
        bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size[0] * self.kernel_size[1])
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor) -> Tensor:
        """[N, C, H, W] -> [N, O, OH, OW]; H, W must be the layer's input_size."""
        if input.ndim != 4 or tuple(input.shape[1:]) != (self.in_channels, *self.input_size):
            raise ValueError(
                f"input must have shape (N, {self.in_channels}, {self.input_size[0]}, {self.input_size[1]}) "
                f"(in_channels, input_size), got {tuple(input.shape)}"
            )
        return F.locally_connected2d(input, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"input_size={self.input_size}, output_size={self.output_size}, stride={self.stride}"
        )
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.bias is None:
            s += ", bias=False"
        return s


# ---------------------------------------------------------------- pooling


class MaxPool2d(nn.MaxPool2d):
    """Max pooling, torch.nn.MaxPool2d (stride defaults to kernel_size; padding <= kernel_size/2).

    dilation must be 1 and ceil_mode False; return_indices=True returns (output, indices) with
    torch's flat h*W + w indices. Shapes: [N, C, H, W] -> [N, C, OH, OW].
    """

    def __init__(
        self,
        kernel_size: IntOrPair,
        stride: IntOrPair | None = None,
        padding: IntOrPair = 0,
        dilation: IntOrPair = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        k = pair(kernel_size, "kernel_size", minimum=1)
        if stride is not None:
            pair(stride, "stride", minimum=1)
        _check_pool_padding(k, padding)
        if pair(dilation, "dilation", minimum=1) != (1, 1):
            raise ValueError(f"dilation must be 1 for dlgpu's MaxPool2d, got {dilation!r}")
        if ceil_mode:
            raise ValueError("ceil_mode must be False for dlgpu's MaxPool2d (floor mode only)")
        super().__init__(kernel_size, stride, padding, dilation, return_indices, ceil_mode)

    def forward(self, input: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """[N, C, H, W] -> [N, C, OH, OW] (and int64 indices of the same shape if return_indices)."""
        return F.max_pool2d(input, self.kernel_size, self.stride, self.padding, return_indices=self.return_indices)


class AvgPool2d(nn.AvgPool2d):
    """Average pooling, torch.nn.AvgPool2d (stride defaults to kernel_size; padding <= kernel_size/2).

    ceil_mode must be False and divisor_override None. Shapes: [N, C, H, W] -> [N, C, OH, OW].
    """

    def __init__(
        self,
        kernel_size: IntOrPair,
        stride: IntOrPair | None = None,
        padding: IntOrPair = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        k = pair(kernel_size, "kernel_size", minimum=1)
        if stride is not None:
            pair(stride, "stride", minimum=1)
        _check_pool_padding(k, padding)
        if ceil_mode:
            raise ValueError("ceil_mode must be False for dlgpu's AvgPool2d (floor mode only)")
        if divisor_override is not None:
            raise ValueError(f"divisor_override must be None for dlgpu's AvgPool2d, got {divisor_override!r}")
        super().__init__(kernel_size, stride, padding, ceil_mode, bool(count_include_pad), divisor_override)

    def forward(self, input: Tensor) -> Tensor:
        """[N, C, H, W] -> [N, C, OH, OW]."""
        return F.avg_pool2d(
            input, self.kernel_size, self.stride, self.padding, count_include_pad=self.count_include_pad
        )


# ---------------------------------------------------------------- dropout


class Dropout(nn.Dropout):
    """Inverted dropout, torch.nn.Dropout: active in training mode (``self.training``), the
    identity in eval mode. The mask is drawn from a seed taken from torch's generator, so
    ``torch.manual_seed`` makes it reproducible (not the same mask as torch's). Any shape."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__(check_probability(p, "p"), inplace)

    def forward(self, input: Tensor) -> Tensor:
        """Same shape as input."""
        return F.dropout(input, self.p, self.training)


# ------------------------------------------------------------- activations


class ReLU(nn.ReLU):
    """max(0, x), torch.nn.ReLU. Any shape."""

    def forward(self, input: Tensor) -> Tensor:
        """Same shape as input."""
        return F.relu(input)


class LeakyReLU(nn.LeakyReLU):
    """x if x > 0 else negative_slope * x, torch.nn.LeakyReLU. Any shape."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__(_check_fused("leaky_relu", negative_slope), inplace)

    def forward(self, input: Tensor) -> Tensor:
        """Same shape as input."""
        return F.leaky_relu(input, self.negative_slope)


class Sigmoid(nn.Sigmoid):
    """1 / (1 + exp(-x)), torch.nn.Sigmoid. Any shape."""

    def forward(self, input: Tensor) -> Tensor:
        """Same shape as input."""
        return F.sigmoid(input)


class Tanh(nn.Tanh):
    """tanh(x), torch.nn.Tanh. Any shape."""

    def forward(self, input: Tensor) -> Tensor:
        """Same shape as input."""
        return F.tanh(input)


class Softplus(nn.Softplus):
    """log(1 + exp(x)), torch.nn.Softplus with its defaults beta=1, threshold=20 only. Any shape.

    dlgpu computes the stable form everywhere instead of switching to x above the threshold;
    the two differ by log1p(exp(-x)) < 2.1e-9 there.
    """

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        if beta != 1.0:
            raise ValueError(f"beta must be 1 for dlgpu's Softplus, got {beta!r}")
        if threshold != 20.0:
            raise ValueError(f"threshold must be 20 (torch's default) for dlgpu's Softplus, got {threshold!r}")
        super().__init__(beta, threshold)

    def forward(self, input: Tensor) -> Tensor:
        """Same shape as input."""
        return F.softplus(input)


def _implicit_dim(name: str, ndim: int) -> int:
    # torch's legacy choice for dim=None, with torch's warning
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X as an argument.",
        stacklevel=3,
    )
    return 0 if ndim in (0, 1, 3) else 1


class Softmax(nn.Softmax):
    """exp(x) / sum exp(x) along ``dim``, torch.nn.Softmax (dim=None: torch's deprecated implicit
    choice, with its warning). Any shape."""

    def forward(self, input: Tensor) -> Tensor:
        """Same shape as input."""
        dim = _implicit_dim("softmax", input.ndim) if self.dim is None else self.dim
        return F.softmax(input, dim)


class LogSoftmax(nn.LogSoftmax):
    """log softmax along ``dim``, torch.nn.LogSoftmax (dim=None as in Softmax). Any shape."""

    def forward(self, input: Tensor) -> Tensor:
        """Same shape as input."""
        dim = _implicit_dim("log_softmax", input.ndim) if self.dim is None else self.dim
        return F.log_softmax(input, dim)


class Flatten(nn.Flatten):
    """torch.nn.Flatten (a reshape, no kernel): [N, C, H, W] -> [N, C*H*W] by default."""
