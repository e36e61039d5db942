"""The NumPy reference: the oracle every backend is checked against.

One module per op family, forward and backward, computing in the input's dtype
(tests use float64). Pure NumPy: nothing under this package imports torch, numba,
triton or cupy. Conventions: images NCHW; sequences time-major (T, B, F); recurrent
weights in torch.nn's shapes and gate orders (LSTM i, f, g, o; GRU r, z, n).
"""
