"""The budget check (scripts/budget_check.py): cgroup, server, workload, report."""
