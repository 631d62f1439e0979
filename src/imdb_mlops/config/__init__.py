"""The one validated config model for ``params.yaml`` (:class:`Params`) and how it is read.

- :mod:`~imdb_mlops.config.schema`: the sections, as strict pydantic models;
- :mod:`~imdb_mlops.config.loading`: reading and validating the file, one-line errors;
- :mod:`~imdb_mlops.config.overrides`: ``KEY=VALUE`` overrides and profile overlays.
"""

from imdb_mlops.config.loading import DEFAULT_PARAMS_PATH, PROFILES_DIR, load_params, read_yaml, validate_params
from imdb_mlops.config.schema import (
    DataConfig,
    DecodingConfig,
    EvaluateConfig,
    ExportConfig,
    GenerationConfig,
    GeneratorFinetuneConfig,
    HubConfig,
    MaxSamplesConfig,
    ModelConfig,
    OrchestrationConfig,
    Params,
    RegistryConfig,
    ScoringConfig,
    ScratchGeneratorConfig,
    ServingConfig,
    TokenizeConfig,
    TrackingConfig,
    TrainConfig,
    flatten,
)
from imdb_mlops.config.sweep import PrunerConfig, SearchDimension, SweepConfig

__all__ = [
    "DEFAULT_PARAMS_PATH",
    "PROFILES_DIR",
    "DataConfig",
    "DecodingConfig",
    "EvaluateConfig",
    "ExportConfig",
    "GenerationConfig",
    "GeneratorFinetuneConfig",
    "HubConfig",
    "MaxSamplesConfig",
    "ModelConfig",
    "OrchestrationConfig",
    "Params",
    "PrunerConfig",
    "RegistryConfig",
    "ScoringConfig",
    "ScratchGeneratorConfig",
    "SearchDimension",
    "ServingConfig",
    "SweepConfig",
    "TokenizeConfig",
    "TrackingConfig",
    "TrainConfig",
    "flatten",
    "load_params",
    "read_yaml",
    "validate_params",
]
