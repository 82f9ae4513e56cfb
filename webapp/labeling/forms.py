"""The task form (curators): what to label, on which surveys, and how the model asks."""
from __future__ import annotations

import re

from django import forms

from webapp.catalog.models import Survey
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet
from webapp.labeling.models import Task
from webapp.labeling.services.picking import STRATEGY_CHOICES

HEAD_CHOICES = [("mlp_ensemble", "MLP ensemble (uncertainty from 5 members; needed for BALD)"),
                ("logistic", "Logistic regression (fastest; linear)")]
RESERVED_KEYS = {"0", "s", "u", "b", "+", "-", "=", "?"}   # unsure, skip, undo, bands, zoom, help (labeling page)


class TaskForm(forms.ModelForm):
    classes_text = forms.CharField(
        label="Classes", required=False, widget=forms.Textarea(attrs={"rows": 5}),
        help_text="One class per line, optionally with its key: 'spiral, 2'. Keys default to 1, 2, 3, …")
    head_kind = forms.ChoiceField(label="Model head", choices=HEAD_CHOICES, initial="mlp_ensemble")
    mc_samples = forms.IntegerField(label="MC-dropout passes per member (BALD)", min_value=0, max_value=20,
                                    initial=0, required=False,
                                    help_text="0 = ensemble disagreement only; >0 adds MC dropout")
    strategy = forms.ChoiceField(choices=STRATEGY_CHOICES, initial="margin")

    class Meta:
        model = Task
        fields = ["name", "description", "kind", "allow_unsure", "target_name", "unit", "value_min", "value_max",
                  "embedding_set", "surveys", "source_survey", "queue_survey", "strategy", "batch_size",
                  "round_every", "cold_start_labels", "votes_per_galaxy"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2}),
                   "surveys": forms.CheckboxSelectMultiple}
        help_texts = {"embedding_set": "the frozen embeddings the model learns from",
                      "surveys": "galaxies of these surveys are labelled and predicted"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["embedding_set"].queryset = EmbeddingSet.objects.filter(status=ArtifactStatus.READY) \
            .select_related("encoder")
        self.fields["surveys"].queryset = Survey.objects.all()
        self.fields["source_survey"].queryset = Survey.objects.all()
        self.fields["queue_survey"].queryset = Survey.objects.all()
        if self.instance.pk:
            self.fields["classes_text"].initial = "\n".join(
                f"{c['name']}, {c['key']}" if c.get("key") else c["name"] for c in self.instance.classes)
            self.fields["head_kind"].initial = self.instance.head_config.get("kind", "mlp_ensemble")
            self.fields["mc_samples"].initial = self.instance.head_config.get("mc_samples", 0)
            if self.instance.labels.exists():   # changing the question would mix incompatible labels
                for name in ("kind", "classes_text"):
                    self.fields[name].disabled = True
                    self.fields[name].help_text = "fixed once people have labelled"

    def clean_classes_text(self) -> list[dict]:
        if self.fields["classes_text"].disabled:
            return self.instance.classes
        lines = [ln.strip() for ln in (self.cleaned_data.get("classes_text") or "").splitlines() if ln.strip()]
        classes, keys = [], set()
        for i, line in enumerate(lines):
            name, _, key = (p.strip() for p in line.partition(","))
            key = key or (str(i + 1) if i < 9 else "")
            if not re.fullmatch(r"[^,]{1,40}", name):
                raise forms.ValidationError(f"line {i + 1}: class names are 1-40 characters")
            if key and (len(key) != 1 or key.lower() in RESERVED_KEYS):
                raise forms.ValidationError(f"line {i + 1}: key {key!r} must be one character other than "
                                            f"{', '.join(sorted(RESERVED_KEYS))}")
            if name.lower() in {c["name"].lower() for c in classes} or (key and key in keys):
                raise forms.ValidationError(f"line {i + 1}: class {name!r} or key {key!r} is used twice")
            keys.add(key)
            classes.append({"name": name, "key": key})
        return classes

    def clean(self):
        data = super().clean()
        kind = data.get("kind") or self.instance.kind
        classes = data.get("classes_text") or []
        if kind == Task.Kind.CLASSIFICATION and len(classes) < 2:
            self.add_error("classes_text", "a classification task needs at least two classes")
        if kind == Task.Kind.REGRESSION:
            if not data.get("target_name"):
                self.add_error("target_name", "name the quantity people estimate, e.g. 'bar length'")
            lo, hi = data.get("value_min"), data.get("value_max")
            if lo is not None and hi is not None and lo >= hi:
                self.add_error("value_max", "the maximum must be larger than the minimum")
        es, surveys = data.get("embedding_set"), data.get("surveys")
        if es and surveys:
            missing = set(surveys) - set(es.surveys.all())
            if missing:
                self.add_error("surveys", f"the embedding set does not cover {', '.join(sorted(s.slug for s in missing))}")
        for name in ("source_survey", "queue_survey"):
            chosen = data.get(name)
            if chosen and surveys and chosen not in surveys:
                self.add_error(name, "pick one of the task's surveys")
        if data.get("strategy") == "bald" and data.get("head_kind") == "logistic":
            self.add_error("strategy", "BALD needs the MLP ensemble head (a single logistic model cannot disagree with itself)")
        return data

    def save(self, commit=True):
        task = super().save(commit=False)
        task.classes = self.cleaned_data["classes_text"] if task.kind == Task.Kind.CLASSIFICATION else []
        head = dict(task.head_config or {})
        head["kind"] = self.cleaned_data["head_kind"]
        head["mc_samples"] = self.cleaned_data.get("mc_samples") or 0
        task.head_config = head
        if commit:
            task.save()
            self.save_m2m()
        return task
