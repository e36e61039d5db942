"""dlgpu bench / profile / kernels: verify, time and explain every kernel.

    dlgpu bench [--ops ...] [--backends ...] [--dtype ...] [--quick | --sizes tiny|quick|paper|large]
                [--csv FILE] [--json FILE] [--plot FILE.png]
    dlgpu profile MODEL [--steps N] [--batch-size B] [--backend B] [--trace FILE.json]
    dlgpu kernels [--files ...] [--arch sm_90] [--no-triton]

Modules: ``costs`` (the flop and byte formula of every op family), ``peak`` (copy bandwidth and
matmul rate measured at start-up), ``timing`` (CUDA events through ``triton.testing.do_bench``;
interleaved CPU medians), ``competitors`` (torch eager for every op), ``runner`` (check, then
time; the terminal table), ``report`` (CSV, JSON, markdown, PNG), ``profile`` (torch.profiler
over training steps of a registered model), ``resources`` (registers, shared memory, spills),
``cli`` (the subcommands' ``register(subparsers)``).
"""
