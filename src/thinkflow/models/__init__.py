"""Models: the loader every stage uses (`load`), and the offline tiny Qwen2.5-VL / Qwen2-VL factory (`tiny`)."""
