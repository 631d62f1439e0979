"""Freezing the bottom of a pretrained classifier (train.frozen_layers)."""

from __future__ import annotations

import pytest

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.modeling.classifier import encoder_layers, freeze_bottom, load_pretrained_classifier


def tiny_bert(folder, tokenizer_dir):
    """A tiny BERT (MiniLM's architecture) saved like a real checkpoint."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def one_training_step(model, vocab_size: int) -> None:
    import torch

    torch.manual_seed(1)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    output = model(input_ids=torch.randint(5, vocab_size, (4, 12)), labels=torch.tensor([0, 1, 0, 1]))
    output.loss.backward()
    optimizer.step()


def snapshot(module) -> dict:
    return {name: parameter.detach().clone() for name, parameter in module.named_parameters()}


def changed(before: dict, module) -> bool:
    import torch

    return any(not torch.equal(before[name], parameter) for name, parameter in module.named_parameters())


@pytest.mark.parametrize("architecture", ["distilbert", "bert"])
def test_frozen_layers_keep_the_embeddings_and_the_bottom_layers_while_the_rest_trains(
    architecture, tiny_distilbert, minilm_path, tmp_path
):
    source = tiny_distilbert if architecture == "distilbert" else tiny_bert(tmp_path / "tiny-bert", minilm_path)
    model = load_pretrained_classifier(str(source), str(source), 100)
    layers = encoder_layers(model)
    everything = sum(p.numel() for p in model.parameters())
    before = {
        "embeddings": snapshot(model.base_model.embeddings),
        **{i: snapshot(layer) for i, layer in enumerate(layers)},
    }

    trainable = freeze_bottom(model, 1)
    one_training_step(model, model.config.vocab_size)

    frozen = sum(p.numel() for p in [*model.base_model.embeddings.parameters(), *layers[0].parameters()])
    assert trainable == everything - frozen
    assert not changed(before["embeddings"], model.base_model.embeddings)
    assert not changed(before[0], layers[0])
    assert all(changed(before[i], layers[i]) for i in range(1, len(layers)))


def test_zero_frozen_layers_freeze_only_the_embeddings_and_null_freezes_nothing(tiny_distilbert):
    model = load_pretrained_classifier(str(tiny_distilbert), str(tiny_distilbert), 100)
    everything = sum(p.numel() for p in model.parameters())
    assert freeze_bottom(model, None) == everything
    embeddings = sum(p.numel() for p in model.base_model.embeddings.parameters())
    assert freeze_bottom(model, 0) == everything - embeddings


def test_more_frozen_layers_than_the_model_has_is_refused_naming_the_key(tiny_distilbert):
    model = load_pretrained_classifier(str(tiny_distilbert), str(tiny_distilbert), 100)
    with pytest.raises(PipelineError, match=r"train\.frozen_layers: 3 exceeds the model's 2 encoder layers"):
        freeze_bottom(model, 3)
