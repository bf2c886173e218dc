"""LoRA adapter files: the diffusers/peft format we write, and conversion from and to the
formats found in the wild (the official checkpoint, kohya/musubi, DiffSynth).

* :mod:`~spatialalign.lora.adapter` — save, load (safetensors only), attach to a transformer
* :mod:`~spatialalign.lora.convert` — name and format conversion
* :mod:`~spatialalign.lora.cli` — ``spatialalign convert-lora``
"""
