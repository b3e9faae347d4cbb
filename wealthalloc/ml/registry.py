"""The versioned model registry: a directory (or any pyarrow filesystem URI) of model versions.

Layout: ``{uri}/versions/{version}/`` holds a model and its metadata;
``{uri}/PROMOTED`` names the version that serving loads. Writing the pointer
last makes promotion atomic from a reader's point of view.
"""

from __future__ import annotations

from pyarrow import fs

PROMOTED_POINTER = "PROMOTED"


class ModelRegistry:
    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._fs: fs.FileSystem
        self._root: str
        if "://" in uri:
            self._fs, self._root = fs.FileSystem.from_uri(uri)
        else:
            self._fs, self._root = fs.LocalFileSystem(), uri

    def ensure(self) -> None:
        self._fs.create_dir(f"{self._root}/versions", recursive=True)

    def versions(self) -> list[str]:
        selector = fs.FileSelector(f"{self._root}/versions", allow_not_found=True)
        infos = self._fs.get_file_info(selector)
        return sorted(info.base_name for info in infos if info.type == fs.FileType.Directory)

    def promoted(self) -> str | None:
        path = f"{self._root}/{PROMOTED_POINTER}"
        if self._fs.get_file_info(path).type != fs.FileType.File:
            return None
        with self._fs.open_input_stream(path) as stream:
            version = stream.read().decode().strip()
        return version or None
