# %% [markdown]
# # Latent Sky from a notebook
#
# A tour of the Python client against a running Latent Sky (`make demo` serves
# http://127.0.0.1:8000).  Create a token on your Account page and set it first:
#
#     export LATENTSKY_TOKEN=lsk_...          # LATENTSKY_URL too if not http://127.0.0.1:8000
#     python client/examples/notebook_tour.py  # or open it as a notebook (jupytext / VS Code cells)
#
# Posting labels needs the labeler role; starting the round needs curator (the demo login is both).

# %%
import os

import numpy as np
from astropy import units as u

from latentsky import Client, LatentSkyError

sky = Client(os.environ.get("LATENTSKY_URL", "http://127.0.0.1:8000"), token=os.environ.get("LATENTSKY_TOKEN"))
surveys = sky.surveys()
surveys["slug", "name", "bands", "n_galaxies", "pixel_scale_arcsec"].pprint()

# %% [markdown]
# ## Galaxies, page by page
# `galaxies()` reads every page into one Table (`iter_galaxies()` yields one page at a time);
# catalogue metadata become columns, RA/Dec carry units.

# %%
tasks = sky.tasks()
survey = tasks["surveys"][0].split(",")[0] if len(tasks) else surveys["slug"][0]
galaxies = sky.galaxies(survey, limit=1000, per=250)
print(f"{len(galaxies)} galaxies of {survey}; columns: {', '.join(galaxies.colnames[:12])} ...")
print("RA range:", galaxies["ra"].min() * galaxies["ra"].unit, "to", galaxies["ra"].max() * galaxies["ra"].unit)

# %% [markdown]
# ## Neighbours of a galaxy, as an astropy Table
# By id, by position (degrees, sexagesimal strings, Quantities or a SkyCoord), by several ids.

# %%
galaxy_id = int(galaxies["id"][0])
near = sky.neighbours(galaxy_id, k=8)
print(f"The 8 nearest neighbours of galaxy {galaxy_id} ({near.meta['query']['source_id']}) "
      f"in embedding set {near.meta['embedding_set']['name']!r}:")
near["id", "source_id", "survey", "ra", "dec", "distance"].pprint()

at = sky.neighbours_at(galaxies["ra"][0] * u.deg, galaxies["dec"][0] * u.deg, k=5)
print(f"\nNearest catalogue object to that position: {at.meta['match']['source_id']} "
      f"({at.meta['match']['separation_arcsec']:.2f} arcsec); its 5 look-alikes: {at['id'].tolist()}")
more = sky.similar(near["id"][:3], k=5)
print("More like the first three neighbours:", more["id"].tolist())

# %% [markdown]
# ## Map coordinates and anomaly scores as arrays

# %%
maps = sky.maps()
if len(maps):
    points = sky.map_points(int(maps["id"][0]), layer="survey")
    xy = np.column_stack([points["x"], points["y"]])
    print(f"map {maps['id'][0]}: {len(points)} points, x in [{xy[:, 0].min():.2f}, {xy[:, 0].max():.2f}], "
          f"surveys {sorted(set(points['survey'].tolist()))}")
score_sets = sky.score_sets()
if len(score_sets):
    scores = sky.anomaly_scores(int(score_sets["id"][0]))
    top = scores[np.argsort(-np.asarray(scores["combined"]))[:5]]
    print(f"score set {score_sets['id'][0]}: the 5 most anomalous of {len(scores)}:")
    top["galaxy_id", "combined"].pprint()

# %% [markdown]
# ## Expert labels, posted in bulk
# A list of `{galaxy_id, class}` rows (or a Table with those columns): stored all or none, and a
# refused row comes back as an exception that names it.

# %%
task = next((t for t in tasks if t["kind"] == "classification"), None)
if task is None:
    raise SystemExit("no classification task on this server: run the demo pipeline first")
task_id, classes = int(task["id"]), task["classes"].split(",")
task_survey = task["surveys"].split(",")[0]
pool = sky.galaxies(task_survey, limit=60)
label_column = next((c for c in ("gz_label", "gz1_label", "label") if c in pool.colnames), None)
expert = [{"galaxy_id": int(row["id"]),
           "class": (str(row[label_column]) if label_column and str(row[label_column]) in classes
                     else classes[i % len(classes)])}
          for i, row in enumerate(pool)]
posted = sky.post_labels(task_id, expert)
print(f"posted {posted['stored']} expert labels to task {str(task['name'])!r} (label ids "
      f"{posted['label_ids'][0]}..{posted['label_ids'][-1]}); progress {posted['progress']}")

try:
    sky.post_labels(task_id, [{"galaxy_id": int(pool["id"][0]), "class": "not-a-class"}])
except LatentSkyError as err:
    print(f"refused as expected: {err.status} {err.message}")

# %% [markdown]
# ## Start a job and wait on it with a progress bar
# Retrain the task's model on the new labels; `wait()` shows a tqdm bar and raises
# `JobFailed` with the server's error if the job fails.

# %%
job = sky.start_round(task_id)
job.wait()
rounds = sky.rounds(task_id)
print(f"job {job.id} {job.status} in {job['duration_seconds']:.1f} s; round {rounds['number'][0]}: "
      f"accuracy {rounds['accuracy'][0]:.3f} on {rounds['n_labels'][0]} labels")

predictions = sky.predictions(task_id)
shown = [c for c in ("galaxy_id", "ra", "dec", "consensus", "pred_class", "pred_entropy", "model_version")
         if c in predictions.colnames]
predictions[shown][:5].pprint(max_width=-1)
