"""The ``rl`` stage: online GRPO on a flow-matching T2V model with the DSR-Score as reward.

* :mod:`~spatialalign.rl.config` — ``RLConfig`` (the CLI options derive from it)
* :mod:`~spatialalign.rl.sde` — the sampler's ODE as an SDE: Gaussian steps, log-probabilities
* :mod:`~spatialalign.rl.advantages` — rewards, group-relative advantages, the top-k filter
* :mod:`~spatialalign.rl.objective` — the clipped policy-ratio loss with a KL term
* :mod:`~spatialalign.rl.policy` / :mod:`~spatialalign.rl.rollout` — the model, SDE sampling
* :mod:`~spatialalign.rl.reward` — in-process detection, tracking and DSR-Scores
* :mod:`~spatialalign.rl.update` — one iteration's AdamW steps
* :mod:`~spatialalign.rl.run` / ``cli`` — ``spatialalign rl RUN_DIR``

Layer 5 (above ``training``): it reuses ``train``'s LoRA set-up, checkpoints, adapter
writer and logger, so its adapters are ``train``'s in every way that matters downstream.
"""
