"""Set up a private database for the PostgreSQL-restart fault test (run with its DATABASE_URL).

Prints JSON: the task id, galaxy ids and the labeler's username.
"""
import json
import os
import sys

import django

sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
django.setup()

import numpy as np  # noqa: E402
from django.contrib.auth.models import Group, User  # noqa: E402
from django.core.management import call_command  # noqa: E402

from tests.catalog.factories import make_survey  # noqa: E402
from webapp.embeddings.models import EmbeddingSet, Encoder  # noqa: E402
from webapp.embeddings.services.vectors import write_embedding_set  # noqa: E402
from webapp.labeling.models import Task  # noqa: E402

call_command("migrate", verbosity=0, interactive=False)
survey = make_survey(slug="pg-fault", n=40)
ids = np.array(survey.galaxies.order_by("image_index").values_list("pk", flat=True))
encoder = Encoder.objects.create(name="fault-test", method="none", config={})
es = EmbeddingSet.objects.create(encoder=encoder, name="fault-test")
es.surveys.add(survey)
write_embedding_set(es, ids, np.random.default_rng(0).normal(size=(len(ids), 8)).astype(np.float32))
task = Task.objects.create(name="restart test", classes=[{"name": "a"}, {"name": "b"}], embedding_set=es,
                           round_every=0, strategy="random")
task.surveys.add(survey)
users = []
for i in range(4):
    user = User.objects.create_user(f"writer{i}", password="fault-pass")
    user.groups.add(Group.objects.get(name="labeler"))
    users.append(user.username)
print(json.dumps({"task_id": task.pk, "galaxy_ids": ids.tolist(), "users": users}))
