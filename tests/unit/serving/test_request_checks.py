"""Empty requests and blank texts get a 400 that names the problem, from MLflow's real scoring app
around a model that checks its input as the registered classifier does."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from mlflow.pyfunc import PythonModel, scoring_server
from starlette.testclient import TestClient

from imdb_mlops.serving.classifier_model import as_texts, check_request
from imdb_mlops.serving.request_checks import RefuseEmptyRequests, sent_no_texts
from imdb_mlops.serving.settings import classifier_signature


class CheckingModel(PythonModel):
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        texts = as_texts(model_input)
        check_request(texts, max_texts=4, max_chars=100)
        return pd.DataFrame({"label": ["positive"] * len(texts), "probability": 0.9, "positive_probability": 0.9})


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "checking"
    mlflow.pyfunc.save_model(str(folder), python_model=CheckingModel(), signature=classifier_signature())
    return TestClient(RefuseEmptyRequests(scoring_server.init(mlflow.pyfunc.load_model(str(folder)))))


@pytest.mark.parametrize(
    "body", [{"inputs": []}, {"instances": []}, {"dataframe_records": []}, {"dataframe_split": {"data": []}}]
)
def test_a_request_without_texts_is_refused_saying_so(client, body):
    answer = client.post("/invocations", json=body)
    assert answer.status_code == 400
    assert answer.json()["message"] == "no texts were sent: the request needs at least one review"


@pytest.mark.parametrize(("texts", "row"), [([""], 0), (["a fine film", " \n\t"], 1)])
def test_an_empty_or_blank_text_is_refused_naming_its_row(client, texts, row):
    answer = client.post("/invocations", json={"inputs": texts})
    assert answer.status_code == 400
    assert answer.json()["message"] == f"text {row} is empty; a review needs words to be classified"


def test_texts_with_words_are_answered(client):
    answer = client.post("/invocations", json={"inputs": ["a fine film", "dull"]})
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2


def test_only_small_json_bodies_with_an_empty_list_count_as_empty():
    assert sent_no_texts(b'{"inputs": []}')
    assert not sent_no_texts(b'{"inputs": ["x"]}')
    assert not sent_no_texts(b"not json") and not sent_no_texts(b"[]")
    assert not sent_no_texts(b'{"inputs": []' + b" " * 2000 + b"}")  # large bodies are left to MLflow
