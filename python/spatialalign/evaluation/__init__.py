"""evaluation stage: quality and peer metrics of sampled videos, and run comparison.

* :mod:`.peer` — T2V-CompBench and VBench spatial-relationship scores from the tracks;
* :mod:`.proxies` — weight-free sharpness, colourfulness, crop-histogram consistency;
* :mod:`.neural` — DINOv2 ID consistency and CLIP-IQA from local models;
* :mod:`.metrics` — one video's ``metrics.parquet`` row;
* :mod:`.compare` — Correctness@0.7 with prompt-bootstrap intervals across runs.

Submodules are imported on demand (``neural`` pulls in torch).
"""
