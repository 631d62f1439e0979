"""Classifier-free guidance against the opposite control code, batched.

Each review is decoded twice side by side in one batch: with the asked code (``c``) and with the
opposite one (``u``). At every step the next-token log-probabilities are pushed away from the
opposite sentiment (Sanchez et al., 2023, "Stay on topic with classifier-free guidance")::

    guided = log_softmax(u) + scale * (log_softmax(c) - log_softmax(u))

then the usual repetition penalty, temperature, top-k and top-p apply, one token is drawn and
appended to both rows. ``scale = 1`` is plain decoding. Nothing here looks at the classifier that
scores the reviews: the guidance comes from the generator's own two conditionals.

transformers applies guidance (``generate(guidance_scale=..., negative_prompt_ids=...)``) through a
second, unbatched model call per step that ignores left padding; here both halves share one forward
pass and one KV cache, with position ids taken from the attention mask, so left-padded batches of
mixed prompt lengths decode as each prompt would alone.
"""

from __future__ import annotations

from typing import Any

import torch


def logits_processors(decoding: Any, suppressed: list[int]) -> Any:
    """Repetition penalty, control codes suppressed, then (when sampling) temperature, top-k, top-p:
    the order ``model.generate`` applies them in."""
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        SuppressTokensLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    processors = LogitsProcessorList()
    if decoding.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(decoding.repetition_penalty))
    if suppressed:
        processors.append(SuppressTokensLogitsProcessor(suppressed))
    if decoding.strategy == "sample":
        processors.append(TemperatureLogitsWarper(decoding.temperature))
        if decoding.top_k:
            processors.append(TopKLogitsWarper(decoding.top_k))
        if decoding.top_p < 1.0:
            processors.append(TopPLogitsWarper(decoding.top_p))
    return processors


def left_padded(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask), each row right-aligned."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        ids[index, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[index, width - len(row) :] = 1
    return ids, mask


@torch.inference_mode()
def guided_generate(
    model: Any,
    conditional: list[list[int]],
    opposite: list[list[int]],
    decoding: Any,
    pad: int,
    eos: int,
    suppressed: list[int],
) -> torch.Tensor:
    """New tokens (batch, <= max_new_tokens) for ``conditional`` prompts guided away from ``opposite``
    (row i of each belongs to review i); ``pad`` after a row's eos."""
    batch = len(conditional)
    device = next(model.parameters()).device
    ids, mask = left_padded(conditional + opposite, pad)
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    history = ids[:batch]  # what the repetition penalty looks at
    processors = logits_processors(decoding, suppressed)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    new_tokens: list[torch.Tensor] = []
    cache = None
    step_ids, step_positions = ids, positions
    for _ in range(decoding.max_new_tokens):
        output = model(
            input_ids=step_ids, attention_mask=mask, position_ids=step_positions, cache=cache, use_cache=True
        )
        cache = output.cache
        logits = output.logits[:, -1].float()
        wanted, other = torch.log_softmax(logits[:batch], -1), torch.log_softmax(logits[batch:], -1)
        scores = processors(history, other + decoding.guidance_scale * (wanted - other))
        if decoding.strategy == "sample":
            token = torch.multinomial(torch.softmax(scores, -1), 1).squeeze(1)
        else:
            token = scores.argmax(-1)
        token = torch.where(finished, torch.full_like(token, pad), token)
        new_tokens.append(token)
        history = torch.cat([history, token[:, None]], 1)
        finished |= token == eos
        if bool(finished.all()):
            break
        step_ids = torch.cat([token, token])[:, None]
        step_positions = step_positions[:, -1:] + 1
        mask = torch.cat([mask, torch.ones((mask.shape[0], 1), dtype=mask.dtype, device=device)], 1)
    return torch.stack(new_tokens, 1).cpu() if new_tokens else torch.empty((batch, 0), dtype=torch.long)
