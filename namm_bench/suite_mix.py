"""Several suites' tasks as one suite: ``make_suite("synthetic+ruler")``.

Evolution draws its training examples from one suite (``EvolutionConfig.suite``); a mix lets a
NAMM evolve on, say, synthetic pass keys and RULER tasks together. Each task keeps its own
suite's examples, metric and row fields; task names must not repeat across the mixed suites. A
data directory, when given, is handed to every suite of the mix.
"""

from __future__ import annotations

from typing import Any


class SuiteMix:
    """The tasks of ``suites`` (name -> suite), each served by the suite it belongs to.

    Raises
    ------
    ValueError
        If two suites name the same task, or the suites differ in modality or default adapter.
    """

    def __init__(self, suites: dict[str, Any]) -> None:
        self.suites = suites
        self.name = "+".join(suites)
        self._owner: dict[str, Any] = {}
        for suite in suites.values():
            for task in suite.tasks():
                if task in self._owner:
                    raise ValueError(f"suite mix {self.name}: task {task} is in more than one suite")
                self._owner[task] = suite
        for attribute in ("modality", "default_adapter"):
            values = {name: getattr(s, attribute, None) for name, s in suites.items()}
            if len(set(values.values())) > 1:
                raise ValueError(f"suite mix {self.name}: the suites differ in {attribute}: {values}")
            setattr(self, attribute, next(iter(values.values())))

    def tasks(self) -> list[str]:
        return list(self._owner)

    def default_tasks(self) -> list[str]:
        return [t for s in self.suites.values() for t in getattr(s, "default_tasks", s.tasks)()]

    def check(self, tasks: list[str]) -> None:
        for suite in self.suites.values():
            mine = [t for t in tasks if self._owner.get(t) is suite]
            if mine and hasattr(suite, "check"):
                suite.check(mine)

    def examples(self, task: str, *args: Any, **kwargs: Any) -> list[Any]:
        return self._suite(task).examples(task, *args, **kwargs)

    def score(self, example: Any, outcome: Any) -> float:
        return self._suite(example.task).score(example, outcome)

    def record(self, example: Any, outcome: Any) -> dict[str, Any]:
        """The owning suite's extra row fields (``namm-bench run`` on a mix), if it has any."""
        suite = self._suite(example.task)
        return suite.record(example, outcome) if hasattr(suite, "record") else {}

    def _suite(self, task: str) -> Any:
        if task not in self._owner:
            raise ValueError(f"unknown task {task} in suite mix {self.name}")
        return self._owner[task]
