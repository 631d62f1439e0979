"""The parity thresholds a reduced-precision ONNX variant must meet to ship."""

from imdb_mlops.config import ExportConfig
from imdb_mlops.modeling.onnx_variants import parity_failures


def test_gate_thresholds_name_the_figure():
    cfg = ExportConfig()
    good = {"max_abs_diff": 1e-6, "agreement": 1.0, "accuracy": 0.9, "torch_accuracy": 0.9}
    assert parity_failures("fp32", good, cfg) == [] and parity_failures("int8", good, cfg) == []
    worse = {"max_abs_diff": 0.5, "agreement": 0.97, "accuracy": 0.88, "torch_accuracy": 0.9}
    assert parity_failures("int8", worse, cfg) == ["agreement 97.00% < 99.00%", "accuracy drop 2.00 points > 0.50"]
