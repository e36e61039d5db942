"""dlgpu.nn recurrent layers and cells: against torch.nn (RNN, LSTM, GRU and their cells, loaded from
torch's state_dict) and, for the variants torch lacks, against a plain torch-autograd loop of the
equations run one sequence at a time (so it also checks variable lengths independently)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import dlgpu.nn.recurrent as R
from dlgpu.testing import assert_close, randn

LAYERS = {"rnn_tanh": R.RNN, "rnn_relu": R.RNN, "lstm": R.LSTM, "gru": R.GRU}
TORCH_LAYERS = {"rnn_tanh": torch.nn.RNN, "rnn_relu": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
CONFIGS = [
    dict(num_layers=1),
    dict(num_layers=2, bidirectional=True, batch_first=True),
    dict(num_layers=3, bidirectional=True, bias=False),
    dict(num_layers=2, batch_first=True),  # stacked, one direction: layer 1 takes H features
]


def _kw(cell: str, cfg: dict) -> dict:
    return {**cfg, "nonlinearity": cell[4:]} if cell.startswith("rnn") else dict(cfg)


def _t(shape, gen, dtype, scale=1.0, grad=True):
    return torch.tensor(randn(shape, gen, scale=scale)).to(dtype).requires_grad_(grad)


def _flat(out):
    """Module output -> list of tensors (PackedSequence -> its data; (h, c) -> h, c)."""
    res = []
    for o in out if isinstance(out, tuple) else (out,):
        if isinstance(o, torch.nn.utils.rnn.PackedSequence):
            res.append(o.data)
        elif isinstance(o, tuple):
            res.extend(o)
        else:
            res.append(o)
    return res


def _compare(ours, theirs, wrt_ours, wrt_theirs, names, gen, op, dtype):
    """Outputs equal, then gradients of one random projection of all outputs w.r.t. every input."""
    ours, theirs = _flat(ours), _flat(theirs)
    assert len(ours) == len(theirs)
    dname = str(dtype).replace("torch.", "")
    loss_o = loss_t = 0
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert_close(a, b, op, dname, name=f"{op} output {i}")
        g = torch.tensor(randn(tuple(b.shape), gen)).to(dtype)
        loss_o, loss_t = loss_o + (a * g).sum(), loss_t + (b * g).sum()
    go = torch.autograd.grad(loss_o, wrt_ours, retain_graph=True)  # the two may share a graph (packing)
    gt = torch.autograd.grad(loss_t, wrt_theirs)
    for a, b, n in zip(go, gt, names):
        assert_close(a, b, op, dname, name=f"{op} grad {n}")


def _pair(cell, cfg, dtype, seed):
    torch.manual_seed(seed)
    theirs = TORCH_LAYERS[cell](5, 6, **_kw(cell, cfg)).to(dtype)
    ours = LAYERS[cell](5, 6, **_kw(cell, cfg)).to(dtype)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


# ------------------------------------------------------------------ vs torch.nn


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cfg", range(len(CONFIGS)))
@pytest.mark.parametrize("cell", sorted(LAYERS))
def test_layer_matches_torch(cell, cfg, dtype, gen, seed):
    cfg = CONFIGS[cfg]
    ours, theirs = _pair(cell, cfg, dtype, seed)
    T, B = 7, 3
    x = _t((B, T, 5) if cfg.get("batch_first") else (T, B, 5), gen, dtype)
    n = cfg["num_layers"] * (2 if cfg.get("bidirectional") else 1)
    hx = [_t((n, B, 6), gen, dtype, 0.5) for _ in range(2 if cell == "lstm" else 1)] if cfg["num_layers"] > 1 else []
    state = (tuple(hx) if cell == "lstm" else hx[0]) if hx else None
    names = ["x", *[f"hx{i}" for i in range(len(hx))], *(k for k, _ in theirs.named_parameters())]
    _compare(ours(x, state), theirs(x, state), [x, *hx, *ours.parameters()], [x, *hx, *theirs.parameters()],
             names, gen, cell.split("_")[0], dtype)  # fmt: skip


@pytest.mark.parametrize("cell", sorted(LAYERS))
def test_same_init_and_names_as_torch(cell, seed):
    cfg = dict(num_layers=2, bidirectional=True)
    torch.manual_seed(seed)
    theirs = TORCH_LAYERS[cell](5, 9, **_kw(cell, cfg))
    torch.manual_seed(seed)
    ours = LAYERS[cell](5, 9, **_kw(cell, cfg))
    sd_o, sd_t = ours.state_dict(), theirs.state_dict()
    assert list(sd_o) == list(sd_t)
    for k in sd_t:
        assert torch.equal(sd_o[k], sd_t[k]), k
    bound = 1 / 9**0.5
    assert all(p.abs().max() <= bound and p.std() > bound / 4 for p in ours.parameters())


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
def test_dropout_between_layers_matches_torch(cell, gen, seed):
    cfg = dict(num_layers=3, bidirectional=True, dropout=0.4)
    ours, theirs = _pair(cell, cfg, torch.float64, seed)
    x = _t((6, 4, 5), gen, torch.float64)
    torch.manual_seed(seed + 1)
    out_t = theirs(x)
    torch.manual_seed(seed + 1)
    out_o = ours(x)
    names = ["x", *(k for k, _ in theirs.named_parameters())]
    _compare(out_o, out_t, [x, *ours.parameters()], [x, *theirs.parameters()], names, gen, "lstm", torch.float64)
    torch.manual_seed(seed + 2)
    assert not torch.allclose(ours(x)[0], out_o[0])  # a fresh mask
    ours.eval()
    theirs.eval()
    assert_close(ours(x)[0], theirs(x)[0], "lstm", name="eval: no dropout")


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("cell", sorted(LAYERS))
def test_packed_sequence_matches_torch(cell, batch_first, gen, seed):
    cfg = dict(num_layers=2, bidirectional=True, batch_first=batch_first)
    ours, theirs = _pair(cell, cfg, torch.float64, seed)
    lengths = torch.tensor([5, 8, 2, 8, 5, 1])  # ties, full length, length 1
    x = _t((6, 8, 5) if batch_first else (8, 6, 5), gen, torch.float64)
    hx = [_t((4, 6, 6), gen, torch.float64, 0.5) for _ in range(2 if cell == "lstm" else 1)]
    state = tuple(hx) if cell == "lstm" else hx[0]
    packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    out_o, out_t = ours(packed, state), theirs(packed, state)
    for a in ("batch_sizes", "sorted_indices", "unsorted_indices"):
        assert torch.equal(getattr(out_o[0], a), getattr(out_t[0], a))
    names = ["x", *[f"hx{i}" for i in range(len(hx))], *(k for k, _ in theirs.named_parameters())]
    _compare(out_o, out_t, [x, *hx, *ours.parameters()], [x, *hx, *theirs.parameters()], names, gen, "lstm",
             torch.float64)  # fmt: skip
    # lengths= on the padded batch gives the same, with zeros past each length
    y, h = ours(x, state, lengths=lengths)
    ref, _ = pad_packed_sequence(out_t[0], batch_first=batch_first, total_length=8)
    assert_close(y, ref, "lstm", name="lengths= output")
    assert_close(_flat(h)[0], _flat(out_t[1])[0], "lstm", name="lengths= h_n")
    y_tm = y.transpose(0, 1) if batch_first else y
    assert torch.all(y_tm[1:, 5] == 0) and torch.all(y_tm[5:, 0] == 0)


# ----------------------------------------------- variants torch lacks: a loop oracle


def _step(mode, variant, nonlin, x, state, w):
    """One step of the equations in dlgpu.reference.{rnn,lstm,gru,mgu}; x [B, I], state (h,) or (h, c)."""
    w_ih, w_hh, b_ih, b_hh, p = w
    h = state[0]
    H = w_hh.shape[1]
    gi = x @ w_ih.T + (b_ih if b_ih is not None else 0)
    bh = b_hh if b_hh is not None else torch.zeros_like(w_hh[:, 0])
    blk = lambda a, k: a[:, k * H : (k + 1) * H]  # noqa: E731
    if mode == "rnn":
        z = gi + h @ w_hh.T + bh
        return (torch.tanh(z) if nonlin == "tanh" else torch.relu(z),)
    if mode == "lstm":
        c = state[1]
        z = gi + h @ w_hh.T + bh
        if variant == "no_forget":
            i, g, o = torch.sigmoid(blk(z, 0)), torch.tanh(blk(z, 1)), torch.sigmoid(blk(z, 2))
            c = c + i * g
        else:
            pi, pf, po = (p[0], p[1], p[2]) if variant == "peephole" else (0, 0, 0)
            i, f = torch.sigmoid(blk(z, 0) + pi * c), torch.sigmoid(blk(z, 1) + pf * c)
            c = f * c + i * torch.tanh(blk(z, 2))
            o = torch.sigmoid(blk(z, 3) + po * c)
        return o * torch.tanh(c), c
    if mode == "gru":
        r = torch.sigmoid(blk(gi, 0) + h @ blk(w_hh.T, 0) + bh[:H])
        u = torch.sigmoid(blk(gi, 1) + h @ blk(w_hh.T, 1) + bh[H : 2 * H])
        if variant == "cudnn":
            n = torch.tanh(blk(gi, 2) + r * (h @ blk(w_hh.T, 2) + bh[2 * H :]))
            return ((1 - u) * n + u * h,)
        n = torch.tanh(blk(gi, 2) + (r * h) @ blk(w_hh.T, 2) + bh[2 * H :])
        return ((1 - u) * h + u * n,)
    f = torch.sigmoid(blk(gi, 0) + h @ blk(w_hh.T, 0) + bh[:H])
    cand = torch.tanh(blk(gi, 1) + (f * h) @ blk(w_hh.T, 1) + bh[H:])
    return ((1 - f) * h + f * cand,)


def _loop(mod, x, lengths, state):
    """Oracle for a time-major layer: every sequence alone, over its own length only."""
    T, B = x.shape[:2]
    D, H = mod.num_directions, mod.hidden_size
    outs, finals = [], [[] for _ in range(mod.num_layers * D)]
    for b in range(B):
        seq = x[: lengths[b], b : b + 1]  # L,1,I
        for layer in range(mod.num_layers):
            per_dir = []
            for d in range(D):
                k = layer * D + d
                st = tuple(s[k, b : b + 1] for s in state)
                steps = range(seq.shape[0] - 1, -1, -1) if d else range(seq.shape[0])
                ys = {}
                for t in steps:
                    st = _step(mod.mode, mod.variant, mod.nonlinearity, seq[t], st, mod._weights(k))
                    ys[t] = st[0]
                per_dir.append(torch.stack([ys[t] for t in range(seq.shape[0])]))
                finals[k].append(st)
            seq = torch.cat(per_dir, dim=2)
        outs.append(torch.cat([seq, seq.new_zeros((T - seq.shape[0], 1, D * H))]))
    out = torch.cat(outs, dim=1)
    return out, tuple(torch.stack([torch.cat([f[b][i] for b in range(B)]) for f in finals]) for i in range(len(state)))


VARIANT_LAYERS = [
    ("lstm", "no_forget"), ("lstm", "peephole"), ("gru", "cho"), ("mgu", None),
    ("lstm", "forget"), ("gru", "cudnn"), ("rnn", "relu"),
]  # fmt: skip


def _make(mode, variant, *args, **kw):
    if mode == "rnn":
        return R.RNN(*args, nonlinearity=variant, **kw)
    if mode == "mgu":
        return R.MGU(*args, **kw)
    return {"lstm": R.LSTM, "gru": R.GRU}[mode](*args, variant=variant, **kw)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode,variant", VARIANT_LAYERS, ids=lambda v: str(v))
def test_variants_vs_equation_loop(mode, variant, dtype, gen, seed):
    torch.manual_seed(seed)
    mod = _make(mode, variant, 4, 5, num_layers=2, bidirectional=True).to(dtype)
    T, B = 6, 4
    x = _t((T, B, 4), gen, dtype)
    lengths = [6, 3, 1, 3] if dtype == torch.float64 else [6] * B
    hx = [_t((4, B, 5), gen, dtype, 0.5) for _ in range(2 if mode == "lstm" else 1)]
    out_o, st_o = mod(x, tuple(hx) if mode == "lstm" else hx[0], lengths=lengths)
    out_r, st_r = _loop(mod, x, lengths, hx)
    wrt = [x, *hx, *mod.parameters()]
    names = ["x", *[f"hx{i}" for i in range(len(hx))], *(k for k, _ in mod.named_parameters())]
    if mode == "lstm" and variant == "peephole":
        assert any("weight_peephole_l1_reverse" == n for n in names)
    _compare((out_o, st_o if mode == "lstm" else (st_o,)), (out_r, st_r), wrt, wrt, names, gen, mode, dtype)


@pytest.mark.parametrize("mode,variant", [("lstm", "peephole"), ("gru", "cho"), ("mgu", None)], ids=str)
def test_fused_calls_per_layer_and_direction(mode, variant, gen, monkeypatch):
    calls = []
    real = R._fused
    monkeypatch.setattr(R, "_fused", lambda *a: calls.append(a[3].shape) or real(*a))
    mod = _make(mode, variant, 3, 4, num_layers=2, bidirectional=True).double()
    x = _t((5, 6, 3), gen, torch.float64)
    mod(x)
    assert calls == [(5, 6, 3), (5, 6, 3), (5, 6, 8), (5, 6, 8)]  # one whole-sequence call each
    calls.clear()
    mod(x, lengths=[5, 2, 5, 4, 2, 5])  # 3 distinct lengths -> 3 shrinking segments each
    assert [c[:2] for c in calls[:3]] == [(2, 6), (2, 4), (1, 3)] and len(calls) == 12


# ------------------------------------------------------------------------ cells

TORCH_CELLS = {"rnn_tanh": torch.nn.RNNCell, "rnn_relu": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell,
               "gru": torch.nn.GRUCell}  # fmt: skip
CELLS = {"rnn_tanh": R.RNNCell, "rnn_relu": R.RNNCell, "lstm": R.LSTMCell, "gru": R.GRUCell}


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_cell_matches_torch(cell, dtype, batched, gen, seed):
    kw = {"nonlinearity": cell[4:]} if cell.startswith("rnn") else {}
    torch.manual_seed(seed)
    theirs = TORCH_CELLS[cell](5, 7, **kw).to(dtype)
    torch.manual_seed(seed)
    ours = CELLS[cell](5, 7, **kw).to(dtype)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters()))  # same init draws
    shape = (3,) if batched else ()
    x = _t((*shape, 5), gen, dtype)
    hx = [_t((*shape, 7), gen, dtype, 0.5) for _ in range(2 if cell == "lstm" else 1)]
    state = tuple(hx) if cell == "lstm" else hx[0]
    names = ["x", *[f"hx{i}" for i in range(len(hx))], *(k for k, _ in theirs.named_parameters())]
    _compare(ours(x, state), theirs(x, state), [x, *hx, *ours.parameters()], [x, *hx, *theirs.parameters()],
             names, gen, cell.split("_")[0], dtype)  # fmt: skip
    assert_close(_flat(ours(x.detach()))[0], _flat(theirs(x.detach()))[0], "lstm", dtype, name="hx=None")


@pytest.mark.parametrize("mode,variant", [("lstm", "no_forget"), ("lstm", "peephole"), ("gru", "cho"), ("mgu", None)],
                         ids=str)  # fmt: skip
def test_variant_cells_vs_equations(mode, variant, gen, seed):
    torch.manual_seed(seed)
    cls = {"lstm": R.LSTMCell, "gru": R.GRUCell, "mgu": R.MGUCell}[mode]
    cell = cls(4, 6, variant=variant).double() if variant else cls(4, 6).double()
    x = _t((3, 4), gen, torch.float64)
    hx = [_t((3, 6), gen, torch.float64, 0.5) for _ in range(2 if mode == "lstm" else 1)]
    w = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh, getattr(cell, "weight_peephole", None))
    ref = _step(mode, variant, "tanh", x, tuple(hx), w)
    ours = cell(x, tuple(hx) if mode == "lstm" else hx[0])
    wrt = [x, *hx, *cell.parameters()]
    names = ["x", *[f"hx{i}" for i in range(len(hx))], *(k for k, _ in cell.named_parameters())]
    _compare(ours, ref if mode == "lstm" else ref[0], wrt, wrt, names, gen, mode, torch.float64)
    if mode == "lstm":  # the layer with T=1 and the cell agree (same parameter shapes, torch's naming minus _l0)
        layer = R.LSTM(4, 6, variant=variant).double()
        layer.load_state_dict({f"{k}_l0": v for k, v in cell.state_dict().items()})
        out, (h1, c1) = layer(x[None], (hx[0][None], hx[1][None]))
        assert_close(h1[0], ours[0], "lstm")
        assert_close(c1[0], ours[1], "lstm")


def test_unbatched_input_matches_torch(gen, seed):
    ours, theirs = _pair("lstm", dict(num_layers=2, bidirectional=True), torch.float64, seed)
    x = _t((7, 5), gen, torch.float64)
    hx = tuple(_t((4, 6), gen, torch.float64, 0.5) for _ in range(2))
    wrt_o, wrt_t = [x, *hx, *ours.parameters()], [x, *hx, *theirs.parameters()]
    _compare(ours(x, hx), theirs(x, hx), wrt_o, wrt_t, ["x", "h0", "c0"], gen, "lstm", torch.float64)
    y, (h, c) = ours(x)
    assert y.shape == (7, 12) and h.shape == (4, 6) and c.shape == (4, 6)


# ------------------------------------------------------------------- bad input


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="hidden_size"):
        R.LSTM(3, 0)
    with pytest.raises(ValueError, match="input_size"):
        R.GRU(-1, 4)
    with pytest.raises(ValueError, match="num_layers"):
        R.RNN(3, 4, num_layers=0)
    with pytest.raises(TypeError, match="hidden_size"):
        R.MGU(3, 4.0)
    with pytest.raises(ValueError, match="variant"):
        R.LSTM(3, 4, variant="coupled")
    with pytest.raises(ValueError, match="variant"):
        R.GRU(3, 4, variant="minimal")
    with pytest.raises(ValueError, match="variant"):
        R.GRUCell(3, 4, variant="lstm")
    with pytest.raises(ValueError, match="nonlinearity"):
        R.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="dropout"):
        R.LSTM(3, 4, num_layers=2, dropout=1.5)
    with pytest.raises(ValueError, match="proj_size"):
        R.LSTM(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="hidden_size"):
        R.LSTMCell(3, 0)
    with pytest.warns(UserWarning, match="dropout"):
        R.GRU(3, 4, dropout=0.5)


def test_bad_forward_arguments(gen):
    lstm = R.LSTM(3, 4, num_layers=2).double()
    gru = R.GRU(3, 4, batch_first=True).double()
    x = _t((5, 2, 3), gen, torch.float64, grad=False)
    with pytest.raises(ValueError, match="input_size"):
        lstm(_t((5, 2, 4), gen, torch.float64))
    with pytest.raises(ValueError, match="input must be 3-D"):
        lstm(x[None])
    with pytest.raises(TypeError, match="dtype"):
        lstm(x.float())
    with pytest.raises(ValueError, match="hx"):
        lstm(x, torch.zeros(2, 2, 4, dtype=torch.float64))  # not a pair
    with pytest.raises(ValueError, match=r"hx\[1\] \(c_0\) must have shape \(2, 2, 4\)"):
        lstm(x, (torch.zeros(2, 2, 4, dtype=torch.float64), torch.zeros(1, 2, 4, dtype=torch.float64)))
    with pytest.raises(ValueError, match=r"hx must have shape \(1, 5, 4\)"):
        gru(x, torch.zeros(1, 2, 4, dtype=torch.float64))  # batch_first: x [5, 2, 3] holds 5 sequences
    with pytest.raises(ValueError, match="hx must have shape"):
        gru(x.transpose(0, 1), torch.zeros(1, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="lengths"):
        lstm(x, lengths=[5, 0])
    with pytest.raises(ValueError, match="lengths"):
        lstm(x, lengths=[5, 6])
    with pytest.raises(ValueError, match="lengths"):
        lstm(x, lengths=[5, 2, 1])
    with pytest.raises(ValueError, match="lengths"):
        lstm(x, lengths=torch.tensor([5.0, 2.0]))
    with pytest.raises(ValueError, match="lengths"):
        lstm(pack_padded_sequence(x, [5, 3]), lengths=[5, 3])
    cell = R.GRUCell(3, 4).double()
    with pytest.raises(ValueError, match="hx must have shape"):
        cell(x[0], torch.zeros(3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="input_size"):
        cell(torch.zeros(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="hx"):
        R.LSTMCell(3, 4).double()(x[0], torch.zeros(2, 4, dtype=torch.float64))


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_all_weights_as_torch(mode):
    ours = getattr(R, mode)(3, 4, num_layers=2, bidirectional=True)
    theirs = getattr(torch.nn, mode)(3, 4, num_layers=2, bidirectional=True)
    ours.load_state_dict(theirs.state_dict())
    assert ours._all_weights == theirs._all_weights
    for mine, ref in zip(ours.all_weights, theirs.all_weights):
        assert len(mine) == len(ref) and all(torch.equal(a, b) for a, b in zip(mine, ref))


@pytest.mark.parametrize("cell", sorted(LAYERS))
def test_empty_batch_as_torch(cell, seed):
    # B = 0: torch gives empty outputs and states, and backward runs with zero parameter gradients
    cfg = dict(num_layers=2, bidirectional=True, batch_first=True)
    torch.manual_seed(seed)
    ref = TORCH_LAYERS[cell](5, 7, **_kw(cell, cfg))
    ours = LAYERS[cell](5, 7, **_kw(cell, cfg))
    ours.load_state_dict(ref.state_dict())
    xs = [torch.randn(0, 4, 5, requires_grad=True) for _ in range(2)]
    out_o, out_r = _flat(ours(xs[0])), _flat(ref(xs[1]))
    assert [tuple(t.shape) for t in out_o] == [tuple(t.shape) for t in out_r]
    sum(t.sum() for t in out_o).backward()
    sum(t.sum() for t in out_r).backward()
    assert xs[0].grad.shape == xs[1].grad.shape
    for (n, p), q in zip(ours.named_parameters(), ref.parameters()):
        assert p.grad is not None and torch.equal(p.grad, q.grad), n
    out_l = _flat(ours(xs[0], lengths=[]))
    assert [tuple(t.shape) for t in out_l] == [tuple(t.shape) for t in out_r]


@pytest.mark.parametrize(("mode", "variant"), [("lstm", "peephole"), ("gru", "cho"), ("mgu", None)])
def test_empty_batch_variants_and_cells(mode, variant, seed):
    torch.manual_seed(seed)
    kw = {} if variant is None else {"variant": variant}
    layer = {"lstm": R.LSTM, "gru": R.GRU, "mgu": R.MGU}[mode](3, 4, **kw)
    out, state = layer(torch.randn(6, 0, 3))
    assert out.shape == (6, 0, 4)
    for s in state if isinstance(state, tuple) else (state,):
        assert s.shape == (1, 0, 4)
    cell = {"lstm": R.LSTMCell, "gru": R.GRUCell, "mgu": R.MGUCell}[mode](3, 4, **kw)
    new = cell(torch.randn(0, 3))
    for s in new if isinstance(new, tuple) else (new,):
        assert s.shape == (0, 4)
    with pytest.raises(ValueError, match="at least one time step"):
        layer(torch.randn(0, 0, 3))


def test_empty_batch_functional_checks_shapes_no_kernel_would():
    # with B = 0 no kernel runs, so the functional op itself must refuse weights and states that don't fit
    import dlgpu.functional as D

    x = torch.randn(4, 0, 3)
    w_hh = torch.randn(12, 4)
    with pytest.raises(ValueError, match=r"weight_ih must have shape \(12, 3\)"):
        D.gru(x, None, torch.randn(12, 5), w_hh)
    with pytest.raises(ValueError, match=r"hx must have shape \(0, 4\)"):
        D.gru(x, torch.zeros(0, 5), torch.randn(12, 3), w_hh)
    with pytest.raises(ValueError, match=r"c0 must have shape \(0, 4\)"):
        D.lstm(x, (torch.zeros(0, 4), torch.zeros(1, 4)), torch.randn(16, 3), torch.randn(16, 4))
    out, hn = D.rnn(x, None, torch.randn(4, 3), torch.randn(4, 4))
    assert out.shape == (4, 0, 4) and hn.shape == (0, 4)
