"""Which ONNX variant the served classifier runs, per device."""

import pytest

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.serving.settings import choose_variants


def test_variant_choice_prefers_int8_on_cpu_and_fp16_on_gpu():
    assert choose_variants(["fp32", "int8"], "auto") == ("int8", "fp32")
    assert choose_variants(["fp32", "int8", "fp16"], "auto") == ("int8", "fp16")
    assert choose_variants(["fp32"], "fp32") == ("fp32", "fp32")
    with pytest.raises(
        PipelineError, match=r"registry.variant: 'int8' was not shipped by the export stage \(shipped: fp32\)"
    ):
        choose_variants(["fp32"], "int8")
