"""Model references: champion by default, aliases, version numbers, URIs as given."""

from imdb_mlops.registry.versions import resolve_model_uri

MODEL = "imdb-sentiment"


def test_model_references_become_model_uris():
    assert resolve_model_uri(None, MODEL) == "models:/imdb-sentiment@champion"
    assert resolve_model_uri("@challenger", MODEL) == "models:/imdb-sentiment@challenger"
    assert resolve_model_uri("champion", MODEL) == "models:/imdb-sentiment@champion"
    assert resolve_model_uri("3", MODEL) == "models:/imdb-sentiment/3"
    assert resolve_model_uri("models:/other/1", MODEL) == "models:/other/1"
