"""ThinkFlow: train R1-style reasoning vision-language models with the VLAA-Thinker recipe.

Importing ``thinkflow`` is light (no transformers, no torch), so the CLI answers quickly. ThinkFlow's
image-only Qwen2-VL / Qwen2.5-VL processors are registered with ``AutoProcessor`` when a model or processor
is loaded (`thinkflow.models.load`) or when `thinkflow.models.processor` is imported.
"""

__version__ = "0.1.0"
