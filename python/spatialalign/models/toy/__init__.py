"""The toy T2V model: a tiny ``WanTransformer3DModel``-style transformer, a fixed codec, a
bag-of-words text encoder and the pipeline that samples them (the toy *world* that renders
its training clips is :mod:`spatialalign.toy`)."""
