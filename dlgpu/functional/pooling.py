"""max_pool2d and avg_pool2d as torch custom ops with autograd (torch.nn.functional's arguments)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..reference._validate import check_bool, conv_output_size
from ..reference.pooling import pool2d_output_shape
from ._common import as_pair, check_tensor, dlgpu_op, run


def _out_shape(x: Tensor, kernel_size: list[int], stride: list[int], padding: list[int]) -> tuple:
    # plain arithmetic (no int checks): under torch.compile the sizes are symbolic
    n, c, h, w = x.shape
    return (n, c, *(conv_output_size(v, k, s, p) for v, k, s, p in zip((h, w), kernel_size, stride, padding)))


@dlgpu_op("max_pool2d", mutates_args=())
def _max_pool2d(x: Tensor, kernel_size: list[int], stride: list[int], padding: list[int]) -> tuple[Tensor, Tensor]:
    return run("max_pool2d_forward", x, kernel_size, stride, padding)


@_max_pool2d.register_fake
def _(x, kernel_size, stride, padding):  # noqa: ANN001, ANN202
    shape = _out_shape(x, kernel_size, stride, padding)
    return x.new_empty(shape), x.new_empty(shape, dtype=torch.int64)


@dlgpu_op("max_pool2d_backward", mutates_args=())
def _max_pool2d_backward(dy: Tensor, indices: Tensor, x_shape: list[int]) -> Tensor:
    return run("max_pool2d_backward", dy, indices, tuple(x_shape))


@_max_pool2d_backward.register_fake
def _(dy, indices, x_shape):  # noqa: ANN001, ANN202
    return dy.new_empty(x_shape)


def _max_setup(ctx, inputs, output):  # noqa: ANN001
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(output[1])
    ctx.x_shape = list(inputs[0].shape)


def _max_backward(ctx, dy, _dindices):  # noqa: ANN001, ANN202
    (indices,) = ctx.saved_tensors
    return _max_pool2d_backward(dy.contiguous(), indices, ctx.x_shape), None, None, None


_max_pool2d.register_autograd(_max_backward, setup_context=_max_setup)


@dlgpu_op("avg_pool2d", mutates_args=())
def _avg_pool2d(
    x: Tensor, kernel_size: list[int], stride: list[int], padding: list[int], count_include_pad: bool
) -> Tensor:
    return run("avg_pool2d_forward", x, kernel_size, stride, padding, count_include_pad)


@_avg_pool2d.register_fake
def _(x, kernel_size, stride, padding, count_include_pad):  # noqa: ANN001, ANN202
    return x.new_empty(_out_shape(x, kernel_size, stride, padding))


@dlgpu_op("avg_pool2d_backward", mutates_args=())
def _avg_pool2d_backward(
    dy: Tensor, x_shape: list[int], kernel_size: list[int], stride: list[int], padding: list[int],
    count_include_pad: bool,
) -> Tensor:  # fmt: skip
    return run("avg_pool2d_backward", dy, tuple(x_shape), kernel_size, stride, padding, count_include_pad)


@_avg_pool2d_backward.register_fake
def _(dy, x_shape, kernel_size, stride, padding, count_include_pad):  # noqa: ANN001, ANN202
    return dy.new_empty(x_shape)


def _avg_setup(ctx, inputs, output):  # noqa: ANN001
    x, *ctx.params = inputs
    ctx.x_shape = list(x.shape)


def _avg_backward(ctx, dy):  # noqa: ANN001, ANN202
    return _avg_pool2d_backward(dy.contiguous(), ctx.x_shape, *ctx.params), None, None, None, None


_avg_pool2d.register_autograd(_avg_backward, setup_context=_avg_setup)


def _empty_batch(x: Tensor, args: tuple) -> Tensor:
    """The pooled output of an input with N = 0, still attached to x's graph (its gradient is empty)."""
    _, c, h, w = (int(v) for v in x.shape)
    pool2d_output_shape((1, c, h, w), *args)  # the checks the kernels would make (window vs H, W)
    return x.reshape(-1)[:0].reshape(_out_shape(x, *args))


def _pool_args(kernel_size, stride, padding):  # noqa: ANN001, ANN202
    k = as_pair(kernel_size, "kernel_size")
    s = k if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0) else as_pair(stride, "stride")
    return k, s, as_pair(padding, "padding", minimum=0)


def max_pool2d(
    input: Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Max pooling like torch.nn.functional.max_pool2d (stride defaults to kernel_size).

    Padding is -inf (never the maximum); ties go to the first maximum in the window's
    row-major order; a NaN in the window propagates. ``indices`` are flat h*W + w offsets
    into each input plane, as torch's. dilation != 1 and ceil_mode are not supported.
    """
    check_tensor(input, "input")
    if as_pair(dilation, "dilation") != [1, 1]:
        raise ValueError(f"dilation must be 1 for dlgpu's max_pool2d, got {dilation!r}")
    if ceil_mode:
        raise ValueError("ceil_mode must be False for dlgpu's max_pool2d")
    if input.dim() == 3:  # unbatched (C, H, W), as torch takes it
        out = max_pool2d(input.unsqueeze(0), kernel_size, stride, padding, dilation, ceil_mode, return_indices)
        return (out[0].squeeze(0), out[1].squeeze(0)) if return_indices else out.squeeze(0)
    args = _pool_args(kernel_size, stride, padding)
    if input.dim() == 4 and input.shape[0] == 0:  # an empty batch: nothing to pool, as torch
        y = _empty_batch(input, args)
        return (y, y.detach().to(torch.int64)) if return_indices else y
    y, idx = _max_pool2d(input, *args)
    return (y, idx) if return_indices else y


def avg_pool2d(
    input: Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """Average pooling like torch.nn.functional.avg_pool2d (zero padding; the divisor counts the
    padding when count_include_pad). ceil_mode and divisor_override are not supported."""
    check_tensor(input, "input")
    if ceil_mode:
        raise ValueError("ceil_mode must be False for dlgpu's avg_pool2d")
    if divisor_override is not None:
        raise ValueError("divisor_override must be None for dlgpu's avg_pool2d")
    count_include_pad = check_bool(count_include_pad, "count_include_pad")
    if input.dim() == 3:  # unbatched (C, H, W), as torch takes it
        return avg_pool2d(input.unsqueeze(0), kernel_size, stride, padding, ceil_mode, count_include_pad).squeeze(0)
    args = _pool_args(kernel_size, stride, padding)
    if input.dim() == 4 and input.shape[0] == 0:  # an empty batch: nothing to pool, as torch
        return _empty_batch(input, args)
    return _avg_pool2d(input, *args, count_include_pad)
