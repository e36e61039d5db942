"""Compile every kernels/cuda module with NVRTC the way CuPy's RawModule does, without a GPU.

The nvcc test (tests/cuda/test_compile.py) proves the sources are valid CUDA C++; this proves the
runtime compiler CuPy uses accepts them too: the same expanded source, name expressions and options
(dlgpu's NVRTC_OPTIONS, CuPy's -ftz=true, --device-c for the cooperative modules), the toolkit's
headers (cooperative_groups.h, cuda_bf16.h, mma.h) on the include path, and every name expression
resolved to a lowered symbol. CuPy then links a cooperative module's relocatable output against
libcudadevrt with the driver (cuLink*); here nvJitLink, the same link as a host library, links
NVRTC's PTX and its cubin each with the toolkit's libcudadevrt.a, and every lowered name must be a
function of the linked image. NVRTC and nvJitLink are host-only, so no device is needed.

    python ci/nvrtc_check.py [--nvrtc PATH/libnvrtc.so.13] [--nvjitlink PATH/libnvJitLink.so.13]
                             [--include DIR] [--arch sm_90]

libnvrtc comes with the CUDA toolkit or the ``nvidia-cuda-nvrtc`` wheel, libnvJitLink with the
toolkit or the ``nvidia-nvjitlink`` wheel (without it the link step is skipped and says so);
--include defaults to the toolkit's include folder ($CUDA_HOME, /usr/local/cuda), plus its cccl/
subfolder where it has one. Exit status 0 when every module compiles (and links).
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import importlib
import os
import sys
import time

from dlgpu.kernels.cuda._resources import cu_files, elf_functions, find_nvcc

CUPY_OPTIONS = ("-ftz=true",)  # cupy/cuda/compiler.py adds it to every compile
COOP_OPTIONS = ("--device-c",)  # and this where enable_cooperative_groups=True (then links cudadevrt)


def _toolkit_roots() -> list[str]:
    """Where a CUDA toolkit may be: $CUDA_HOME, $CUDA_PATH, /usr/local/cuda, and the real nvcc's parent
    (``find_nvcc``, through any wrapper symlink)."""
    nvcc = find_nvcc()
    roots = [os.environ.get("CUDA_HOME", ""), os.environ.get("CUDA_PATH", ""), "/usr/local/cuda"]
    if nvcc:
        roots.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    return [r for r in roots if r]


def _find_lib(stem: str) -> str | None:
    """lib<stem>.so from a CUDA toolkit or an installed nvidia-* wheel."""
    pats = [os.path.join(r, d, f"lib{stem}.so*") for r in _toolkit_roots() for d in ("lib64", "lib")]
    try:
        import nvidia  # the namespace package of the nvidia-cuda-nvrtc / nvidia-nvjitlink wheels

        pats += [os.path.join(p, "*", "lib", f"lib{stem}.so*") for p in nvidia.__path__]
    except ImportError:
        pass
    for pat in pats:
        hits = sorted(h for h in glob.glob(pat) if "builtins" not in h and ".alt." not in h)
        if hits:
            return hits[0]
    return None


def find_nvrtc() -> str | None:
    """libnvrtc from a CUDA toolkit or an installed nvidia-cuda-nvrtc wheel."""
    return _find_lib("nvrtc")


def find_nvjitlink() -> str | None:
    """libnvJitLink from a CUDA toolkit or an installed nvidia-nvjitlink wheel."""
    return _find_lib("nvJitLink")


def find_cudadevrt() -> str | None:
    """The toolkit's libcudadevrt.a (what CuPy links cooperative modules against)."""
    for root in _toolkit_roots():
        for d in ("lib64", "lib", "targets/x86_64-linux/lib", "targets/sbsa-linux/lib"):
            if os.path.isfile(os.path.join(root, d, "libcudadevrt.a")):
                return os.path.join(root, d, "libcudadevrt.a")
    return None


def find_include() -> str | None:
    """The toolkit's include folder (the first root with cuda_fp16.h)."""
    for root in _toolkit_roots():
        if os.path.isfile(os.path.join(root, "include", "cuda_fp16.h")):
            return os.path.join(root, "include")
    return None


class Nvrtc:
    """The few NVRTC entry points a RawModule compile uses."""

    def __init__(self, path: str) -> None:
        # NVRTC dlopens its builtins library by name; a wheel's lib folder is not on the loader's
        # path, so load it first from beside libnvrtc
        for b in sorted(glob.glob(os.path.join(os.path.dirname(path), "libnvrtc-builtins.so*"))):
            if ".alt." not in b:
                ctypes.CDLL(b, mode=ctypes.RTLD_GLOBAL)
        self.lib = ctypes.CDLL(path)
        major, minor = ctypes.c_int(), ctypes.c_int()
        self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
        self.version = f"{major.value}.{minor.value}"
        self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p

    def _ok(self, rc: int, what: str) -> None:
        if rc:
            raise RuntimeError(f"{what}: {self.lib.nvrtcGetErrorString(rc).decode()}")

    def compile(
        self, source: str, name: str, options: list[str], names: list[str]
    ) -> tuple[dict[str, bytes], dict[str, str], str]:
        """({"cubin": bytes, "ptx": bytes}, {name expression: lowered name}, log); RuntimeError with the
        log on failure."""
        prog = ctypes.c_void_p()
        self._ok(self.lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None),
                 "nvrtcCreateProgram")  # fmt: skip
        try:
            for n in names:
                self._ok(self.lib.nvrtcAddNameExpression(prog, n.encode()), f"nvrtcAddNameExpression({n})")
            opts = (ctypes.c_char_p * len(options))(*(o.encode() for o in options))
            rc = self.lib.nvrtcCompileProgram(prog, len(options), opts)
            size = ctypes.c_size_t()
            self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            buf = ctypes.create_string_buffer(size.value)
            self.lib.nvrtcGetProgramLog(prog, buf)
            log = buf.value.decode(errors="replace")
            if rc:
                raise RuntimeError(f"nvrtcCompileProgram: {self.lib.nvrtcGetErrorString(rc).decode()}\n{log}")
            lowered = {}
            for n in names:
                out = ctypes.c_char_p()
                self._ok(self.lib.nvrtcGetLoweredName(prog, n.encode(), ctypes.byref(out)), f"lowered name of {n}")
                lowered[n] = out.value.decode()
            images = {}
            for kind, get_size, get in (("cubin", "nvrtcGetCUBINSize", "nvrtcGetCUBIN"),
                                        ("ptx", "nvrtcGetPTXSize", "nvrtcGetPTX")):  # fmt: skip
                self._ok(getattr(self.lib, get_size)(prog, ctypes.byref(size)), get_size)
                image = ctypes.create_string_buffer(size.value)
                self._ok(getattr(self.lib, get)(prog, image), get)
                images[kind] = image.raw
            return images, lowered, log
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(prog))


class NvJitLink:
    """nvJitLink: the driver's link step (cuLink*, which CuPy calls) as a host library."""

    INPUT = {"cubin": 1, "ptx": 2, "library": 6}  # nvJitLinkInputType

    def __init__(self, path: str) -> None:
        self.lib = ctypes.CDLL(path)
        major, minor = ctypes.c_uint(), ctypes.c_uint()
        self.lib.nvJitLinkVersion(ctypes.byref(major), ctypes.byref(minor))
        self.version = f"{major.value}.{minor.value}"

    def _log(self, handle: ctypes.c_void_p) -> str:
        size = ctypes.c_size_t()
        self.lib.nvJitLinkGetErrorLogSize(handle, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value + 1)
        self.lib.nvJitLinkGetErrorLog(handle, buf)
        return buf.value.decode(errors="replace")

    def link(self, image: bytes, kind: str, library: str, arch: str) -> bytes:
        """``image`` (relocatable ``kind``: cubin or ptx) linked with the static ``library``; the linked
        cubin. RuntimeError with the linker's log on failure."""
        handle = ctypes.c_void_p()
        opts = (ctypes.c_char_p * 1)(f"-arch={arch}".encode())
        if self.lib.nvJitLinkCreate(ctypes.byref(handle), 1, opts):
            raise RuntimeError("nvJitLinkCreate failed")
        try:
            steps = (("add " + kind, lambda: self.lib.nvJitLinkAddData(handle, self.INPUT[kind], image,
                                                                        ctypes.c_size_t(len(image)), b"cupy.ptx")),
                     ("add " + os.path.basename(library),
                      lambda: self.lib.nvJitLinkAddFile(handle, self.INPUT["library"], library.encode())),
                     ("complete", lambda: self.lib.nvJitLinkComplete(handle)))  # fmt: skip
            for what, step in steps:
                rc = step()
                if rc:
                    raise RuntimeError(f"nvJitLink {what}: error {rc}\n{self._log(handle)}")
            size = ctypes.c_size_t()
            self.lib.nvJitLinkGetLinkedCubinSize(handle, ctypes.byref(size))
            out = ctypes.create_string_buffer(size.value)
            self.lib.nvJitLinkGetLinkedCubin(handle, out)
            return out.raw
        finally:
            self.lib.nvJitLinkDestroy(ctypes.byref(handle))


def modules() -> list[tuple[str, object]]:
    """(label, Module) for every loader's MODULE and COOP_MODULE."""
    out = []
    for path in cu_files():
        try:
            mod = importlib.import_module(f"dlgpu.kernels.cuda.{path.stem}")
        except ModuleNotFoundError:
            continue
        for attr in ("MODULE", "COOP_MODULE"):
            m = getattr(mod, attr, None)
            if m is not None:
                out.append((f"{path.stem}{' (cooperative)' if m.cooperative else ''}", m))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nvrtc", help="path of libnvrtc.so (default: searched)")
    p.add_argument("--nvjitlink", help="path of libnvJitLink.so (default: searched)")
    p.add_argument("--include", help="CUDA include folder (default: the one beside nvcc)")
    p.add_argument("--arch", default="sm_90")
    a = p.parse_args(argv)
    path = a.nvrtc or find_nvrtc()
    if not path:
        print("libnvrtc not found: pass --nvrtc, or pip install nvidia-cuda-nvrtc", file=sys.stderr)
        return 2
    include = a.include or find_include()
    if not include:
        print("CUDA headers not found: pass --include DIR (the folder with cuda_fp16.h)", file=sys.stderr)
        return 2
    # CuPy puts its bundled CCCL (libcu++, which cooperative_groups.h includes) first on the path;
    # the toolkit's own copy (CUDA 13: include/cccl) stands in for it here
    incs = [include, *(d for d in (os.path.join(include, "cccl"),) if os.path.isdir(d))]
    nv = Nvrtc(path)
    print(f"NVRTC {nv.version} ({path}), headers {', '.join(incs)}, {a.arch}")
    jl_path, devrt = a.nvjitlink or find_nvjitlink(), find_cudadevrt()
    linker = NvJitLink(jl_path) if jl_path and devrt else None
    if linker:
        print(f"nvJitLink {linker.version} ({jl_path}), {devrt}")
    else:
        print("link step skipped: " + ("libcudadevrt.a not found" if jl_path else
                                       "libnvJitLink not found (pip install nvidia-nvjitlink, or --nvjitlink)"))
    failed = 0
    for label, m in modules():
        opts = [*m.options, *CUPY_OPTIONS, *(COOP_OPTIONS if m.cooperative else ()),
                f"--gpu-architecture={a.arch}", *(f"-I{d}" for d in incs)]  # fmt: skip
        t0 = time.perf_counter()
        try:
            images, lowered, _ = nv.compile(m.source, f"{m.family}.cu", opts, list(m.name_expressions))
            linked = ""
            if m.cooperative and linker:
                for kind in ("ptx", "cubin"):  # CuPy hands the driver one or the other, by version
                    funcs = elf_functions(linker.link(images[kind], kind, devrt, a.arch))
                    missing = sorted(set(lowered.values()) - funcs)
                    if missing:
                        raise RuntimeError(f"linked {kind} lacks {len(missing)} kernels, e.g. {missing[0]}")
                linked = ", ptx and cubin linked with libcudadevrt"
        except RuntimeError as e:
            failed += 1
            print(f"FAIL {label}: {str(e)[-3000:]}")
            continue
        print(f"ok   {label:28s} {len(lowered):3d} kernels, cubin {len(images['cubin']) / 1024:7.1f} KiB, "
              f"{time.perf_counter() - t0:5.1f} s{linked}")  # fmt: skip
    ok = "all modules compile with NVRTC" + (", the cooperative ones link" if linker else "")
    print(ok if not failed else f"{failed} module(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
