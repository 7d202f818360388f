"""ThinkFlow: train R1-style reasoning vision-language models with the VLAA-Thinker recipe.

Importing ``thinkflow`` registers its image-only Qwen2-VL / Qwen2.5-VL processors with ``AutoProcessor``,
so checkpoints saved by ThinkFlow load back as full VLM processors.
"""

from thinkflow.models.processor import register_processors

__version__ = "0.1.0"

register_processors()
