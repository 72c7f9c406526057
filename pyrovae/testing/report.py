"""Checks and their report: what :func:`check_estimator` and :func:`check_likelihood` return.

A check is a callable with an ``id``: it returns a line saying what it found, or raises
:class:`CheckFailed` saying what is wrong, or :class:`NotApplicable` (a ``unittest.SkipTest``,
which pytest reports as a skip) when the subject declares the check does not apply to it.
"""

from __future__ import annotations

import unittest
from collections.abc import Callable
from dataclasses import dataclass, field

STATUSES = ("passed", "failed", "skipped")


class CheckFailed(AssertionError):
    """A contract check found a fault; the message says what is wrong and what is expected."""


class NotApplicable(unittest.SkipTest):
    """The subject declares that the check does not apply (a biased gradient, a value that is
    not a bound); pytest shows it as skipped."""


@dataclass(frozen=True)
class Check:
    """One contract check of one subject; call it to run it (in a pytest parametrization too)."""

    id: str
    run: Callable[[], str]
    subject: str = ""

    def __call__(self) -> str:
        try:
            return self.run()
        except (CheckFailed, NotApplicable):
            raise
        except Exception as e:  # the subject raised: that is the finding, in one line
            first = (str(e).strip().splitlines() or [""])[0]
            raise CheckFailed(f"{self.subject}: {self.id}: raised {type(e).__name__}: {first}") from e

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
class Outcome:
    check: str
    status: str  # one of STATUSES
    detail: str


@dataclass
class Report:
    """The outcome of every check on one subject. ``str(report)`` is a readable table."""

    subject: str
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def __str__(self) -> str:
        width = max((len(o.check) for o in self.outcomes), default=0)
        lines = [f"{self.subject}: {'all checks passed' if self.passed else f'{len(self.failures)} FAILED'}"]
        lines += [f"  {o.status:7s} {o.check:{width}s}  {o.detail}" for o in self.outcomes]
        return "\n".join(lines)

    def raise_for_failures(self) -> None:
        """Raise :class:`CheckFailed` with every failed check's message, if any failed."""
        if self.failures:
            raise CheckFailed("\n".join(o.detail for o in self.failures))


def run_checks(subject: str, checks: list[Check], skip: tuple[str, ...] = ()) -> Report:
    """Run ``checks`` (all but the ids in ``skip``) and collect their outcomes."""
    unknown = sorted(set(skip) - {c.id for c in checks})
    if unknown:
        raise ValueError(f"no check {', '.join(map(repr, unknown))}; the checks: {', '.join(c.id for c in checks)}")
    report = Report(subject)
    for check in checks:
        if check.id in skip:
            report.outcomes.append(Outcome(check.id, "skipped", "skipped as asked"))
            continue
        try:
            report.outcomes.append(Outcome(check.id, "passed", check()))
        except CheckFailed as e:
            report.outcomes.append(Outcome(check.id, "failed", str(e)))
        except NotApplicable as e:
            report.outcomes.append(Outcome(check.id, "skipped", str(e)))
    return report
