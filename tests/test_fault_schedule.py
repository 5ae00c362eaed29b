"""When the faults of a run's schedule are in force."""

from queuestorm.faults import FaultContext, FaultRunner, FaultSpec


def test_a_fault_at_0_is_in_force_before_start_returns_and_undone_at_stop(r):
    before = r.config_get("maxclients")["maxclients"]
    runner = FaultRunner([FaultSpec("maxclients", 2.0, 60, {"maxclients": 30}),
                          FaultSpec("maxclients", 0, 60, {"maxclients": 20})], FaultContext(admin=r))
    runner.start()  # no yield between: the first user, spawned after test_start, meets the fault
    try:
        assert r.config_get("maxclients")["maxclients"] == "20"
        assert [record["kind"] for record in runner.records] == ["maxclients"]
    finally:
        runner.stop()
    assert r.config_get("maxclients")["maxclients"] == before
