#!/usr/bin/env python3
"""A kernel's machine code (SASS) without a GPU: the kernel module compiled by NVRTC as the CUDA
build compiles it at run time (`crates/bakallm-kernels/src/cuda/*.cu` in `nvrtc.rs`'s order),
disassembled by cuobjdump. Shows what ptxas made of a change: spills (STL/LDL) and where they
are loaded, shared-memory atomics as compare-and-swap loops (ATOMS.CAST.SPIN), barriers, wgmma.

Usage: sass.py KERNEL [--arch sm_90a] [--src DIR] [--summary]
  KERNEL     an extern "C" kernel's name (flash_bwd_hd64, norm_bwd_bf16_v, ...)
  --arch     the target (default sm_90a, the H100's and H200's; sm_80, sm_90)
  --src DIR  each .cu file DIR holds instead of the repository's (as BAKA_CUDA_SRC does)
  --summary  instead of the listing: instructions, the most frequent opcodes, spill stores and
             loads, barriers, tensor-core instructions
Needs NVRTC 13.0 (`pip install nvidia-cuda-nvrtc==13.0.88`, or BAKA_NVRTC=path/to/libnvrtc.so.13)
and cuobjdump (`pip install nvidia-cuda-cuobjdump==13.2.86`, or on PATH, or BAKA_CUOBJDUMP).
"""
import argparse
import ctypes
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections import Counter

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "bakallm-kernels", "src")
PIP_LIB = os.path.join(sysconfig.get_paths()["purelib"], "nvidia", "cu13")


def fail(msg):
    print(f"sass.py: {msg}", file=sys.stderr)
    sys.exit(2)


def nvrtc():
    """libnvrtc, its builtins loaded globally first (it opens them by soname)."""
    path = os.environ.get("BAKA_NVRTC") or next(
        (p for p in (os.path.join(PIP_LIB, "lib", "libnvrtc.so.13"), "/usr/local/cuda/lib64/libnvrtc.so.13") if os.path.isfile(p)), None)
    if not path or not os.path.isfile(path):
        fail("needs NVRTC 13: `pip install nvidia-cuda-nvrtc==13.0.88` (or BAKA_NVRTC=path/to/libnvrtc.so.13)")
    folder = os.path.dirname(path)
    for name in sorted(os.listdir(folder)):
        if name.startswith("libnvrtc-builtins.so.") and ".alt." not in name:
            ctypes.CDLL(os.path.join(folder, name), mode=ctypes.RTLD_GLOBAL)
    return ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


def cuobjdump():
    path = os.environ.get("BAKA_CUOBJDUMP") or shutil.which("cuobjdump") or os.path.join(PIP_LIB, "bin", "cuobjdump")
    if not os.path.isfile(path):
        fail("needs cuobjdump: `pip install nvidia-cuda-cuobjdump==13.2.86` (or on PATH, or BAKA_CUOBJDUMP=path)")
    return path


def source(src_dir):
    """The module's source: nvrtc.rs's FILES in order, joined by line breaks as nvrtc.rs joins them."""
    names = re.findall(r'\("([a-z_0-9]+\.cu)", include_str!', open(os.path.join(ROOT, "nvrtc.rs")).read())
    if not names:
        fail(f"{os.path.join(ROOT, 'nvrtc.rs')}: no kernel files listed")
    if src_dir:
        if not os.path.isdir(src_dir):
            fail(f"--src {src_dir}: not a folder")
        held = set(n for n in os.listdir(src_dir) if n.endswith(".cu"))
        if not held & set(names):
            fail(f"--src {src_dir}: holds none of the kernel files ({', '.join(names)})")
        unknown = sorted(held - set(names))
        if unknown:
            fail(f"--src {src_dir}: {', '.join(unknown)} not among the kernel files ({', '.join(names)})")
    texts = []
    for n in names:
        own = os.path.join(src_dir, n) if src_dir else None
        with open(own if own and os.path.isfile(own) else os.path.join(ROOT, "cuda", n)) as f:
            texts.append(f.read())
    return "\n".join(texts)


def cubin(lib, src, arch):
    prog = ctypes.c_void_p()
    if lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), b"bakallm.cu", 0, None, None):
        fail("nvrtcCreateProgram failed")
    opts = [f"--gpu-architecture={arch}".encode()]
    ok = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts)) == 0
    if not ok:
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        first = next((l for l in log.value.decode(errors="replace").splitlines() if "error" in l), "see NVRTC's log")
        fail(f"NVRTC for {arch} failed: {first.strip()}")
    size = ctypes.c_size_t()
    lib.nvrtcGetCUBINSize(prog, ctypes.byref(size))
    out = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetCUBIN(prog, out)
    return out.raw


def main():
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("kernel", nargs="?")
    ap.add_argument("--arch", default="sm_90a")
    ap.add_argument("--src")
    ap.add_argument("--summary", action="store_true")
    ap.add_argument("-h", "--help", action="store_true")
    a, rest = ap.parse_known_args()
    if a.help or not a.kernel or rest:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    if a.arch not in ("sm_80", "sm_90", "sm_90a"):
        fail(f"--arch {a.arch}: expected sm_80, sm_90 or sm_90a")
    binary = cubin(nvrtc(), source(a.src), a.arch)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "bakallm.cubin")
        with open(path, "wb") as f:
            f.write(binary)
        run = subprocess.run([cuobjdump(), "-sass", "-fun", a.kernel, path], capture_output=True, text=True)
    # instruction lines: /*0040*/ OPCODE ... ; (cuobjdump puts each encoding on a comment line of its own)
    lines = [l for l in run.stdout.splitlines() if re.match(r"\s+/\*[0-9a-f]{4,}\*/\s", l)]
    if run.returncode or not lines:
        fail(f"no kernel {a.kernel!r} for {a.arch} (an extern \"C\" name from crates/bakallm-kernels/src/cuda/*.cu)")
    if not a.summary:
        for l in lines:
            print(l.split(";")[0].rstrip() + " ;")
        return
    ops = Counter()
    for l in lines:
        words = l.split("*/", 1)[1].split()
        if words and words[0].startswith("@"):
            words = words[1:]
        if words:
            ops[words[0].split(".")[0]] += 1
    print(f"{a.kernel} ({a.arch}): {len(lines)} instructions")
    print("  spill stores (STL) " + str(ops["STL"]) + ", spill loads (LDL) " + str(ops["LDL"]) + ", barriers (BAR) " + str(ops["BAR"])
          + ", tensor-core (HGMMA, HMMA) " + str(ops["HGMMA"] + ops["HMMA"]))
    print("  most frequent: " + ", ".join(f"{op} {n}" for op, n in ops.most_common(15)))


if __name__ == "__main__":
    main()
