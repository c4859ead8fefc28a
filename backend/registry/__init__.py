"""The model registry: decides what is loaded, against a measured memory budget.

    spec.py       ModelSpec (how to build a pipeline, whether it can be, what it is expected to cost),
                  Estimate and ModelState
    admission.py  the admission and recycle decisions: pure functions of the models' figures and a
                  memory reading
    costs.py      CostBook: measured costs shared by every worker and kept across restarts
    lease.py      Lease: one request's hold on a pipeline, released once
    events.py     EventLog: the recent registry events the operator panel shows
    registry.py   ModelRegistry (single-flight builds, use counts, TTL, LRU eviction, measurement)
                  and get_registry(), the one way a blueprint finds it
"""
from backend.registry.lease import Lease
from backend.registry.registry import ModelRegistry, get_registry
from backend.registry.spec import Estimate, ModelSpec, ModelState, fixed_estimate

__all__ = ["Estimate", "Lease", "ModelRegistry", "ModelSpec", "ModelState", "fixed_estimate", "get_registry"]
