"""SpatialAlign: align text-to-video models with dynamic spatial relationships."""

import logging as _logging

__version__ = "0.1.0"

# peft imports bitsandbytes when it is installed (the ``iqa`` extra brings it); on CPUs with
# AVX512-BF16 bitsandbytes then warns that an optional kernel from the Hub is missing. We
# never use its kernels: keep that warning out of our users' logs.
_logging.getLogger("bitsandbytes").setLevel(_logging.ERROR)
