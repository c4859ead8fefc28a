"""Availability remembered (backend/registry/readiness.py, issue 26): checked again when provisioning
writes, when a model's state changes or a request asks for a model remembered as missing; never by a timer."""
from __future__ import annotations

import pytest

from backend.errors import ModelUnavailable
from backend.pipelines.base import Availability
from backend.registry import Estimate, ModelSpec, ModelState
from backend.registry.readiness import CachedAvailability
from tests.fakes import BrokenPipeline, FakePipeline


class Disk:
    """Whether the model's files are there; counts the checks."""

    def __init__(self, present: bool) -> None:
        self.present, self.checks, self.stamp = present, 0, 0

    def check(self) -> Availability:
        self.checks += 1
        return Availability(servable=True, source="disk") if self.present else Availability.missing("no files", "fetch")


def _spec(disk: Disk, cls: type[FakePipeline] = FakePipeline) -> tuple[ModelSpec, CachedAvailability]:
    available = CachedAvailability(disk.check, stamp=lambda: disk.stamp)
    return ModelSpec(name="m", factory=lambda: cls("m", 10), estimate=lambda: Estimate(weights_mb=10),
                     availability=available), available


def _servable(registry) -> bool:
    return next(row for row in registry.readiness() if row["name"] == "m")["servable"]


def test_the_answer_is_kept_until_the_stamp_changes_or_it_is_forgotten() -> None:
    disk = Disk(present=False)
    available = CachedAvailability(disk.check, stamp=lambda: disk.stamp)
    assert not available().servable and not available().servable and disk.checks == 1
    disk.present = True
    assert not available().servable and disk.checks == 1  # nothing said the files changed
    disk.stamp += 1  # provisioning wrote its progress file
    assert available().servable and disk.checks == 2
    disk.present = False
    available.forget()
    assert not available().servable and disk.checks == 3


def test_a_check_overtaken_by_forget_is_not_kept() -> None:
    disk = Disk(present=True)

    def check() -> Availability:
        found = disk.check()
        available.forget()  # the model's state changed while this check ran
        return found

    available = CachedAvailability(check)
    available()
    available()
    assert disk.checks == 2


def test_a_failing_check_is_not_kept() -> None:
    calls = []

    def check() -> Availability:
        calls.append(1)
        raise OSError("disk gone")

    available = CachedAvailability(check)
    for _ in range(2):
        with pytest.raises(OSError):
            available()
    assert len(calls) == 2


def test_provisioning_that_ends_makes_the_model_servable_in_readiness(registry_factory) -> None:
    disk = Disk(present=False)
    spec, _ = _spec(disk)
    registry = registry_factory([spec])
    assert not _servable(registry)
    disk.present = True
    assert not _servable(registry)  # remembered: no probe reads the disk again
    disk.stamp += 1  # the progress file says done
    assert _servable(registry)


def test_a_request_for_a_model_remembered_missing_checks_the_disk_again(registry_factory) -> None:
    disk = Disk(present=False)
    spec, _ = _spec(disk)
    registry = registry_factory([spec])
    assert not _servable(registry)
    with pytest.raises(ModelUnavailable):
        registry.load("m")
    disk.present = True  # weights copied in by hand: no provisioning, no event
    registry.load("m")
    assert registry.state("m") is ModelState.LOADED and _servable(registry)


def test_a_model_whose_state_changes_is_checked_again(registry_factory) -> None:
    disk = Disk(present=True)
    spec, _ = _spec(disk)
    registry = registry_factory([spec])
    assert _servable(registry)
    registry.load("m")  # a state change: checked again at the next call
    assert _servable(registry)
    disk.present = False  # its files removed while it is loaded
    checks = disk.checks
    assert _servable(registry) and disk.checks == checks  # loaded and remembered
    registry.unload("m")  # a state change: the files are checked again
    assert not _servable(registry) and disk.checks == checks + 1


def test_a_build_that_fails_has_its_files_checked_again(registry_factory) -> None:
    disk = Disk(present=True)
    spec, _ = _spec(disk, cls=BrokenPipeline)
    registry = registry_factory([spec])
    assert _servable(registry)
    disk.present = False  # what the build found broken
    with pytest.raises(ModelUnavailable, match="failed to load"):
        registry.load("m")
    assert not _servable(registry)
