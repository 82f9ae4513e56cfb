"""Forms of the anomalies app: the curator's "score an embedding set" form."""
from __future__ import annotations

from django import forms

from ml.anomaly import METHODS, AnomalyConfig
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet

METHOD_HELP = {
    "iforest": "isolation forest: isolated in few random splits",
    "knn": "mean distance to the nearest galaxies",
    "lof": "local outlier factor: sparser than its neighbours",
    "gmm": "low likelihood under a Gaussian mixture (density)",
}


class ScoreForm(forms.Form):
    embedding_set = forms.ModelChoiceField(
        queryset=EmbeddingSet.objects.filter(status=ArtifactStatus.READY).select_related("encoder"),
        empty_label=None, help_text="The galaxies to score, in this encoder's latent space.")
    methods = forms.MultipleChoiceField(
        choices=[(m, f"{m} — {METHOD_HELP[m]}") for m in METHODS], initial=list(AnomalyConfig().methods),
        widget=forms.CheckboxSelectMultiple, help_text="Each is rank-normalised, then combined.")
    combine = forms.ChoiceField(choices=[("mean", "mean: agreement between methods (best measured)"),
                                         ("max", "max: anything any method puts at the top")],
                                initial=AnomalyConfig().combine)
    name = forms.CharField(max_length=200, required=False)
