"""Datasets: a folder with `dataset.toml` and Parquet tables `bars/`, `mark/`, `index/`, `funding/`."""

from xmargin.dataset.manifest import DatasetManifest, Source, read_manifest, write_manifest

__all__ = ["DatasetManifest", "Source", "read_manifest", "write_manifest"]
