"""dlgpu ops for PyTorch: ``torch.library`` custom ops with autograd and fake (meta) kernels,
so they run under ``torch.compile(fullgraph=True)``. Names and signatures follow
``torch.nn.functional`` where torch has the op; the backend is chosen by ``dlgpu.ops``'s dispatch
(numba for CPU tensors, triton for CUDA tensors, unless told otherwise).
"""

from .activations import leaky_relu, log_softmax, relu, sigmoid, softmax, softplus, tanh
from .conv import conv2d, locally_connected2d
from .dropout import dropout
from .linear import linear
from .losses import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    hinge_loss,
    l1_loss,
    mse_loss,
    multiclass_hinge_loss,
    multiclass_squared_hinge_loss,
    pseudo_huber_loss,
    squared_hinge_loss,
)
from .pooling import avg_pool2d, max_pool2d
from .recurrent import gru, lstm, mgu, rnn
from .regularizers import clip_grad_norm_, clip_grad_value_, l1_penalty, l2_penalty, max_norm_

__all__ = [
    "avg_pool2d",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "clip_grad_norm_",
    "clip_grad_value_",
    "conv2d",
    "cross_entropy",
    "dropout",
    "gru",
    "hinge_loss",
    "l1_loss",
    "l1_penalty",
    "l2_penalty",
    "leaky_relu",
    "linear",
    "locally_connected2d",
    "log_softmax",
    "lstm",
    "max_norm_",
    "max_pool2d",
    "mgu",
    "mse_loss",
    "multiclass_hinge_loss",
    "multiclass_squared_hinge_loss",
    "pseudo_huber_loss",
    "relu",
    "rnn",
    "sigmoid",
    "softmax",
    "softplus",
    "squared_hinge_loss",
    "tanh",
]
