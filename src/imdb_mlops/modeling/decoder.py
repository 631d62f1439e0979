"""The review generator as a model: a causal LM with sentiment control codes.

Loading (:func:`load_generator`: ``generation.model`` as a hub id or local folder through the same
``from_pretrained`` call, or ``scratch``, a small GPT-2 with a byte-level BPE vocabulary learned from
the training reviews), control-coded training sequences, fine-tuning with the Trainer
(:func:`finetune`) and held-out perplexity (:func:`perplexity`). Decoding lives in
:mod:`imdb_mlops.modeling.textgen`, which the served generator shares.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from imdb_mlops.common.errors import PipelineError, first_line
from imdb_mlops.common.hub import local_path
from imdb_mlops.common.labels import LABELS
from imdb_mlops.config import GenerationConfig, GeneratorFinetuneConfig, HubConfig
from imdb_mlops.data.sampling import sample_texts
from imdb_mlops.modeling.capabilities import autocast, choose_precision
from imdb_mlops.modeling.finetuning import (
    MlflowMetricsCallback,
    decoder_arguments,
    last_checkpoint,
    run_key,
    split_history,
)
from imdb_mlops.modeling.gguf import check_gguf, find_gguf, load_gguf
from imdb_mlops.modeling.pretrained import (
    checkpoint_config,
    require_safetensors,
    resolve_pretrained,
    tokenizer_from,
    unpadded_backend,
)
from imdb_mlops.modeling.textgen import CONTROL_CODES, add_control_codes, context_length

KEY = "generation.model"
console = Console(stderr=True)


def load_generator(cfg: GenerationConfig, hub: HubConfig, seed: int, train_texts: list[str]) -> tuple[Any, Any]:
    """The causal LM and its tokenizer, with the control codes added."""
    if cfg.model == "scratch":
        model, tokenizer = scratch_generator(cfg, train_texts, seed)
        add_control_codes(model, tokenizer)
    else:
        model, tokenizer = pretrained_generator(cfg, hub)
        add_control_codes(model, tokenizer, cfg.code_words)
    return model, tokenizer


def pretrained_generator(cfg: GenerationConfig, hub: HubConfig) -> tuple[Any, Any]:
    """A hub id, a transformers folder or a GGUF checkpoint (:mod:`imdb_mlops.modeling.gguf`), loaded
    as a causal LM with ``trust_remote_code`` off; GPT-2 and Llama-architecture decoders alike."""
    from transformers import AutoModelForCausalLM

    name = cfg.model
    path = local_path(name, KEY)
    found = find_gguf(path, name, cfg.gguf_file) if path is not None else None
    if found is not None:
        checkpoint = check_gguf(*found, name)
        console.print(f"Loading {checkpoint.file} ({checkpoint.architecture}, GGUF; weights dequantized to float32)")
        model, tokenizer = load_gguf(checkpoint, name)
    else:
        if cfg.gguf_file:
            raise PipelineError(
                f"generation.gguf_file: set, but generation.model '{name}' is no local folder of GGUF files"
            )
        source = resolve_pretrained(name, hub, KEY)
        config = checkpoint_config(source, name, KEY)
        tokenizer = tokenizer_from(source, name, KEY)
        if getattr(config, "is_encoder_decoder", False) or config.model_type in ("bert", "distilbert", "roberta"):
            raise PipelineError(
                f"{KEY}: '{name}' is a {config.model_type} model; a decoder-only causal LM (e.g. gpt2) is needed"
            )
        require_safetensors(source, name, KEY)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                source, config=config, trust_remote_code=False, use_safetensors=True
            )
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise PipelineError(f"{KEY}: '{name}' cannot be loaded as a causal LM: {first_line(exc)}") from None
    if tokenizer.eos_token is None:
        raise PipelineError(f"{KEY}: the tokenizer of '{name}' has no end-of-text token (eos_token)")
    return model, tokenizer


def scratch_generator(cfg: GenerationConfig, train_texts: list[str], seed: int) -> tuple[Any, Any]:
    """A randomly initialised GPT-2 of ``generation.scratch``'s size, with a byte-level BPE
    vocabulary learned from (a seeded sample of) the training reviews."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    eos = "<|endoftext|>"
    texts = sample_texts(train_texts, cfg.scratch.tokenizer_samples, seed)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        texts, vocab_size=cfg.scratch.vocab_size, min_frequency=2, special_tokens=[eos], show_progress=False
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=eos, eos_token=eos, unk_token=eos)
    size = cfg.scratch
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=size.n_positions,
        n_embd=size.n_embd,
        n_layer=size.n_layer,
        n_head=size.n_head,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    console.print(
        f"Built a GPT-2 from scratch: {size.n_layer} layers, width {size.n_embd}, {len(tokenizer)} tokens "
        f"(BPE learned from {len(texts)} training reviews)"
    )
    return GPT2LMHeadModel(config), tokenizer


def check_lengths(cfg: GenerationConfig, model: Any) -> None:
    limit = context_length(model)
    if cfg.finetune.block_size > limit:
        raise PipelineError(
            f"generation.finetune.block_size: {cfg.finetune.block_size} exceeds the context of '{cfg.model}' ({limit} tokens)"
        )
    if cfg.decoding.max_new_tokens >= limit:
        raise PipelineError(
            f"generation.decoding.max_new_tokens: {cfg.decoding.max_new_tokens} exceeds the context of "
            f"'{cfg.model}' ({limit} tokens, prompt included)"
        )


def lm_sequences(
    tokenizer: Any, texts: list[str], sentiments: list[str | None], block_size: int, review_part: str = "head"
) -> list[list[int]]:
    """``<code> review <eos>`` token ids per review, at most ``block_size``: a longer review keeps its
    start (``head``, no eos) or its end (``tail``, the code then the review's last tokens and eos)."""
    eos = tokenizer.eos_token_id
    encoded = unpadded_backend(tokenizer).encode_batch_fast(texts, add_special_tokens=False)
    sequences = []
    for encoding, sentiment in zip(encoded, sentiments, strict=True):
        prefix = [tokenizer.convert_tokens_to_ids(CONTROL_CODES[sentiment])] if sentiment else []
        body = [*encoding.ids, eos]
        room = block_size - len(prefix)
        if len(body) <= room:
            sequences.append(prefix + body)
        elif review_part == "head":
            sequences.append(prefix + body[:room])
        else:
            sequences.append(prefix + tail_from_sentence_start(tokenizer, body, room))
    return sequences


_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")


def tail_from_sentence_start(tokenizer: Any, body: list[int], room: int) -> list[int]:
    """The last ``room`` ids of ``body`` (a review's ids + eos), started at the first sentence
    boundary in the first half of that window, so a tail does not open mid-sentence."""
    start = len(body) - room
    before = tokenizer.convert_ids_to_tokens(body[start - 1 : start + room // 2])  # token i-1 for each start i
    for offset, token in enumerate(before):
        if _SENTENCE_END.search(tokenizer.convert_tokens_to_string([token]).strip()):
            return body[start + offset :]
    return body[start:]


def finetune(
    generation: GenerationConfig,
    seed: int,
    model: Any,
    tokenizer: Any,
    texts: list[str],
    sentiments: list[str | None],
    checkpoint_root: Path,
    device: str,
) -> dict[str, Any]:
    """Causal-LM fine-tuning on ``<code> review <eos>`` with the Trainer; resumes from the last
    checkpoint of the same setup."""
    import transformers
    from datasets import Dataset

    cfg = generation.finetune
    sequences = lm_sequences(tokenizer, texts, sentiments, cfg.block_size, cfg.review_part)
    dataset = Dataset.from_dict({"input_ids": sequences, "labels": sequences})
    setup = generation.model_dump(exclude={"decoding", "prompts"})
    key = run_key({"g": setup, "seed": seed, "n": len(texts), "head": texts[:3]})
    checkpoint_dir = checkpoint_root / f"generator-{key}"
    resume_from = last_checkpoint(checkpoint_dir)
    if resume_from:
        console.print(f"[bold]Resuming[/] generator fine-tuning from {resume_from}")
    precision = choose_precision(cfg.precision, device, "generation.finetune.precision")
    tokenizer.padding_side = "right"
    args = decoder_arguments(cfg, seed, checkpoint_dir, precision)
    trained = with_adapters(model, tokenizer, cfg)
    trainable = sum(p.numel() for p in trained.parameters() if p.requires_grad)
    trainer = transformers.Trainer(
        model=trained,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        data_collator=transformers.DataCollatorForSeq2Seq(
            tokenizer, label_pad_token_id=-100, pad_to_multiple_of=8 if device == "cuda" else None
        ),
        callbacks=[MlflowMetricsCallback()],
    )
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    if trained is not model:
        trained.merge_and_unload()  # adapters and trained code rows into the base weights, in place
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    train_log, _ = split_history(trainer.state.log_history)
    return {
        "enabled": True,
        "method": cfg.method,
        "trainable_parameters": trainable,
        "reviews": len(texts),
        "unlabelled_reviews": sum(s is None for s in sentiments),
        "steps": trainer.state.global_step,
        "final_loss": train_log[-1]["loss"] if train_log else None,
        "train_runtime_s": round(result.metrics["train_runtime"], 1),
        "train_samples_per_second": round(result.metrics["train_samples_per_second"], 3),
        "precision": precision,
    }


def with_adapters(model: Any, tokenizer: Any, cfg: GeneratorFinetuneConfig) -> Any:
    """``model`` itself (``method: full``) or a peft model with LoRA adapters on the linear layers of
    the top ``lora_layers`` decoder layers (all when null) and, with ``train_codes``, the control codes'
    embedding rows trainable; every other weight frozen. After training, ``merge_and_unload`` writes
    the adapters into ``model``'s own weights (plain safetensors on save, no peft needed to serve)."""
    if cfg.method == "full":
        return model
    from peft import LoraConfig, get_peft_model

    layers = int(model.config.num_hidden_layers)
    if cfg.lora_layers is not None and cfg.lora_layers > layers:
        raise PipelineError(
            f"generation.finetune.lora_layers: {cfg.lora_layers} exceeds the model's {layers} decoder layers"
        )
    top = list(range(layers - (cfg.lora_layers or layers), layers))
    codes = [tokenizer.convert_tokens_to_ids(code) for code in CONTROL_CODES.values()]
    config = LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=0.0,
        target_modules=linear_names(model),
        layers_to_transform=top,
        trainable_token_indices=codes if cfg.train_codes else None,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def linear_names(model: Any) -> list[str]:
    """Names of the linear layers inside the decoder blocks (``q_proj`` ... for Llama, ``c_attn`` ...
    for GPT-2's Conv1D), the LM head and embeddings excluded."""
    import torch
    from transformers.pytorch_utils import Conv1D

    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear | Conv1D) and re.search(r"\.(layers|h)\.\d+\.", name)
    }
    return sorted(names)


def perplexity(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    labels: list[int],
    block_size: int,
    review_part: str = "head",
    precision: str = "fp32",
    batch_size: int = 8,
) -> float:
    """exp(mean negative log-likelihood per review token), each review after its control code, cut
    as in fine-tuning (``review_part``)."""
    import torch

    sequences = lm_sequences(tokenizer, texts, [LABELS[label] for label in labels], block_size, review_part)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    total, count = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(sequences), batch_size):
            batch = sequences[start : start + batch_size]
            width = max(map(len, batch))
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            targets = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, seq in enumerate(batch):
                ids[row, : len(seq)] = torch.tensor(seq)
                targets[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            with autocast(precision, device.type):
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            shifted = targets[:, 1:].to(device)
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), shifted.reshape(-1), ignore_index=-100, reduction="sum"
            )
            total += float(loss)
            count += int((shifted != -100).sum())
    return float(np.exp(total / max(count, 1)))
