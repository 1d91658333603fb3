"""Service settings, read from `ARGINATOR_<NAME>` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from arginator.errors import ConfigError


class Settings(BaseSettings):
    """Service settings, read from `ARGINATOR_<NAME>` environment variables."""

    model_config = SettingsConfigDict(env_prefix="ARGINATOR_", protected_namespaces=())

    model: Path = Field(
        Path("/models"), description="An .onnx file or a directory holding model.shipped.onnx / model.onnx"
    )
    model_name: str | None = Field(None, description="Name in /metadata and the v2 routes (default: from the path)")
    model_version: str | None = Field(None, description="Registry version of the model, shown by /ready")
    threads: int = Field(0, ge=0, description="ONNX Runtime intra-op threads (0: all cores)")
    min_confidence: float = Field(0.5, ge=0, le=1, description="Rows below this confidence are flagged abstained")
    max_rows: int = Field(4096, gt=0, description="Most rows (or texts) in one request")
    max_body_bytes: int = Field(
        32 * 1024 * 1024, gt=0, description="Largest request body, and largest body after gzip/deflate decoding"
    )
    max_text_chars: int = Field(10_000, gt=0, description="Longest text, in characters, on /predict/text")
    api_key: str | None = Field(None, description="When set, required as X-API-Key (or Bearer) on model routes")
    enable_text: bool = Field(True, description="Serve /predict/text when the model's embedder is installed")
    enable_sequence: bool = Field(
        True, description="Serve /predict/sequence when the model's protein embedder (UniRep) is installed"
    )
    max_sequences: int = Field(64, gt=0, description="Most sequences in one /predict/sequence request")
    max_sequence_length: int = Field(5000, gt=0, description="Longest sequence, in residues, on /predict/sequence")

    @field_validator("api_key")
    @classmethod
    def _real_key(cls, key: str | None) -> str | None:
        """An empty key would silently turn authentication off; whitespace around it can never match a header."""
        if key is None:
            return None
        if not key.strip():
            raise ValueError(
                "empty or only whitespace, which would turn authentication off: unset the variable to disable "
                "authentication, or set it to a real key"
            )
        if key != key.strip():
            raise ValueError(
                "starts or ends with whitespace, which HTTP strips from headers, so no client could send it: "
                "remove the whitespace"
            )
        return key


def load_settings() -> Settings:
    """Settings from the environment, or a ConfigError that names each bad variable and why."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"ARGINATOR_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ConfigError(f"invalid service settings: {problems}") from None
