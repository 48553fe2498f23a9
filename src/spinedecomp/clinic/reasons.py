"""Reasons: every decision the clinic rules make says which rule fired and what it cites."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from spinedecomp.clinic.knowledge import load_knowledge

__all__ = ["Effect", "Reason", "cite", "make_reason"]


class Effect(StrEnum):
    """What a reason does to the decision it belongs to."""

    SUPPORTS = "supports"
    CAUTION = "caution"
    NEEDS_INFORMATION = "needs_information"
    EXCLUDES = "excludes"
    URGENT = "urgent"
    INFO = "info"


class Reason(BaseModel):
    """One rule applied: its id, its effect, a plain message and its citations."""

    model_config = ConfigDict(frozen=True)

    rule_id: str
    effect: Effect
    message: str
    citation: list[str] = Field(min_length=1)


def cite(*groups: Iterable[str]) -> list[str]:
    """Merge citation lists, keeping the first occurrence order and dropping repeats."""
    out: list[str] = []
    for group in groups:
        for source in group:
            if source not in out:
                out.append(source)
    return out


def make_reason(
    rule_id: str, effect: Effect, message: str, extra_sources: Iterable[str] = ()
) -> Reason:
    """A reason for ``rule_id``, citing the rule's sources plus ``extra_sources``.

    Raises ``KeyError`` if the knowledge base has no such rule, so a rule can never be
    applied without its citation.
    """
    rule = load_knowledge().rule(rule_id)
    return Reason(
        rule_id=rule_id,
        effect=effect,
        message=message,
        citation=cite(rule.source, extra_sources),
    )
