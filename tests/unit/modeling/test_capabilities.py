"""The one capability check: CPU flags read from the kernel's text, and the precision it implies."""

from __future__ import annotations

import pytest

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.modeling.capabilities import Capabilities, capability_tags, choose_precision, machine_kind, read_cpu

XEON = (
    "processor : 0\nmodel name : Intel(R) Xeon(R) Platinum\n"
    "flags : fpu avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8 sse\n"
)
EPYC = "processor : 0\nmodel name : AMD EPYC 7B13\nflags : fpu sse avx avx2 fma\n"


def caps(cpuinfo: str, cuda: bool = False, cuda_bf16: bool = False) -> Capabilities:
    return Capabilities(*read_cpu(cpuinfo), cuda=cuda, cuda_bf16=cuda_bf16)


def test_flags_are_read_from_cpuinfo_text():
    xeon, epyc = caps(XEON), caps(EPYC)
    assert xeon.cpu_model == "Intel(R) Xeon(R) Platinum" and xeon.cpu_bf16 and xeon.cpu_int8
    assert epyc.cpu_flags == frozenset({"avx2"}) and not epyc.cpu_bf16 and not epyc.cpu_int8
    assert capability_tags(xeon)["cpu.flags"] == "amx_bf16,amx_int8,amx_tile,avx2,avx512_bf16,avx512_vnni,avx512f"
    assert capability_tags(epyc)["cpu.bf16"] == "false"


@pytest.mark.parametrize(
    ("cpuinfo", "device", "cuda_bf16", "requested", "expected"),
    [
        (XEON, "cpu", False, "auto", "bf16"),  # native bf16: autocast pays on this CPU
        (EPYC, "cpu", False, "auto", "fp32"),  # AVX2 only: bf16 would be emulated
        (XEON, "cpu", False, "bf16", "bf16"),
        (EPYC, "cuda", True, "auto", "bf16"),
        (EPYC, "cuda", False, "auto", "fp16"),
        (EPYC, "cpu", False, "fp32", "fp32"),
    ],
)
def test_precision_follows_the_machine(cpuinfo, device, cuda_bf16, requested, expected):
    assert choose_precision(requested, device, caps=caps(cpuinfo, device == "cuda", cuda_bf16)) == expected


def test_bf16_on_a_cpu_without_it_and_fp16_on_any_cpu_are_refused():
    with pytest.raises(
        PipelineError, match=r"train.precision: bf16 needs a GPU or a CPU with native bf16 .*AMD EPYC 7B13\) has avx2"
    ):
        choose_precision("bf16", "cpu", caps=caps(EPYC))
    with pytest.raises(PipelineError, match="generation.finetune.precision: fp16 needs a GPU"):
        choose_precision("fp16", "cpu", "generation.finetune.precision", caps=caps(XEON))


@pytest.mark.parametrize(
    ("flags", "cuda", "kind"),
    [
        ({"avx2"}, False, "cpu-avx2"),
        ({"avx2", "avx512f"}, False, "cpu-avx2"),  # AVX-512 without VNNI or bf16: fp32, 7-bit int8
        ({"avx2", "avx512f", "avx512_vnni"}, False, "cpu-int8"),
        ({"avx2", "avx_vnni"}, False, "cpu-int8"),
        ({"avx2", "avx512_bf16", "avx512_vnni"}, False, "cpu-bf16"),
        ({"avx2", "amx_bf16", "amx_int8"}, False, "cpu-bf16"),
        ({"avx2"}, True, "gpu"),
    ],
)
def test_machine_kind_follows_the_flags(flags, cuda, kind):
    assert machine_kind(Capabilities("cpu", frozenset(flags), cuda=cuda, cuda_bf16=cuda)) == kind


def test_the_flags_can_be_narrowed_to_act_as_another_cpu(monkeypatch):
    """IMDB_MLOPS_CPU_FLAGS keeps only the named flags of this CPU (never adds one it lacks)."""
    from imdb_mlops.modeling import capabilities

    monkeypatch.setattr(capabilities.Path, "read_text", lambda self, **kw: XEON)
    monkeypatch.setenv(capabilities.FLAGS_ENV, "avx2,avx512_vnni,avx_vnni")
    capabilities.detect.cache_clear()
    try:
        narrowed = capabilities.detect()
        assert narrowed.cpu_flags == frozenset({"avx2", "avx512_vnni"})  # avx_vnni: not on this CPU
        assert not narrowed.cpu_bf16 and machine_kind(narrowed) in ("cpu-int8", "gpu")
        monkeypatch.setenv(capabilities.FLAGS_ENV, "avx2")
        capabilities.detect.cache_clear()
        assert capabilities.detect().cpu_flags == frozenset({"avx2"})
    finally:
        monkeypatch.undo()
        capabilities.detect.cache_clear()


def test_a_linux_machine_without_a_gpu_driver_is_checked_without_importing_torch(tmp_path):
    """No ``libcuda.so.1`` to load and no ``/dev/kfd``: CUDA is absent, known without torch's import;
    with a driver library present, torch decides."""
    import subprocess
    import sys

    check = (
        "import ctypes, sys\n"
        "from imdb_mlops.modeling import capabilities\n"
        "def cdll(name):\n"
        "    if sys.argv[1] == 'none': raise OSError(name + ': cannot open shared object file')\n"
        "    return object()\n"
        "ctypes.CDLL = cdll\n"
        "capabilities.ROCM_DEVICE = capabilities.Path(sys.argv[2])\n"
        "print(capabilities.gpu_driver_present(), 'torch' in sys.modules)\n"
    )
    if not sys.platform.startswith("linux"):
        pytest.skip("the driver check is Linux-only")
    outputs = {
        driver: subprocess.run(
            [sys.executable, "-c", check, driver, str(tmp_path / "no-kfd")], capture_output=True, text=True, check=True
        ).stdout.split()
        for driver in ("none", "nvidia")
    }
    assert outputs == {"none": ["False", "False"], "nvidia": ["True", "False"]}
