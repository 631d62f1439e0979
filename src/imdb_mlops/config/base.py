"""The base of every ``params.yaml`` section."""

from pydantic import BaseModel, ConfigDict

# strict: no silent "10" -> 10 or 1 -> True coercions; unknown keys are errors.
SECTION_CONFIG = ConfigDict(extra="forbid", strict=True, frozen=True)


class Section(BaseModel):
    model_config = SECTION_CONFIG
