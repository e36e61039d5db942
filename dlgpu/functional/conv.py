"""conv2d and locally_connected2d as torch custom ops with autograd."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from ..reference._validate import check_activation
from ..reference.conv import conv2d_output_shape
from ._common import as_pair, autocast, check_same_dtype, check_tensor, dlgpu_op, run

# ---------------------------------------------------------------------- conv2d


@dlgpu_op("conv2d", mutates_args=())
def _conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    activation: str,
    negative_slope: float,
) -> Tensor:
    return run("conv2d_forward", x, weight, bias, stride, padding, dilation, groups, activation, negative_slope)


@_conv2d.register_fake
def _(x, weight, bias, stride, padding, dilation, groups, activation, negative_slope):  # noqa: ANN001, ANN202
    return x.new_empty(conv2d_output_shape(x.shape, weight.shape, stride, padding, dilation, groups))


@dlgpu_op("conv2d_backward", mutates_args=())
def _conv2d_backward(
    dy: Tensor,
    x: Tensor,
    weight: Tensor,
    out: Tensor,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    activation: str,
    negative_slope: float,
) -> tuple[Tensor, Tensor, Tensor]:
    return run(
        "conv2d_backward", dy, x, weight, stride, padding, dilation, groups,
        out=out, activation=activation, negative_slope=negative_slope,
    )  # fmt: skip


@_conv2d_backward.register_fake
def _(dy, x, weight, out, stride, padding, dilation, groups, activation, negative_slope):  # noqa: ANN001, ANN202
    return x.new_empty(x.shape), weight.new_empty(weight.shape), weight.new_empty((weight.shape[0],))


def _conv_setup(ctx, inputs, output):  # noqa: ANN001
    x, weight, bias, *ctx.params = inputs
    ctx.save_for_backward(x, weight, output)
    ctx.has_bias = bias is not None


def _conv_backward(ctx, dy):  # noqa: ANN001, ANN202
    x, weight, out = ctx.saved_tensors
    stride, padding, dilation, groups, activation, negative_slope = ctx.params
    dx, dw, db = _conv2d_backward(
        dy.contiguous(), x, weight, out, stride, padding, dilation, groups, activation, negative_slope
    )
    return dx, dw, (db if ctx.has_bias else None), None, None, None, None, None, None


_conv2d.register_autograd(_conv_backward, setup_context=_conv_setup)


def _same_padding(weight: Tensor, stride: list[int], dilation: list[int]) -> list[int]:
    if stride != [1, 1]:
        raise ValueError(f"padding='same' needs stride 1, got stride={stride}")
    pads = []
    for k, d in zip(weight.shape[2:], dilation):
        total = d * (k - 1)
        if total % 2:
            raise ValueError(
                f"padding='same' needs an even total padding per axis (dlgpu pads symmetrically); "
                f"kernel {tuple(weight.shape[2:])} with dilation {dilation} needs {total}"
            )
        pads.append(total // 2)
    return pads


def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] | str = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    activation: str = "none",
    negative_slope: float = 0.01,
) -> Tensor:
    """2-D convolution like torch.nn.functional.conv2d, with an optional fused activation.

    Args:
        input: [N, C, H, W].
        weight: [O, C/groups, KH, KW].
        bias: [O] or None.
        stride, dilation: int or pair, >= 1.
        padding: int or pair (zero padding on both sides), or 'valid' / 'same' (stride 1).
        groups: channel groups; must divide C and O.
        activation: none | relu | leaky_relu | sigmoid | tanh, applied in the kernel's epilogue.
    Returns:
        [N, O, OH, OW].
    """
    check_tensor(input, "input")
    check_tensor(weight, "weight")
    if bias is not None:
        check_tensor(bias, "bias")
    input, weight, bias = autocast("lower", input, weight, bias)
    check_same_dtype(input=input, weight=weight, bias=bias)
    check_activation(activation, negative_slope)
    s, d = as_pair(stride, "stride"), as_pair(dilation, "dilation")
    if isinstance(padding, str):
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be an int, a pair, 'valid' or 'same'; got {padding!r}")
        p = [0, 0] if padding == "valid" else _same_padding(weight, s, d)
    else:
        p = as_pair(padding, "padding", minimum=0)
    if isinstance(groups, bool) or not isinstance(groups, int):
        raise TypeError(f"groups must be an int, got {type(groups).__name__}")
    if input.dim() == 3:  # unbatched (C, H, W), as torch takes it
        return _conv2d(input.unsqueeze(0), weight, bias, s, p, d, groups, activation, float(negative_slope)).squeeze(0)
    return _conv2d(input, weight, bias, s, p, d, groups, activation, float(negative_slope))


# --------------------------------------------------------- locally connected


@dlgpu_op("locally_connected2d", mutates_args=())
def _lc2d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int], padding: list[int]) -> Tensor:
    return run("locally_connected2d_forward", x, weight, bias, stride, padding)


@_lc2d.register_fake
def _(x, weight, bias, stride, padding):  # noqa: ANN001, ANN202
    # the weight carries the output grid: [OH, OW, O, C, KH, KW]
    return x.new_empty((x.shape[0], weight.shape[2], weight.shape[0], weight.shape[1]))


@dlgpu_op("locally_connected2d_backward", mutates_args=())
def _lc2d_backward(
    dy: Tensor, x: Tensor, weight: Tensor, stride: list[int], padding: list[int]
) -> tuple[Tensor, Tensor, Tensor]:
    return run("locally_connected2d_backward", dy, x, weight, stride, padding)


@_lc2d_backward.register_fake
def _(dy, x, weight, stride, padding):  # noqa: ANN001, ANN202
    oh, ow, o = weight.shape[:3]
    return x.new_empty(x.shape), weight.new_empty(weight.shape), weight.new_empty((o, oh, ow))


def _lc_setup(ctx, inputs, output):  # noqa: ANN001
    x, weight, bias, ctx.stride, ctx.padding = inputs
    ctx.save_for_backward(x, weight)
    ctx.has_bias = bias is not None


def _lc_backward(ctx, dy):  # noqa: ANN001, ANN202
    x, weight = ctx.saved_tensors
    dx, dw, db = _lc2d_backward(dy.contiguous(), x, weight, ctx.stride, ctx.padding)
    return dx, dw, (db if ctx.has_bias else None), None, None


_lc2d.register_autograd(_lc_backward, setup_context=_lc_setup)


def locally_connected2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
) -> Tensor:
    """Locally-connected 2-D layer: a convolution whose filters are not shared across positions.

    Args:
        input: [N, C, H, W].
        weight: [OH, OW, O, C, KH, KW], one filter per output position.
        bias: [O, OH, OW] or None, one bias per output unit.
        stride, padding: int or pair.
    Returns:
        [N, O, OH, OW].
    """
    check_tensor(input, "input")
    check_tensor(weight, "weight")
    if bias is not None:
        check_tensor(bias, "bias")
    input, weight, bias = autocast("lower", input, weight, bias)
    check_same_dtype(input=input, weight=weight, bias=bias)
    return _lc2d(input, weight, bias, as_pair(stride, "stride"), as_pair(padding, "padding", minimum=0))
