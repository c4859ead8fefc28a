"""The multiprocess exposition over the files workers write."""
from __future__ import annotations

import struct

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from backend.memory import metrics


def test_a_scrape_while_a_worker_creates_its_file_still_answers(tmp_path, monkeypatch) -> None:
    """A recycled worker's new file exists at 0 bytes before it is sized: the scrape skips it, not fails."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    written = MmapedDict(str(tmp_path / "counter_101.db"))
    written.write_value(mmap_key("speech_api_test", "speech_api_test_total", [], [], "A test counter"), 3.0, 0.0)
    written.close()
    (tmp_path / "counter_102.db").write_bytes(b"")  # the new worker, between creating and sizing its file

    text = metrics.exposition().decode()

    assert "speech_api_test_total 3.0" in text


def test_the_library_alone_fails_on_that_file(tmp_path) -> None:
    """Why the collector is ours: prometheus_client's own raises on the 0-byte file (client_python#1199)."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    (tmp_path / "counter_102.db").write_bytes(b"")
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(tmp_path))
    with pytest.raises(struct.error):
        generate_latest(registry)
