"""Recurrent layers over dlgpu.functional's whole-sequence ops: RNN, LSTM, GRU, MGU and their cells.

The sequence layers take torch.nn.LSTM's arguments (``input_size, hidden_size, num_layers, bias,
batch_first, dropout, bidirectional``; RNN also ``nonlinearity``) and return what torch returns
(``output, h_n`` or ``output, (h_n, c_n)``, h_n [num_layers * num_directions, B, H]). Parameters
have torch's names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...), shapes, registration order and
init (U(+-1/sqrt(H)) drawn in the same order), so for RNN, LSTM(variant="forget") and
GRU(variant="cudnn") ``load_state_dict(torch_module.state_dict())`` works and gives torch's
results, and with the same ``torch.manual_seed`` both draw identical weights. The variants torch
lacks add to that: LSTM "no_forget" has 3 gate blocks (i, g, o), "peephole" an extra
``weight_peephole_l{k}[_reverse]`` [3, H] (rows p_i, p_f, p_o); GRU "cho" keeps torch's shapes;
MGU has 2 blocks (f, h). Equations: dlgpu.reference.{rnn,lstm,gru,mgu}.

Each layer and direction is ONE fused call of the sequence op over all T steps when every
sequence has the full length (the common case). Dropout between layers (training only) is
torch's own ``torch.nn.functional.dropout``, so for full-length input the masks equal torch.nn.LSTM's
for the same seed (with ``lengths=`` or a PackedSequence torch draws them over the packed data and
dlgpu over the padded [T, B, H] tensor, so the masks differ; both are valid dropout).

Variable lengths (``lengths=`` or a PackedSequence input) are exact, not masked: the batch is
sorted by length (descending, stable) and the fused op runs on shrinking prefixes, one call per
distinct length: steps [0, L_(1)) for all rows, then [L_(1), L_(2)) for the rows still running,
each segment starting from the state the previous one ended in. A row therefore never sees a
padding step; its h_n is the state at its own last step and its outputs past its length are zero.
The reverse direction first reverses every sequence inside its own length (a gather), runs the
same way, and reverses the outputs back, so it starts at each sequence's own end, as torch's
packed sequences do. Cost: one fused call per distinct length instead of one in all.

The cells (RNNCell, LSTMCell, GRUCell, MGUCell) are the same op with T = 1 and torch's cell
signature ``cell(input, hx)``; their parameters are named like torch's cells'.
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch
import torch.nn.functional as TF
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from dlgpu.reference._validate import check_int

from .. import functional as F
from ..functional._common import autocast, autocast_dtype
from ..reference._validate import check_choice

__all__ = ["GRU", "LSTM", "MGU", "RNN", "GRUCell", "LSTMCell", "MGUCell", "RNNCell"]

_VARIANTS = {"rnn": (None,), "lstm": ("forget", "no_forget", "peephole"), "gru": ("cudnn", "cho"), "mgu": (None,)}
_GATES = {"rnn": 1, "forget": 4, "no_forget": 3, "peephole": 4, "cudnn": 3, "cho": 3, "mgu": 2}

State = tuple[Tensor, ...]  # (h,) or (h, c), each [B, H]
Weights = tuple[Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]  # w_ih, w_hh, b_ih, b_hh, w_peep


def _check_variant(mode: str, variant: str | None) -> str | None:
    if mode in ("lstm", "gru"):
        check_choice(variant, _VARIANTS[mode], "variant")
    return variant


def _fused(
    mode: str, variant: str | None, nonlinearity: str, x: Tensor, state: State, w: Weights
) -> tuple[Tensor, State]:
    """One whole-sequence op call: x [T, B, I], state (h,) or (h, c) [B, H] -> output [T, B, H], new state."""
    w_ih, w_hh, b_ih, b_hh, w_peep = w
    if mode == "lstm":
        out, (h, c) = F.lstm(x, state, w_ih, w_hh, b_ih, b_hh, w_peep, variant)
        return out, (h, c)
    if mode == "rnn":
        out, h = F.rnn(x, state[0], w_ih, w_hh, b_ih, b_hh, nonlinearity)
    elif mode == "gru":
        out, h = F.gru(x, state[0], w_ih, w_hh, b_ih, b_hh, variant)
    else:
        out, h = F.mgu(x, state[0], w_ih, w_hh, b_ih, b_hh)
    return out, (h,)


# ------------------------------------------------------------ variable lengths


def _check_lengths(lengths: object, batch: int, steps: int) -> list[int]:
    """Per-row lengths as ints in [1, steps]; ValueError/TypeError naming ``lengths``."""
    if isinstance(lengths, Tensor):
        if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.ndim != 1:
            raise ValueError(
                f"lengths must be a 1-D integer tensor, got {lengths.dtype} of shape {tuple(lengths.shape)}"
            )
        values = [int(v) for v in lengths.tolist()]
    elif isinstance(lengths, (list, tuple)) or hasattr(lengths, "tolist"):
        values = list(lengths.tolist() if hasattr(lengths, "tolist") else lengths)
        if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in values):
            raise TypeError(f"lengths must hold integers, got {values!r}")
        values = [int(v) for v in values]
    else:
        raise TypeError(f"lengths must be a 1-D tensor or a sequence of ints, got {type(lengths).__name__}")
    if len(values) != batch:
        raise ValueError(f"lengths must have one entry per batch element ({batch}), got {len(values)}")
    if any(v < 1 or v > steps for v in values):
        raise ValueError(f"lengths must lie in [1, {steps}] (the sequence length of input), got {values}")
    return values


def _segments(lengths: list[int]) -> list[tuple[int, int, int]]:
    """(start, end, rows) per distinct length, for lengths sorted descending: the rows whose
    sequence covers steps [start, end) are the first ``rows``."""
    segs, start = [], 0
    for end in sorted(set(lengths)):
        segs.append((start, end, sum(1 for n in lengths if n >= end)))
        start = end
    return segs


def _run_segments(
    mode: str, variant: str | None, nonlinearity: str, x: Tensor, state: State, w: Weights,
    segs: list[tuple[int, int, int]], hidden: int,
) -> tuple[Tensor, State]:  # fmt: skip
    """The fused op on shrinking prefixes of a length-sorted batch (see the module docstring)."""
    steps, batch = x.shape[0], x.shape[1]
    outs, finals = [], []
    for k, (start, end, rows) in enumerate(segs):
        rows_next = segs[k + 1][2] if k + 1 < len(segs) else 0
        out, state = _fused(
            mode, variant, nonlinearity, x[start:end, :rows].contiguous(), tuple(s[:rows] for s in state), w
        )
        outs.append(out if rows == batch else TF.pad(out, (0, 0, 0, batch - rows)))  # zeros past a row's length
        finals.append(tuple(s[rows_next:] for s in state))  # the rows that end at `end`
    if segs[-1][1] < steps:
        outs.append(x.new_zeros((steps - segs[-1][1], batch, hidden)))
    # segments end the rows from the bottom of the sorted batch up: reversed, they stack in row order
    final = tuple(torch.cat([f[i] for f in reversed(finals)]) for i in range(len(state)))
    return torch.cat(outs), final


def _reverse_index(lengths: Tensor, steps: int) -> Tensor:
    """[T, B] index that reverses each column within its own length and leaves the padding in place."""
    t = torch.arange(steps, device=lengths.device)[:, None]  # T,1
    return torch.where(t < lengths, lengths - 1 - t, t)


def _gather_time(x: Tensor, index: Tensor) -> Tensor:
    return x.gather(0, index[:, :, None].expand(-1, -1, x.shape[2])).contiguous()


# ------------------------------------------------------------------- layers


class _RecurrentBase(nn.Module):
    """Shared machinery of RNN, LSTM, GRU and MGU (see the module docstring)."""

    def __init__(
        self, mode: str, input_size: int, hidden_size: int, num_layers: int, bias: bool, batch_first: bool,
        dropout: float, bidirectional: bool, variant: str | None, nonlinearity: str = "tanh",
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.mode = mode
        self.variant = _check_variant(mode, variant)
        self.input_size = check_int(input_size, "input_size")
        self.hidden_size = check_int(hidden_size, "hidden_size")
        self.num_layers = check_int(num_layers, "num_layers")
        if mode == "rnn":
            check_choice(nonlinearity, ("tanh", "relu"), "nonlinearity")
        self.nonlinearity = nonlinearity
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                f"dropout={dropout} acts between recurrent layers only, so it does nothing with num_layers=1",
                stacklevel=3,
            )
        self.dropout = float(dropout)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.bidirectional = bool(bidirectional)
        self.num_directions = 2 if self.bidirectional else 1
        gates = _GATES[variant if mode in ("lstm", "gru") else mode] * hidden_size
        kw = {"device": device, "dtype": dtype}
        self._weight_names: list[tuple[str, ...]] = []
        for layer in range(num_layers):
            width = input_size if layer == 0 else hidden_size * self.num_directions
            for direction in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if direction else "")
                shapes = {f"weight_ih{sfx}": (gates, width), f"weight_hh{sfx}": (gates, hidden_size)}
                if self.bias:
                    shapes.update({f"bias_ih{sfx}": (gates,), f"bias_hh{sfx}": (gates,)})
                if variant == "peephole":
                    shapes[f"weight_peephole{sfx}"] = (3, hidden_size)
                for name, shape in shapes.items():
                    self.register_parameter(name, nn.Parameter(torch.empty(shape, **kw)))
                self._weight_names.append(tuple(shapes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every parameter ~ U(-1/sqrt(H), 1/sqrt(H)), drawn in registration order (as torch)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def flatten_parameters(self) -> None:
        """No-op, for drop-in use (torch packs cuDNN weights here; the dlgpu ops take them as they are)."""

    @property
    def _all_weights(self) -> list[list[str]]:
        """Parameter names per layer and direction, in torch.nn.RNNBase's order."""
        return [list(names) for names in self._weight_names]

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """The parameters per layer and direction, as torch.nn.RNNBase.all_weights."""
        return [[getattr(self, name) for name in names] for names in self._weight_names]

    def _weights(self, index: int) -> Weights:
        names = self._weight_names[index]
        get = lambda kind: getattr(self, names[0].replace("weight_ih", kind))  # noqa: E731
        return (
            get("weight_ih"), get("weight_hh"),
            get("bias_ih") if self.bias else None, get("bias_hh") if self.bias else None,
            get("weight_peephole") if self.variant == "peephole" else None,
        )  # fmt: skip

    def _initial_state(self, hx: object, batch: int, batched: bool, like: Tensor) -> list[State]:
        """hx -> one (h,) or (h, c) per layer and direction, each [B, H]; checks named after hx."""
        n, H = self.num_layers * self.num_directions, self.hidden_size
        if hx is None:
            zeros = like.new_zeros((n, batch, H))
            parts = [zeros, zeros] if self.mode == "lstm" else [zeros]
        else:
            if self.mode == "lstm":
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise ValueError("hx must be None or a pair (h_0, c_0) for an LSTM")
                parts, names = list(hx), ["hx[0] (h_0)", "hx[1] (c_0)"]
            else:
                parts, names = [hx], ["hx"]
            want = (n, batch, H) if batched else (n, H)
            for i, (p, name) in enumerate(zip(parts, names)):
                if not isinstance(p, Tensor):
                    raise TypeError(f"{name} must be a torch.Tensor, got {type(p).__name__}")
                if tuple(p.shape) != want:
                    raise ValueError(
                        f"{name} must have shape {want} (num_layers*num_directions, "
                        f"{'batch, ' if batched else ''}hidden_size), got {tuple(p.shape)}"
                    )
                (p,) = autocast("lower", p)
                if p.dtype != like.dtype:
                    raise TypeError(f"{name} must have the dtype of input ({like.dtype}), got {p.dtype}")
                parts[i] = p if batched else p.unsqueeze(1)
        return [tuple(p[k] for p in parts) for k in range(n)]

    def forward(
        self, input: Tensor | PackedSequence, hx: Tensor | tuple[Tensor, Tensor] | None = None,
        *, lengths: Tensor | list[int] | None = None,
    ) -> tuple[Tensor | PackedSequence, Tensor | tuple[Tensor, Tensor]]:  # fmt: skip
        """Run the stack over a sequence.

        Args:
            input: [T, B, input_size] ([B, T, input_size] if batch_first), [T, input_size] unbatched,
                or a PackedSequence.
            hx: initial state [num_layers * num_directions, B, H] (unbatched: without B); an LSTM takes
                the pair (h_0, c_0). None: zeros.
            lengths: optional [B] valid length of each sequence (1..T); steps past it are skipped
                (outputs zero there, h_n taken at the sequence's own last step).
        Returns:
            output [T, B, num_directions * H] (batch_first: [B, T, ...]; a PackedSequence for one),
            h_n [num_layers * num_directions, B, H] (an LSTM: (h_n, c_n)).
        """
        packed = isinstance(input, PackedSequence)
        if packed:
            if lengths is not None:
                raise ValueError("lengths must be None for a PackedSequence input (it carries its own lengths)")
            x, len_t = pad_packed_sequence(input)  # T,B,I in the caller's batch order
            batched, lengths = True, len_t
        else:
            if not isinstance(input, Tensor):
                raise TypeError(f"input must be a torch.Tensor or a PackedSequence, got {type(input).__name__}")
            if input.ndim not in (2, 3):
                raise ValueError(f"input must be 3-D (batched) or 2-D (unbatched), got shape {tuple(input.shape)}")
            batched = input.ndim == 3
            x = input.unsqueeze(1) if not batched else input.transpose(0, 1) if self.batch_first else input
        if x.shape[2] != self.input_size:
            raise ValueError(f"input must have {self.input_size} features (input_size) got {x.shape[2]}")
        # inside an autocast region the input, states and weights all go to the region's dtype
        (x,), w_dtype = autocast("lower", x), autocast_dtype("lower", self.weight_ih_l0)
        if x.dtype != w_dtype:
            raise TypeError(f"input must have the parameters' dtype {w_dtype}, got {x.dtype}")
        steps, batch = x.shape[0], x.shape[1]
        if steps < 1:  # an empty batch (B = 0) is fine, as in torch: empty outputs
            raise ValueError(f"input must have at least one time step, got {tuple(x.shape)}")
        states = self._initial_state(hx, batch, batched, x)
        lens = None if lengths is None else _check_lengths(lengths, batch, steps)
        if lens is not None and not batched:
            raise ValueError("lengths needs a batched (3-D) input")
        if lens is not None and min(lens, default=steps) == steps:
            lens = None  # all full length: the fused path
        x = x.contiguous()

        order = inverse = segs = rev = None
        if lens is not None:
            order = torch.sort(torch.tensor(lens), descending=True, stable=True).indices
            inverse = torch.argsort(order)
            sorted_lens = [lens[i] for i in order.tolist()]
            segs = _segments(sorted_lens)
            rev = _reverse_index(torch.tensor(sorted_lens, device=x.device), steps)
            order, inverse = order.to(x.device), inverse.to(x.device)
            x = x[:, order].contiguous()
            states = [tuple(s[order] for s in st) for st in states]

        args = (self.mode, self.variant, self.nonlinearity)
        finals: list[State] = []
        layer_in = x
        for layer in range(self.num_layers):
            outs = []
            for direction in range(self.num_directions):
                k = layer * self.num_directions + direction
                w = self._weights(k)
                if segs is None:
                    xin = layer_in.flip(0) if direction else layer_in
                    out, st = _fused(*args, xin, states[k], w)
                    out = out.flip(0) if direction else out
                else:
                    xin = _gather_time(layer_in, rev) if direction else layer_in
                    out, st = _run_segments(*args, xin, states[k], w, segs, self.hidden_size)
                    out = _gather_time(out, rev) if direction else out
                outs.append(out)
                finals.append(st)
            layer_in = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)  # T,B,D*H
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_in = TF.dropout(layer_in, self.dropout, training=True)

        output = layer_in
        state = tuple(torch.stack([st[i] for st in finals]) for i in range(len(finals[0])))  # each L*D,B,H
        if inverse is not None:
            output = output[:, inverse]
            state = tuple(s[:, inverse] for s in state)
        if packed:
            # torch's packed layout, in the input's own sort order (ties included)
            perm = input.sorted_indices
            out_sorted = output if perm is None else output[:, perm]
            data = pack_padded_sequence(out_sorted, len_t if perm is None else len_t[perm.cpu()]).data
            output = PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices)
        elif not batched:
            output, state = output.squeeze(1), tuple(s.squeeze(1) for s in state)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, (state if self.mode == "lstm" else state[0])

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.mode == "rnn" and self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0), ("bidirectional", False)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        if self.variant is not None:
            s += f", variant={self.variant!r}"
        return s


class RNN(_RecurrentBase):
    """Elman RNN, torch.nn.RNN's signature: h_t = phi(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), phi tanh|relu.

    forward(input, hx=None, *, lengths=None) -> (output, h_n); shapes in ``_RecurrentBase.forward``.
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh", bias: bool = True,
        batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:  # fmt: skip
        super().__init__(
            "rnn", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, None,
            nonlinearity, device, dtype,
        )  # fmt: skip


class LSTM(_RecurrentBase):
    """LSTM, torch.nn.LSTM's signature plus ``variant``: "forget" (torch's, gates i, f, g, o), "no_forget"
    (gates i, g, o; c_t = c_{t-1} + i g) or "peephole" (adds weight_peephole_l{k} [3, H]).

    forward(input, hx=None, *, lengths=None) -> (output, (h_n, c_n)). ``proj_size`` must be 0.
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True, batch_first: bool = False,
        dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None, *, variant: str = "forget",
    ) -> None:  # fmt: skip
        if proj_size != 0:
            raise ValueError(f"proj_size is not supported by dlgpu's LSTM (must be 0), got {proj_size!r}")
        super().__init__(
            "lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, variant,
            device=device, dtype=dtype,
        )  # fmt: skip


class GRU(_RecurrentBase):
    """GRU, torch.nn.GRU's signature plus ``variant``: "cudnn" (torch's; r acts after W_hn) or "cho"
    (Cho et al. 2014; r acts on h_{t-1} before W_hn, z weights the new candidate). Gates r, z, n.

    forward(input, hx=None, *, lengths=None) -> (output, h_n).
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True, batch_first: bool = False,
        dropout: float = 0.0, bidirectional: bool = False,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None, *, variant: str = "cudnn",
    ) -> None:  # fmt: skip
        super().__init__(
            "gru", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, variant,
            device=device, dtype=dtype,
        )  # fmt: skip


class MGU(_RecurrentBase):
    """Minimal Gated Unit (Zhou et al. 2016), torch.nn.GRU's signature; weights [2H, .] in row blocks f, h.

    forward(input, hx=None, *, lengths=None) -> (output, h_n).
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True, batch_first: bool = False,
        dropout: float = 0.0, bidirectional: bool = False,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:  # fmt: skip
        super().__init__(
            "mgu", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, None,
            device=device, dtype=dtype,
        )  # fmt: skip


# -------------------------------------------------------------------- cells


class _CellBase(nn.Module):
    """One step of a recurrent layer: the sequence op with T = 1, torch's cell parameters and signature."""

    def __init__(
        self, mode: str, input_size: int, hidden_size: int, bias: bool, variant: str | None,
        nonlinearity: str = "tanh", device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.mode = mode
        self.variant = _check_variant(mode, variant)
        self.input_size = check_int(input_size, "input_size")
        self.hidden_size = check_int(hidden_size, "hidden_size")
        if mode == "rnn":
            check_choice(nonlinearity, ("tanh", "relu"), "nonlinearity")
        self.nonlinearity = nonlinearity
        self.bias = bool(bias)
        gates = _GATES[variant if mode in ("lstm", "gru") else mode] * hidden_size
        kw = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty((gates, input_size), **kw))
        self.weight_hh = nn.Parameter(torch.empty((gates, hidden_size), **kw))
        if self.bias:
            self.bias_ih = nn.Parameter(torch.empty(gates, **kw))
            self.bias_hh = nn.Parameter(torch.empty(gates, **kw))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        if variant == "peephole":
            self.weight_peephole = nn.Parameter(torch.empty((3, hidden_size), **kw))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every parameter ~ U(-1/sqrt(H), 1/sqrt(H)), drawn in registration order (as torch)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(
        self, input: Tensor, hx: Tensor | tuple[Tensor, Tensor] | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        """One step. input [B, input_size] or [input_size]; hx [B, H] ([H]), an LSTM the pair (h, c); None: zeros.

        Returns h' [B, H] (an LSTMCell: (h', c')), unbatched without B.
        """
        if not isinstance(input, Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
        if input.ndim not in (1, 2):
            raise ValueError(f"input must be 2-D (batch, input_size) or 1-D, got shape {tuple(input.shape)}")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"input must have {self.input_size} features (input_size), got {input.shape[-1]}")
        (input,), w_dtype = autocast("lower", input), autocast_dtype("lower", self.weight_ih)
        if input.dtype != w_dtype:
            raise TypeError(f"input must have the parameters' dtype {w_dtype}, got {input.dtype}")
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        want = (x.shape[0], self.hidden_size) if batched else (self.hidden_size,)
        if hx is None:
            state = tuple(x.new_zeros((x.shape[0], self.hidden_size)) for _ in range(2 if self.mode == "lstm" else 1))
        else:
            if self.mode == "lstm":
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise ValueError("hx must be None or a pair (h, c) for an LSTMCell")
                parts, names = list(hx), ["hx[0] (h)", "hx[1] (c)"]
            else:
                parts, names = [hx], ["hx"]
            for p, name in zip(parts, names):
                if not isinstance(p, Tensor):
                    raise TypeError(f"{name} must be a torch.Tensor, got {type(p).__name__}")
                if tuple(p.shape) != want:
                    raise ValueError(f"{name} must have shape {want} (batch, hidden_size), got {tuple(p.shape)}")
            parts = [autocast("lower", p)[0] for p in parts]
            for p, name in zip(parts, names):
                if p.dtype != x.dtype:
                    raise TypeError(f"{name} must have the dtype of input ({x.dtype}), got {p.dtype}")
            state = tuple(p if batched else p.unsqueeze(0) for p in parts)
        w = (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, getattr(self, "weight_peephole", None))
        _, new = _fused(self.mode, self.variant, self.nonlinearity, x.unsqueeze(0).contiguous(), state, w)
        new = new if batched else tuple(s.squeeze(0) for s in new)
        return new if self.mode == "lstm" else new[0]

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.mode == "rnn" and self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        if self.variant is not None:
            s += f", variant={self.variant!r}"
        return s


class RNNCell(_CellBase):
    """torch.nn.RNNCell: h' = phi(W_ih x + b_ih + W_hh h + b_hh). cell(input, hx=None) -> h' [B, H]."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:  # fmt: skip
        super().__init__("rnn", input_size, hidden_size, bias, None, nonlinearity, device, dtype)


class LSTMCell(_CellBase):
    """torch.nn.LSTMCell plus ``variant`` (forget | no_forget | peephole). cell(input, (h, c)=None) -> (h', c')."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None, *, variant: str = "forget",
    ) -> None:  # fmt: skip
        super().__init__("lstm", input_size, hidden_size, bias, variant, device=device, dtype=dtype)


class GRUCell(_CellBase):
    """torch.nn.GRUCell plus ``variant`` (cudnn | cho). cell(input, hx=None) -> h' [B, H]."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None, *, variant: str = "cudnn",
    ) -> None:  # fmt: skip
        super().__init__("gru", input_size, hidden_size, bias, variant, device=device, dtype=dtype)


class MGUCell(_CellBase):
    """One MGU step (weights [2H, .], row blocks f, h). cell(input, hx=None) -> h' [B, H]."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:  # fmt: skip
        super().__init__("mgu", input_size, hidden_size, bias, None, device=device, dtype=dtype)
