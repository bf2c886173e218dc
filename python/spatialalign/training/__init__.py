"""The ``train`` stage: LoRA on a Wan transformer with DPO + zeroth-order regularisation.

* :mod:`~spatialalign.training.losses` — the loss variants as pure functions
* :mod:`~spatialalign.training.config` — ``TrainConfig`` (the CLI options derive from it)
* :mod:`~spatialalign.training.data` — cached items and their deterministic order/noise
* :mod:`~spatialalign.training.cache` — videos -> latents, prompts -> text embeddings, once
* :mod:`~spatialalign.training.trainer` — the loop (accelerate, logs, resume, adapter)
* :mod:`~spatialalign.training.run` / ``cli`` — ``spatialalign train RUN_DIR``

Flow matching, checkpoints and the DDP/FSDP helpers live a layer below, in
:mod:`spatialalign.trainlib`, which the toy model's pretraining shares.
"""
