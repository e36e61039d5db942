"""The flop and byte formulas against hand counts: two shapes per op family, each count written out."""

from __future__ import annotations

import numpy as np
import pytest

from dlgpu import ops
from dlgpu.bench.costs import (
    WORKSPACE_WIDTH,
    Cost,
    activation_cost,
    call_cost,
    conv2d_cost,
    describe,
    dropout_cost,
    linear_cost,
    locally_connected2d_cost,
    loss_backward_cost,
    loss_cost,
    max_pool2d_backward_cost,
    pool2d_cost,
    recurrent_cost,
    regularizer_cost,
)
from dlgpu.testing.cases import all_cases, prepare


def test_activations():
    # relu over 5x13 = 65 float32 elements: 1 flop each; read x + write y = 2 * 65 * 4 bytes
    assert activation_cost("relu", 65, 4) == Cost(65, 520)
    # backward: 2 flops each (compare, select); read dy, x + write dx = 3 * 65 * 4
    assert activation_cost("relu", 65, 4, backward=True) == Cost(130, 780)
    # softmax over 7x3 = 21 float64: 5 flops each (max, sub, exp, sum, div); 2 * 21 * 8 bytes
    assert activation_cost("softmax", 21, 8) == Cost(105, 336)
    # backward 4 flops each (mul, add, sub, mul); 3 * 21 * 8 bytes
    assert activation_cost("softmax", 21, 8, backward=True) == Cost(84, 504)
    # sigmoid over 1000 bf16: 3 flops each, 2 * 1000 * 2 bytes
    assert activation_cost("sigmoid", 1000, 2) == Cost(3000, 4000)
    with pytest.raises(ValueError, match="name must be one of"):
        activation_cost("gelu", 10, 4)


def test_linear():
    # x [5, 11], W [7, 11], bias, no activation, float32:
    #   flops 2*5*11*7 = 770 (GEMM) + 5*7 = 35 (bias) = 805
    #   bytes (x 55 + W 77 + b 7 + y 35) * 4 = 174 * 4 = 696
    assert linear_cost(5, 11, 7, 4) == Cost(805, 696)
    #   backward: 4*385 = 1540 (dx, dW) + 35 (db) = 1575
    #   bytes (dy 35 + x 55 + W 77 + dx 55 + dW 77 + db 7) * 4 = 306 * 4 = 1224
    assert linear_cost(5, 11, 7, 4, backward=True) == Cost(1575, 1224)
    # x [32, 64], W [16, 64], no bias, relu, bf16:
    #   flops 2*32*64*16 = 65536 + 32*16 = 512 (relu) = 66048;  bytes (2048 + 1024 + 512) * 2 = 7168
    assert linear_cost(32, 64, 16, 2, bias=False, activation="relu") == Cost(66048, 7168)
    #   backward: 131072 + 512 (db) + 512 (relu') = 132096
    #   bytes (dy 512 + x 2048 + W 1024 + out 512 + dx 2048 + dW 1024 + db 16) * 2 = 7184 * 2 = 14368
    assert linear_cost(32, 64, 16, 2, backward=True, activation="relu") == Cost(132096, 14368)


def test_conv2d():
    # x [2,4,7,6], w [6,4,3,3], stride 1, pad 1 -> y [2,6,7,6], M = 504 outputs, 4*9 = 36 MACs each
    #   flops 2*504*36 = 36288 + 504 bias + 504 relu = 37296
    #   bytes (x 336 + w 216 + b 6 + y 504) * 4 = 4248
    assert conv2d_cost((2, 4, 7, 6), (6, 4, 3, 3), 1, 1, 1, 1, 4, activation="relu") == Cost(37296, 4248)
    #   backward: 4*504*36 = 72576 + 504 db + 504 relu' = 73584
    #   bytes (dy 504 + x 336 + w 216 + out 504 + dx 336 + dw 216 + db 6) * 4 = 2118 * 4 = 8472
    assert conv2d_cost((2, 4, 7, 6), (6, 4, 3, 3), 1, 1, 1, 1, 4, backward=True, activation="relu") == Cost(73584, 8472)
    # x [2,4,9,7], w [6,2,3,3], stride 2, pad 0, dilation 2, groups 2:
    #   OH = (9 - 2*2 - 1)//2 + 1 = 3, OW = (7 - 4 - 1)//2 + 1 = 2, M = 2*6*3*2 = 72, 2*9 = 18 MACs each
    #   flops 2*72*18 = 2592 + 72 bias = 2664;  bytes (504 + 108 + 6 + 72) * 4 = 2760
    assert conv2d_cost((2, 4, 9, 7), (6, 2, 3, 3), 2, 0, 2, 2, 4) == Cost(2664, 2760)
    # ResNet-18 layer1 in bf16, no bias: M = 32*64*56*56 = 6422528, 64*9 = 576 MACs each
    #   flops 2 * 6422528 * 576 = 7398752256;  bytes (x 6422528 + w 36864 + y 6422528) * 2 = 25763840
    assert conv2d_cost((32, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, 1, 2, bias=False) == Cost(7398752256, 25763840)


def test_locally_connected():
    # x [2,3,6,5], w [6,5,4,3,3,3] (OH 6, OW 5, O 4, C 3, 3x3): M = 2*4*6*5 = 240 outputs, 27 MACs each
    #   flops 2*240*27 = 12960 + 240 bias = 13200;  P = 6*5*4*3*3*3 = 3240 weights
    #   bytes (x 180 + P 3240 + b 4*6*5 = 120 + y 240) * 4 = 15120
    assert locally_connected2d_cost((2, 3, 6, 5), (6, 5, 4, 3, 3, 3), 4) == Cost(13200, 15120)
    #   backward: 4*240*27 = 25920 + 240 db = 26160;  bytes (240 + 180 + 3240 + 180 + 3240 + 120) * 4 = 28800
    assert locally_connected2d_cost((2, 3, 6, 5), (6, 5, 4, 3, 3, 3), 4, backward=True) == Cost(26160, 28800)
    # x [1,2,4,4], 2x2 windows stride 2 -> OH = OW = 2, O = 3, w [2,2,3,2,2,2] = 96, no bias, float64:
    #   M = 12, 8 MACs each: flops 192;  bytes (x 32 + w 96 + y 12) * 8 = 1120
    assert locally_connected2d_cost((1, 2, 4, 4), (2, 2, 3, 2, 2, 2), 8, bias=False) == Cost(192, 1120)


def test_pooling():
    # max 2x2/2 over x [2,3,7,9]: OH 3, OW 4, Y = 2*3*12 = 72; X = 378
    #   flops 72*4 = 288 compares;  bytes X*4 1512 + Y*4 288 + 8*72 indices 576 = 2376
    assert pool2d_cost("max", (2, 3, 7, 9), 2, 2, 0, 4) == Cost(288, 2376)
    #   backward: 72 adds;  bytes dy 288 + indices 576 + dx 1512 = 2376
    assert pool2d_cost("max", (2, 3, 7, 9), 2, 2, 0, 4, backward=True) == Cost(72, 2376)
    # avg 3x3/2 pad 1 over x [2,3,7,9]: OH (7+2-3)//2+1 = 4, OW (9+2-3)//2+1 = 5, Y = 6*20 = 120
    #   flops 120 * (9 adds + 1 divide) = 1200;  bytes (378 + 120) * 4 = 1992
    assert pool2d_cost("avg", (2, 3, 7, 9), 3, 2, 1, 4) == Cost(1200, 1992)
    assert pool2d_cost("avg", (2, 3, 7, 9), 3, 2, 1, 4, backward=True) == Cost(1200, 1992)
    # max backward from sizes: x [1,1,4,4], dy [1,1,2,2], bf16: 4 adds; bytes 4*2 + 4*8 + 16*2 = 72
    assert max_pool2d_backward_cost((1, 1, 4, 4), (1, 1, 2, 2), 2) == Cost(4, 72)
    with pytest.raises(ValueError, match="kind must be"):
        pool2d_cost("min", (1, 1, 4, 4), 2)


def test_dropout():
    # 65 float32 elements with a given mask: 65 multiplies; 2*65*4 + 65 mask bytes = 585
    assert dropout_cost(65, 4) == Cost(65, 585)
    # 100 bf16 elements, mask generated in the kernel: 100 flops, 2*100*2 = 400 bytes
    assert dropout_cost(100, 2, mask=False, backward=True) == Cost(100, 400)


def test_losses():
    # cross_entropy over [5, 13] float32, mean: E = 65, 6 flops each = 390
    #   bytes input 260 + int64 targets 8*5 = 40 + grad 260 + scalar loss 4 = 564
    assert loss_cost("cross_entropy", (5, 13), 4, "mean") == Cost(390, 564)
    #   reduction none: loss [5] = 20 bytes instead of 4 -> 580
    assert loss_cost("cross_entropy", (5, 13), 4, "none") == Cost(390, 580)
    # mse over [5, 13] float32, none: 4 flops each = 260; input 260 + target 260 + grad 260 + loss 260 = 1040
    assert loss_cost("mse_loss", (5, 13), 4, "none") == Cost(260, 1040)
    assert loss_cost("mse_loss", (5, 13), 4, "mean") == Cost(260, 784)
    # loss_backward: grad_input [5, 13] times a scalar: 65 flops, (65 + 1 + 65) * 4 = 524
    assert loss_backward_cost((5, 13), (), 4) == Cost(65, 524)
    #   per-row grad_output [5]: (65 + 5 + 65) * 4 = 540
    assert loss_backward_cost((5, 13), (5,), 4) == Cost(65, 540)
    with pytest.raises(ValueError, match="name must be one of"):
        loss_cost("focal_loss", (5, 13), 4)


def test_regularizers():
    # l1 penalty of a [7, 5] float32 weight: 2 flops each = 70; read 35*4 = 140 + write the scalar 4 = 144
    assert regularizer_cost("l1_penalty", 35, 4) == Cost(70, 144)
    # l2 backward: 1 flop each = 35; read w + write dw = 2*35*4 = 280
    assert regularizer_cost("l2_penalty_backward", 35, 4) == Cost(35, 280)
    # clip_grad_norm over [7,5] + [5] = 40 elements: 3 flops each = 120; 2*40*4 + 4 (norm) = 324
    assert regularizer_cost("clip_grad_norm", 40, 4) == Cost(120, 324)
    with pytest.raises(ValueError, match="name must be one of"):
        regularizer_cost("dropconnect", 10, 4)


def test_recurrent():
    # LSTM (forget) T4 B3 I5 H6, float32, biases: G = 4
    #   flops 2*T*B*G*H*(I+H) = 2*4*3*4*6*11 = 6336
    #   weights 4*6*5 + 4*6*6 = 264; bytes: x 60 + W 264 + biases 2*24 = 48 + h0,c0 36 + output 72
    #   + h_n,c_n 36 + workspace T*B*5H = 360 = 876 elements * 4 = 3504
    assert recurrent_cost("lstm", 4, 3, 5, 6, 4, variant="forget") == Cost(6336, 3504)
    #   backward: 2 * 6336 = 12672; d_output 72 + d_h_n,d_c_n 36 + x 60 + h0,c0 36 + W 264 + output 72
    #   + workspace 360 + dx 60 + dh0,dc0 36 + dW 264 + db 48 = 1308 * 4 = 5232
    assert recurrent_cost("lstm", 4, 3, 5, 6, 4, backward=True, variant="forget") == Cost(12672, 5232)
    # GRU (cudnn) T100 B8 I256 H256 in bf16: G = 3, workspace 4H
    #   flops 2*100*8*3*256*512 = 629145600
    #   bytes: x 204800 + W 2*3*256*256 = 393216 + biases 1536 + h0 2048 + output 204800 + h_n 2048
    #   + workspace 100*8*4*256 = 819200 -> 1627648 elements * 2 = 3255296
    assert recurrent_cost("gru", 100, 8, 256, 256, 2, variant="cudnn") == Cost(629145600, 3255296)
    # RNN T4 B3 I5 H6 without biases: G = 1, no workspace
    #   flops 2*4*3*6*11 = 1584; bytes x 60 + W 30 + 36 + h0 18 + output 72 + h_n 18 = 234 * 4 = 936
    assert recurrent_cost("rnn", 4, 3, 5, 6, 4, bias=False) == Cost(1584, 936)
    # LSTM no_forget, same shape: G = 3, workspace 4H
    #   flops 2*4*3*3*6*11 = 4752; weights 90 + 108 = 198; bytes: x 60 + W 198 + biases 36 + h0,c0 36
    #   + output 72 + h_n,c_n 36 + workspace 4*3*24 = 288 -> 726 * 4 = 2904
    assert recurrent_cost("lstm", 4, 3, 5, 6, 4, variant="no_forget") == Cost(4752, 2904)
    # LSTM peephole without biases: G = 4 (6336 flops), P = 3*6 = 18 peephole weights
    #   bytes: x 60 + W 264 + P 18 + h0,c0 36 + output 72 + h_n,c_n 36 + workspace 360 = 846 * 4 = 3384
    assert recurrent_cost("lstm", 4, 3, 5, 6, 4, variant="peephole", bias=False) == Cost(6336, 3384)
    # GRU cho (workspace 3H): x 60 + W 198 + biases 36 + h0 18 + output 72 + h_n 18 + ws 216 = 618 * 4
    assert recurrent_cost("gru", 4, 3, 5, 6, 4, variant="cho") == Cost(4752, 2472)
    # MGU: G = 2, flops 2*4*3*2*6*11 = 3168; x 60 + W 132 + biases 24 + h0 18 + output 72 + h_n 18
    #   + workspace 2H: 144 = 468 * 4 = 1872
    assert recurrent_cost("mgu", 4, 3, 5, 6, 4) == Cost(3168, 1872)
    with pytest.raises(ValueError, match="variant"):
        recurrent_cost("gru", 4, 3, 5, 6, 4, variant="forget")
    with pytest.raises(ValueError, match="family must be one of"):
        recurrent_cost("transformer", 4, 3, 5, 6, 4)


def _backward_call(case):
    prep = prepare(case, np.float64)
    return prep.bargs, prep.bkwargs


def test_call_cost_covers_every_op_and_agrees_with_the_formulas():
    seen = set()
    for case in all_cases(0, "tiny"):
        for op, args, kwargs in [(case.forward, case.args, case.kwargs)] + (
            [(case.backward, *_backward_call(case))] if case.backward else []
        ):
            c = call_cost(op, args, kwargs, 4)
            assert c.flops > 0 and c.bytes > 0, (op, c)
            assert describe(op, args, kwargs)
            seen.add(op)
    assert seen == set(ops.OPS)
    conv = next(c for c in all_cases(0, "tiny") if c.name.startswith("conv2d[s1"))
    assert call_cost(conv.forward, conv.args, conv.kwargs, 4) == conv2d_cost(
        (2, 4, 7, 6), (6, 4, 3, 3), 1, 1, 1, 1, 4, activation="relu"
    )
    assert describe(conv.forward, conv.args, conv.kwargs) == "2x4x7x6 * 6x4x3x3 s1 p1"
    with pytest.raises(ValueError, match="op must be one of"):
        call_cost("conv3d_forward", (), {}, 4)


def test_call_cost_hands_each_argument_to_its_formula():
    """call_cost on explicit calls (only the shapes matter) against the formula with the same numbers
    written out: shapes where swapping I and O, dropping the padding or the bias, or taking G*H for H
    would change the count."""
    z = np.zeros
    T, B, I, H = 4, 3, 5, 6
    x, h0, c0 = z((T, B, I)), z((B, H)), z((B, H))
    calls = [
        (("linear_forward", (z((5, 11)), z((7, 11)), z(7)), {}), linear_cost(5, 11, 7, 4)),
        (("linear_forward", (z((2, 5, 11)), z((7, 11)), None, "tanh"), {}),
         linear_cost(10, 11, 7, 4, bias=False, activation="tanh")),
        (("avg_pool2d_forward", (z((2, 3, 7, 9)), 3, 2, 1), {}), pool2d_cost("avg", (2, 3, 7, 9), 3, 2, 1, 4)),
        (("avg_pool2d_backward", (z((2, 3, 4, 5)), (2, 3, 7, 9), 3, 2, 1), {}),
         pool2d_cost("avg", (2, 3, 7, 9), 3, 2, 1, 4, backward=True)),
        (("max_pool2d_forward", (z((2, 3, 7, 9)), (3, 2), None, (1, 0)), {}),
         pool2d_cost("max", (2, 3, 7, 9), (3, 2), (3, 2), (1, 0), 4)),
        (("locally_connected2d_forward", (z((2, 3, 6, 5)), z((6, 5, 4, 3, 3, 3))), {"padding": 1}),
         locally_connected2d_cost((2, 3, 6, 5), (6, 5, 4, 3, 3, 3), 4, bias=False)),
        (("dropout_forward", (z((5, 13)), 0.3), {"seed": 1}), dropout_cost(65, 4, mask=False)),
        (("cross_entropy_forward", (z((5, 13)), z(5, dtype=np.int64), "none"), {}),
         loss_cost("cross_entropy", (5, 13), 4, "none")),
        (("l1_loss_forward", (z((5, 13)), z((5, 13)), "sum"), {}), loss_cost("l1_loss", (5, 13), 4, "sum")),
        (("clip_grad_norm_forward", ([z((7, 5)), z(5)], 1.0), {}), regularizer_cost("clip_grad_norm", 40, 4)),
        (("l2_penalty_backward", (z((7, 5)), 0.3), {}), regularizer_cost("l2_penalty_backward", 35, 4)),
        (("rnn_forward", (x, h0, z((H, I)), z((H, H))), {}), recurrent_cost("rnn", T, B, I, H, 4, bias=False)),
        (("lstm_forward", (x, h0, c0, z((4 * H, I)), z((4 * H, H))), {"weight_peephole": z((3, H)),
                                                                      "variant": "peephole"}),
         recurrent_cost("lstm", T, B, I, H, 4, variant="peephole", bias=False)),
        (("lstm_forward", (x, h0, c0, z((3 * H, I)), z((3 * H, H)), z(3 * H), z(3 * H)), {"variant": "no_forget"}),
         recurrent_cost("lstm", T, B, I, H, 4, variant="no_forget")),
        (("gru_forward", (x, h0, z((3 * H, I)), z((3 * H, H)), z(3 * H), z(3 * H)), {"variant": "cho"}),
         recurrent_cost("gru", T, B, I, H, 4, variant="cho")),
        (("mgu_forward", (x, h0, z((2 * H, I)), z((2 * H, H))), {}), recurrent_cost("mgu", T, B, I, H, 4, bias=False)),
    ]  # fmt: skip
    for (op, args, kwargs), want in calls:
        assert call_cost(op, args, kwargs, 4) == want, op
    assert describe("gru_forward", calls[-2][0][1], calls[-2][0][2]) == "T4 B3 I5 H6"
    assert describe("avg_pool2d_forward", *calls[2][0][1:]) == "2x3x7x9 k3 s2 p1"


def test_workspace_widths_are_the_kernels():
    """The workspace the byte counts charge is the one the reference forward really returns (T, B, W H)."""
    seen = set()
    for case in all_cases(0, "tiny"):
        family = case.forward.removesuffix("_forward")
        if family in ("rnn", "lstm", "gru", "mgu"):
            outs = prepare(case, np.float64).ref_out
            h = outs[0].shape[2]
            width = outs[-1].shape[2] // h if family != "rnn" else 0
            key = (family, case.kwargs.get("variant", "") or "")
            assert WORKSPACE_WIDTH[key] == width, key
            seen.add(key)
    assert seen == set(WORKSPACE_WIDTH)
