"""torch.nn.Module layers over dlgpu.functional: drop-ins for their torch counterparts (same
arguments, parameter names, initialisation and ``state_dict``), plus the layers torch lacks
(LocallyConnected2d, the LSTM/GRU variants, MGU), the loss modules, regularisation and the
course's composition layer (``Network`` with its layer table)."""

from .layers import (
    AvgPool2d,
    Conv2d,
    Dropout,
    Flatten,
    LeakyReLU,
    Linear,
    LocallyConnected2d,
    LogSoftmax,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Softmax,
    Softplus,
    Tanh,
)
from .losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HingeLoss,
    L1Loss,
    MSELoss,
    MultiClassHingeLoss,
    MultiClassSquaredHingeLoss,
    PseudoHuberLoss,
    SquaredHingeLoss,
)
from .network import Network, Summary, SummaryRow, summary
from .recurrent import GRU, LSTM, MGU, RNN, GRUCell, LSTMCell, MGUCell, RNNCell
from .regularization import MaxNorm, Regularizer, clip_grad_norm_, clip_grad_value_, l1_penalty, l2_penalty

__all__ = [
    "GRU", "LSTM", "MGU", "RNN", "AvgPool2d", "BCELoss", "BCEWithLogitsLoss", "Conv2d", "CrossEntropyLoss",
    "Dropout", "Flatten", "GRUCell", "HingeLoss", "L1Loss", "LSTMCell", "LeakyReLU", "Linear",
    "LocallyConnected2d", "LogSoftmax", "MGUCell", "MSELoss", "MaxNorm", "MaxPool2d", "MultiClassHingeLoss",
    "MultiClassSquaredHingeLoss", "Network", "PseudoHuberLoss", "RNNCell", "ReLU", "Regularizer", "Sigmoid",
    "Softmax", "Softplus", "SquaredHingeLoss", "Summary", "SummaryRow", "Tanh", "clip_grad_norm_",
    "clip_grad_value_", "l1_penalty", "l2_penalty", "summary",
]  # fmt: skip
