"""The core every stage stands on; it imports nothing else of the package.

* :mod:`~spatialalign.core.errors` — :class:`SpatialAlignError`, the one error users see
* :mod:`~spatialalign.core.ids` — prompt and sample ids (they become file names)
* :mod:`~spatialalign.core.fileio` — atomic writes, locks, JSON/parquet reading
* :mod:`~spatialalign.core.schemas` — the Arrow schemas of the files passed between stages
* :mod:`~spatialalign.core.provenance` — what each file was made from (fingerprints)
* :mod:`~spatialalign.core.presets` — scoring and validity presets (official, toy)
* :mod:`~spatialalign.core.video` — reading and writing video files
* :mod:`~spatialalign.core.options` — click options derived from config dataclasses
"""
