"""One typed catalogue per kind of thing (tools, metrics, degradations, encoders, judges).

Modelled on pyiqa's ``create_metric(name)`` + ``list_models()``: entries are registered once,
looked up by name, and an unknown name raises ``KeyError`` with close-match suggestions. Every
entry derives from :class:`Entry`, so every kind answers the same two questions the same way:
``entry.availability(**kw)`` (can it run here, and if not why) and ``entry.create(**kw)``.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Generic, TypeVar

from restore_r1.errors import RestoreR1Error

T = TypeVar("T")

#: pip distribution names of modules whose import name differs.
PIP_NAMES: dict[str, str] = {"clip": "openai-clip"}


class Entry:
    """The base of every catalogue entry: tools, degradations, metrics, judges and encoders.

    Subclasses are frozen dataclasses with a ``name`` field. They may declare ``requires`` (the
    importable modules they need beyond the core dependencies) and ``extra`` (the pip extra of
    this package that brings them), and override :meth:`missing` (what else is absent: files,
    settings; it loads nothing) and :meth:`create`. :meth:`availability` is the one
    implementation of "can it run here" for every kind.
    """

    #: What the entries are ("tool", "metric", ...), for messages.
    kind: ClassVar[str] = "entry"
    name: str
    requires: tuple[str, ...] = ()
    extra: str | None = None

    def modules(self) -> tuple[str, ...]:
        """Every importable module the entry needs (``requires``, plus what the kind always needs)."""
        return tuple(self.requires)

    def install_hint(self, module: str) -> str:
        """How to install ``module``: this package's extra when the entry names one."""
        return f"pip install 'restore-r1[{self.extra}]'" if self.extra else f"pip install {PIP_NAMES.get(module, module)}"

    def missing(self, **kwargs: Any) -> list[str]:
        """One line per missing file or setting (``[]`` when nothing is); loads nothing."""
        return []

    def availability(self, **kwargs: Any) -> tuple[bool, str]:
        """``(True, "")`` when ``create(**kwargs)`` can work here, else ``(False, reason)``.

        The reason names every missing piece: modules (and how to install them), then what
        :meth:`missing` reports. Checks modules, files and settings only; it loads no model and
        calls no server.
        """
        reasons = [
            f"the Python module {module!r} is not installed ({self.install_hint(module)})"
            for module in self.modules()
            if importlib.util.find_spec(module) is None
        ]
        try:
            reasons += self.missing(**kwargs)
        except (RestoreR1Error, FileNotFoundError) as exc:
            reasons.append(str(exc))
        return (False, "; ".join(reasons)) if reasons else (True, "")

    @property
    def available(self) -> bool:
        return self.availability()[0]

    def create(self, **kwargs: Any) -> Any:
        """Builds what the entry describes (a tool, a metric, a judge, an encoder, a sampler)."""
        raise NotImplementedError(f"{self.kind} {self.name!r} has no factory")


class FactoryEntry(Entry):
    """An entry built by a ``factory(**kwargs)`` field and checked by an optional ``check(**kwargs)``
    field, which raises what is missing and loads nothing (judges, encoders)."""

    factory: Callable[..., Any]
    check: Callable[..., None] | None

    def missing(self, **kwargs: Any) -> list[str]:
        """Runs ``check`` (it raises what is missing; :meth:`Entry.availability` reports it)."""
        if self.check is not None:
            self.check(**kwargs)
        return []

    def create(self, **kwargs: Any) -> Any:
        return self.factory(**kwargs)


class Catalogue(Generic[T]):
    """An ordered name -> entry table.

    Args:
        kind: what the entries are ("tool", "metric", ...); used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Adds ``entry`` under ``name``; registering a name twice is an error."""
        if not name or name != name.strip():
            raise ValueError(f"invalid {self.kind} name {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        """Returns the entry called ``name``.

        Raises:
            KeyError: unknown name; the message suggests close matches.
        """
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(str(name), list(self._entries), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise KeyError(f"unknown {self.kind} {name!r}{hint} (see the list of {self.kind}s)") from None

    def names(self) -> list[str]:
        """All registered names, in registration order."""
        return list(self._entries)

    def values(self) -> list[T]:
        return list(self._entries.values())

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
