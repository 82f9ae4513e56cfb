"""Reader: a folder of JPEG/PNG cutouts plus a catalogue table.

    folder/
      catalogue.csv          OBJID,CLASS,...  (or any CSV/TSV/FITS table; optional)
      images/<id>.jpeg       one colour cutout per catalogue row

Images are found with ``image_pattern`` (e.g. "images/{id}.jpeg") or, without
one, as any .jpg/.jpeg/.png under the folder whose name stem is the id.  With no
catalogue at all, every image becomes a galaxy named by its file stem.  Cutouts
are stored as RGB floats in [0, 1] (image kind "rgb", bands R, G, B).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

from webapp.catalog.services.ingest_pixels import IngestError, decode_rgb, open_image_checked
from webapp.catalog.services.ingest_tables import (FITS_SUFFIXES, CatalogRow, TableError, catalog_rows,
                                                   read_table)
from webapp.catalog.services.ingest_types import Candidate, IngestOptions, Plan, label_spec, resolve_inside

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
TABLE_SUFFIXES = (".csv", ".tsv") + FITS_SUFFIXES
RGB_BANDS = ["R", "G", "B"]


def plan_folder(path: Path, options: IngestOptions) -> Plan:
    root = _folder(path)
    plan = Plan(bands=list(RGB_BANDS), image_kind="rgb", threads_ok=True)
    table_path = find_catalogue(root, options.catalog)
    if table_path is None:
        rows = [CatalogRow(p.stem, _rel(p, root), None, None, {}) for p in sorted(image_index(root).values())]
        plan.notes.append(f"no catalogue table: {len(rows)} images named by their file stem")
    else:
        rows = read_catalogue(table_path, options, plan.errors)
    add_image_candidates(plan, root, rows, options)
    return plan


def read_catalogue(table_path: Path, options: IngestOptions, errors: list[str], **kwargs) -> list[CatalogRow]:
    """Rows of one catalogue table; row problems are appended to ``errors``."""
    table, row_errors = read_table(table_path)
    rows, bad = catalog_rows(table, options.id_column or None, options.ra_column or None,
                             options.dec_column or None, label=label_spec(options), **kwargs)
    errors.extend(row_errors + bad)
    return rows


def add_image_candidates(plan: Plan, root: Path, rows: list[CatalogRow], options: IngestOptions) -> None:
    """One Candidate per row; a row whose image is missing fails when loaded (so --limit counts it)."""
    index = None if options.image_pattern else image_index(root)
    used: set[Path] = set()
    for row in rows:
        image = find_image(root, row.image_key or row.source_id, options.image_pattern, index)
        if image is None:
            wanted = options.image_pattern or "<id>.jpg/.jpeg/.png"
            plan.candidates.append(Candidate(row.source_id, row.where, partial(_missing, row, wanted),
                                             row.ra, row.dec, row.metadata, origin=row.where))
            continue
        used.add(image)
        plan.candidates.append(Candidate(row.source_id, _rel(image, root), partial(_load_rgb, image, options),
                                         row.ra, row.dec, row.metadata, origin=row.where))
        if not plan.input_side:
            plan.input_side = _shorter_side(image, options)
    if index is not None and len(index) > len(used):
        plan.notes.append(f"{len(index) - len(used)} images under {root.name}/ have no catalogue row "
                          "and were not ingested")


def find_catalogue(root: Path, catalog: str) -> Path | None:
    """The catalogue named by ``catalog``, else the only table at the top of the folder, else None."""
    if catalog:
        path = resolve_inside(root, catalog)
        if not path.is_file():
            raise TableError(f"{catalog}: catalogue file not found")
        return path
    tables = sorted(p for p in root.iterdir() if p.is_file() and p.name.lower().endswith(TABLE_SUFFIXES))
    if len(tables) > 1:
        raise TableError(f"{root.name}: several catalogue tables ({', '.join(p.name for p in tables)}); "
                         "choose one with --catalog")
    return tables[0] if tables else None


def image_index(root: Path, suffixes=IMAGE_SUFFIXES) -> dict[str, Path]:
    """File stem -> path for every image under ``root`` (first in sorted order wins)."""
    index: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in suffixes and path.is_file():
            index.setdefault(path.stem, path)
    return index


def find_image(root: Path, key: str, pattern: str, index: dict | None) -> Path | None:
    if index is not None:
        return index.get(key)
    candidate = (root / pattern.format(id=key)).resolve()
    # An id such as "../../etc/x" must not reach outside the input folder.
    if not candidate.is_relative_to(root.resolve()) or not candidate.is_file():
        return None
    return candidate


def _load_rgb(image: Path, options: IngestOptions):
    return decode_rgb(image, options.size, options.crop_fraction, options.max_pixels), {}


def _missing(row: CatalogRow, wanted: str):
    raise IngestError(f"no image file for id {row.source_id} ({wanted})")


def _shorter_side(image: Path, options: IngestOptions) -> int:
    try:
        with open_image_checked(image, options.max_pixels) as img:
            return min(img.size)
    except IngestError:
        return 0


def _folder(path: Path) -> Path:
    root = Path(path)
    if not root.is_dir():
        raise IngestError(f"{root}: not a folder")
    return root.resolve()


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)
