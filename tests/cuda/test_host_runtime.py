"""The host runtime that runs the CUDA C kernels on the CPU (kernels/cuda/_host.py, host/dlgpu_host.h):
that it computes what a device would, and that it reports what a device would hide or hang on.

Each test compiles a small CUDA C source of its own through the same path as the real modules.
tests/cuda/test_hostcheck.py runs this file again under each host sanitizer (hostcheck.py): then
every test here must pass with the kernels instrumented, and the tests of the "sanitizers" section,
skipped otherwise, check that the tool reports the bugs it is for."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from dlgpu import ops
from dlgpu.kernels.cuda import _common, _host
from dlgpu.testing.cases import all_cases, run_case, torch_inputs

pytestmark = pytest.mark.skipif(_host.reason() is not None, reason=str(_host.reason()))

P = _common.ptr
I64 = _common.i64


class SourceModule(_common.Module):
    """A module compiled from a string instead of kernels/cuda/<family>.cu."""

    def __init__(self, family: str, names: tuple[str, ...], text: str, cooperative: bool = False) -> None:
        super().__init__(family, names, cooperative)
        self._text = text

    @property
    def source(self) -> str:
        return self._text


def run(mod, name, grid, block, args, shared_mem=0, reverse=False):
    _host.host_module(mod).launch(name, grid, block, args, shared_mem, reverse)


# ------------------------------------------------------------------ conversions
CONVERT = SourceModule("t_convert", ("cvt",), r"""
#include <cuda_fp16.h>
#include <cuda_bf16.h>
__global__ void cvt(const float* x, const double* d, unsigned short* hf, unsigned short* bf, unsigned short* hd,
                    unsigned short* bd, float* back, long long n) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    hf[i] = __half_as_ushort(__float2half_rn(x[i]));
    bf[i] = __bfloat16_as_ushort(__float2bfloat16_rn(x[i]));
    hd[i] = __half_as_ushort(__double2half(d[i]));
    bd[i] = __bfloat16_as_ushort(__double2bfloat16(d[i]));
    back[2 * i] = __half2float(__ushort_as_half(hf[i]));
    back[2 * i + 1] = __bfloat162float(__ushort_as_bfloat16(bf[i]));
}
""")


# every non-negative bf16 value by its bits, 0x7F80 standing for 2^128 (overflow rounds to inf)
_BF16 = (np.arange(0x7F81, dtype=np.uint32) << 16).view(np.float32).astype(np.float64)
_BF16[0x7F80] = 2.0**128


def _bf16_bits_once(d: float) -> int:
    """The bf16 nearest to d, ties to even, by exact rationals: the oracle for a single rounding."""
    if np.isnan(d):
        return 0x7FC0
    sign = 0x8000 if np.signbit(d) else 0
    a = min(abs(d), 2.0**128)
    hi = int(np.searchsorted(_BF16, a))  # _BF16[hi - 1] < a <= _BF16[hi]
    if _BF16[hi] == a:
        return sign | hi
    lo_err, hi_err = Fraction(a) - Fraction(_BF16[hi - 1]), Fraction(_BF16[hi]) - Fraction(a)
    pick = hi - 1 if lo_err < hi_err or (lo_err == hi_err and (hi - 1) % 2 == 0) else hi
    return sign | pick


def test_half_and_bfloat16_conversions_round_as_the_device(gen):
    edges = [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 65504.0, 65520.0, 65519.99, 6e-8, 3e-8, 2.9e-8,
             1 + 2**-11, 1 + 3 * 2**-11, 1 + 2**-8, 1 + 3 * 2**-8, 3.4e38, 1e-40, -1e-45]  # fmt: skip
    # ties of fp16 (bf16) nudged by far less than float32 resolves: rounding twice goes the wrong way
    half_ties = 1 + (2 * gen.integers(0, 2**10, 200) + 1) * 2.0**-11 + gen.choice([-1, 1], 200) * 2.0**-40
    bf16_ties = 1 + (2 * gen.integers(0, 2**7, 200) + 1) * 2.0**-8 + gen.choice([-1, 1], 200) * 2.0**-30
    d = np.concatenate([edges, gen.standard_normal(500) * 10.0 ** gen.integers(-8, 6, 500), half_ties, bf16_ties])
    x = d.astype(np.float32)
    n = len(d)
    hf, bf, hd, bd = (np.empty(n, np.uint16) for _ in range(4))
    back = np.empty(2 * n, np.float32)
    run(CONVERT, "cvt", (_common.cdiv(n, 256),), (256,), (P(x), P(d), P(hf), P(bf), P(hd), P(bd), P(back), I64(n)))
    nan = np.isnan(d)  # a NaN's payload is not specified: NaN in, NaN out

    def same(got, want, exp, mant):
        assert ((got[nan] >> mant) & exp == exp).all() and (got[nan] & ((1 << mant) - 1)).all()
        np.testing.assert_array_equal(got[~nan], np.asarray(want)[~nan])

    with np.errstate(over="ignore"):  # inf is the right answer past the largest finite half
        want_h, want_hd, back_h = (x.astype(np.float16), d.astype(np.float16), x.astype(np.float16).astype(np.float32))
    same(hf, want_h.view(np.uint16), 0x1F, 10)
    same(bf, torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16), 0xFF, 7)
    same(hd, want_hd.view(np.uint16), 0x1F, 10)  # numpy: double -> half, rounded once
    same(bd, [_bf16_bits_once(v) for v in d], 0xFF, 7)
    np.testing.assert_array_equal(back[0::2], back_h)
    np.testing.assert_array_equal(back[1::2], torch.from_numpy(x).to(torch.bfloat16).float().numpy())


# ------------------------------------------------------------------ barriers and shared memory
SYNC = SourceModule("t_sync", ("reverse_in_block", "no_barrier", "split_warp", "grid_barrier", "overrun",
                               "warp_ops", "atomics"), r"""
#include <cooperative_groups.h>
__global__ void reverse_in_block(const float* x, float* y) {
    __shared__ float s[256];
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    s[threadIdx.x] = x[i];
    __syncthreads();
    y[i] = s[blockDim.x - 1 - threadIdx.x];
}
__global__ void no_barrier(const float* x, float* y) {  // the race: no __syncthreads
    __shared__ float s[256];
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    s[threadIdx.x] = x[i];
    y[i] = s[blockDim.x - 1 - threadIdx.x];
}
__global__ void split_warp(float* y) {  // half a warp shuffles while the rest waits at __syncthreads
    float v = threadIdx.x;
    if (threadIdx.x < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
    __syncthreads();
    y[threadIdx.x] = v;
}
__global__ void grid_barrier(int* flag, int* seen) {
    __shared__ int mine;
    if (threadIdx.x == 0) { mine = blockIdx.x; flag[blockIdx.x] = blockIdx.x + 1; }
    cooperative_groups::this_grid().sync();
    __syncthreads();
    if (threadIdx.x == 0) seen[blockIdx.x] = flag[(blockIdx.x + 1) % gridDim.x] * 1000 + mine;
}
__global__ void overrun(long long n) {
    extern __shared__ __align__(16) unsigned char dyn[];
    if (threadIdx.x == 0) dyn[n] = 1;
}
__global__ void warp_ops(const float* x, float* sums, float* bcast) {
    float v = x[threadIdx.x];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    sums[threadIdx.x] = v;
    bcast[threadIdx.x] = __shfl_sync(0xffffffffu, x[threadIdx.x], 7);
}
__global__ void atomics(int* count, float* total) {
    atomicAdd(count, 1);
    atomicAdd(total, 0.5f);
}
""")
COOP = SourceModule("t_coop", ("grid_barrier",), SYNC.source, cooperative=True)


def test_shared_memory_is_per_block_and_barriers_order_it(gen):
    x = gen.standard_normal(3 * 256).astype(np.float32)
    y = np.full_like(x, np.nan)
    for reverse in (False, True):
        run(SYNC, "reverse_in_block", (3,), (256,), (P(x), P(y)), reverse=reverse)
        np.testing.assert_array_equal(y, x.reshape(3, 256)[:, ::-1].reshape(-1))


@pytest.mark.parametrize("reverse", [False, True])
def test_a_missing_barrier_reads_poisoned_shared_memory(gen, reverse):
    if _host.sanitizer() == "racecheck":
        pytest.skip("racecheck reports this race itself (test_racecheck_reports_a_missing_barrier)")
    x = gen.standard_normal(256).astype(np.float32)
    y = np.zeros_like(x)
    run(SYNC, "no_barrier", (1,), (256,), (P(x), P(y)), reverse=reverse)
    assert np.isnan(y).sum() == 128  # the half that ran before its partner wrote: 0xFFFFFFFF


def test_a_barrier_some_threads_cannot_reach_is_an_error():
    y = np.zeros(256, np.float32)
    with pytest.raises(RuntimeError, match="barrier deadlock.*warp shuffle.*__syncthreads"):
        run(SYNC, "split_warp", (1,), (256,), (P(y),))


def test_grid_sync_runs_every_block_together_and_only_in_a_cooperative_launch():
    flag, seen = np.zeros(5, np.int32), np.zeros(5, np.int32)
    run(COOP, "grid_barrier", (5,), (64,), (P(flag), P(seen)))
    np.testing.assert_array_equal(seen, [(b + 1) % 5 * 1000 + 1000 + b for b in range(5)])
    with pytest.raises(RuntimeError, match="not cooperative"):
        run(SYNC, "grid_barrier", (5,), (64,), (P(flag), P(seen)))


def test_writes_past_dynamic_shared_memory_are_reported():
    run(SYNC, "overrun", (2,), (32,), (I64(99),), shared_mem=100)
    with pytest.raises(RuntimeError, match="past the 100 bytes|AddressSanitizer: heap-buffer-overflow"):
        run(SYNC, "overrun", (2,), (32,), (I64(100),), shared_mem=100)


def test_warp_shuffles_and_atomics(gen):
    x = gen.standard_normal(128).astype(np.float32)
    sums, bcast = np.zeros_like(x), np.zeros_like(x)
    run(SYNC, "warp_ops", (1,), (128,), (P(x), P(sums), P(bcast)))
    np.testing.assert_allclose(sums, np.repeat(x.reshape(4, 32).sum(1), 32), rtol=1e-5)
    np.testing.assert_array_equal(bcast, np.repeat(x.reshape(4, 32)[:, 7], 32))
    count, total = np.zeros(1, np.int32), np.zeros(1, np.float32)
    run(SYNC, "atomics", (7,), (96,), (P(count), P(total)))
    assert count[0] == 7 * 96 and total[0] == 7 * 96 * 0.5


def test_arguments_are_checked_against_the_c_signature():
    with pytest.raises(RuntimeError, match="argument 0 is int32 but the C parameter is i8"):
        run(SYNC, "overrun", (1,), (32,), (np.int32(3),))
    with pytest.raises(RuntimeError, match="1 arguments for 2 parameters"):
        run(SYNC, "reverse_in_block", (1,), (32,), (P(np.zeros(32, np.float32)),))


# ------------------------------------------------------------------ WMMA
WMMA = SourceModule("t_wmma", ("mm<__half>", "mm<__nv_bfloat16>"), r"""
#include <mma.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
template <typename T> __global__ void mm(const T* a, const T* b, float* c) {  // c = a @ b + c, b column-major
    using namespace nvcuda;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> fc;
    wmma::load_matrix_sync(fa, a, 16);
    wmma::load_matrix_sync(fb, b, 16);
    wmma::load_matrix_sync(fc, c, 16, wmma::mem_row_major);
    wmma::mma_sync(fc, fa, fb, fc);
    wmma::store_matrix_sync(c, fc, 16, wmma::mem_row_major);
}
""")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_wmma_tile_product(gen, dtype):
    a = torch.from_numpy(gen.standard_normal((16, 16))).to(dtype)
    b = torch.from_numpy(gen.standard_normal((16, 16))).to(dtype)
    bt = b.t().contiguous()  # column-major b
    c = gen.standard_normal((16, 16)).astype(np.float32)
    want = a.double().numpy() @ b.double().numpy() + c
    name = "mm<__half>" if dtype == torch.float16 else "mm<__nv_bfloat16>"
    run(WMMA, name, (1,), (32,), (np.uint64(a.data_ptr()), np.uint64(bt.data_ptr()), P(c)))
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ dispatch and the real kernels, reversed
def test_the_cupy_backend_takes_cpu_arrays_only_inside_a_host_run():
    x = torch.tensor([-1.0, 2.0])
    with pytest.raises(ops.BackendError, match="cupy"):
        ops.call("relu_forward", x, backend="cupy")
    with _host.host_run() as log:
        assert ops.backends()["cupy"].available
        torch.testing.assert_close(ops.call("relu_forward", x, backend="cupy"), torch.tensor([0.0, 2.0]))
    assert [e.name for e in log] == ["act_fwd_kernel<float, 1>"]
    with _common.dry_run():  # a dry run only records: nothing would compute the outputs
        assert not ops.backends()["cupy"].available



FAMILIES = ("activations", "linear", "conv", "locally_connected", "pooling", "dropout", "losses", "regularizers")
CASES = {c.name: c for c in all_cases(seed=5, size="quick") if ops.OPS[c.forward] in FAMILIES}


def test_every_op_with_threads_in_reverse_order():
    """A race on one side of a missing barrier (a thread reading shared memory a later thread writes)
    shows in one of the two orders; conftest's host target runs the forward order."""
    bad = []
    with _host.host_run(reverse=True):
        for name, case in sorted(CASES.items()):
            res = run_case(case, "cupy", "float32", seed=5, convert=torch_inputs("float32", "cpu"))
            if res.error or not res.ok or not res.reports:
                bad.append(f"{name}: {res.error or [str(r) for r in res.reports if not r.ok]}")
    assert not bad, "\n".join(bad)


# ------------------------------------------------------------------ sanitizers (run by test_hostcheck.py)
# One kernel per bug: a sanitizer reports a given pair of source lines once per process.
BUGS = SourceModule("t_bugs", ("read_past", "write_past", "shared_past", "local_past", "no_barrier_rc",
                               "blocks_overlap", "blocks_overlap_after_barrier", "other_block_unsynced"), r"""
__global__ void read_past(const float* x, float* y, long long n) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) y[i % n] = x[i];  // i == n: one element past the end
}
__global__ void write_past(float* y, long long n) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) y[i] = 1.f;
}
__global__ void shared_past(float* y) {
    __shared__ float s[32];
    s[threadIdx.x] = threadIdx.x;
    __syncthreads();
    y[threadIdx.x] = s[threadIdx.x + 1];  // lane 31 reads s[32]
}
__global__ void local_past(float* y, int k) {
    float a[4] = {1.f, 2.f, 3.f, 4.f};
    y[threadIdx.x] = a[k + threadIdx.x % 2];  // k = 3: every other thread reads a[4]
}
__global__ void no_barrier_rc(const float* x, float* y) {
    __shared__ float s[64];
    s[threadIdx.x] = x[threadIdx.x];
    y[threadIdx.x] = s[63 - threadIdx.x];  // the partner's slot, with no __syncthreads between
}
__global__ void blocks_overlap(float* y) {  // blockIdx forgotten: every block writes the same slots
    y[threadIdx.x] = threadIdx.x;
}
__global__ void blocks_overlap_after_barrier(float* y) {  // a block's barrier orders nothing in the next
    __syncthreads();
    y[threadIdx.x] = threadIdx.x;
}
__global__ void other_block_unsynced(int* flag, int* seen) {  // grid.sync forgotten
    if (threadIdx.x == 0) flag[blockIdx.x] = 1;
    __syncthreads();
    if (threadIdx.x == 0) seen[blockIdx.x] = flag[(blockIdx.x + 1) % gridDim.x];
}
""")
BUGS_COOP = SourceModule("t_bugs_coop", ("other_block_unsynced",), BUGS.source, cooperative=True)


def only_under(tool: str):
    return pytest.mark.skipif(
        _host.sanitizer() != tool,
        reason=f"runs under python -m dlgpu.kernels.cuda.hostcheck --tool {tool} (tests/cuda/test_hostcheck.py)",
    )


def reported(what: str):
    return pytest.raises(RuntimeError, match=f"(?s)(memcheck|racecheck) reported:.*{what}")


@only_under("memcheck")
def test_memcheck_reports_a_global_read_and_write_past_the_end():
    x, y = np.ones(100, np.float32), np.zeros(100, np.float32)
    with reported("heap-buffer-overflow.*READ of size 4.*read_past"):
        run(BUGS, "read_past", (1,), (128,), (P(x), P(y), I64(100)))
    t = torch.zeros(100)  # torch's CPU allocator: checked as well
    with reported("heap-buffer-overflow.*WRITE of size 4.*write_past"):
        run(BUGS, "write_past", (1,), (128,), (np.uint64(t.data_ptr()), I64(100)))


@only_under("memcheck")
def test_memcheck_reports_shared_and_local_arrays_read_past_the_end():
    y = np.zeros(32, np.float32)
    with reported("heap-buffer-overflow.*READ of size 4.*shared_past"):
        run(BUGS, "shared_past", (1,), (32,), (P(y),))
    with reported("stack-buffer-overflow.*READ of size 4.*local_past"):
        run(BUGS, "local_past", (1,), (32,), (P(y), np.int32(3)))


@only_under("racecheck")
def test_racecheck_reports_a_missing_barrier(gen):
    x, y = gen.standard_normal(64).astype(np.float32), np.zeros(64, np.float32)
    with reported("data race.*no_barrier_rc.*block \\(0,0,0\\) thread"):
        run(BUGS, "no_barrier_rc", (1,), (64,), (P(x), P(y)))


@only_under("racecheck")
def test_racecheck_reports_blocks_writing_the_same_address():
    y = np.zeros(32, np.float32)
    with reported("data race.*Write of size 4.*blocks_overlap"):
        run(BUGS, "blocks_overlap", (2,), (32,), (P(y),))
    y2 = np.zeros(32, np.float32)  # a race on an address already reported is not reported again
    with reported("data race.*Write of size 4.*blocks_overlap_after_barrier"):
        run(BUGS, "blocks_overlap_after_barrier", (2,), (32,), (P(y2),))


@only_under("racecheck")
def test_racecheck_reports_a_read_of_another_blocks_write_without_grid_sync():
    flag, seen = np.zeros(3, np.int32), np.zeros(3, np.int32)
    with reported("data race.*other_block_unsynced"):
        run(BUGS_COOP, "other_block_unsynced", (3,), (32,), (P(flag), P(seen)))
