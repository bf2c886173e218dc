"""``spatialalign loop``: the iterated self-improvement loop (sample -> ... -> train -> eval).

Modules: :mod:`.layout` (the loop directory's paths), :mod:`.config` (``LoopConfig``),
:mod:`.stages` (one round's stages through the stage library functions), :mod:`.merge`
(fusing a LoRA into a saved model), :mod:`.table` (the per-round table), :mod:`.run`
(the loop) and :mod:`.cli` (the verb).
"""
