"""Model families assembled from dlgpu.nn: MLPs, CNNs (convnet pattern, LeNet-5, AlexNet, ZF Net,
VGG, GoogLeNet/Inception, ResNet-18), recurrent classifiers/taggers/seq2seq for every cell type,
autoencoders (linear = PCA, deep, sparse, denoising, variational) and a GAN; the digits data,
synthetic sequence tasks and small training loops; ``registry`` names them all for the profiler."""

from . import autoencoders, cnn, registry
from .autoencoders import GAN, VAE, DeepAutoencoder, DenoisingAutoencoder, LinearAutoencoder, SparseAutoencoder
from .cnn import BasicBlock, InceptionBlock, alexnet, convnet, googlenet, lenet5, mlp, resnet18, vgg11, vgg16, zfnet
from .data import Digits, load_digits
from .recurrent import CELLS, Seq2Seq, SequenceClassifier, SequenceTagger, make_recurrent
from .registry import Example, example, names
from .tasks import TASKS, SequenceTask, adding_problem, copy_task, first_token_task, make_task, train_sequence
from .train import evaluate, fit, fit_autoencoder, reconstruction_error

__all__ = [
    "CELLS", "GAN", "TASKS", "VAE", "BasicBlock", "DeepAutoencoder", "DenoisingAutoencoder", "Digits", "Example",
    "InceptionBlock", "LinearAutoencoder", "Seq2Seq", "SequenceClassifier", "SequenceTagger", "SequenceTask",
    "SparseAutoencoder", "adding_problem", "alexnet", "autoencoders", "cnn", "convnet", "copy_task", "evaluate",
    "example", "first_token_task", "fit", "fit_autoencoder", "googlenet", "lenet5", "load_digits", "make_recurrent",
    "make_task", "mlp", "names", "reconstruction_error", "registry", "resnet18", "train_sequence", "vgg11", "vgg16",
    "zfnet",
]  # fmt: skip
