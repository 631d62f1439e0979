"""The one validated config model for ``params.yaml``: its sections, as pydantic models.

Every stage loads the whole file through :func:`imdb_mlops.config.loading.load_params`, so a typo'd key, a string where
a number belongs or an out-of-range value anywhere stops the pipeline before any work starts,
with one line naming the key path, e.g. ``params.yaml: train.learning_rate: must be > 0 (got -1)``.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from imdb_mlops.config.base import SECTION_CONFIG, flatten
from imdb_mlops.config.operations import ScoringConfig, ServingConfig
from imdb_mlops.config.sweep import SweepConfig


class _Section(BaseModel):
    model_config = SECTION_CONFIG


class HubConfig(_Section):
    """Access to the Hugging Face hub (used only when a source or model is a hub id)."""

    timeout_s: float = Field(10.0, gt=0, le=300)


class MaxSamplesConfig(_Section):
    """Per-split caps for quick runs; rows are drawn stratified by label with the seed."""

    train: int | None = Field(None, ge=2)
    validation: int | None = Field(None, ge=2)
    test: int | None = Field(None, ge=2)


class DataConfig(_Section):
    """Ingest stage: where reviews come from and how they are checked and split."""

    source: str = Field("stanfordnlp/imdb", min_length=1)
    format: Literal["auto", "hub", "parquet_dir", "aclimdb", "table"] = "auto"
    text_column: str = Field("text", min_length=1)
    label_column: str = Field("label", min_length=1)
    # Text encoding of CSV/TSV sources (e.g. latin-1); rows it cannot decode are dropped and counted.
    encoding: str = Field("utf-8", min_length=1)
    # CSV/TSV quoting: "minimal" (standard: a field may be quoted and span lines) or "none" (one
    # row per line; quotes are text). A quoted field that swallows later rows is an error naming it.
    quoting: Literal["minimal", "none"] = "minimal"
    # Raw label value (as written in the file) -> 0 (negative) or 1 (positive).
    label_map: dict[str, int] | None = None
    # Share held out as test when the source has a single table (CSV/parquet file).
    test_size: float = Field(0.5, gt=0, lt=1)
    validation_size: float = Field(0.1, gt=0, lt=1)
    max_samples: MaxSamplesConfig = MaxSamplesConfig()
    clean_html: bool = True
    drop_duplicates: bool = True
    drop_leakage: bool = True

    @field_validator("label_column")
    @classmethod
    def _other_than_text(cls, value: str, info: Any) -> str:
        if value == info.data.get("text_column"):
            raise ValueError(f"must differ from data.text_column (both are {value!r})")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_codec(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r} (e.g. utf-8, latin-1, cp1252)") from None
        return value

    @field_validator("label_map", mode="before")
    @classmethod
    def _keys_as_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
        return value

    @field_validator("label_map")
    @classmethod
    def _binary_targets(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value is not None:
            bad = {k: v for k, v in value.items() if v not in (0, 1)}
            if bad:
                raise ValueError(f"values must be 0 or 1 (got {bad})")
        return value


class ModelConfig(_Section):
    """The classifier checkpoint: a hub id or a local folder, loaded by the same call."""

    name: str = Field("distilbert-base-uncased", min_length=1)


class TokenizeConfig(_Section):
    """Tokenize stage. No padding here: batches are padded dynamically at training time."""

    max_length: int = Field(512, ge=8, le=8192)
    # head: keep the first max_length tokens; head_tail: keep head_share of the budget from the
    # start and the rest from the end (long IMDB reviews often state the verdict last;
    # 0.25 at 512 is the 128 + 382 split of Sun et al., 2019).
    truncation: Literal["head", "head_tail"] = "head_tail"
    head_share: float = Field(0.25, ge=0, lt=1)
    num_proc: int = Field(1, ge=1, le=64)
    batch_size: int = Field(1000, ge=1)


class TrainConfig(_Section):
    """Fine-tuning with the Hugging Face Trainer (names follow TrainingArguments)."""

    epochs: float = Field(3.0, gt=0)
    learning_rate: float = Field(5e-5, gt=0, lt=1)
    per_device_train_batch_size: int = Field(16, ge=1)
    per_device_eval_batch_size: int = Field(64, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    lr_scheduler_type: Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant_with_warmup"] = (
        "linear"
    )
    max_grad_norm: float = Field(1.0, gt=0)
    # > 0 caps optimizer steps (quick runs); -1 trains for `epochs`.
    max_steps: int = Field(-1, ge=-1)
    # Validation (and a checkpoint: best-model selection needs one per evaluation) every epoch,
    # or every eval_steps optimizer steps.
    eval_strategy: Literal["epoch", "steps"] = "epoch"
    eval_steps: int = Field(500, ge=1)
    # Validation reviews scored at each evaluation (the first of the split); null = all of them.
    # The export stage's gate still uses up to export.gate_samples.
    eval_samples: int | None = Field(None, ge=10)
    save_total_limit: int = Field(2, ge=1)
    metric_for_best_model: Literal["accuracy", "f1", "roc_auc", "loss"] = "f1"
    # Evaluations without improvement before stopping; 0 turns early stopping off.
    early_stopping_patience: int = Field(2, ge=0)
    logging_steps: int = Field(50, ge=1)
    # auto: bf16 on a GPU that supports it, else fp16 on a GPU; on a CPU bf16 autocast where bf16
    # is native (AMX or AVX-512 BF16), else fp32. bf16 on a CPU without it is refused.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    group_by_length: bool = True
    # Dropout on attention weights; null keeps the checkpoint's. 0 lets SDPA use its fused
    # kernels, about a third faster per step on CPU at 256 tokens.
    attention_dropout: float | None = Field(None, ge=0, lt=1)
    # Keep the bottom of the pretrained encoder as it is: null trains every weight; 0 freezes the
    # embeddings; N freezes the embeddings and the bottom N layers. Frozen parts need no gradient, so
    # their backward pass is skipped (2 of MiniLM's 6 layers: 0.75x the step time as AVX2, 3: 0.65x).
    frozen_layers: int | None = Field(None, ge=0)
    dataloader_num_workers: int = Field(0, ge=0)
    # Delete the resumable checkpoints once the model is saved.
    delete_checkpoints: bool = True


class TrackingConfig(_Section):
    """MLflow: the URI comes from MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the project."""

    experiment: str = Field("imdb-sentiment", min_length=1)
    timeout_s: float = Field(5.0, gt=0, le=120)
    system_metrics: bool = True


class EvaluateConfig(_Section):
    """Evaluate stage: test-set metrics, intervals, slices, plots and mistakes."""

    batch_size: int = Field(64, ge=1)
    bootstrap_samples: int = Field(1000, ge=100)
    confidence_level: float = Field(0.95, gt=0.5, lt=1)
    # Upper edges (tokens before truncation) of the review-length slices.
    length_buckets: list[int] = Field(default_factory=lambda: [128, 256, 512])
    calibration_bins: int = Field(10, ge=2, le=100)
    top_errors: int = Field(20, ge=0)
    # Last-layer attention heatmaps (figures/evaluation/attention_mistake_<k>.png) for this many of
    # the most confident mistakes; 0 = none.
    attention_examples: int = Field(3, ge=0, le=50)

    @field_validator("length_buckets")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if not value or any(b <= a for a, b in pairwise(value)) or value[0] <= 0:
            raise ValueError(f"must be increasing positive token counts (got {value})")
        return value


class ExportConfig(_Section):
    """Export stage: the faster variants of the classifier and the gate each must pass to be shipped
    (README, "Export: variants and their gate")."""

    opset: int = Field(17, ge=14, le=21)
    # Validation reviews every variant and the fp32 PyTorch reference score for the gate (all of the
    # split when it has fewer; the gate's power grows with this number).
    gate_samples: int = Field(2500, ge=100)
    fp32_max_abs_diff: float = Field(1e-4, gt=0)  # ONNX fp32 must match PyTorch fp32 this closely
    fp32_min_agreement: float = Field(1.0, ge=0, le=1)
    fp32_check_samples: int = Field(256, ge=1)  # the first N gate reviews ONNX fp32's exactness is checked on
    # Non-inferiority margin of a reduced-precision variant's accuracy (0.005 = 0.5 points): the lower
    # one-sided confidence bound of its paired accuracy change must lie above minus this.
    max_accuracy_drop: float = Field(0.005, ge=0, le=1)
    gate_confidence: float = Field(0.95, gt=0.5, lt=1)
    # Bound on the 99th percentile of |P(positive) - P_reference(positive)| over the gate reviews.
    max_probability_diff: float = Field(0.1, gt=0, le=1)
    int8_per_channel: bool = True  # int8 weights with one scale per output channel
    # Nodes int8 leaves in fp32: first_layer, last_layer, head, ffn_input.<i> / ffn_output.<i> (encoder
    # layer i's FFN MatMuls), or part of a node's name; benchmarks/int8_recipes.py measures which matter.
    int8_keep_fp32: list[str] = ["head", "ffn_output.0", "ffn_output.1"]
    int8_weight_bits: Literal["auto", 7, 8] = "auto"  # auto: 7 (reduce_range, no saturation) without VNNI
    # SmoothQuant's migration strength alpha for int8 (0 < alpha < 1; null = off): each quantized
    # MatMul's input channel j is divided by max|x_j|^alpha / max|W_j|^(1-alpha) and its weight row
    # multiplied by it, moving activation outliers into the per-channel weight scales; the ranges come
    # from int8_calibration_samples training reviews (modeling/int8_smoothing.py).
    int8_smoothing: float | None = Field(None, gt=0, lt=1)
    int8_calibration_samples: int = Field(256, ge=1)
    # Build the PyTorch variant with bf16 weights where bf16 is native (AMX / AVX-512 BF16 CPU, GPU).
    # A boolean, not auto/off: YAML reads a bare `off` as false.
    torch_bf16: bool = True
    latency_samples: int = Field(64, ge=1)


class RegistryConfig(_Section):
    """Register stage: the MLflow registered model, what it serves, and the promotion gate."""

    model_name: str = Field("imdb-sentiment", min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    # Variant the served model runs: auto = of those shipped and usable there, the fastest in a short
    # self-measurement when the model loads; or one variant by name.
    variant: Literal["auto", "fp32", "int8", "fp16", "torch_bf16"] = "auto"
    # auto: champion moves to a challenger that beats it; manual: a person promotes (UI or CLI).
    promotion: Literal["auto", "manual"] = "auto"
    # Accuracy the challenger must gain over the champion on the same test reviews (0.002 = 0.2 points).
    min_improvement: float = Field(0.002, ge=0, le=1)
    # McNemar's exact test on the paired predictions must give p below this.
    mcnemar_alpha: float = Field(0.05, gt=0, lt=1)
    # Test reviews both models score for the gate (stratified, seeded); null = the whole test split.
    gate_samples: int | None = Field(None, ge=10)
    # Every family of the behavioural suite (scoring/behaviour_suite.yaml) must pass at least this
    # share of its cases for a version to become champion; null = report only.
    behaviour_min_pass: float | None = Field(0.6, ge=0, le=1)
    # Limits of one prediction request (served model and CLI); larger requests are refused (HTTP 400).
    max_texts_per_request: int = Field(256, ge=1)
    max_text_chars: int = Field(50_000, ge=1)
    batch_size: int = Field(32, ge=1)


class OrchestrationConfig(_Section):
    """Prefect training flow: per-stage retries and timeouts, failure notification."""

    retries: int = Field(1, ge=0, le=10)
    retry_delay_s: float = Field(30.0, ge=0)
    timeout_s: float = Field(172_800.0, gt=0)  # per stage (2 days: full DistilBERT training on a CPU)
    # Per-stage overrides, e.g. {train: 2}; keys must be stages of dvc.yaml.
    stage_retries: dict[str, int] = {}
    stage_timeout_s: dict[str, float] = {}
    # POSTed a JSON message when a flow run fails; null = no notification.
    failure_webhook: str | None = Field(None, pattern=r"^https?://")


class ScratchGeneratorConfig(_Section):
    """``generation.model: scratch``: a GPT-2 built from this config, with a byte-level BPE
    vocabulary trained on the training reviews. For offline runs; it learns far less than gpt2."""

    vocab_size: int = Field(8000, ge=300, le=100_000)
    n_layer: int = Field(4, ge=1, le=48)
    n_head: int = Field(4, ge=1, le=64)
    n_embd: int = Field(256, ge=8, le=4096)
    n_positions: int = Field(512, ge=16, le=8192)
    tokenizer_samples: int = Field(20_000, ge=10)  # training reviews the vocabulary is learned from

    @field_validator("n_embd")
    @classmethod
    def _divisible(cls, value: int, info: Any) -> int:
        heads = info.data.get("n_head")
        if heads and value % heads:
            raise ValueError(f"must be a multiple of n_head ({heads}) (got {value})")
        return value


class GeneratorFinetuneConfig(_Section):
    """Causal-LM fine-tuning on IMDB reviews, each prefixed with its sentiment control code."""

    enabled: bool = True
    max_steps: int = Field(1000, ge=1)
    learning_rate: float = Field(5e-5, gt=0, lt=1)
    per_device_train_batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    block_size: int = Field(256, ge=8, le=8192)  # tokens per training review; longer ones are cut
    # Which tokens of a review longer than block_size are trained on: its start (head) or its end
    # (tail), where IMDB reviews state their verdict; the control code always comes first.
    review_part: Literal["head", "tail"] = "tail"
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    train_samples: int | None = Field(20_000, ge=2)  # labelled train reviews (stratified); null = all
    # Reviews from the source's unlabelled split (50,000 in IMDB), trained on without a control code.
    unlabelled_samples: int = Field(0, ge=0)
    save_steps: int = Field(500, ge=1)  # resumable checkpoints (models/checkpoints/generator-*)
    logging_steps: int = Field(50, ge=1)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # full: every weight trains. lora: low-rank adapters (peft) on the linear layers of the top
    # lora_layers decoder layers (null = all), merged into plain weights before saving; the layers
    # below get no gradient unless train_codes also trains the control codes' embedding rows.
    method: Literal["full", "lora"] = "full"
    lora_rank: int = Field(16, ge=1, le=1024)
    lora_alpha: float = Field(32.0, gt=0)
    lora_layers: int | None = Field(None, ge=1)
    train_codes: bool = True  # with lora: the two control-code embedding rows train too


class DecodingConfig(_Section):
    """How reviews are generated (transformers ``generate``; KV cache on)."""

    strategy: Literal["sample", "greedy"] = "sample"
    temperature: float = Field(1.0, ge=0)
    top_k: int = Field(0, ge=0)  # 0 = off
    top_p: float = Field(0.95, gt=0, le=1)
    repetition_penalty: float = Field(1.2, gt=0)
    max_new_tokens: int = Field(120, ge=1)
    seed: int = Field(42, ge=0)
    batch_size: int = Field(16, ge=1)  # prompts generated together (left-padded)
    # Classifier-free guidance against the opposite control code: logits = u + scale * (c - u),
    # c with the asked code, u with the other one (batched together); 1 = off.
    guidance_scale: float = Field(5.0, ge=1, le=20)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 autocast where the CPU/GPU has it

    @field_validator("temperature")
    @classmethod
    def _positive_when_sampling(cls, value: float, info: Any) -> float:
        if info.data.get("strategy", "sample") == "sample" and value <= 0:
            raise ValueError(f"must be > 0 when strategy is sample (got {value!r}); use strategy greedy instead")
        return value


class GenerationConfig(_Section):
    """Generate stage: a causal LM (GPT-2, or a Llama-architecture GGUF checkpoint) with sentiment
    control codes, scored by the trained classifier."""

    model: str = Field("gpt2", min_length=1)  # hub id, local folder, .gguf file (or folder holding one), or "scratch"
    gguf_file: str | None = None  # the .gguf file to load when generation.model is a folder holding several
    # Embeddings of the new control codes start at the mean of these words' embeddings (pretrained
    # models only), so an untrained code already leans its way; empty = transformers' mean resizing.
    code_words: dict[str, str] = Field(
        default_factory=lambda: {
            "negative": "terrible awful boring worst bad",
            "positive": "excellent wonderful great best loved",
        }
    )
    scratch: ScratchGeneratorConfig = ScratchGeneratorConfig()
    finetune: GeneratorFinetuneConfig = GeneratorFinetuneConfig()
    decoding: DecodingConfig = DecodingConfig()
    # Each generated review starts from its control code and one of these prompts, in turn.
    prompts: list[str] = Field(default_factory=lambda: ["", "This movie", "I watched this film", "The acting"])
    samples_per_sentiment: int = Field(50, ge=1)
    perplexity_samples: int = Field(200, ge=1)  # held-out (validation) reviews
    registered_model: str = Field("imdb-review-generator", min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

    @field_validator("code_words")
    @classmethod
    def _both_sentiments(cls, value: dict[str, str]) -> dict[str, str]:
        if value and sorted(value) != ["negative", "positive"]:
            raise ValueError(f"must map negative and positive to words, or be empty (got keys {sorted(value)})")
        return value

    @field_validator("prompts")
    @classmethod
    def _some_prompts(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError('must list at least one prompt ("" = the control code alone)')
        return value


class Params(_Section):
    """The whole of params.yaml."""

    seed: int = Field(42, ge=0)
    hub: HubConfig = HubConfig()
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    tokenize: TokenizeConfig = TokenizeConfig()
    train: TrainConfig = TrainConfig()
    tracking: TrackingConfig = TrackingConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    export: ExportConfig = ExportConfig()
    registry: RegistryConfig = RegistryConfig()
    orchestration: OrchestrationConfig = OrchestrationConfig()
    scoring: ScoringConfig = ScoringConfig()
    serving: ServingConfig = ServingConfig()
    generation: GenerationConfig = GenerationConfig()
    sweep: SweepConfig = SweepConfig()

    @model_validator(mode="after")
    def _sweep_space_names_params(self) -> Params:
        known = [key for key in self.flat() if not key.startswith("sweep.")]
        for key in self.sweep.space:
            if key not in known or key == "seed":
                raise ValueError(f"sweep.space.{key}: not a param the pipeline reads")
        return self

    def flat(self) -> dict[str, Any]:
        """Dotted keys -> values, e.g. ``{"train.learning_rate": 5e-05}`` (for MLflow)."""
        return flatten(self.model_dump())
