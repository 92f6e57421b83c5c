"""The training engine that every model's loop runs on."""

from genai.training.engine import NonFiniteLossError, TrainConfig, TrainingInterrupted, fit
from genai.training.kind import ModelKind

__all__ = ["ModelKind", "NonFiniteLossError", "TrainConfig", "TrainingInterrupted", "fit"]
