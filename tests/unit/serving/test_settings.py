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


@pytest.mark.parametrize(
    ("pad_token", "expected"),
    [("[PAD]", 0), ({"content": "[SEP]", "special": True}, 102), ("<not in the vocabulary>", 0), (None, 0)],
)
def test_the_pad_token_id_is_the_one_tokenizer_config_names(tmp_path, minilm_path, pad_token, expected):
    """The served tokenizer (``tokenizer.json``, read by ``tokenizers``) and the pad token its
    ``tokenizer_config.json`` names, as a string or as a written-out AddedToken; 0 where it names none."""
    import json

    from tokenizers import Tokenizer

    from imdb_mlops.serving.settings import pad_token_id

    tokenizer = Tokenizer.from_file(str(minilm_path / "tokenizer.json"))
    config = tmp_path / "tokenizer_config.json"
    config.write_text(json.dumps({"pad_token": pad_token} if pad_token is not None else {}))
    assert pad_token_id(tokenizer, config) == expected
    assert pad_token_id(tokenizer, tmp_path / "missing.json") == 0
