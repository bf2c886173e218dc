"""The ``train`` stage: LoRA on a Wan transformer with DPO + zeroth-order regularisation.

* :mod:`~spatialalign.training.flow` — Wan's flow matching (noise levels, target, loss)
* :mod:`~spatialalign.training.losses` — the loss variants as pure functions
* :mod:`~spatialalign.training.config` — ``TrainConfig`` (the CLI options derive from it)
* :mod:`~spatialalign.training.data` — cached items and their deterministic order/noise
* :mod:`~spatialalign.training.cache` — videos -> latents, prompts -> text embeddings, once
* :mod:`~spatialalign.training.checkpoint` — safetensors training checkpoints (no pickle)
* :mod:`~spatialalign.training.trainer` — the loop (accelerate, logs, resume, adapter)
* :mod:`~spatialalign.training.run` / ``cli`` — ``spatialalign train RUN_DIR``
"""
