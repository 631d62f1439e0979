"""What this machine's processors can do fast: one check, used wherever precision is chosen.

The machines this project runs on differ: some CPUs are AVX2-only, others have AVX-512 VNNI and
AMX, whose bf16 matrix units make ``torch.autocast("cpu", dtype=torch.bfloat16)`` much faster than
fp32. Nothing here assumes a machine: flags are read from the kernel (``/proc/cpuinfo``) and CUDA
from torch; :func:`capability_tags` records them on runs and in reports. On Linux without a GPU
driver, CUDA is known absent without importing torch (3-4 s of a served model's start on a CPU).
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from imdb_mlops.common.errors import PipelineError

CPU_FLAGS = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f", "avx2")


@dataclass(frozen=True)
class Capabilities:
    cpu_model: str
    cpu_flags: frozenset[str]  # of CPU_FLAGS, those this CPU has
    cuda: bool
    cuda_bf16: bool

    @property
    def cpu_bf16(self) -> bool:
        """Native bf16 arithmetic on the CPU (AMX or AVX-512 BF16): where bf16 autocast pays."""
        return bool({"amx_bf16", "avx512_bf16"} & self.cpu_flags)

    @property
    def cpu_int8(self) -> bool:
        """Fast int8 dot products on the CPU (AMX, AVX-512 VNNI or AVX-VNNI)."""
        return bool({"amx_int8", "avx512_vnni", "avx_vnni"} & self.cpu_flags)


def read_cpu(cpuinfo: str) -> tuple[str, frozenset[str]]:
    """(model name, relevant flags) from the text of ``/proc/cpuinfo``."""
    model, flags = platform.processor() or "unknown", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model in ("unknown", ""):
            model = value.strip()
        elif key.strip() in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model or "unknown", frozenset(flags & set(CPU_FLAGS))


# Act as a CPU with only these flags (comma-separated, a subset of this CPU's): to measure here what
# another CPU kind chooses, e.g. IMDB_MLOPS_CPU_FLAGS=avx2 with ONEDNN_MAX_CPU_ISA=AVX2 for torch.
FLAGS_ENV = "IMDB_MLOPS_CPU_FLAGS"


@functools.cache
def detect() -> Capabilities:
    """This machine's capabilities (read once per process)."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        cpuinfo = ""
    model, flags = read_cpu(cpuinfo)
    if os.environ.get(FLAGS_ENV) is not None:
        flags = flags & frozenset(os.environ[FLAGS_ENV].replace(",", " ").split())
    cuda = cuda_bf16 = False
    if gpu_driver_present():
        try:
            import torch

            cuda = torch.cuda.is_available()
            cuda_bf16 = cuda and torch.cuda.is_bf16_supported()
        except ImportError:
            pass
    return Capabilities(model, flags, cuda, cuda_bf16)


ROCM_DEVICE = Path("/dev/kfd")  # where AMD's ROCm driver is loaded


def gpu_driver_present() -> bool:
    """Could torch see a GPU here? False only where that is certain without importing torch: on Linux,
    when neither NVIDIA's driver library (``libcuda.so.1``) loads nor ROCm's device (``/dev/kfd``) exists.
    Elsewhere, or with torch already imported, True: torch itself then decides."""
    if not sys.platform.startswith("linux") or "torch" in sys.modules or ROCM_DEVICE.exists():
        return True
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


MACHINE_KINDS = ("gpu", "cpu-bf16", "cpu-int8", "cpu-avx2")


def machine_kind(caps: Capabilities | None = None) -> str:
    """What sizes the work of a run on this machine: ``gpu``; ``cpu-bf16`` (AMX or AVX-512 BF16:
    bf16 training and decoding); ``cpu-int8`` (VNNI but no bf16); ``cpu-avx2`` (neither: fp32 only,
    int8 with 7-bit weights)."""
    caps = caps or detect()
    if caps.cuda:
        return "gpu"
    if caps.cpu_bf16:
        return "cpu-bf16"
    return "cpu-int8" if caps.cpu_int8 else "cpu-avx2"


def capability_tags(caps: Capabilities | None = None) -> dict[str, str]:
    """The capabilities as MLflow tags / report fields."""
    caps = caps or detect()
    return {
        "cpu.model": caps.cpu_model,
        "cpu.flags": ",".join(sorted(caps.cpu_flags)) or "none of " + ",".join(CPU_FLAGS),
        "cpu.bf16": str(caps.cpu_bf16).lower(),
        "cpu.int8": str(caps.cpu_int8).lower(),
        "cuda": str(caps.cuda).lower(),
        "cuda.bf16": str(caps.cuda_bf16).lower(),
        "machine.kind": machine_kind(caps),
    }


def choose_precision(
    requested: str, device: str, key: str = "train.precision", caps: Capabilities | None = None
) -> str:
    """The precision to train or decode in (``key`` names the param in errors). ``auto``: bf16 (else
    fp16) on a GPU; bf16 autocast on a CPU with native bf16 (AMX or AVX-512 BF16); fp32 elsewhere."""
    caps = caps or detect()
    if device == "cuda":
        if requested == "auto":
            return "bf16" if caps.cuda_bf16 else "fp16"
        return requested
    if requested == "auto":
        return "bf16" if device == "cpu" and caps.cpu_bf16 else "fp32"
    if requested == "fp16":
        raise PipelineError(f"{key}: fp16 needs a GPU; this machine has none (use auto, bf16 or fp32)")
    if requested == "bf16" and not (device == "cpu" and caps.cpu_bf16):
        has = ", ".join(sorted(caps.cpu_flags)) or "none of them"
        raise PipelineError(
            f"{key}: bf16 needs a GPU or a CPU with native bf16 (AMX or AVX-512 BF16); this CPU "
            f"({caps.cpu_model}) has {has} (use auto or fp32)"
        )
    return requested


@contextmanager
def autocast(precision: str, device: str) -> Iterator[None]:
    """``torch.autocast`` for inference in ``precision`` (a result of :func:`choose_precision`):
    bf16/fp16 autocast on ``device``, nothing for fp32."""
    import torch

    if precision == "fp32":
        yield
        return
    with torch.autocast(device, dtype=torch.bfloat16 if precision == "bf16" else torch.float16):
        yield
