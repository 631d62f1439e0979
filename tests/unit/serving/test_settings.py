"""The served classifier's variant setting, checked against what the export stage shipped."""

import pytest

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.serving.settings import check_variant


def test_a_variant_by_name_must_have_been_shipped():
    assert check_variant(["fp32", "int8"], "auto") == "auto"
    assert check_variant(["fp32", "torch_bf16"], "torch_bf16") == "torch_bf16"
    with pytest.raises(
        PipelineError, match=r"registry.variant: 'int8' was not shipped by the export stage \(shipped: fp32\)"
    ):
        check_variant(["fp32"], "int8")
