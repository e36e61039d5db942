"""The composition layer: a Sequential that knows its input shape and prints a layer table.

    net = Network(Conv2d(3, 96, 11, stride=4), ReLU(), MaxPool2d(3, 2), input_shape=(3, 227, 227))
    print(net.summary())

    Layer     Type        Output      Params
    0         Conv2d      55x55x96    34,944
    1         ReLU        55x55x96    0
    2         MaxPool2d   27x27x96    0
    Total params: 34,944 (trainable 34,944)

Output shapes are per example (the batch dimension dropped); a 4-D activation [N, C, H, W] is
written as the volume H x W x C, as in the course. ``summary(module, input_shape)`` does the same
for any module by running one forward pass with hooks.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

__all__ = ["Network", "Summary", "SummaryRow", "summary"]


def _volume(shape: tuple[int, ...]) -> str:
    """A per-example shape as text: H x W x C for (C, H, W), else the dims joined by x."""
    dims = (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape
    return "x".join(str(d) for d in dims) if dims else "scalar"


@dataclass(frozen=True)
class SummaryRow:
    """One line of the table: module name (as in named_modules), class, output shape, own parameters."""

    name: str
    type: str
    output_shape: tuple[int, ...]  # per example, batch dimension dropped
    params: int

    @property
    def volume(self) -> str:
        """The output shape as text: H x W x C for a 4-D activation, else the dims joined by x."""
        return _volume(self.output_shape)


@dataclass(frozen=True)
class Summary:
    """The table ``summary`` returns; ``str``/``print`` render it, ``rows`` hold the data."""

    rows: list[SummaryRow]
    total_params: int
    trainable_params: int
    input_shape: tuple[int, ...] = field(default=())

    def __str__(self) -> str:
        head = ("Layer", "Type", "Output", "Params")
        body = [(r.name, r.type, r.volume, f"{r.params:,}") for r in self.rows]
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(4)]

        def line(cells: Sequence[str]) -> str:
            return "   ".join(c.rjust(w) if i == 3 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

        rule = "-" * len(line(head))
        out = [f"Input: {_volume(self.input_shape)}", rule, line(head), rule, *(line(b) for b in body), rule]
        out.append(f"Total params: {self.total_params:,} (trainable {self.trainable_params:,})")
        return "\n".join(out)

    __repr__ = __str__


def _check_shape(input_shape: object) -> tuple[int, ...]:
    ok = isinstance(input_shape, (tuple, list, torch.Size)) and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in input_shape
    )
    if not ok or not input_shape:
        raise ValueError(
            f"input_shape must be a non-empty tuple of positive ints, e.g. (3, 227, 227), got {input_shape!r}"
        )
    return tuple(input_shape)


def _first_tensor(out: object) -> Tensor | None:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)):
        for o in out:
            t = _first_tensor(o)
            if t is not None:
                return t
    return None


def summary(
    module: nn.Module,
    input_shape: Sequence[int],
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Summary:
    """Layer table of any module: one forward pass on a random batch of one, with hooks.

    Rows: every module that has parameters of its own or no children (the leaves), in the order
    they are first called (a parent before its children; a module called again is listed once),
    with its output shape (the first tensor of a tuple output) and its own parameter count.
    Totals count each parameter once.

    Args:
        module: any nn.Module taking one tensor [1, *input_shape].
        input_shape: per-example shape, e.g. (C, H, W) or (F,).
        dtype, device: of the probe input; default those of the module's first parameter
            (float32 / CPU without parameters). The 'meta' device works (no memory, no compute).
    The pass runs under no_grad in eval mode (the module's mode is restored), on inputs drawn
    from a private generator (never zero; the global RNG is left alone).
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    shape = _check_shape(input_shape)
    p0 = next(module.parameters(), None)
    dtype = dtype or (p0.dtype if p0 is not None else torch.float32)
    device = device or (p0.device if p0 is not None else "cpu")
    gen = torch.Generator().manual_seed(0)
    mag = torch.rand((1, *shape), generator=gen, dtype=torch.float64) * 0.9 + 0.1  # |x| in [0.1, 1)
    sign = torch.randint(0, 2, (1, *shape), generator=gen) * 2 - 1
    x = (mag * sign).to(dtype=dtype, device=device)

    order: dict[nn.Module, None] = OrderedDict()  # first call (entry) order: a parent before its children
    rows: dict[nn.Module, SummaryRow] = {}
    names = {m: n for n, m in module.named_modules()}

    def pre_hook(mod: nn.Module, _inp: object) -> None:
        order.setdefault(mod)

    def hook(mod: nn.Module, _inp: object, out: object) -> None:
        if mod in rows:
            return
        t = _first_tensor(out)
        own = sum(p.numel() for p in mod.parameters(recurse=False))
        rows[mod] = SummaryRow(
            names[mod] or type(mod).__name__, type(mod).__name__, tuple(t.shape[1:]) if t is not None else (), own
        )

    handles = []
    for m in module.modules():
        if next(m.children(), None) is None or next(m.parameters(recurse=False), None) is not None:
            handles += [m.register_forward_pre_hook(pre_hook), m.register_forward_hook(hook)]
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            module(x)
    finally:
        module.train(was_training)
        for h in handles:
            h.remove()
    params = list(module.parameters())
    return Summary(
        [rows[m] for m in order if m in rows],
        sum(p.numel() for p in params),
        sum(p.numel() for p in params if p.requires_grad),
        shape,
    )


class Network(nn.Sequential):
    """nn.Sequential that records the per-example ``input_shape`` and prints its layer table.

    Args:
        *layers: modules, applied in order (or one OrderedDict name -> module, as Sequential).
        input_shape: per-example input shape, (C, H, W) or (F,); needed by summary().
    Shapes: input [N, *input_shape] -> the last layer's output.
    """

    def __init__(self, *layers: nn.Module, input_shape: Sequence[int] | None = None) -> None:
        super().__init__(*layers)
        self.input_shape = None if input_shape is None else _check_shape(input_shape)

    def summary(self, input_shape: Sequence[int] | None = None) -> Summary:
        """The layer table (print it): name, output volume, parameters per layer, total."""
        shape = input_shape if input_shape is not None else self.input_shape
        if shape is None:
            raise ValueError("input_shape must be given, here or to Network(..., input_shape=(C, H, W))")
        return summary(self, shape)

    def extra_repr(self) -> str:
        return "" if self.input_shape is None else f"input_shape={self.input_shape}"
