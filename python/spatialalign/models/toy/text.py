"""The toy text encoder: DSR prompts -> ``encoder_hidden_states`` ``[B, L, text_dim]``.

A pretrained T5 reads "left" and "right" in context; a tiny model trained in CPU minutes
does not. So the tokenizer parses a prompt with the DSR grammar into role-tagged *slot*
tokens (scene, animal, object, initial relation, final relation, verb, DSR type), each
relation one clearly separated token with its own embedding per role, and the relation
slots repeated once more. Text that does not follow the grammar falls back to one token
per known word. Padding positions are zero, as Wan zeroes T5's padding; the empty caption
(all padding) is the unconditional input for classifier-free guidance.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from spatialalign.core.dsr.grammar import try_parse_prompt
from spatialalign.core.dsr.model import DSRPrompt

ROLES: tuple[str, ...] = (
    "pad",
    "scene",
    "animal",
    "object",
    "initial",
    "final",
    "verb",
    "type",
    "word",
)
ROLE_ID: dict[str, int] = {r: i for i, r in enumerate(ROLES)}
SPECIAL: tuple[str, ...] = ("<pad>", "<unk>")
_WORD_RE = re.compile(r"[a-z]+")


@dataclass
class ToyTextConfig:
    """Vocabulary and size of the toy text encoder."""

    vocab: list[str] = field(default_factory=lambda: list(SPECIAL))
    """Token strings ``role:value`` (e.g. ``initial:L``, ``animal:fox``, ``word:fox``)."""
    text_dim: int = 64
    max_length: int = 16
    relation_repeats: int = 2
    """How many times the initial/final relation slots appear in the sequence."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ToyTextConfig:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def slot_tokens(prompt: DSRPrompt, relation_repeats: int = 2) -> list[tuple[str, str]]:
    """(role, token) pairs of a parsed prompt, relation slots repeated ``relation_repeats`` times."""
    toks = [
        ("scene", f"scene:{prompt.scene.lower()}"),
        ("animal", f"animal:{prompt.animal}"),
        ("object", f"object:{prompt.object}"),
        ("verb", f"verb:{prompt.verb}"),
        ("type", f"type:{prompt.initial}{prompt.final}"),
    ]
    for _ in range(max(1, relation_repeats)):
        toks += [("initial", f"initial:{prompt.initial}"), ("final", f"final:{prompt.final}")]
    return toks


def word_tokens(text: str) -> list[tuple[str, str]]:
    """Fallback for text outside the DSR grammar: one ``word:`` token per word."""
    return [("word", f"word:{w}") for w in _WORD_RE.findall(text.lower())]


def tokens_for(text: str, relation_repeats: int = 2) -> list[tuple[str, str]]:
    """Slot tokens when ``text`` parses as a DSR prompt, word tokens otherwise ('' -> [])."""
    if not text.strip():
        return []
    parsed = try_parse_prompt(text)
    if parsed is None:
        return word_tokens(text)
    return slot_tokens(parsed, relation_repeats)


def build_vocab(
    prompts: Iterable[DSRPrompt], relation_repeats: int = 2, extra_tokens: Iterable[str] = ()
) -> list[str]:
    """Every slot and word token of ``prompts``, all relations and ``extra_tokens``
    (e.g. ``animal:fox`` for the whole vocabulary), sorted after the specials."""
    vocab: set[str] = set(extra_tokens)
    for p in prompts:
        vocab.update(t for _, t in slot_tokens(p, relation_repeats))
        if p.text:
            vocab.update(t for _, t in word_tokens(p.text))
    vocab.update(f"word:{w}" for t in list(vocab) for w in _WORD_RE.findall(t.split(":", 1)[1]))
    for r in "LRTB":
        vocab.update({f"initial:{r}", f"final:{r}"})
        vocab.update(f"type:{r}{q}" for q in "LRTB")
    return list(SPECIAL) + sorted(vocab)


class ToyTokenizer:
    """Maps prompt text to fixed-length ``input_ids``, ``role_ids`` and ``attention_mask``."""

    def __init__(self, config: ToyTextConfig) -> None:
        self.config = config
        self.index = {t: i for i, t in enumerate(config.vocab)}
        self.unk = self.index.get("<unk>", 1)

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        n, length = len(texts), self.config.max_length
        ids = torch.zeros(n, length, dtype=torch.long)
        roles = torch.zeros(n, length, dtype=torch.long)
        mask = torch.zeros(n, length, dtype=torch.long)
        for i, text in enumerate(texts):
            toks = tokens_for(text, self.config.relation_repeats)[:length]
            for j, (role, tok) in enumerate(toks):
                ids[i, j] = self.index.get(tok, self.unk)
                roles[i, j] = ROLE_ID[role]
                mask[i, j] = 1
        return {"input_ids": ids, "role_ids": roles, "attention_mask": mask}


class ToyTextEncoder(nn.Module):
    """Token + role embeddings, a residual MLP, zeroed padding: ``[B, L, text_dim]``."""

    def __init__(self, config: ToyTextConfig) -> None:
        super().__init__()
        self.config = config
        d = config.text_dim
        self.token_embedding = nn.Embedding(len(config.vocab), d)
        self.role_embedding = nn.Embedding(len(ROLES), d)
        self.norm = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.tokenizer = ToyTokenizer(config)

    def forward(
        self, input_ids: torch.Tensor, role_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        h = self.token_embedding(input_ids) + self.role_embedding(role_ids)
        h = h + self.mlp(self.norm(h))
        return h * attention_mask.unsqueeze(-1).to(h.dtype)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """``encoder_hidden_states`` for a list of prompt texts (the empty string = unconditional)."""
        dev = self.token_embedding.weight.device
        batch = {k: v.to(dev) for k, v in self.tokenizer(texts).items()}
        return self(**batch)
