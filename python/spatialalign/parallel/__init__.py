"""Parallelism, one home: ranks from the launcher's environment, worker processes on one
machine, and whole tensors from DDP/FSDP-sharded ones.

* :mod:`~spatialalign.parallel.ranks` — rank / world size from ``torchrun``'s variables
* :mod:`~spatialalign.parallel.workers` — a process pool sized to the machine's cores
* :mod:`~spatialalign.parallel.sharding` — DDP/FSDP wrapping and gathering (imports torch)
"""
