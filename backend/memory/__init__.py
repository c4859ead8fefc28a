"""Memory: where it is measured and reported.

    readings.py    the one place that measures memory: RSS, anonymous memory, peaks (read and
                   reset), PSS, the cgroup's working set, the whole service's memory; malloc_trim
    malloc.py      glibc's mmap threshold, fixed before ONNX sessions and animation jobs allocate
    middleware.py  one log line per request with memory before/after against the budget
    metrics.py     the Prometheus collectors (served by backend/api/metrics.py)
"""
