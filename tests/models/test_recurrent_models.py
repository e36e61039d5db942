"""Recurrent model family (dlgpu.models.recurrent) and the synthetic tasks (dlgpu.models.tasks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dlgpu.functional as F
from dlgpu.models.recurrent import CELLS, Seq2Seq, SequenceClassifier, SequenceTagger, make_recurrent
from dlgpu.models.tasks import TASKS, adding_problem, copy_task, first_token_task, make_task, train_sequence

VARIANTS = [(c, None) for c in CELLS] + [("rnn", "relu"), ("lstm", "no_forget"), ("lstm", "peephole"), ("gru", "cho")]


def _finite_grads(model: torch.nn.Module) -> None:
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("cell,variant", VARIANTS, ids=str)
def test_classifier_and_tagger_forward_backward(cell, variant, gen, seed):
    torch.manual_seed(seed)
    x = torch.tensor(gen.standard_normal((3, 6, 4)), dtype=torch.float32)
    lengths = [6, 2, 4]
    clf = SequenceClassifier(cell, 4, 5, 3, num_layers=2, bidirectional=True, variant=variant, dropout=0.2)
    logits = clf(x, lengths=lengths)
    assert logits.shape == (3, 3)
    F.cross_entropy(logits, torch.tensor([0, 2, 1])).backward()
    _finite_grads(clf)
    tagger = SequenceTagger(cell, 4, 5, 7, bidirectional=True, variant=variant)
    tags = tagger(x)
    assert tags.shape == (3, 6, 7)
    F.cross_entropy(tags.reshape(-1, 7), torch.tensor(gen.integers(0, 7, 18))).backward()
    _finite_grads(tagger)
    # the classifier reads the final states: for a sequence of length 2 that is its state at step 2
    clf.eval()
    assert torch.allclose(clf(x[1:2, :2]), clf(x, lengths=lengths)[1:2], atol=1e-6)


@pytest.mark.parametrize("cell,variant", VARIANTS, ids=str)
def test_seq2seq_forward_backward_and_generate(cell, variant, gen, seed):
    torch.manual_seed(seed)
    src = torch.tensor(gen.standard_normal((2, 5, 3)), dtype=torch.float32)
    tgt = torch.tensor(gen.integers(0, 6, (2, 4)))
    model = Seq2Seq(cell, 3, 8, 6, num_layers=2, variant=variant)
    logits = model(src, tgt)
    assert logits.shape == (2, 4, 6)
    F.cross_entropy(logits.reshape(-1, 6), tgt.reshape(-1)).backward()
    _finite_grads(model)
    gen_logits = model.generate(src, 4)
    assert gen_logits.shape == (2, 4, 6)
    # greedy decoding = teacher forcing on its own argmax tokens
    assert torch.allclose(model(src, gen_logits.argmax(2)), gen_logits, atol=1e-5)
    reg = Seq2Seq(cell, 3, 8, 2, variant=variant, categorical=False)
    y = torch.tensor(gen.standard_normal((2, 4, 2)), dtype=torch.float32)
    F.mse_loss(reg(src, y), y).backward()
    _finite_grads(reg)
    assert reg.generate(src, 3).shape == (2, 3, 2)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="cell"):
        SequenceClassifier("transformer", 3, 4, 2)
    with pytest.raises(ValueError, match="variant"):
        make_recurrent("gru", 3, 4, variant="peephole")
    with pytest.raises(ValueError, match="variant"):
        make_recurrent("mgu", 3, 4, variant="cho")
    with pytest.raises(ValueError, match="tgt"):
        Seq2Seq("lstm", 3, 4, 5)(torch.zeros(2, 3, 3), torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="steps"):
        Seq2Seq("lstm", 3, 4, 5).generate(torch.zeros(2, 3, 3), 0)
    with pytest.raises(ValueError, match="task"):
        make_task("parity", 10, 8, 8)
    with pytest.raises(ValueError, match="seq_len"):
        make_task("adding", 1, 8, 8)


def test_tasks_are_seeded_and_correct():
    g = np.random.default_rng(3)
    x, y = adding_problem(50, 11, g)
    assert x.shape == (50, 11, 2) and torch.equal(x[:, :, 1].sum(1), torch.full((50,), 2.0))
    assert torch.all(x[:, :5, 1].sum(1) == 1)  # one marker in each half
    assert torch.allclose((x[:, :, 0] * x[:, :, 1]).sum(1), y)
    x, y = first_token_task(40, 9, g)
    assert torch.equal(x[:, 0, :4].argmax(1), y) and torch.all(x[:, 1:, :4] == 0) and torch.all(x.sum(2) == 1)
    x, t = copy_task(30, 7, g, vocab=5, reverse=True)
    assert torch.equal(x.argmax(2).flip(1), t)
    a, b = make_task("first_token", 12, 64, 32, seed=5), make_task("first_token", 12, 64, 32, seed=5)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train[:32], a.x_test)
    assert not torch.equal(a.x_train, make_task("first_token", 12, 64, 32, seed=6).x_train)
    for task in TASKS:
        assert make_task(task, 6, 8, 4).x_train.shape[:2] == (8, 6)


def test_tiny_lstm_learns_first_token():
    """A working LSTM solves a short first-token task (the class is 5 steps back) in 48 Adam steps; a
    broken one stays at chance: accuracy 0.25, loss ln 4 = 1.386."""
    res = train_sequence("lstm", "first_token", seq_len=6, hidden_size=16, epochs=6, batch_size=32, lr=3e-2,
                         seed=1, progress=False, log=None, n_train=256, n_test=256)  # fmt: skip
    hist = res["history"]
    assert len(hist) == 6 and res["final"] is hist[-1]
    assert hist[0]["loss"] > 1.2
    assert hist[-1]["test_loss"] < 0.2 < 1.2 < hist[0]["loss"]
    assert hist[-1]["accuracy"] > 0.9 and res["baseline"]["accuracy"] < 0.4


def test_train_sequence_regression_and_seq2seq_run():
    res = train_sequence("gru", "adding", seq_len=6, hidden_size=8, epochs=2, batch_size=16, seed=0,
                         progress=False, log=None, n_train=64, n_test=32, return_model=True)  # fmt: skip
    assert {"mse", "test_loss", "loss", "seconds"} <= set(res["final"]) and isinstance(res["model"], torch.nn.Module)
    assert 0.1 < res["baseline"]["mse"] < 0.25
    lines = []
    res = train_sequence("mgu", "reverse", seq_len=4, hidden_size=8, epochs=1, batch_size=16, seed=0,
                         progress=False, log=lines.append, n_train=32, n_test=16)  # fmt: skip
    assert 0 <= res["final"]["accuracy"] <= 1 and len(lines) == 1 and "mgu reverse epoch 1/1" in lines[0]
