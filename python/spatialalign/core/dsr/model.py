"""The parsed form of a dynamic-spatial-relation prompt."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# relation letter -> the word used in prompts
RELATIONS: dict[str, str] = {"L": "left", "R": "right", "T": "top", "B": "bottom"}


@dataclass(frozen=True)
class DSRPrompt:
    """One DSR prompt: the animal moves from ``initial`` to ``final`` relative to the object.

    Relations are the letters ``L R T B`` (left, right, top, bottom).
    """

    animal: str
    object: str
    initial: str
    final: str
    scene: str = ""
    verb: str = ""
    text: str = ""
    prompt_id: str = ""
    split: str = ""

    def __post_init__(self) -> None:
        for name in ("initial", "final"):
            value = getattr(self, name)
            if value not in RELATIONS:
                raise ValueError(f"{name} relation must be one of L/R/T/B, got {value!r}")

    @property
    def dsr_type(self) -> str:
        """Two-letter type such as ``LR`` (initial then final)."""
        return self.initial + self.final

    def to_dict(self) -> dict[str, str]:
        return asdict(self)
