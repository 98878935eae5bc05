"""pipeline.yaml: schema, defaults and the validated `Pipeline` object."""

from .loader import ConfigError, Pipeline, load_pipeline

__all__ = ["ConfigError", "Pipeline", "load_pipeline"]
