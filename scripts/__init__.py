"""Operations as code, importable by the tests (the project is installed in place: pyproject.toml).

    fetch_models.py, fetch/    provision the models: download, export with parity, checksums
    budget_check.py, budget/   prove a configuration fits its memory budget in a real cgroup
    export_onnx.py, export/    torch -> ONNX with parity checks, one module per model family
    checkpoints/               random-weight checkpoints built with the real model classes
    bench_*.py                 benchmarks behind the tables in docs/BENCHMARKS.md (bench_costs.py:
                               the catalog's import costs and estimates against measurements)
    config_table.py            the README's configuration table, from config.Settings
    setup.sh, serve.sh, test.sh  the install and the README's two commands
"""
