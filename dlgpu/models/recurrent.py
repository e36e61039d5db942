"""Recurrent model family: a sequence classifier, a sequence tagger and an encoder-decoder, for every
cell type of dlgpu.nn (``cell`` in rnn | lstm | gru | mgu, with its ``variant``). All batch_first.

The recurrent layers are dlgpu.nn.recurrent's, the heads dlgpu.nn.layers.Linear.
"""

from __future__ import annotations

import torch
import torch.nn.functional as TF
from torch import Tensor, nn

from ..nn.layers import Linear
from ..nn.recurrent import GRU, LSTM, MGU, RNN
from ..reference._validate import check_choice

__all__ = ["CELLS", "Seq2Seq", "SequenceClassifier", "SequenceTagger", "make_recurrent"]

CELLS = ("rnn", "lstm", "gru", "mgu")
# variant=None picks the first; for "rnn" the variant is the nonlinearity
VARIANTS = {"rnn": ("tanh", "relu"), "lstm": ("forget", "no_forget", "peephole"), "gru": ("cudnn", "cho"), "mgu": ()}

State = Tensor | tuple[Tensor, Tensor]


def make_recurrent(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bidirectional: bool = False,
    variant: str | None = None,
    dropout: float = 0.0,
    batch_first: bool = True,
) -> RNN | LSTM | GRU | MGU:
    """The dlgpu.nn recurrent layer for ``cell`` (rnn | lstm | gru | mgu) and ``variant``
    (None: the cell's default; rnn: tanh | relu; lstm: forget | no_forget | peephole; gru: cudnn | cho;
    mgu: None only)."""
    check_choice(cell, CELLS, "cell")
    if variant is not None:
        if cell == "mgu":
            raise ValueError(f"variant must be None for cell='mgu' (it has one form), got {variant!r}")
        check_choice(variant, VARIANTS[cell], "variant")
    args = (input_size, hidden_size, num_layers)
    kw = {"batch_first": batch_first, "dropout": dropout, "bidirectional": bidirectional}
    if cell == "rnn":
        return RNN(*args, nonlinearity=variant or "tanh", **kw)
    if cell == "lstm":
        return LSTM(*args, variant=variant or "forget", **kw)
    if cell == "gru":
        return GRU(*args, variant=variant or "cudnn", **kw)
    return MGU(*args, **kw)


def _last_layer_state(h_n: State, num_layers: int, num_directions: int) -> Tensor:
    """h_n [L*D, B, H] (an LSTM's h of (h, c)) -> the last layer's final states [B, D*H], directions side by side."""
    h = h_n[0] if isinstance(h_n, tuple) else h_n
    last = h.view(num_layers, num_directions, h.shape[1], h.shape[2])[-1]  # D,B,H
    return last.permute(1, 0, 2).reshape(h.shape[1], -1)  # B,D*H


class SequenceClassifier(nn.Module):
    """Sequence -> class scores: the final state of the last layer (both directions' final states when
    bidirectional) through a Linear head.

    forward(x [B, T, input_size], lengths=None) -> logits [B, num_classes]; with ``lengths`` [B] each
    sequence's own last step is used (the reverse direction's state at step 0, as always).
    With num_classes=1 it is a regressor (the caller squeezes the last axis).
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_classes: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        variant: str | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.cell = cell
        self.rnn = make_recurrent(cell, input_size, hidden_size, num_layers, bidirectional, variant, dropout)
        self.head = Linear(hidden_size * self.rnn.num_directions, num_classes)

    def forward(self, x: Tensor, lengths: Tensor | list[int] | None = None) -> Tensor:
        """x [B, T, input_size] -> logits [B, num_classes]."""
        _, h_n = self.rnn(x, lengths=lengths)
        return self.head(_last_layer_state(h_n, self.rnn.num_layers, self.rnn.num_directions))


class SequenceTagger(nn.Module):
    """Sequence -> one label per step: every step's output (both directions concatenated) through a Linear.

    forward(x [B, T, input_size], lengths=None) -> logits [B, T, num_tags] (steps past a sequence's
    length see a zero state, so their logits are the head's bias: mask them out of the loss).
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_tags: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        variant: str | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.cell = cell
        self.rnn = make_recurrent(cell, input_size, hidden_size, num_layers, bidirectional, variant, dropout)
        self.head = Linear(hidden_size * self.rnn.num_directions, num_tags)

    def forward(self, x: Tensor, lengths: Tensor | list[int] | None = None) -> Tensor:
        """x [B, T, input_size] -> logits [B, T, num_tags]."""
        out, _ = self.rnn(x, lengths=lengths)  # B,T,D*H
        return self.head(out)


class Seq2Seq(nn.Module):
    """Encoder-decoder: the encoder's final state (every layer's; an LSTM's (h, c)) initialises the
    decoder, whose per-step outputs go through a Linear readout to ``output_size``.

    With ``categorical=True`` (default) outputs are logits over ``output_size`` tokens and the decoder
    is fed the previous token one-hot; with False they are real vectors fed back as they are. The
    first decoder input is all zeros (a start symbol no token equals).

    forward(src [B, Ts, input_size], tgt, src_lengths=None) -> [B, Tt, output_size], teacher forcing:
        tgt is [B, Tt] int64 tokens (categorical) or [B, Tt, output_size] floats; step t sees tgt[:, t-1].
    generate(src, steps, src_lengths=None) -> [B, steps, output_size], greedy: each step is fed the
        previous step's argmax token (categorical) or value.
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        output_size: int,
        num_layers: int = 1,
        variant: str | None = None,
        *,
        categorical: bool = True,
    ) -> None:
        super().__init__()
        self.cell = cell
        self.output_size = output_size
        self.categorical = bool(categorical)
        self.encoder = make_recurrent(cell, input_size, hidden_size, num_layers, variant=variant)
        self.decoder = make_recurrent(cell, output_size, hidden_size, num_layers, variant=variant)
        self.readout = Linear(hidden_size, output_size)

    def _feed(self, y: Tensor) -> Tensor:
        """Targets/predictions -> decoder inputs [B, T, output_size] in the encoder's dtype."""
        dtype = self.readout.weight.dtype
        return TF.one_hot(y, self.output_size).to(dtype) if self.categorical else y.to(dtype)

    def encode(self, src: Tensor, src_lengths: Tensor | list[int] | None = None) -> State:
        """src [B, Ts, input_size] -> the encoder's final state (h_n [L, B, H], or (h_n, c_n))."""
        _, state = self.encoder(src, lengths=src_lengths)
        return state

    def forward(self, src: Tensor, tgt: Tensor, src_lengths: Tensor | list[int] | None = None) -> Tensor:
        """Teacher forcing: [B, Tt, output_size] logits (categorical) or predictions."""
        if self.categorical and (tgt.ndim != 2 or tgt.dtype.is_floating_point):
            raise ValueError(f"tgt must be [B, T] integer tokens for a categorical Seq2Seq, got {tgt.dtype} "
                             f"of shape {tuple(tgt.shape)}")  # fmt: skip
        if not self.categorical and (tgt.ndim != 3 or tgt.shape[2] != self.output_size):
            raise ValueError(f"tgt must be [B, T, {self.output_size}] (output_size), got shape {tuple(tgt.shape)}")
        state = self.encode(src, src_lengths)
        prev = self._feed(tgt[:, :-1])  # B,Tt-1,O
        start = prev.new_zeros((tgt.shape[0], 1, self.output_size))
        out, _ = self.decoder(torch.cat([start, prev], dim=1), state)  # B,Tt,H
        return self.readout(out)

    @torch.no_grad()
    def generate(self, src: Tensor, steps: int, src_lengths: Tensor | list[int] | None = None) -> Tensor:
        """Greedy autoregressive decoding for ``steps`` steps -> [B, steps, output_size] (logits or values)."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {steps!r}")
        state = self.encode(src, src_lengths)
        x = src.new_zeros((src.shape[0], 1, self.output_size))
        outs = []
        for _ in range(steps):
            out, state = self.decoder(x, state)  # B,1,H
            y = self.readout(out)  # B,1,O
            outs.append(y)
            x = self._feed(y.argmax(-1)) if self.categorical else y
        return torch.cat(outs, dim=1)
