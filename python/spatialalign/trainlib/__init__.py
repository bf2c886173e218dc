"""Training pieces below every trainer: the toy model's pretraining (``toy.pretrain``) and the
DPO stage (``training``) both import them, and they import neither.

* :mod:`~spatialalign.trainlib.flow` — Wan's flow matching (noise levels, target, loss, the
  official training grid)
* :mod:`~spatialalign.trainlib.checkpoint` — safetensors training checkpoints (no pickle)
(DDP/FSDP wrapping and gathering is :mod:`spatialalign.parallel.sharding`.)
"""
