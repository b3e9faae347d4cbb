"""The versioned model registry: a directory (or any pyarrow filesystem URI) of model versions.

Layout: ``{uri}/versions/{version}/`` holds a model and its metadata;
``{uri}/PROMOTED`` names the version that serving loads. Writing the pointer
last makes promotion atomic from a reader's point of view.

A version is complete once its ``metadata.json`` exists: :meth:`ModelRegistry.publish`
copies every other file first and the metadata last, so a reader never lists
(or serving never loads) a version whose model is still being copied, on a
local disk or on an object store where a directory cannot be renamed into
place. Versions are immutable: publishing over an existing one is refused,
so a version id names one model for ever and a rollback is a promotion of an
older id.

Version ids are ``v{YYYYmmdd-HHMMSS}-{4 hex}`` in UTC (``v20261125-120301-ab12``):
they sort by creation time as text, which is all :meth:`ModelRegistry.versions`
does, and the random suffix keeps two publications in the same second apart.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyarrow import fs

PROMOTED_POINTER = "PROMOTED"
METADATA_FILE = "metadata.json"
"""Written last into a version: its presence marks the version complete (the bundle's own file name)."""

REGISTRY_KEY = "registry"
"""The key :meth:`ModelRegistry.publish` adds to a version's metadata (version id, publication time)."""

EVALUATION_KEY = "evaluation"
"""Where an evaluation table is kept in a version's metadata: ``{"table": {method: {metric: value}}}``."""

_VERSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class RegistryError(Exception):
    """The registry cannot do what was asked; the message says why."""


class UnknownVersionError(RegistryError):
    """No complete version of that id in the registry."""


@dataclass(frozen=True)
class VersionInfo:
    """One version as ``wealthalloc models list`` shows it.

    Attributes
    ----------
    version : str
    created_at : str
        When the model was trained (ISO 8601, UTC); empty when unrecorded.
    published_at : str
        When it entered the registry; empty for versions copied in by hand.
    promoted : bool
        It is the version ``PROMOTED`` names.
    threshold : float or None
    metrics : dict of str to float
        The training metrics (``val_loss``, ``train_seconds``...).
    evaluation : dict of str to dict of str to float or None, or None
        The evaluation table, one row per method, when the version has one.
    problem : str or None
        Why the metadata could not be read, for a damaged version.
    """

    version: str
    created_at: str = ""
    published_at: str = ""
    promoted: bool = False
    threshold: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    evaluation: dict[str, dict[str, float | None]] | None = None
    problem: str | None = None

    def evaluation_metric(self, method: str, metric: str) -> float | None:
        """One cell of the evaluation table (``None`` when absent or not a number)."""
        value = (self.evaluation or {}).get(method, {}).get(metric)
        return None if value is None or not math.isfinite(value) else value


class ModelRegistry:
    """Model versions under a local directory or a pyarrow filesystem URI (``s3://``, ``gs://``, ``file://``).

    Parameters
    ----------
    uri : str
        A local path (relative paths are taken from the working directory)
        or a URI :meth:`pyarrow.fs.FileSystem.from_uri` understands.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._fs: fs.FileSystem
        self._root: str
        if "://" in uri:
            self._fs, self._root = fs.FileSystem.from_uri(uri)
        else:
            self._fs, self._root = fs.LocalFileSystem(), uri
        self._root = self._root.rstrip("/") or "/"

    def __repr__(self) -> str:
        return f"ModelRegistry({self.uri!r})"

    def ensure(self) -> None:
        self._fs.create_dir(f"{self._root}/versions", recursive=True)

    def versions(self) -> list[str]:
        """The complete versions (those with their metadata written), oldest id first."""
        selector = fs.FileSelector(f"{self._root}/versions", allow_not_found=True)
        infos = self._fs.get_file_info(selector)
        names = sorted(info.base_name for info in infos if info.type == fs.FileType.Directory)
        if not names:
            return []
        markers = self._fs.get_file_info([self._path(name, METADATA_FILE) for name in names])
        return [name for name, marker in zip(names, markers, strict=True) if marker.type == fs.FileType.File]

    def promoted(self) -> str | None:
        path = f"{self._root}/{PROMOTED_POINTER}"
        if self._fs.get_file_info(path).type != fs.FileType.File:
            return None
        with self._fs.open_input_stream(path) as stream:
            version = stream.read().decode().strip()
        return version or None

    def latest(self) -> str | None:
        """The newest complete version, promoted or not."""
        found = self.versions()
        return found[-1] if found else None

    def version_path(self, version: str) -> str:
        """Where a version's files are: a local path for a directory registry, else a URI.

        Raises
        ------
        RegistryError
            For an id that cannot be a version (path separators, ``..``).
        """
        _check_version_id(version)
        return f"{self.uri.rstrip('/')}/versions/{version}"

    def exists(self, version: str) -> bool:
        """Whether ``version`` is a complete version of this registry."""
        _check_version_id(version)
        return bool(self._fs.get_file_info(self._path(version, METADATA_FILE)).type == fs.FileType.File)

    def publish(
        self,
        local_dir: Path | str,
        version: str | None = None,
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Copy a saved model directory into the registry as a new version.

        Every file of ``local_dir`` is copied (names starting with ``.``, a
        save's leftovers, are skipped), then its ``metadata.json`` with
        ``metadata`` added and a ``registry`` entry (the version id and the
        publication time): the version appears to readers only once complete.

        Parameters
        ----------
        local_dir : Path or str
            A directory holding ``metadata.json`` (a saved
            :class:`~wealthalloc.ml.autoencoder.ModelBundle`).
        version : str, optional
            The id; a new time-ordered id (see the module docstring) when omitted.
        metadata : mapping, optional
            More entries for ``metadata.json`` (an evaluation table under
            :data:`EVALUATION_KEY`, the tuning run...); JSON-serialisable,
            without NaN, and none may replace an entry the bundle wrote.

        Returns
        -------
        str
            The version id; not promoted (see :meth:`promote`).

        Raises
        ------
        RegistryError
            When ``local_dir`` has no readable ``metadata.json``, the version
            already exists, or ``metadata`` clashes with the bundle's entries
            or cannot be written as JSON.
        """
        source = Path(local_dir)
        meta_path = source / METADATA_FILE
        if not meta_path.is_file():
            raise RegistryError(f"{source} holds no {METADATA_FILE}: not a saved model")
        try:
            recorded = json.loads(meta_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RegistryError(f"{meta_path} is not valid JSON: {exc}") from exc
        if not isinstance(recorded, dict):
            raise RegistryError(f"{meta_path} must hold a JSON object")
        extra = dict(metadata or {})
        clashes = sorted((set(extra) & set(recorded)) | ({REGISTRY_KEY} & set(extra)))
        if clashes:
            raise RegistryError(f"metadata may not replace the model's own entries: {', '.join(clashes)}")
        version = version or new_version_id()
        _check_version_id(version)
        target = self._path(version)
        if self._fs.get_file_info(target).type != fs.FileType.NotFound:
            raise RegistryError(f"version {version} already exists in {self.uri}; versions are immutable")
        published = {
            **recorded,
            **extra,
            REGISTRY_KEY: {"version": version, "published_at": _now()},
        }
        try:
            text = json.dumps(published, indent=2, sort_keys=True, allow_nan=False) + "\n"
        except (TypeError, ValueError) as exc:
            raise RegistryError(f"metadata cannot be written as JSON: {exc}") from exc

        self.ensure()
        self._fs.create_dir(target, recursive=True)
        for path in sorted(source.rglob("*")):
            relative = path.relative_to(source)
            if not path.is_file() or relative == Path(METADATA_FILE):
                continue
            if any(part.startswith(".") for part in relative.parts):
                continue
            destination = f"{target}/{relative.as_posix()}"
            if len(relative.parts) > 1:
                self._fs.create_dir(destination.rsplit("/", 1)[0], recursive=True)
            with path.open("rb") as reader, self._fs.open_output_stream(destination) as writer:
                shutil.copyfileobj(reader, writer, 1 << 20)
        with self._fs.open_output_stream(self._path(version, METADATA_FILE)) as writer:
            writer.write(text.encode())
        return version

    def promote(self, version: str) -> None:
        """Point ``PROMOTED`` at ``version``: serving loads it from its next (re)start.

        The pointer is the only thing written, and on a local disk it is
        written to a temporary file and renamed over the old one, so a reader
        sees the old version or the new one, never a torn file. An object
        store's single PUT gives the same.

        Raises
        ------
        UnknownVersionError
            When ``version`` is not a complete version of this registry.
        """
        if not self.exists(version):
            known = self.versions()
            hint = f"known: {', '.join(known[-5:])}" if known else "the registry has no versions"
            raise UnknownVersionError(f"no version {version!r} in {self.uri} ({hint})")
        pointer = f"{self._root}/{PROMOTED_POINTER}"
        content = (version + "\n").encode()
        if isinstance(self._fs, fs.LocalFileSystem):
            temporary = f"{pointer}.{secrets.token_hex(4)}.tmp"
            with self._fs.open_output_stream(temporary) as writer:
                writer.write(content)
            self._fs.move(temporary, pointer)
        else:
            with self._fs.open_output_stream(pointer) as writer:
                writer.write(content)

    def describe(self, version: str) -> dict[str, Any]:
        """A version's ``metadata.json``: config, features, threshold, metrics, data hash, evaluation.

        Raises
        ------
        UnknownVersionError
            When ``version`` is not a complete version.
        RegistryError
            When its metadata is not a JSON object.
        """
        if not self.exists(version):
            raise UnknownVersionError(f"no version {version!r} in {self.uri}")
        path = self._path(version, METADATA_FILE)
        with self._fs.open_input_stream(path) as stream:
            raw = stream.read()
        where = f"{self.version_path(version)}/{METADATA_FILE}"
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RegistryError(f"{where} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise RegistryError(f"{where} must hold a JSON object")
        return data

    def download(self, version: str, local_dir: Path | str) -> Path:
        """Copy a version's files into ``local_dir`` (created), for loading from a remote registry.

        Returns
        -------
        Path
            ``local_dir``, now holding the version's files.

        Raises
        ------
        UnknownVersionError
            When ``version`` is not a complete version.
        """
        if not self.exists(version):
            raise UnknownVersionError(f"no version {version!r} in {self.uri}")
        target = Path(local_dir)
        target.mkdir(parents=True, exist_ok=True)
        fs.copy_files(
            self._path(version),
            str(target.resolve()),
            source_filesystem=self._fs,
            destination_filesystem=fs.LocalFileSystem(),
        )
        return target

    def list_versions(self) -> list[VersionInfo]:
        """Every complete version with what ``models list`` shows, oldest id first.

        A version whose metadata cannot be read is listed with its
        :attr:`VersionInfo.problem` rather than hiding the others.
        """
        promoted = self.promoted()
        infos = []
        for version in self.versions():
            try:
                data = self.describe(version)
            except (RegistryError, OSError) as exc:
                infos.append(VersionInfo(version=version, promoted=version == promoted, problem=str(exc)))
                continue
            infos.append(_version_info(version, data, promoted=version == promoted))
        return infos

    def _path(self, version: str, *names: str) -> str:
        return "/".join((self._root, "versions", version, *names))


def new_version_id(now: datetime | None = None) -> str:
    """A new version id, ``v{YYYYmmdd-HHMMSS}-{4 hex}`` in UTC: sortable as text by creation time."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"v{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def _check_version_id(version: str) -> None:
    if not _VERSION_ID.fullmatch(version) or ".." in version:
        raise RegistryError(
            f"{version!r} is not a version id (letters, digits, '.', '_' and '-', at most 100 characters)"
        )


def _version_info(version: str, data: Mapping[str, Any], *, promoted: bool) -> VersionInfo:
    stamped = data.get(REGISTRY_KEY)
    registry: dict[str, Any] = stamped if isinstance(stamped, dict) else {}
    threshold = data.get("threshold")
    found = data.get("metrics")
    metrics: dict[str, Any] = found if isinstance(found, dict) else {}
    evaluation = data.get(EVALUATION_KEY)
    table = evaluation.get("table") if isinstance(evaluation, dict) else None
    return VersionInfo(
        version=version,
        created_at=str(data.get("created_at") or ""),
        published_at=str(registry.get("published_at") or ""),
        promoted=promoted,
        threshold=float(threshold) if isinstance(threshold, int | float) else None,
        metrics={str(k): float(v) for k, v in metrics.items() if isinstance(v, int | float)},
        evaluation=(
            {
                str(method): {
                    str(k): float(v) if isinstance(v, int | float) else None for k, v in row.items()
                }
                for method, row in table.items()
                if isinstance(row, dict)
            }
            if isinstance(table, dict)
            else None
        ),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
