"""The model registry: decides what is loaded, against a measured memory budget.

    spec.py       ModelSpec (how to build a pipeline, what it is expected to cost) and ModelState
    admission.py  the admission decision: a pure function of the models' figures and a memory reading
    lease.py      Lease: one request's hold on a pipeline, released once
    registry.py   ModelRegistry (single-flight builds, use counts, TTL, LRU eviction, measurement)
                  and get_registry(), the one way a blueprint finds it
"""
from backend.registry.lease import Lease
from backend.registry.registry import ModelRegistry, get_registry
from backend.registry.spec import ModelSpec, ModelState

__all__ = ["Lease", "ModelRegistry", "ModelSpec", "ModelState", "get_registry"]
