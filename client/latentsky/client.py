"""The Latent Sky client: one ``Client`` per server, methods per API area.

    >>> from latentsky import Client
    >>> sky = Client("http://127.0.0.1:8000", token="lsk_...")    # or LATENTSKY_URL / LATENTSKY_TOKEN
    >>> sky.neighbours(1234, k=10)                                  # an astropy Table
    >>> sky.post_labels(task_id, [{"galaxy_id": 1, "class": "spiral"}, ...])
    >>> sky.start_round(task_id).wait()                             # a tqdm progress bar

Tables carry units where the API states them (``ra``/``dec`` in deg, ``*_arcsec`` in arcsec,
durations in s); distances are unitless (cosine distance in the embedding space), map
coordinates are unitless UMAP positions.  Errors the server answers are raised as
``latentsky.errors.LatentSkyError`` subclasses whose ``message`` is the server's own.
"""
from __future__ import annotations

import io
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import requests
from astropy import units as u
from astropy.table import Table, vstack

from latentsky.errors import JobFailed, LatentSkyError, error_for
from latentsky.tables import table_from_columns, table_from_rows

DEFAULT_URL = "http://127.0.0.1:8000"
CARD_COLUMNS = ["id", "source_id", "survey", "ra", "dec", "distance", "x", "y", "url", "thumb_url"]
MAX_BULK_LABELS = 5000          # rows the server takes in one bulk request
FINISHED = ("succeeded", "failed", "cancelled")


def _ids(ids) -> str:
    return ",".join(str(int(i)) for i in np.atleast_1d(np.asarray(ids)).ravel())


def _degrees(value) -> str:
    """An RA/Dec as the server reads it: a Quantity or Angle in degrees, a number, or a sexagesimal string."""
    if isinstance(value, str):
        return value
    if isinstance(value, u.Quantity):
        return repr(float(value.to_value(u.deg)))
    return repr(float(value))


class Job(dict):
    """A server job (the /api/jobs/<id>/ reply as a dict) that can refresh itself and be waited on."""

    def __init__(self, client: "Client", data: Mapping):
        super().__init__(data)
        self._client = client

    @property
    def id(self) -> int:
        return int(self["id"])

    @property
    def status(self) -> str:
        return self.get("status", "")

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def refresh(self) -> "Job":
        data = self._client._get(f"/api/jobs/{self.id}/")
        self.clear()
        self.update(data)
        return self

    def wait(self, progress: bool = True, timeout: float | None = None, poll: float = 1.0,
             raise_on_failure: bool = True) -> "Job":
        """Poll until the job finishes, with a tqdm progress bar (``progress=False``: silent).

        Raises JobFailed (with the job's error) when it fails or is cancelled, TimeoutError
        after ``timeout`` seconds.  Returns the job; its ``result`` holds what it made."""
        from tqdm.auto import tqdm

        start = time.monotonic()
        bar = tqdm(total=100, desc=f"job {self.id} {self.get('title') or self.get('kind', '')}".strip(),
                   unit="%", disable=not progress, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}% [{elapsed}{postfix}]")
        try:
            while True:
                if not self.get("status"):
                    self.refresh()
                done = 100.0 if self.status == "succeeded" else 100.0 * float(self.get("progress") or 0.0)
                bar.set_postfix_str(f"{self.status}{': ' + self['message'] if self.get('message') else ''}"[:60],
                                    refresh=False)
                bar.update(max(0.0, done - bar.n))
                bar.refresh()
                if self.finished:
                    break
                if timeout is not None and time.monotonic() - start > timeout:
                    raise TimeoutError(f"job {self.id} is still {self.status} after {timeout:g} s")
                time.sleep(poll)
                self.refresh()
        finally:
            bar.close()
        if raise_on_failure and self.status != "succeeded":
            raise JobFailed(dict(self))
        return self

    def __repr__(self) -> str:
        return f"<Job {self.get('id')} {self.get('kind', '')} {self.status} {100 * float(self.get('progress') or 0):.0f}%>"


class Client:
    """A Latent Sky server.  ``token``: a personal API token (Account page), else $LATENTSKY_TOKEN;
    ``url``: else $LATENTSKY_URL, else http://127.0.0.1:8000."""

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 60.0,
                 session: requests.Session | None = None):
        self.url = (url or os.environ.get("LATENTSKY_URL") or DEFAULT_URL).rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        token = token if token is not None else os.environ.get("LATENTSKY_TOKEN")
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.session.headers.setdefault("Accept", "application/json")

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # ------------------------------------------------------------------ HTTP

    def _request(self, method: str, path: str, *, params=None, json=None, files=None, data=None) -> dict:
        url = self.url + path
        if params:
            params = {k: v for k, v in params.items() if v is not None}
        response = self.session.request(method, url, params=params, json=json, files=files, data=data,
                                        timeout=self.timeout)
        if response.ok:
            return response.json() if response.content else {}
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        message = payload.get("error") if isinstance(payload, dict) else None
        if not message:
            message = response.reason or "error"
            text = response.text.strip()
            if text and not text.startswith("<"):
                message = f"{message}: {text[:300]}"
        raise error_for(response.status_code)(message, response.status_code, method=method, url=response.url,
                                              payload=payload if isinstance(payload, dict) else None)

    def _get(self, path: str, **params) -> dict:
        return self._request("GET", path, params=params)

    def _post(self, path: str, body: dict | None = None) -> dict:
        return self._request("POST", path, json=body or {})

    def _job(self, reply: Mapping) -> Job:
        """A Job from any of the API's "job started" replies."""
        if "job" in reply and isinstance(reply["job"], Mapping):
            return Job(self, reply["job"])
        if "round" in reply:
            return Job(self, {"id": reply["round"]["job_id"]}).refresh()
        return Job(self, {"id": reply["job_id"]}).refresh()

    # ------------------------------------------------------------------ catalogue

    def surveys(self) -> Table:
        """Every survey: slug, bands, pixel scale (arcsec/pix), PSF FWHM (arcsec), size, status."""
        rows = self._get("/api/surveys/")["surveys"]
        for r in rows:
            r["bands"] = ",".join(r.get("bands") or [])
            r["image_shape"] = "x".join(str(n) for n in r.get("image_shape") or [])
        return table_from_rows(rows)

    def iter_galaxies(self, survey: str, *, sort: str | None = None, filters: Iterable[str] = (),
                      per: int = 500, start_page: int = 1) -> Iterator[Table]:
        """A survey's galaxies one page (Table) at a time; ``filters`` like ``"mag_r<17"``,
        ``"label:spiral"``; ``sort`` a column (``-`` for descending).  Metadata become columns."""
        page, cursor = start_page, None
        while True:
            where = {"cursor": cursor} if cursor else {"page": page}
            reply = self._get(f"/api/surveys/{survey}/galaxies/", **where, per=per, sort=sort, f=list(filters))
            meta = {k: reply[k] for k in ("survey", "count", "page", "num_pages", "sort", "filters")}
            yield table_from_rows(reply["results"], meta=meta, flatten="metadata")
            if "next_cursor" in reply:   # keyset pages: follow the cursor, any depth costs the same
                cursor = reply["next_cursor"]
                if not cursor:
                    return
                continue
            if page >= reply["num_pages"]:
                return
            page += 1

    def galaxies(self, survey: str, *, sort: str | None = None, filters: Iterable[str] = (),
                 limit: int | None = None, per: int = 500, progress: bool = False) -> Table:
        """A survey's galaxies (all, or the first ``limit``) as one Table, read page by page."""
        from tqdm.auto import tqdm

        pages, n, bar = [], 0, None
        for table in self.iter_galaxies(survey, sort=sort, filters=filters, per=per):
            if bar is None:
                total = min(table.meta["count"], limit) if limit else table.meta["count"]
                bar = tqdm(total=total, desc=f"galaxies of {survey}", disable=not progress)
            pages.append(table)
            n += len(table)
            bar.update(len(table))
            if limit and n >= limit:
                break
        if bar is not None:
            bar.close()
        table = vstack(pages, metadata_conflicts="silent") if pages else Table()
        if limit:
            table = table[:limit]
        table.meta = {"survey": survey, "count": pages[0].meta["count"] if pages else 0}
        return table

    def galaxy(self, galaxy_id: int) -> dict:
        """One galaxy: survey, source id, RA/Dec (deg), metadata, viewer URL."""
        return self._get(f"/api/galaxies/{int(galaxy_id)}/")

    def galaxy_cards(self, ids=None, source_id: str | None = None, embedding_set: int | None = None) -> Table:
        """Galaxies by id or catalogue source id: survey, position, thumbnail URL."""
        reply = self._get("/api/search/galaxies", ids=_ids(ids) if ids is not None else None, source=source_id,
                          set=embedding_set)
        return table_from_rows(reply["results"], meta={})

    def thumbnail(self, galaxy_id: int, size: int | None = None) -> np.ndarray:
        """A galaxy's RGB composite as a (H, W, 3) uint8 array (needs Pillow)."""
        from PIL import Image

        url = self.galaxy(galaxy_id)["thumb_url"]
        if size:
            url += ("&" if "?" in url else "?") + f"size={int(size)}"
        response = self.session.get(self.url + url, timeout=self.timeout)
        if not response.ok:
            raise error_for(response.status_code)(response.reason, response.status_code, method="GET", url=url)
        return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))

    # ------------------------------------------------------------------ similarity search

    def _cards(self, reply: dict, key: str = "results", **meta) -> Table:
        meta = {"embedding_set": reply.get("embedding_set"), **meta}
        return table_from_rows(reply[key], columns=_card_columns(reply[key]), meta=meta)

    def neighbours(self, galaxy_id: int, k: int = 12, *, embedding_set: int | None = None,
                   map_id: int | None = None) -> Table:
        """The k nearest galaxies to one galaxy (itself excluded), nearest first, with ``distance``
        (cosine, unitless); ``map_id`` adds map positions ``x``, ``y``."""
        reply = self._get(f"/api/search/neighbours/{int(galaxy_id)}", k=k, set=embedding_set, map=map_id)
        return self._cards(reply, query=reply["galaxy"])

    def similar(self, ids, k: int = 50, *, mode: str = "mean", embedding_set: int | None = None,
                map_id: int | None = None) -> Table:
        """More like these: galaxies similar to several positives (``mode`` mean or rrf)."""
        reply = self._get("/api/search/similar", ids=_ids(ids), k=k, mode=mode, set=embedding_set, map=map_id)
        return self._cards(reply, positives=reply["positives"])

    def neighbours_at(self, ra, dec, k: int = 50, *, max_sep=None, embedding_set: int | None = None) -> Table:
        """Look-alikes of the catalogue object nearest an ICRS position: ``ra``/``dec`` as degrees,
        Quantities/Angles, sexagesimal strings, or ``ra`` a SkyCoord (``dec`` None).  ``meta["match"]``
        is the matched object with ``separation_arcsec``; ``max_sep`` (arcsec or a Quantity) bounds it."""
        if dec is None and hasattr(ra, "icrs"):
            ra, dec = ra.icrs.ra, ra.icrs.dec
        if isinstance(max_sep, u.Quantity):
            max_sep = float(max_sep.to_value(u.arcsec))
        reply = self._get("/api/search/sky", ra=_degrees(ra), dec=_degrees(dec), k=k, max_sep=max_sep,
                          set=embedding_set)
        return self._cards(reply, match=reply["match"])

    def neighbours_of_image(self, image, k: int = 50, *, embedding_set: int | None = None,
                            survey: str | None = None, crop: float | None = None, filename: str | None = None) -> Table:
        """Look-alikes of an uploaded FITS, PNG or JPEG cutout: a path, bytes or an open binary file.
        ``meta`` has the detected ``format`` and the server's preprocessing ``notes``."""
        if isinstance(image, (str, Path)):
            filename = filename or Path(image).name
            content = Path(image).read_bytes()
        elif isinstance(image, (bytes, bytearray)):
            content = bytes(image)
        else:
            content = image.read()
            filename = filename or Path(getattr(image, "name", "") or "upload").name
        form = {k: str(v) for k, v in {"set": embedding_set, "survey": survey, "crop": crop, "k": k}.items()
                if v is not None}
        reply = self._request("POST", "/api/search/upload", files={"image": (filename or "upload", content)},
                              data=form)
        return self._cards(reply, survey=reply["survey"], format=reply["format"], notes=reply["notes"])

    # ------------------------------------------------------------------ encoders, embeddings, maps

    def encoders(self) -> Table:
        """Encoders with status, method, dimension and their embedding sets (ids)."""
        rows = self._get("/api/encoders/")["encoders"]
        for r in rows:
            r["surveys"] = ",".join(r.get("surveys") or [])
            r["embedding_sets"] = [es["id"] for es in r.get("embedding_sets") or []]
        return table_from_rows(rows, columns=["id", "name", "method", "source", "status", "dim", "epochs",
                                              "epochs_done", "training_seconds", "surveys", "embedding_sets",
                                              "train_job_id", "created_at"])

    def encoder(self, encoder_id: int) -> dict:
        return self._get(f"/api/encoders/{int(encoder_id)}/")

    def train_encoder(self, surveys: list[str], name: str, **config) -> Job:
        """Start a train_encoder job (curator); ``config``: TrainConfig fields (epochs, preset, ...)."""
        return self._job(self._post("/api/encoders/", {"surveys": list(surveys), "name": name, **config}))

    def embed(self, encoder_id: int, surveys: list[str]) -> Job:
        """Start an embedding job of these surveys with an encoder (curator)."""
        return self._job(self._post(f"/api/encoders/{int(encoder_id)}/embed", {"surveys": list(surveys)}))

    def maps(self) -> Table:
        """Latent maps (UMAP of an embedding set)."""
        return table_from_rows(self._get("/api/maps/")["maps"])

    def map(self, map_id: int) -> dict:
        """One map: bounds, sky bounds, colour layers, default layer."""
        return self._get(f"/api/maps/{int(map_id)}/")

    def map_layers(self, map_id: int) -> Table:
        """The colour layers a map offers (key, label, kind, group, unit)."""
        reply = self._get(f"/api/maps/{int(map_id)}/layers")
        return table_from_rows(reply["layers"], meta={"default": reply.get("default")})

    def map_layer(self, map_id: int, key: str) -> dict:
        """One layer's legend: kind, categories and counts, or low/high of a numeric layer."""
        return self._get(f"/api/maps/{int(map_id)}/layers", key=key)

    def map_points(self, map_id: int, *, layer: str | None = None, bbox=None, fields=("id", "x", "y", "ra", "dec"),
                   limit: int | None = None, page: int = 50_000) -> Table:
        """Map coordinates: ``id``, ``x``, ``y`` (UMAP, unitless), ``ra``, ``dec`` (deg) of every point
        (or those in ``bbox`` = (xmin, ymin, xmax, ymax)), and the ``layer``'s value per point as a
        column named by the layer key (category names for categorical layers)."""
        fields = list(fields) + (["c"] if layer and "c" not in fields else [])
        box = ",".join(str(float(v)) for v in bbox) if bbox is not None else None
        cols: dict[str, list] = {}
        offset, total = 0, None
        while True:
            n = page if limit is None else min(page, limit - offset)
            reply = self._get(f"/api/maps/{int(map_id)}/points", fields=",".join(fields), layer=layer, bbox=box,
                              offset=offset, limit=n)
            total = reply["total"]
            for k, v in reply["points"].items():
                cols.setdefault(k, []).extend(v)
            offset += reply["count"]
            if reply["next_offset"] is None or reply["count"] == 0 or (limit is not None and offset >= limit):
                break
        table = table_from_columns(cols, meta={"map": int(map_id), "total": total})
        if layer and "c" in table.colnames:
            legend = self.map_layer(map_id, layer)
            codes = np.asarray(table["c"], dtype=float)
            if legend["kind"] == "categorical":
                names = np.array(legend["categories"] + [""], dtype=str)
                index = np.where(np.isfinite(codes), codes, len(names) - 1).astype(int)
                table["c"] = names[index]
            elif legend.get("unit"):
                try:
                    table["c"].unit = u.Unit(legend["unit"])
                except ValueError:
                    pass
            table.rename_column("c", layer)
            table.meta["layer"] = legend
        return table

    # ------------------------------------------------------------------ anomalies

    def score_sets(self, embedding_set: int | None = None) -> Table:
        """Anomaly score sets, newest first."""
        rows = self._get("/api/anomalies/score-sets/", embedding_set=embedding_set)["score_sets"]
        for r in rows:
            r["methods"] = ",".join(r.get("methods") or [])
        return table_from_rows(rows)

    def start_scoring(self, embedding_set: int, methods: list[str] | None = None, combine: str | None = None,
                      name: str = "") -> Job:
        """Start an anomaly_scores job on an embedding set (curator)."""
        body = {"embedding_set_id": int(embedding_set), "methods": methods, "combine": combine, "name": name}
        return self._job(self._post("/api/anomalies/score-sets/", {k: v for k, v in body.items() if v is not None}))

    def anomaly_scores(self, score_set: int, page: int = 50_000) -> Table:
        """Every galaxy's scores in a score set: ``galaxy_id``, ``combined`` (rank blend in [0, 1]) and
        ``score_<method>`` (raw, higher = more anomalous) / ``rank_<method>`` (percentile) per method."""
        cols: dict[str, list] = {}
        offset = 0
        while True:
            reply = self._get(f"/api/anomalies/score-sets/{int(score_set)}/scores/", offset=offset, limit=page)
            for k, v in reply["columns"].items():
                cols.setdefault(k, []).extend(v)
            if reply["next_offset"] is None:
                break
            offset = reply["next_offset"]
        return table_from_columns(cols, meta={"score_set": int(score_set)})

    def anomaly_candidates(self, score_set: int, n: int = 20, *, rank_by: str = "personal",
                           survey: str | None = None, exclude=None) -> Table:
        """The next unreviewed candidates for you, best first, with scores and why each is shown
        (``rank_by``: personal, combined or a method).  ``meta`` holds the ranking state and counts."""
        reply = self._get(f"/api/anomalies/score-sets/{int(score_set)}/queue/", n=n, rank_by=rank_by,
                          survey=survey, similar=0, exclude=_ids(exclude) if exclude is not None else None)
        meta = {k: v for k, v in reply.items() if k != "candidates"}
        return table_from_rows(reply["candidates"], meta=meta)

    def verdicts(self, score_set: int, *, scope: str = "mine", kind: str | None = None, min_interest=None,
                 max_interest=None, method: str | None = None, top: float | None = None) -> Table:
        """Reviewed galaxies of a score set with scores and verdicts: yours (``scope="mine"``) or
        everyone's averaged (``"all"``); ``kind`` interesting/unsure/boring/artifact."""
        reply = self._get(f"/api/anomalies/score-sets/{int(score_set)}/reviews/", scope=scope, kind=kind,
                          min=min_interest, max=max_interest, method=method, top=top)
        return table_from_rows(reply["results"], meta={"count": reply["count"]})

    def review(self, score_set: int, galaxy_id: int, interest: int | None = None, *, artifact: bool = False,
               rerank_every: int | None = None) -> dict:
        """Record your verdict on a candidate: ``interest`` 0-5, or ``artifact=True`` (labeler)."""
        body = {"galaxy_id": int(galaxy_id), "interest": interest, "artifact": artifact, "rerank_every": rerank_every}
        return self._post(f"/api/anomalies/score-sets/{int(score_set)}/reviews/",
                          {k: v for k, v in body.items() if v is not None})

    def undo_review(self, score_set: int, galaxy_id: int) -> dict:
        return self._post(f"/api/anomalies/score-sets/{int(score_set)}/undo/", {"galaxy_id": int(galaxy_id)})

    def rerank(self, score_set: int) -> Job:
        """Re-rank your queue from your verdicts now (labeler)."""
        return self._job(self._post(f"/api/anomalies/score-sets/{int(score_set)}/ranking/"))

    def galaxy_anomaly_scores(self, galaxy_id: int) -> dict:
        """A galaxy's scores in every ready score set, and your verdict and history on it."""
        return self._get(f"/api/anomalies/galaxies/{int(galaxy_id)}/")

    # ------------------------------------------------------------------ labeling

    def tasks(self) -> Table:
        """Labeling tasks (id, name, kind, classes, surveys, strategy)."""
        rows = self._get("/api/tasks/")["tasks"]
        for r in rows:
            r["classes"] = ",".join(c["name"] for c in r.get("classes") or [])
            r["surveys"] = ",".join(r.get("surveys") or [])
        return table_from_rows(rows, columns=["id", "name", "kind", "classes", "surveys", "strategy", "allow_unsure",
                                              "embedding_set_id", "target", "unit"])

    def task(self, task_id: int) -> dict:
        """One task with its progress, agreement and serving round."""
        return self._get(f"/api/tasks/{int(task_id)}/")

    def _task_table(self, task_id: int, what: str, per: int = 5000) -> Table:
        rows, page, columns = [], 1, None
        while True:
            reply = self._get(f"/api/tasks/{int(task_id)}/{what}", page=page, per=per)
            rows += reply["results"]
            columns = reply["columns"]
            if page >= reply["num_pages"]:
                break
            page += 1
        return table_from_rows(rows, columns=columns, meta={"task": int(task_id)})

    def predictions(self, task_id: int) -> Table:
        """Per galaxy of the task: RA/Dec, consensus and vote fractions, the serving model's
        prediction and uncertainty, and its model version (the task's catalogue)."""
        return self._task_table(task_id, "catalogue")

    catalogue = predictions

    def labels(self, task_id: int) -> Table:
        """Every label row as recorded (undo rows included; ``counts`` marks current answers)."""
        return self._task_table(task_id, "labels/history")

    def label(self, task_id: int, galaxy_id: int, class_index: int | None = None, *, value: float | None = None,
              kind: str = "value") -> dict:
        """Record one answer (labeler): a class index, a value, or kind unsure/skip."""
        body = {"galaxy_id": int(galaxy_id), "kind": kind, "class_index": class_index, "value": value}
        return self._post(f"/api/tasks/{int(task_id)}/labels", {k: v for k, v in body.items() if v is not None})

    def post_labels(self, task_id: int, labels, *, source: str | None = None, chunk: int = MAX_BULK_LABELS) -> dict:
        """Post many answers at once, e.g. an expert's labels (labeler).

        ``labels``: a list of dicts or a Table (or dict of columns) with ``galaxy_id`` and one of
        ``class`` (class name), ``class_index`` or ``value``; optional ``kind`` (value/unsure/skip).
        Each request of up to ``chunk`` rows is stored all or nothing: a refused row raises
        BadRequest whose ``errors`` name every refused row (earlier chunks stay stored).
        ``source`` (curator): store them as that source's labels (e.g. "GZ2 expert", one voter like
        an import of expert labels) instead of as yours.
        Returns ``{"stored": n, "label_ids": [...]}``."""
        rows = _label_rows(labels)
        stored, label_ids, reply = 0, [], {}
        for start in range(0, len(rows), chunk):
            body = {"labels": rows[start:start + chunk], **({"source": source} if source else {})}
            reply = self._post(f"/api/tasks/{int(task_id)}/labels/bulk", body)
            stored += reply["stored"]
            label_ids += reply["label_ids"]
        return {"task_id": int(task_id), "stored": stored, "label_ids": label_ids, "source": reply.get("source"),
                "progress": reply.get("progress")}

    def undo_label(self, task_id: int, galaxy_id: int | None = None) -> dict:
        """Retract your latest answer in the task (or on one galaxy)."""
        body = {"galaxy_id": int(galaxy_id)} if galaxy_id is not None else {}
        return self._post(f"/api/tasks/{int(task_id)}/undo", body)

    def label_queue(self, task_id: int, n: int = 10) -> Table:
        """The next galaxies the model asks you to label, with the reason (labeler; reserves them)."""
        reply = self._get(f"/api/tasks/{int(task_id)}/queue", n=n)
        rows = [{k: v for k, v in item.items() if k not in ("bands", "metadata")} for item in reply["items"]]
        return table_from_rows(rows, meta={"progress": reply["progress"]})

    def enqueue(self, task_id: int, galaxy_ids) -> dict:
        """Put galaxies first in a task's labeling queue (labeler)."""
        ids = [int(i) for i in np.atleast_1d(np.asarray(galaxy_ids)).ravel()]
        return self._post(f"/api/tasks/{int(task_id)}/enqueue", {"galaxy_ids": ids})

    def rounds(self, task_id: int) -> Table:
        """The task's rounds (newest first) with status, label counts and headline metrics."""
        rows = self._get(f"/api/tasks/{int(task_id)}/rounds")["rounds"]
        for r in rows:
            for key in ("accuracy", "balanced_accuracy", "macro_f1", "ece", "rmse", "coverage_90"):
                if (r.get("metrics") or {}).get(key) is not None:
                    r[key] = r["metrics"][key]
        return table_from_rows(rows)

    def start_round(self, task_id: int) -> Job:
        """Retrain the task's model now (curator); wait on the returned job."""
        return self._job(self._post(f"/api/tasks/{int(task_id)}/rounds"))

    def finetune(self, task_id: int, config: dict | None = None) -> Job:
        """Fine-tune the task's encoder on its labels (curator; gpu queue)."""
        return self._job(self._post(f"/api/tasks/{int(task_id)}/finetune", {"config": config}))

    # ------------------------------------------------------------------ jobs

    def jobs(self, *, active: bool = False, ids=None) -> Table:
        """Recent jobs (or the active ones, or those with these ids)."""
        reply = self._get("/api/jobs/", active="1" if active else None, ids=_ids(ids) if ids is not None else None)
        return table_from_rows(reply["jobs"], columns=["id", "kind", "title", "status", "progress", "message",
                                                       "error", "attempts", "queue", "created_at", "finished_at",
                                                       "duration_seconds", "launched_by"])

    def job(self, job_id: int) -> Job:
        """One job (with its live metrics); ``.wait()`` on it."""
        return Job(self, self._get(f"/api/jobs/{int(job_id)}/"))

    def wait(self, job, **kwargs) -> Job:
        """Wait for a job (a Job or its id) with a progress bar; see Job.wait."""
        job = job if isinstance(job, Job) else self.job(job)
        return job.wait(**kwargs)


def _card_columns(rows: list[dict]) -> list[str]:
    present = set().union(*(r.keys() for r in rows)) if rows else set(CARD_COLUMNS)
    return [c for c in CARD_COLUMNS if c in present] + sorted(present - set(CARD_COLUMNS))


def _label_rows(labels) -> list[dict]:
    """Label rows as JSON dicts from a list of dicts, an astropy Table or a dict of columns."""
    if isinstance(labels, Table):
        labels = [{name: row[name] for name in labels.colnames} for row in labels]
    elif isinstance(labels, Mapping):
        names = list(labels)
        labels = [dict(zip(names, values)) for values in zip(*(labels[n] for n in names))]
    rows = []
    for row in labels:
        out = {}
        for key in ("galaxy_id", "kind", "class_index", "class", "value"):
            v = row.get(key)
            if v is None or (np.ma.is_masked(v)):
                continue
            v = v.item() if isinstance(v, np.generic) else v
            out[key] = int(v) if key in ("galaxy_id", "class_index") else v
        if "galaxy_id" not in out:
            raise ValueError(f"a label row needs a galaxy_id: {row!r}")
        rows.append(out)
    if not rows:
        raise ValueError("no labels to post")
    return rows


__all__ = ["Client", "Job", "LatentSkyError"]
