"""One registry pattern for every named plugin (open-r1's `REWARD_FUNCS_REGISTRY`, one per kind).

A `Registry` maps the names a config may write (`eval.prompt=s1`, `eval.grading.profile=skythought`,
`trainer.launcher=torchrun`, ...) to the object each names. The module that defines a plugin registers
it where it defines it (`@PROMPTS.register("s1")`, or `PROMPTS.add("s1", obj)`); the schema's allowed
values are the registry's names (no second list), and an unknown name is the same one-line ConfigError
everywhere, naming the key and the known names, before any run dir.

The registries live here, on the ground floor, so the schema can check names without importing the
wings; each knows the module that fills it (`provider`) and imports it by name the first time it is
read, as Hydra imports a `_target_` (config.import_target). tests/test_architecture.py lists these
providers as the ground floor's only upward references.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Iterator

from reasoning_sft.errors import ConfigError


class Registry:
    def __init__(self, kind: str, key: str, provider: str):
        self.kind, self.key, self.provider = kind, key, provider   # key: the config key that names one
        self._entries: dict[str, Any] = {}
        self._loaded = False

    def add(self, name: str, obj: Any) -> Any:
        if name in self._entries and self._entries[name] is not obj:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = obj
        return obj

    def remove(self, name: str) -> None:
        """Take a plugin away again (one a test or a notebook session added)."""
        self._entries.pop(name, None)

    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator: `@REGISTRY.register("name")` on a function or class."""
        return lambda obj: self.add(name, obj)

    def _load(self) -> dict[str, Any]:
        if not self._loaded:
            self._loaded = True
            importlib.import_module(self.provider)   # its definitions register themselves
        return self._entries

    def names(self) -> tuple[str, ...]:
        return tuple(self._load())

    def __contains__(self, name: object) -> bool:
        return name in self._load()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self):
        return self._load().items()

    def unknown(self, name: Any, key: str | None = None) -> str:
        """The one line said of a name this registry does not hold."""
        return f"{key or self.key}={name!r}: not a known {self.kind} (known: {', '.join(self.names())})"

    def get(self, name: Any, key: str | None = None) -> Any:
        """The plugin called `name`; a ConfigError naming the key and the known names otherwise."""
        entries = self._load()
        if name not in entries:
            raise ConfigError(self.unknown(name, key))
        return entries[name]

    __getitem__ = get

    def check(self, errs: list[str], key: str, name: Any, allow: tuple = ()) -> None:
        """Appends the unknown-name problem to a validation's list (schema.py's checks)."""
        if name not in allow and name not in self:
            errs.append(self.unknown(name, key))


# Every named plugin of the project, by kind. `provider`: the module whose definitions fill it.
THINKING_STYLES = Registry("thinking style", "data.format.thinking_style", "reasoning_sft.data.styles")
ABLATIONS = Registry("ablation transform", "ablation.transforms", "reasoning_sft.data.ablations")
CURATION_STAGES = Registry("curation stage", "curation", "reasoning_sft.data.curation")
ARCHITECTURES = Registry("tiny-model architecture", "model.network.architecture", "reasoning_sft.training.models")
LAUNCHERS = Registry("launcher", "trainer.launcher", "reasoning_sft.training.launch")
PROMPTS = Registry("evaluation prompt", "eval.prompt", "reasoning_sft.evaluation.prompts")
GRADING_PROFILES = Registry("grading profile", "eval.grading.profile", "reasoning_sft.evaluation.profiles")
EVAL_TASKS = Registry("evaluation task", "eval.tasks", "reasoning_sft.evaluation.tasks")
BACKENDS = Registry("generation backend", "eval.backend", "reasoning_sft.evaluation.engines")
GRADE_TASKS = Registry("grade task", "task", "reasoning_sft.evaluation.evaluator")
REPORT_FIGURES = Registry("report figure", "report.figure", "reasoning_sft.report")

REGISTRIES = (THINKING_STYLES, ABLATIONS, CURATION_STAGES, ARCHITECTURES, LAUNCHERS, PROMPTS, GRADING_PROFILES,
              EVAL_TASKS, BACKENDS, GRADE_TASKS, REPORT_FIGURES)
