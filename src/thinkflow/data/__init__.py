"""Datasets: the six-step build, the VLAA-Thinking import, synthetic scenes, validation and the loader.

* `thinkflow.data.build.run` (``thinkflow build``): sources -> VLAA-format dataset (resumable);
* `thinkflow.data.synthetic.generate` (``thinkflow data synth``): the embedded default dataset;
* `thinkflow.data.validate.run` (``thinkflow data validate [--rehash]``): schema, images, boxes, verifier types,
  the manifest (refreshed on purpose after a hand edit with ``--rehash``);
* `load_split` / `manifest_hash`: what the training and evaluation stages read.
"""

from thinkflow.data.loader import load_manifest, load_split, manifest_hash

__all__ = ["load_manifest", "load_split", "manifest_hash"]
