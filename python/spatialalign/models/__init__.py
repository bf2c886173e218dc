"""The text-to-video models every stage samples from or trains: the toy model and Wan2.1.

* :mod:`~spatialalign.models.backends` — one back end per model behind one interface
  (load, sample, attach a LoRA), chosen by name
* :mod:`~spatialalign.models.toy` — the toy T2V model (transformer, codec, text encoder,
  pipeline) and its shipped weights
* :mod:`~spatialalign.models.wan` — Wan2.1 checkpoints: layouts, loading, runtime switches
"""
