"""Which tier a job runs on. Whether a process has a PostGIS implementation is said once, by
the PostGIS tier (`supports`); the router asks it."""

import shapely

from connectors.compute.noop import NoopTier
from connectors.compute.postgis import SQL_PROCESSES, PostgisTier
from geoflux.settings import JobSettings
from streams.jobs.processes import PROCESSES
from streams.jobs.worker import choose_tier

LINE = shapely.LineString([(i / 1000, 0) for i in range(11)])  # 11 vertices


def tiers():
    # PostgisTier connects per attempt: building it touches no database
    return {"inprocess": NoopTier(), "postgis": PostgisTier("postgresql://nowhere/none")}


def test_large_inputs_go_to_postgis_only_past_the_threshold():
    s = JobSettings(postgis_threshold_vertices=10)
    assert choose_tier("buffer", {"geometry": LINE}, s, tiers()) == "postgis"
    s = JobSettings(postgis_threshold_vertices=11)  # at the threshold: not past it
    assert choose_tier("buffer", {"geometry": LINE}, s, tiers()) == "inprocess"


def test_a_process_the_postgis_tier_cannot_run_stays_in_process_however_large():
    s = JobSettings(postgis_threshold_vertices=0)
    assert not PostgisTier("postgresql://nowhere/none").supports("sleep")
    assert choose_tier("sleep", {"seconds": 1.0}, s, tiers()) == "inprocess"


def test_without_a_postgis_tier_everything_runs_in_process():
    s = JobSettings(postgis_threshold_vertices=0)
    assert choose_tier("buffer", {"geometry": LINE}, s, {"inprocess": NoopTier()}) == "inprocess"


def test_the_postgis_tier_supports_only_processes_of_the_catalogue():
    assert set(SQL_PROCESSES) < set(PROCESSES)  # "sleep" has no SQL
    assert not PostgisTier("postgresql://nowhere/none").supports("no-such-process")
