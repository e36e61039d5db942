"""The cupy recurrent loaders' pure pieces, without a GPU and without the kernel emulator of
test_recurrent_loaders.py: the persistent kernel's launch plan, the per-step tiles, the path setting,
and a transcription of recurrent.cuh's warp reduce-scatter."""

from __future__ import annotations

import numpy as np
import pytest

from dlgpu.kernels.cuda import rnn as KR


def test_plan_h100_lstm_example():
    p = KR.persistent_plan(512, 4, 64, "bfloat16", 132, 233472, 1, 232448)
    assert p == KR.PersistentPlan(blocks=128, units=4, batch_rows=64, pitch=512, smem=81920, weight_bytes=16384,
                                  stage_bytes=65536)  # fmt: skip


def test_plan_invariants(gen):
    for _ in range(300):
        h, g, b = int(gen.integers(1, 3000)), int(gen.integers(1, 5)), int(gen.integers(1, 700))
        dt = ("float32", "float16", "bfloat16")[int(gen.integers(0, 3))]
        sms, occ = int(gen.integers(1, 150)), int(gen.integers(0, 4))
        per_sm = int(gen.integers(16, 260)) * 1024
        optin = per_sm - int(gen.integers(1, 3)) * 1024
        p = KR.persistent_plan(h, g, b, dt, sms, per_sm, occ, optin)
        es, pitch = KR.ITEMSIZE[dt], h + h % 2
        if p is None:
            # rejected only when no block fits its weights plus PERSIST_RB rows, or nothing can run
            units = -(-h // min(h, sms))
            need = (g * units + KR.PERSIST_RB) * pitch * es
            assert occ == 0 or need > min(optin, per_sm - 1024)
            continue
        assert p.blocks * p.units >= h > (p.blocks - 1) * p.units and p.blocks <= sms * occ
        assert p.pitch == pitch and p.batch_rows % KR.PERSIST_RB == 0
        assert KR.PERSIST_RB <= p.batch_rows <= -(-b // KR.PERSIST_RB) * KR.PERSIST_RB
        assert p.weight_bytes == g * p.units * pitch * es and p.stage_bytes == p.batch_rows * pitch * es
        assert p.smem == p.weight_bytes + p.stage_bytes <= min(optin, per_sm - 1024)


def test_plan_rejects_and_boundaries():
    assert KR.persistent_plan(2048, 4, 64, "float32", 132, 233472, 1, 232448) is None  # 512 KB per block
    assert KR.persistent_plan(2048, 4, 64, "bfloat16", 132, 233472, 1, 232448) is None  # 256 KB per block
    assert KR.persistent_plan(1536, 4, 64, "bfloat16", 132, 233472, 1, 232448) is not None  # 147 KB
    assert KR.persistent_plan(64, 1, 8, "float32", 132, 233472, 0, 232448) is None  # occupancy 0
    assert KR.persistent_plan(64, 1, 8, "float32", 0, 233472, 1, 232448) is None
    # exactly the weights plus PERSIST_RB rows fit; one byte less does not (A100-like budget)
    h, g = 1000, 4
    units = -(-h // 108)
    need = (g * units + KR.PERSIST_RB) * h * 4
    assert KR.persistent_plan(h, g, 3, "float32", 108, need + 1024, 1).batch_rows == KR.PERSIST_RB
    assert KR.persistent_plan(h, g, 3, "float32", 108, need + 1023, 1) is None


def test_plan_bad_arguments():
    with pytest.raises(ValueError, match="dtype"):
        KR.persistent_plan(8, 1, 1, "float64", 1, 10**6, 1)
    with pytest.raises(ValueError, match="hidden"):
        KR.persistent_plan(0, 1, 1, "float32", 1, 10**6, 1)


def test_step_tiles():
    assert KR.step_bb(8, 8192) == 16 and KR.step_bb(64, 512) == 16 and KR.step_bb(512, 1024) == 64
    assert KR.step_grid(17, 40, 16) == (3, 2)


def test_path_setting():
    with pytest.raises(ValueError, match="path"):
        KR.set_recurrent_path("fast")
    with pytest.raises(RuntimeError), KR.recurrent_path("step"):
        assert KR._path == "step"
        raise RuntimeError
    assert KR._path == "auto"


def test_warp_reduce_scatter_model(gen):
    """recurrent.cuh's warp_reduce_scatter, transcribed (32 lanes as rows): lane l ends with the full sum
    of value (l >> SHIFT) & (V - 1), which persist_matvec's gather (source lane (r G + g) << SHIFT) uses."""
    lanes = np.arange(32)
    for v_count, shift in ((4, 3), (8, 2), (16, 1), (32, 0)):
        vals = gen.standard_normal((32, v_count))
        v, n, o = vals.copy(), v_count, 16
        while n > 1:  # halve_values<N, O>
            up = (lanes & o) != 0
            send = np.where(up[:, None], v[:, : n // 2], v[:, n // 2 : n])
            keep = np.where(up[:, None], v[:, n // 2 : n], v[:, : n // 2])
            v[:, : n // 2] = keep + send[lanes ^ o]
            n, o = n // 2, o // 2
        s = v[:, 0].copy()
        o = 16 // v_count
        while o > 0:
            s, o = s + s[lanes ^ o], o // 2
        np.testing.assert_allclose(s, vals.sum(0)[(lanes >> shift) & (v_count - 1)], rtol=1e-12, atol=1e-12)
        for g in (1, 2, 3, 4):  # the gather: lane r < RB reads row r's G sums
            if KR.PERSIST_RB * g <= v_count and (v_count == 4 or KR.PERSIST_RB * g > v_count // 2):
                for r in range(KR.PERSIST_RB):
                    src = ((r * g + np.arange(g)) << shift) & 31
                    np.testing.assert_allclose(s[src], vals.sum(0)[r * g + np.arange(g)], rtol=1e-12)
