import pytest

from imdb_mlops.modeling.estimate import cpu_training_seconds, human_duration


def test_reference_point_and_scaling():
    minilm = cpu_training_seconds(1000, 250, 1, num_layers=6, hidden_size=384, cores=2)
    assert minilm == pytest.approx(250.0)  # 1,000 tokens/s on the reference machine
    distilbert = cpu_training_seconds(1000, 250, 1, num_layers=6, hidden_size=768, cores=2)
    assert distilbert == pytest.approx(4 * minilm)
    assert cpu_training_seconds(1000, 250, 1, 6, 384, cores=4) == pytest.approx(minilm / 2)
    assert cpu_training_seconds(1000, 250, 3, 6, 384, cores=2) == pytest.approx(3 * minilm)


def test_full_distilbert_run_on_two_cores_is_reported_in_hours():
    seconds = cpu_training_seconds(22_500, 300, 3, num_layers=6, hidden_size=768, cores=2)
    assert human_duration(seconds).endswith(" h")
    assert human_duration(30) == "30 s" and human_duration(600) == "10 min"
