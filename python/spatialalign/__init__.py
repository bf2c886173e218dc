"""SpatialAlign: align text-to-video models with dynamic spatial relationships."""

import logging as _logging

__version__ = "0.1.0"

# diffusers and peft import bitsandbytes whenever it is installed. Our lock leaves it out (pyiqa
# declares it but never imports it; see pyproject.toml's exclude-dependencies), but a user's own
# environment may have it: on CPUs with AVX512-BF16 it then warns that an optional kernel from
# the Hub is missing. We never use its kernels: keep that warning out of our users' logs.
_logging.getLogger("bitsandbytes").setLevel(_logging.ERROR)
