"""Where a deployment runs. Every provider has the same four verbs, plus how a request reaches it.

* ``deploy(dep)`` makes the deployment callable and returns the fields it sets on the record
  (``status``, ``endpoint_id``, ``endpoint_url``, ``deployed_at``);
* ``status(dep)`` is the provider's live view (``status`` and whatever it knows: workers …);
* ``stop(dep)`` tears it down for good;
* ``usage(dep)`` is the provider's side of the bill: ``cost_per_request`` and what it charges for;
* ``prepare(dep, kind, body)`` (blocking, before any money moves) loads what the request needs
  and checks it: a bad prompt is refused here, so it is never charged;
* ``generate(dep, prepared)`` is an async iterator of ``("text", piece)`` then
  ``("done", Generation)`` (or ``("error", exc)``): the gateway meters and records around it.

Providers are found by name (``get_provider``), as papermill finds engines; a plug-in adds one
with ``register_provider``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from ...errors import InvalidInput
from ..engine import Generation

Event = tuple[str, Any]


class Provider(ABC):
    name: ClassVar[str]

    @abstractmethod
    def deploy(self, dep: dict[str, Any]) -> dict[str, Any]: ...

    @abstractmethod
    def status(self, dep: dict[str, Any]) -> dict[str, Any]: ...

    @abstractmethod
    def stop(self, dep: dict[str, Any]) -> None: ...

    @abstractmethod
    def usage(self, dep: dict[str, Any]) -> dict[str, Any]: ...

    @abstractmethod
    def prepare(self, dep: dict[str, Any], kind: str, body: Any) -> Any: ...

    @abstractmethod
    def generate(self, dep: dict[str, Any], prepared: Any) -> AsyncIterator[Event]: ...


_providers: dict[str, Provider] = {}


def register_provider(provider: Provider) -> Provider:
    _providers[provider.name] = provider
    return provider


def get_provider(name: str) -> Provider:
    if not _providers:
        from .local import LocalProvider
        from .runpod import RunPodProvider

        register_provider(LocalProvider())
        register_provider(RunPodProvider())
    try:
        return _providers[name]
    except KeyError:
        raise InvalidInput(f"provider: unknown provider '{name}'; known: {', '.join(sorted(_providers))}",
                           field="provider") from None


def names() -> list[str]:
    get_provider("local")
    return sorted(_providers)


__all__ = ["Event", "Generation", "Provider", "get_provider", "names", "register_provider"]
