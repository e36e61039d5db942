"""Feed-forward classifiers from dlgpu.nn layers: an MLP, the course's generic ConvNet and its case studies.

The course's common pattern is built by ``convnet``:

    INPUT -> [[CONV -> RELU]*N -> POOL?]*M -> [FC -> RELU]*K -> FC

with every CONV -> RELU and FC -> RELU one dlgpu layer (the activation fused into the kernel's
epilogue). The named architectures (LeNet-5, AlexNet, ZF Net, VGG-11/16, GoogLeNet, ResNet-18)
come in two sizes: the paper's configuration (``small=False``; parameter counts and output volumes as
published, see each builder) and a scaled-down one (``small=True``) with the same structure and
narrower layers that runs on 8x8 or 32x32 inputs (``input_size``). Every builder returns a
``dlgpu.nn.Network``, so ``model.summary()`` prints the output volume and parameter count per layer.

Choices: LRN (AlexNet, ZF Net, GoogLeNet) is left out (later work found it of little use, and dlgpu
has no kernel for it); GoogLeNet has no auxiliary classifiers; ResNet-18's batch normalisation is
torch.nn.BatchNorm2d, the one torch layer in these models (dlgpu has no batch-norm kernel), and can
be switched off (``batch_norm=False``: biased convolutions with fused ReLUs instead).
Build full-size models under ``with torch.device("meta"):`` to count parameters without allocating.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dlgpu.nn.layers import AvgPool2d, Conv2d, Dropout, Flatten, Linear, LocallyConnected2d, MaxPool2d, ReLU
from dlgpu.nn.network import Network
from dlgpu.reference._validate import check_int

ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh", "none")


def _ints(value: int | Sequence[int], count: int, name: str) -> list[int]:
    """An int repeated ``count`` times, or a sequence of exactly ``count`` ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        return [check_int(value, name)] * count
    if not isinstance(value, Sequence) or len(value) != count:
        raise ValueError(f"{name} must be an int or a sequence of {count} ints, got {value!r}")
    return [check_int(v, f"{name}[{i}]") for i, v in enumerate(value)]


def _activation(activation: str) -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
    return activation


class _Stack:
    """Appends layers while tracking the output volume (C, H, W), so FC sizes come out right."""

    def __init__(self, in_channels: int, input_size: int, name: str) -> None:
        self.c, self.h, self.w = check_int(in_channels, "in_channels"), check_int(input_size, "input_size"), input_size
        self.input_shape = (self.c, self.h, self.w)
        self.name = name
        self.layers: list[nn.Module] = []
        self.flat: int | None = None

    def _shrink(self, k: int, s: int, p: int, what: str) -> None:
        h, w = (self.h + 2 * p - k) // s + 1, (self.w + 2 * p - k) // s + 1
        if h < 1 or w < 1:
            raise ValueError(
                f"input_size too small for {self.name}: a {what} (kernel {k}, stride {s}, padding {p}) "
                f"gets a {self.h}x{self.w} volume"
            )
        self.h, self.w = h, w

    def conv(self, out: int, k: int, s: int = 1, p: int = 0, act: str = "relu", groups: int = 1,
             bias: bool = True) -> None:  # fmt: skip
        self.layers.append(Conv2d(self.c, out, k, s, p, groups=groups, bias=bias, activation=act))
        self._shrink(k, s, p, "convolution")
        self.c = out

    def pool(self, k: int = 2, s: int | None = None, p: int = 0, kind: str = "max", optional: bool = False) -> None:
        """A pooling layer; ``optional`` ones are skipped when the volume is already below the kernel."""
        s = k if s is None else s
        if optional and self.h + 2 * p < k:
            return
        self.layers.append(MaxPool2d(k, s, p) if kind == "max" else AvgPool2d(k, s, p))
        self._shrink(k, s, p, f"{kind} pooling")

    def global_avg_pool(self) -> None:
        self.layers.append(AvgPool2d((self.h, self.w)))
        self.h = self.w = 1

    def fc(self, out: int, act: str = "relu", dropout: float = 0.0) -> None:
        if self.flat is None:
            self.layers.append(Flatten())
            self.flat = self.c * self.h * self.w
        self.layers.append(Linear(self.flat, out, activation=act))
        self.flat = out
        if dropout > 0:
            self.layers.append(Dropout(dropout))

    def network(self) -> Network:
        return Network(*self.layers, input_shape=self.input_shape)


def _size(small: bool, input_size: int | None, full: int) -> int:
    """The input side: the paper's ``full`` size, or 32 (8 allowed) for the small configuration."""
    if input_size is None:
        return 32 if small else full
    return check_int(input_size, "input_size")


# ------------------------------------------------------------------ generic


def mlp(
    in_features: int,
    hidden: int | Sequence[int],
    out_features: int,
    activation: str = "relu",
    dropout: float = 0.0,
) -> Network:
    """A multilayer perceptron: Flatten -> [FC -> act -> Dropout?]*len(hidden) -> FC.

    Args:
        in_features: D, the features of a (flattened) sample.
        hidden: width of each hidden layer (an int for one layer).
        out_features: K, the outputs (class scores).
        activation: relu | leaky_relu | sigmoid | tanh | none, fused into each hidden layer.
        dropout: drop probability after each hidden layer (0 for none).
    Returns:
        Network mapping [B, D] (or [B, ...] with D elements per sample) to [B, K].
    """
    check_int(in_features, "in_features")
    check_int(out_features, "out_features")
    act = _activation(activation)
    widths = [hidden] if isinstance(hidden, int) else list(hidden)
    widths = _ints(widths, len(widths), "hidden")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    layers: list[nn.Module] = [Flatten()]
    d = in_features
    for w in widths:
        layers.append(Linear(d, w, activation=act))
        if dropout > 0:
            layers.append(Dropout(dropout))
        d = w
    layers.append(Linear(d, out_features))
    return Network(*layers, input_shape=(in_features,))


def convnet(
    in_shape: Sequence[int],
    num_classes: int,
    n: int = 2,
    m: int = 2,
    k: int = 1,
    widths: int | Sequence[int] = (32, 64),
    fc_widths: int | Sequence[int] = 128,
    pool: bool = True,
    kernel_size: int = 3,
    dropout: float = 0.0,
) -> Network:
    """The course's ConvNet: INPUT -> [[CONV -> RELU]*N -> POOL?]*M -> [FC -> RELU]*K -> FC.

    Every CONV is kernel_size x kernel_size with 'same' zero padding and a fused ReLU; POOL is 2x2
    max pooling with stride 2; every hidden FC has a fused ReLU (and dropout if asked).

    Args:
        in_shape: (C, H, W) of one sample.
        num_classes: outputs of the last FC.
        n: CONV -> RELU layers per stage (>= 1); m: stages (>= 1); k: hidden FC layers (>= 0).
        widths: channels of the convolutions of each stage (an int: the same for all M).
        fc_widths: width of each hidden FC (an int: the same for all K).
        pool: pool at the end of every stage.
        kernel_size: odd side of the convolution kernels.
        dropout: drop probability after each hidden FC.
    Returns:
        Network mapping [B, C, H, W] to [B, num_classes].
    """
    if len(in_shape) != 3:
        raise ValueError(f"in_shape must be (C, H, W), got {tuple(in_shape)!r}")
    c, h, w = (check_int(v, "in_shape") for v in in_shape)
    check_int(n, "n")
    check_int(m, "m")
    check_int(k, "k", minimum=0)
    if check_int(kernel_size, "kernel_size") % 2 == 0:
        raise ValueError(f"kernel_size must be odd ('same' padding is symmetric), got {kernel_size}")
    chans, fcs = _ints(widths, m, "widths"), (_ints(fc_widths, k, "fc_widths") if k else [])
    st = _Stack(c, h, "convnet")
    st.w = w
    st.input_shape = (c, h, w)
    for stage in range(m):
        for _ in range(n):
            st.conv(chans[stage], kernel_size, 1, kernel_size // 2)
        if pool:
            st.pool(2)
    for width in fcs:
        st.fc(width, dropout=dropout)
    st.fc(check_int(num_classes, "num_classes"), act="none")
    return st.network()


# ------------------------------------------------------------ case studies


def lenet5(
    num_classes: int = 10,
    in_channels: int = 1,
    *,
    small: bool = False,
    input_size: int | None = None,
    activation: str = "relu",
    pool: str = "max",
) -> Network:
    """LeNet-5 (LeCun et al. 1998): C1 conv5 6 -> S2 pool -> C3 conv5 16 -> S4 pool -> C5 conv5 120 -> F6 84 -> out.

    Full size (32x32x1 input): C1 28x28x6 (156), C3 10x10x16 (2,416), C5 1x1x120 (48,120), F6 84
    (10,164), output 10 (850): 61,706 parameters. The paper's C3 connects each map to only some of S2's
    (1,516 weights), its subsampling layers are trainable and its output is RBF units (60,840 in all);
    here, as usual today, C3 is fully connected, pooling has no parameters and the output is an FC layer.
    small=True (8x8 input): 3x3 convolutions with padding 1 (8 -> pool 4 -> pool 2) and C5 a 2x2 conv.

    Args:
        num_classes, in_channels: output classes, input channels.
        small: the 8x8 configuration; input_size: the side (default 32, or 8 when small).
        activation: relu | tanh (the paper's squashing) | sigmoid | leaky_relu, fused into each layer.
        pool: "max" or "avg" (the paper's subsampling is an average).
    Returns:
        Network mapping [B, in_channels, S, S] to [B, num_classes].
    """
    act = _activation(activation)
    if pool not in ("max", "avg"):
        raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
    size = (8 if small else 32) if input_size is None else check_int(input_size, "input_size")
    st = _Stack(in_channels, size, "lenet5")
    k, p = (3, 1) if small else (5, 0)
    st.conv(6, k, 1, p, act)  # C1
    st.pool(2, kind=pool)  # S2
    st.conv(16, k, 1, p, act)  # C3
    st.pool(2, kind=pool)  # S4
    st.conv(120, st.h, act=act)  # C5: its kernel covers the whole remaining map
    st.fc(84, act)  # F6
    st.fc(check_int(num_classes, "num_classes"), "none")
    return st.network()


def alexnet(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    small: bool = False,
    input_size: int | None = None,
    grouped: bool = False,
    unshared_conv1: bool = False,
    dropout: float = 0.5,
) -> Network:
    """AlexNet (Krizhevsky et al. 2012), one tower, no LRN.

    Full size (227x227x3): CONV1 96 11x11/4 -> 55x55x96 (34,944 parameters) -> MAXPOOL 3/2 27x27 ->
    CONV2 256 5x5 pad 2 -> MAXPOOL 13x13 -> CONV3 384, CONV4 384, CONV5 256 (3x3 pad 1) -> MAXPOOL 6x6x256
    -> FC 4096 -> FC 4096 -> FC num_classes, ReLU everywhere, dropout after FC6 and FC7:
    62,378,344 parameters; with ``grouped=True`` CONV2/4/5 see half the channels, as the paper's two GPUs
    did (groups=2): 60,965,224. ``unshared_conv1=True`` replaces CONV1 by a locally connected layer (one
    filter bank per output position): 55*55*96*(11*11*3 + 1) = 105,705,600 parameters in that layer alone.
    small=True: 3x3 convolutions, widths 24-64-96-96-64, pooling 3/2 with padding 1 (32 -> 16 -> 8 -> 4,
    or 8 -> 4 -> 2 -> 1), FC 256.

    Args:
        num_classes, in_channels: output classes, input channels.
        small, input_size: configuration and input side (default 227, or 32 when small).
        grouped, unshared_conv1, dropout: see above.
    Returns:
        Network mapping [B, in_channels, S, S] to [B, num_classes].
    """
    size = _size(small, input_size, 227)
    st = _Stack(in_channels, size, "alexnet")
    w = (24, 64, 96, 96, 64, 256) if small else (96, 256, 384, 384, 256, 4096)
    g = 2 if grouped else 1
    k1, s1, p1 = (3, 1, 1) if small else (11, 4, 0)
    pk, pp = (3, 1) if small else (3, 0)
    if unshared_conv1:
        lc = LocallyConnected2d(st.c, w[0], k1, (st.h, st.w), s1, p1)
        st.layers += [lc, ReLU()]
        st.c, (st.h, st.w) = w[0], lc.output_size
    else:
        st.conv(w[0], k1, s1, p1)
    st.pool(pk, 2, pp)
    st.conv(w[1], 3 if small else 5, 1, 1 if small else 2, groups=g)
    st.pool(pk, 2, pp)
    st.conv(w[2], 3, 1, 1)
    st.conv(w[3], 3, 1, 1, groups=g)
    st.conv(w[4], 3, 1, 1, groups=g)
    st.pool(pk, 2, pp)
    st.fc(w[5], dropout=dropout)
    st.fc(w[5], dropout=dropout)
    st.fc(check_int(num_classes, "num_classes"), "none")
    return st.network()


def zfnet(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    small: bool = False,
    input_size: int | None = None,
    middle: Sequence[int] | None = None,
    dropout: float = 0.5,
) -> Network:
    """ZF Net (Zeiler & Fergus 2013): AlexNet with a 7x7 stride-2 first layer and a stride-2 CONV2.

    Full size (224x224x3), as the paper's Figure 3: CONV1 96 7x7/2 pad 1 -> 110x110x96 -> MAXPOOL 3/2
    pad 1 55x55 -> CONV2 256 5x5/2 -> 26x26 -> MAXPOOL 13x13 -> CONV3-5 (3x3 pad 1; ``middle`` widths,
    default 384, 384, 256; the paper's larger variant is 512, 1024, 512) -> MAXPOOL 6x6x256 -> FC 4096 ->
    FC 4096 -> FC num_classes: 62,357,608 parameters with the default widths.
    small=True: AlexNet's small configuration with widths 24-64-128-128-64 (the widened middle).

    Returns:
        Network mapping [B, in_channels, S, S] to [B, num_classes].
    """
    size = _size(small, input_size, 224)
    st = _Stack(in_channels, size, "zfnet")
    mid = list(middle) if middle is not None else ([128, 128, 64] if small else [384, 384, 256])
    mid = _ints(mid, 3, "middle")
    fc = 256 if small else 4096
    if small:
        st.conv(24, 3, 1, 1)
        st.pool(3, 2, 1)
        st.conv(64, 3, 1, 1)
    else:
        st.conv(96, 7, 2, 1)
        st.pool(3, 2, 1)
        st.conv(256, 5, 2, 0)
    st.pool(3, 2, 1)
    for c in mid:
        st.conv(c, 3, 1, 1)
    st.pool(3, 2, 1 if small else 0)
    st.fc(fc, dropout=dropout)
    st.fc(fc, dropout=dropout)
    st.fc(check_int(num_classes, "num_classes"), "none")
    return st.network()


_VGG = {
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
}


def _vgg(name: str, num_classes: int, in_channels: int, small: bool, input_size: int | None,
         dropout: float) -> Network:  # fmt: skip
    size = _size(small, input_size, 224)
    st = _Stack(in_channels, size, name)
    for stage in _VGG[name]:
        for c in stage:
            st.conv(c // 8 if small else c, 3, 1, 1)
        st.pool(2, optional=small)  # an 8x8 input has room for three of the five poolings
    fc = 128 if small else 4096
    st.fc(fc, dropout=dropout)
    st.fc(fc, dropout=dropout)
    st.fc(check_int(num_classes, "num_classes"), "none")
    net = st.network()
    vgg_init_(net, linear="kaiming" if small else "torchvision")
    return net


@torch.no_grad()
def vgg_init_(model: nn.Module, linear: str = "torchvision") -> nn.Module:
    """torchvision's VGG initialisation, in place: every Conv2d weight kaiming_normal_ (fan_out, ReLU gain,
    so std sqrt(2 / (out_channels * kh * kw))), every Linear weight normal(0, 0.01), every bias zero.

    Torch's default (kaiming_uniform_ with a = sqrt(5): std 1 / sqrt(3 * fan_in)) shrinks the signal by
    about sqrt(6) per ReLU layer; through the 13 convolutions of VGG-16 without batch normalisation the
    class scores and gradients all but vanish and training stays at chance.

    Args:
        model: any module; its torch.nn.Conv2d and torch.nn.Linear submodules (dlgpu's included) are reset.
        linear: "torchvision" (std 0.01, made for 4096-wide layers) or "kaiming" (kaiming_normal_, fan_in,
            ReLU gain: std sqrt(2 / in_features)). The small configurations use "kaiming": their FC layers
            are 128 wide, so std 0.01 shrinks the signal ~10x per layer and the small VGG-16 reached only
            0.56-0.66 test accuracy on the digits in 10 epochs (0.95 with "kaiming").
    Returns:
        ``model``.
    """
    if linear not in ("torchvision", "kaiming"):
        raise ValueError(f"linear must be 'torchvision' or 'kaiming', got {linear!r}")
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            if linear == "kaiming":
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            else:
                nn.init.normal_(m.weight, 0.0, 0.01)
        else:
            continue
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    return model


def vgg11(num_classes: int = 1000, in_channels: int = 3, *, small: bool = False, input_size: int | None = None,
          dropout: float = 0.5) -> Network:  # fmt: skip
    """VGG-11 (configuration A of Simonyan & Zisserman 2014): 8 3x3 convolutions (pad 1) in 5 stages,
    each closed by 2x2 max pooling, then FC 4096 -> FC 4096 -> FC num_classes.

    Full size (224x224x3 -> 7x7x512 before the FCs): 132,863,336 parameters. small=True: widths / 8
    (8 ... 64), FC 128; on 8x8 inputs the last two poolings are skipped. Initialised as torchvision's
    VGG (``vgg_init_``): without batch normalisation, torch's default initialisation leaves it at chance.
    """
    return _vgg("vgg11", num_classes, in_channels, small, input_size, dropout)


def vgg16(num_classes: int = 1000, in_channels: int = 3, *, small: bool = False, input_size: int | None = None,
          dropout: float = 0.5) -> Network:  # fmt: skip
    """VGG-16 (configuration D): 13 3x3 convolutions (pad 1) in 5 stages with 2x2 max pooling, then
    FC 4096 -> FC 4096 -> FC num_classes: 16 CONV/FC layers, 138,357,544 parameters at 224x224x3.
    small=True and the initialisation as in vgg11.
    """
    return _vgg("vgg16", num_classes, in_channels, small, input_size, dropout)


class InceptionBlock(nn.Module):
    """GoogLeNet's Inception module: four parallel branches concatenated along channels.

        1x1 conv (c1) | 1x1 (c3_reduce) -> 3x3 pad 1 (c3) | 1x1 (c5_reduce) -> 5x5 pad 2 (c5) |
        3x3/1 max pool pad 1 -> 1x1 (pool_proj)

    every conv with a fused ReLU. The 1x1 reductions before the 3x3 and 5x5 convolutions are what keeps
    the parameter count down. Shapes: [N, in_channels, H, W] -> [N, c1 + c3 + c5 + pool_proj, H, W].
    """

    def __init__(self, in_channels: int, c1: int, c3_reduce: int, c3: int, c5_reduce: int, c5: int,
                 pool_proj: int) -> None:  # fmt: skip
        super().__init__()
        for name, v in (("in_channels", in_channels), ("c1", c1), ("c3_reduce", c3_reduce), ("c3", c3),
                        ("c5_reduce", c5_reduce), ("c5", c5), ("pool_proj", pool_proj)):  # fmt: skip
            check_int(v, name)
        self.in_channels = in_channels
        self.out_channels = c1 + c3 + c5 + pool_proj
        self.branch1 = Conv2d(in_channels, c1, 1, activation="relu")
        self.branch3 = nn.Sequential(
            Conv2d(in_channels, c3_reduce, 1, activation="relu"), Conv2d(c3_reduce, c3, 3, padding=1, activation="relu")
        )
        self.branch5 = nn.Sequential(
            Conv2d(in_channels, c5_reduce, 1, activation="relu"), Conv2d(c5_reduce, c5, 5, padding=2, activation="relu")
        )
        self.branch_pool = nn.Sequential(MaxPool2d(3, 1, 1), Conv2d(in_channels, pool_proj, 1, activation="relu"))

    def forward(self, x: Tensor) -> Tensor:
        """[N, C, H, W] -> [N, out_channels, H, W]."""
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], dim=1)


# GoogLeNet's Table 1: (c1, c3_reduce, c3, c5_reduce, c5, pool_proj); "pool" is a 3x3/2 max pooling
_GOOGLENET = [
    (64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64), "pool",
    (192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
    (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128), "pool",
    (256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128),
]  # fmt: skip
_GOOGLENET_SMALL = [
    (16, 16, 24, 4, 8, 8), (24, 24, 32, 4, 12, 12), "pool", (32, 24, 40, 6, 12, 12), (40, 32, 48, 8, 16, 16),
]  # fmt: skip


def googlenet(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    small: bool = True,
    input_size: int | None = None,
    dropout: float = 0.4,
) -> Network:
    """GoogLeNet (Szegedy et al. 2014): a stem, stacked Inception modules, global average pooling, one FC.

    small=True (the default; 32x32 or 8x8 input): stem 3x3 conv 32 (+ 3x3/2 pooling on inputs >= 16),
    four small Inception modules with one 3x3/2 pooling between the pairs, global average pooling,
    dropout, FC. small=False: the paper's Table 1 at 224x224x3 (stem 7x7/2 64 -> pool -> 1x1 64 ->
    3x3 192 -> pool, Inception 3a-5b, 7x7 average pooling to 1x1x1024, dropout 0.4, FC), without LRN
    and the auxiliary classifiers.

    Returns:
        Network mapping [B, in_channels, S, S] to [B, num_classes].
    """
    size = _size(small, input_size, 224)
    st = _Stack(in_channels, size, "googlenet")
    if small:
        st.conv(32, 3, 1, 1)
        if size >= 16:
            st.pool(3, 2, 1)
        table = _GOOGLENET_SMALL
    else:
        st.conv(64, 7, 2, 3)
        st.pool(3, 2, 1)
        st.conv(64, 1)
        st.conv(192, 3, 1, 1)
        st.pool(3, 2, 1)
        table = _GOOGLENET
    for entry in table:
        if entry == "pool":
            st.pool(3, 2, 1)
        else:
            block = InceptionBlock(st.c, *entry)
            st.layers.append(block)
            st.c = block.out_channels
    st.global_avg_pool()
    st.layers += [Flatten(), Dropout(dropout)] if dropout > 0 else [Flatten()]
    st.flat = st.c
    st.fc(check_int(num_classes, "num_classes"), "none")
    return st.network()


class BasicBlock(nn.Module):
    """ResNet's basic block: y = relu(F(x) + shortcut(x)), F = conv3x3(stride) -> BN -> relu -> conv3x3 -> BN.

    The shortcut is the identity when shape is kept, else a projection (1x1 conv with the stride, + BN).
    With batch_norm=False the convolutions carry biases and the first one fuses its ReLU.
    Shapes: [N, in_channels, H, W] -> [N, out_channels, ceil(H/stride), ceil(W/stride)].
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, batch_norm: bool = True) -> None:
        super().__init__()
        check_int(in_channels, "in_channels")
        check_int(out_channels, "out_channels")
        check_int(stride, "stride")
        bn = batch_norm
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride, 1, bias=not bn, activation="none" if bn else "relu")
        self.bn1 = nn.BatchNorm2d(out_channels) if bn else nn.Identity()
        self.relu = ReLU() if bn else nn.Identity()
        self.conv2 = Conv2d(out_channels, out_channels, 3, 1, 1, bias=not bn)
        self.bn2 = nn.BatchNorm2d(out_channels) if bn else nn.Identity()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            proj = Conv2d(in_channels, out_channels, 1, stride, bias=not bn)
            self.shortcut = nn.Sequential(proj, nn.BatchNorm2d(out_channels)) if bn else proj
        self.out_relu = ReLU()

    def forward(self, x: Tensor) -> Tensor:
        """[N, C, H, W] -> [N, out_channels, OH, OW]."""
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))  # N,O,OH,OW
        return self.out_relu(y + self.shortcut(x))


def resnet18(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    small: bool = False,
    input_size: int | None = None,
    batch_norm: bool = True,
) -> Network:
    """ResNet-18 (He et al. 2015): a stem, four stages of two BasicBlocks (64, 128, 256, 512 channels,
    stages 2-4 halving the side through a stride-2 block with a projection shortcut), global average
    pooling, FC.

    Full size (224x224x3): stem 7x7/2 conv 64 -> BN -> ReLU -> 3x3/2 max pooling (56x56), ... 7x7x512 ->
    11,689,512 parameters (BN's affine parameters included; torchvision's count). small=True (32x32 or 8x8):
    stem 3x3 conv 16, no stem pooling, widths 16, 32, 64, 128. BN is torch.nn.BatchNorm2d (see the
    module docstring); batch_norm=False drops it.

    Returns:
        Network mapping [B, in_channels, S, S] to [B, num_classes].
    """
    size = _size(small, input_size, 224)
    st = _Stack(in_channels, size, "resnet18")
    bn = bool(batch_norm)
    if small:
        st.conv(16, 3, 1, 1, act="none" if bn else "relu", bias=not bn)
        widths = (16, 32, 64, 128)
    else:
        st.conv(64, 7, 2, 3, act="none" if bn else "relu", bias=not bn)
        widths = (64, 128, 256, 512)
    if bn:
        st.layers += [nn.BatchNorm2d(st.c), ReLU()]
    if not small:
        st.pool(3, 2, 1)
    for i, w in enumerate(widths):
        for j in range(2):
            stride = 2 if i > 0 and j == 0 else 1
            st.layers.append(BasicBlock(st.c, w, stride, bn))
            st._shrink(3, stride, 1, f"stage {i + 1} block")
            st.c = w
    st.global_avg_pool()
    st.fc(check_int(num_classes, "num_classes"), "none")
    return st.network()
