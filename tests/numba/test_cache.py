"""The numba disk cache of dlgpu's kernels is keyed on the whole kernels/numba folder, so an edit
to a helper file (inlined into kernels of other files) cannot leave stale machine code behind."""

from __future__ import annotations

from numba import njit

from dlgpu.kernels.numba import _common, lstm


def test_locators_are_installed():
    assert _common.CACHE_STAMPED, "numba's caching internals changed: kernels/numba/_common.py needs a look"


def test_a_kernel_uses_the_folder_stamped_locator(monkeypatch):
    locator = lstm._lstm_fwd_kernel._cache._impl.locator
    assert getattr(type(locator), "_dlgpu", False), type(locator).__name__
    stamp = locator.get_source_stamp()
    assert stamp[1] == _common._FOLDER_STAMP
    monkeypatch.setattr(_common, "_FOLDER_STAMP", "an edit to _math.py")  # what a helper edit does
    assert locator.get_source_stamp() != stamp


def test_the_stamp_covers_the_helper_files(tmp_path, monkeypatch):
    before = _common._folder_stamp()
    (tmp_path / "_math.py").write_text("# edited\n")
    monkeypatch.setattr(_common, "_HERE", str(tmp_path))
    assert _common._folder_stamp() != before


def test_other_code_keeps_numba_s_own_locator():
    @njit(cache=True)
    def twice(x):
        return 2 * x

    assert twice(3) == 6
    assert not getattr(type(twice._cache._impl.locator), "_dlgpu", False)


def test_a_size_switched_kernel_keeps_two_cache_entries_and_picks_by_size(monkeypatch):
    import numpy as np

    from dlgpu.kernels.numba import activations

    k = activations._sigmoid_fwd_kernel
    assert isinstance(k, _common.ParallelKernel) and k.__name__ == "_sigmoid_fwd_kernel"
    assert k.parallel.targetoptions.get("parallel") and not k.serial.targetoptions.get("parallel")
    names = {d._cache._impl._filename_base for d in (k.parallel, k.serial)}
    assert len(names) == 2, names  # one function, two compilations: two cache files
    ran = []
    monkeypatch.setattr(k, "serial", lambda *a: ran.append("serial"))
    monkeypatch.setattr(k, "parallel", lambda *a: ran.append("parallel"))
    small, big = np.ones(k.serial_below - 1, np.float32), np.ones(k.serial_below, np.float32)
    k(small, small)
    k(big, np.empty_like(big))
    with _common.parallel_threshold(0):
        k(small, small)
    k(small, small)  # the override ends with the block
    assert ran == ["serial", "parallel", "parallel", "serial"]
