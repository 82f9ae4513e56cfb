"""Readers for Galaxy Zoo catalogue formats (layouts as distributed upstream).

Vote fractions become ``metadata["votes"]`` = {"<question>_<answer>": fraction};
the raw counts, weights, flags and debiased/concentration columns are dropped to
keep rows small, and the other catalogue columns stay as flat metadata keys.

- ``gz_decals``: GZ DECaLS (Walmsley et al. 2022) tables ``gz_decals_*.csv``
  (id ``iauname``; ``<question>_<answer>_fraction`` columns) and PNG cutouts
  anywhere below, named ``<iauname>.png``.  ``metadata["gz_table"]`` names the
  table; ``auto_posteriors`` holds Zoobot predictions, not volunteer votes.
- ``gz2``: GZ2 Hart et al. 2016 table ``gz2_hart16.csv`` (id ``dr7objid``;
  ``tNN_..._aNN_..._fraction`` columns) joined through
  ``gz2_filename_mapping.csv`` (objid -> asset_id) to ``<asset_id>.jpg`` images.
- ``gz_kaggle``: Kaggle Galaxy Zoo challenge ``training_solutions_rev1.csv``
  (``GalaxyID`` and 37 ``ClassN.M`` probabilities) with ``<GalaxyID>.jpg`` images.
"""
from __future__ import annotations

import re
from pathlib import Path

from webapp.catalog.services.ingest_folder import (RGB_BANDS, _folder, add_image_candidates,
                                                   read_catalogue)
from webapp.catalog.services.ingest_pixels import IngestError
from webapp.catalog.services.ingest_tables import TableError, read_table
from webapp.catalog.services.ingest_types import IngestOptions, Plan, resolve_inside

KAGGLE_CLASS = re.compile(r"^Class\d+\.\d+$")


def fraction_votes(metadata: dict) -> dict:
    """Move ``*_fraction`` columns into metadata["votes"]; drop the other per-answer columns."""
    bases = [k[:-len("_fraction")] for k in metadata
             if k.endswith("_fraction") and not k.endswith("_weighted_fraction")]
    questions = {b.split("_")[0] for b in bases}
    out = {k: v for k, v in metadata.items() if k.split("_")[0] not in questions}
    out["votes"] = {b: metadata[b + "_fraction"] for b in bases}
    return out


def kaggle_votes(metadata: dict) -> dict:
    out = {k: v for k, v in metadata.items() if not KAGGLE_CLASS.match(k)}
    out["votes"] = {k: v for k, v in metadata.items() if KAGGLE_CLASS.match(k)}
    return out


def plan_gz_decals(path: Path, options: IngestOptions) -> Plan:
    root = _folder(path)
    tables = _tables(root, options.catalog, "gz_decals_*.csv")
    plan = Plan(bands=list(RGB_BANDS), image_kind="rgb", threads_ok=True)
    rows = []
    for table in tables:
        def tagged(metadata, name=table.name):
            return {"gz_table": name, **fraction_votes(metadata)}
        rows += read_catalogue(table, _with_id(options, "iauname"), plan.errors, transform=tagged)
    add_image_candidates(plan, root, rows, options)
    return plan


def plan_gz2(path: Path, options: IngestOptions) -> Plan:
    root = _folder(path)
    (table,) = _tables(root, options.catalog or "gz2_hart16.csv", "")
    (mapping_path,) = _tables(root, "", "*filename_mapping*.csv")
    plan = Plan(bands=list(RGB_BANDS), image_kind="rgb", threads_ok=True)
    rows = read_catalogue(table, _with_id(options, "dr7objid"), plan.errors, transform=fraction_votes)
    assets = _asset_ids(mapping_path)
    for row in rows:
        asset = assets.get(row.source_id)
        if asset is None:
            plan.errors.append(f"{row.where}: dr7objid {row.source_id} is not in {mapping_path.name}")
            continue
        row.image_key = asset
    add_image_candidates(plan, root, [r for r in rows if r.source_id in assets], options)
    return plan


def plan_gz_kaggle(path: Path, options: IngestOptions) -> Plan:
    root = _folder(path)
    (table,) = _tables(root, options.catalog or "training_solutions_rev1.csv", "")
    plan = Plan(bands=list(RGB_BANDS), image_kind="rgb", threads_ok=True)
    rows = read_catalogue(table, _with_id(options, "GalaxyID"), plan.errors, transform=kaggle_votes)
    add_image_candidates(plan, root, rows, options)
    return plan


def _asset_ids(mapping_path: Path) -> dict[str, str]:
    table, _ = read_table(mapping_path)
    missing = {"objid", "asset_id"} - set(table.columns)
    if missing:
        raise TableError(f"{mapping_path.name}: missing column(s) {sorted(missing)}; columns are {table.columns}")
    ids, assets = table.raw_ids["objid"], table.raw_ids["asset_id"]
    return {objid: asset for objid, asset in zip(ids, assets) if objid and asset}


def _tables(root: Path, catalog: str, pattern: str) -> list[Path]:
    """The tables named in ``catalog`` (comma-separated) or, without a name, those matching ``pattern``."""
    if catalog:
        paths = [resolve_inside(root, name.strip()) for name in catalog.split(",") if name.strip()]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise TableError(f"{', '.join(missing)}: catalogue file not found in {root.name}/")
        return paths
    paths = sorted(p for p in root.rglob(pattern) if p.is_file())
    if not paths:
        raise IngestError(f"{root.name}/: no table matching {pattern}")
    if pattern.startswith("*") and len(paths) > 1:
        raise IngestError(f"{root.name}/: several tables match {pattern}: {[p.name for p in paths]}")
    return paths


def _with_id(options: IngestOptions, default: str) -> IngestOptions:
    from dataclasses import replace

    return options if options.id_column else replace(options, id_column=default)
