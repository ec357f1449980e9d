"""State machines as tables: every stateful thing (pledge, campaign, disbursement)
lists its transitions here-shaped, so what may happen is read in one place, checked by
the code that moves it, and drawn for docs/architecture.md from the same table."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

State = TypeVar("State", bound=enum.StrEnum)


@dataclass(frozen=True)
class Transition(Generic[State]):
    event: str
    sources: tuple[State, ...]
    target: State
    why: str = ""


class StateMachine(Generic[State]):
    def __init__(
        self, name: str, initial: Iterable[State], transitions: Iterable[Transition[State]]
    ):
        self.name = name
        self.initial = tuple(initial)
        self.transitions = tuple(transitions)
        self.by_event = {t.event: t for t in self.transitions}
        if len(self.by_event) != len(self.transitions):
            raise ValueError(f"{name}: two transitions share an event name")
        self.pairs = frozenset(
            (s.value, t.target.value) for t in self.transitions for s in t.sources
        )

    def allowed(self, source: str, target: str) -> bool:
        return (str(source), str(target)) in self.pairs

    def sources_of(self, target: State) -> tuple[State, ...]:
        found: dict[State, None] = {}
        for t in self.transitions:
            if t.target == target:
                found.update(dict.fromkeys(t.sources))
        return tuple(found)

    def diagram(self) -> str:
        """A Mermaid state diagram of the table."""
        lines = ["stateDiagram-v2"]
        lines += [f"    [*] --> {state.value}" for state in self.initial]
        for t in self.transitions:
            lines += [f"    {s.value} --> {t.target.value}: {t.event}" for s in t.sources]
        return "\n".join(lines)
