"""The model registry: decides what is loaded, against a measured memory budget.

    registry.py   ModelRegistry, the facade that wires the objects below, and get_registry(), the one
                  way a blueprint finds it
    lifecycle.py  ModelHandle and Lifecycle: state, single-flight builds, use counts, drains, unloads, TTL
    slots.py      Slots: how many requests each model runs at once, and the bounded queue (MAX_QUEUE)
    gate.py       Gate: admission locks, make-room and wait-idle, refusals, recycling, job reservations
    measure.py    Meter: build and request measurements, kept only when undisturbed (the epoch)
    need.py       what admitting a model adds, and the head-room a loaded one keeps
    readiness.py  whether each model can be served, the idle baseline, the snapshot rows
    admission.py  the admission decision: a pure function of the models' figures and a memory reading
    recycle.py    the recycle decision: a pure function of a snapshot
    policy.py     Policy: the tunable figures the objects share
    spec.py       ModelSpec (how to build a pipeline, whether it can be, what it is expected to cost),
                  Estimate and ModelState
    costs.py      CostBook: measured costs shared by every worker and kept across restarts
    peers.py      Peers: the service-wide admission lock and what other workers reserve
    lease.py      Lease: one request's hold on a pipeline, released once
    events.py     Listeners and EventLog: who hears registry events, and the recent ones
"""
from backend.registry.lease import Lease
from backend.registry.registry import ModelRegistry, get_registry
from backend.registry.spec import Estimate, ModelSpec, ModelState, fixed_estimate

__all__ = ["Estimate", "Lease", "ModelRegistry", "ModelSpec", "ModelState", "fixed_estimate", "get_registry"]
