"""Every `geoflux worker ...` process and `geoflux api` set the cyclic collector's thresholds
from `GEOFLUX_STREAM_GC_THRESHOLD` before they start (benchmarks/evaluator_cpu.py measures why)."""

from __future__ import annotations

import gc

import pytest
from click.testing import CliRunner

from geoflux.settings import StreamSettings
from services.cli import main


@pytest.fixture
def restore_gc():
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_the_default_collects_young_objects_far_less_often_than_python():
    gen0, _gen1, _gen2 = StreamSettings().gc_threshold
    assert gen0 >= 10_000 > 700


@pytest.mark.parametrize("command", ["evaluator", "cep", "delivery", "jobs", "audit"])
def test_a_worker_command_applies_the_setting_before_it_runs(command, monkeypatch, restore_gc):
    gc.set_threshold(700, 10, 10)
    monkeypatch.setenv("GEOFLUX_STREAM_GC_THRESHOLD", "[1234, 11, 12]")
    # --help stops the command after the group's callback ran and before the stage starts
    result = CliRunner().invoke(main, ["worker", command, "--help"])
    assert result.exit_code == 0, result.output
    assert gc.get_threshold() == (1234, 11, 12)


def test_the_api_applies_it_too(monkeypatch, restore_gc):
    import services.api.app as app

    gc.set_threshold(700, 10, 10)
    monkeypatch.setenv("GEOFLUX_STREAM_GC_THRESHOLD", "[2345, 13, 14]")
    seen = []
    monkeypatch.setattr(app, "serve", lambda *_a, **_k: seen.append(gc.get_threshold()))
    result = CliRunner().invoke(main, ["api"])
    assert result.exit_code == 0, result.output
    assert seen == [(2345, 13, 14)]
