"""Forms of the encoder pages: train an encoder, upload a checkpoint, embed surveys.

Every form turns into plain job params (``job_params``) that the API accepts too, so
the browser and the JSON API validate the same way (``validate_train_params``).
"""
from __future__ import annotations

from dataclasses import asdict

from django import forms
from django.conf import settings

from ml.augment import AugmentConfig
from ml.contrastive import METHODS
from ml.encoders import MAX_SIZE, MIN_SIZE, PRESETS
from webapp.catalog.models import Survey
from webapp.embeddings.services.encoders import SurveyProblem, resolve_surveys
from webapp.embeddings.services.training import train_config_from_params

AUGMENT_DEFAULTS = asdict(AugmentConfig())
METHOD_LABELS = {"simclr": "SimCLR (NT-Xent, contrastive with in-batch negatives)",
                 "byol": "BYOL (predict an EMA target; no negatives, small batches fine)"}
PRESET_LABELS = {"small": "small — width 16, 64-d embedding; minutes on a CPU",
                 "large": "large — ResNet-18 layout, 512-d; for GPU workers"}
CHECKPOINT_LIMIT = getattr(settings, "MAX_CHECKPOINT_UPLOAD_BYTES", 200 * 1024 * 1024)


def survey_choices():
    return [(s.slug, f"{s.name} — {s.n_galaxies:,} galaxies, {s.image_kind} {''.join(s.bands)}")
            for s in Survey.objects.filter(status=Survey.Status.READY).exclude(image_kind=Survey.ImageKind.NONE)
            .order_by("name")]


def validate_train_params(params: dict) -> list[str]:
    """Readable problems with a train_encoder parameter dict (empty list = fine)."""
    problems = []
    try:
        surveys = resolve_surveys(params.get("surveys") or [])
    except SurveyProblem as exc:
        problems.append(str(exc))
        surveys = []
    try:
        config = train_config_from_params(params)
    except (TypeError, ValueError) as exc:
        problems.append(str(exc))
        config = None
    if surveys and config is not None:
        total = sum(s.n_galaxies for s in surveys)
        if config.batch_size > total:
            problems.append(f"batch size {config.batch_size} is larger than the {total:,} galaxies of the chosen "
                            "surveys; lower it")
    if not str(params.get("name") or "").strip():
        problems.append("give the encoder a name")
    return problems


class TrainEncoderForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Shown on the encoders page and the map.")
    surveys = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple,
                                        help_text="Train on all of them together (same bands and image kind).")
    method = forms.ChoiceField(choices=[(m, METHOD_LABELS[m]) for m in METHODS], initial="simclr")
    preset = forms.ChoiceField(choices=[(p, PRESET_LABELS.get(p, p)) for p in PRESETS], initial="small")
    image_size = forms.IntegerField(min_value=MIN_SIZE, max_value=MAX_SIZE, initial=32,
                                    help_text=f"Network input side in pixels ({MIN_SIZE}–{MAX_SIZE}).")
    crop_fraction = forms.FloatField(min_value=0.2, max_value=1.0, initial=0.75,
                                     help_text="Centre fraction of each stored cutout fed to the network.")
    epochs = forms.IntegerField(min_value=1, max_value=1000, initial=12)
    batch_size = forms.IntegerField(min_value=4, max_value=8192, initial=256,
                                    help_text="Galaxies per step; SimCLR likes 256 or more, BYOL copes with less.")
    lr = forms.FloatField(min_value=1e-6, max_value=1.0, initial=2e-3, label="Learning rate",
                          help_text="AdamW peak at batch 256 (scaled with the batch size).")
    temperature = forms.FloatField(min_value=0.01, max_value=10, initial=0.2, help_text="NT-Xent temperature (SimCLR).")
    seed = forms.IntegerField(min_value=0, max_value=2 ** 31 - 1, initial=0)
    rotate = forms.BooleanField(required=False, initial=True, label="Rotate by any angle")
    flip = forms.BooleanField(required=False, initial=True, label="Mirror flips")
    max_shift = forms.FloatField(min_value=0, max_value=0.3, initial=AUGMENT_DEFAULTS["max_shift"],
                                 label="Centring jitter", help_text="Fraction of the image side.")
    scale_min = forms.FloatField(min_value=0.3, max_value=3, initial=AUGMENT_DEFAULTS["scale_min"], label="Zoom from")
    scale_max = forms.FloatField(min_value=0.3, max_value=3, initial=AUGMENT_DEFAULTS["scale_max"], label="Zoom to")
    blur_fwhm_max = forms.FloatField(min_value=0, max_value=8, initial=AUGMENT_DEFAULTS["blur_fwhm_max"],
                                     label="PSF blur, max FWHM (px)")
    noise_max = forms.FloatField(min_value=0, max_value=10, initial=AUGMENT_DEFAULTS["noise_max"],
                                 label="Extra noise, max (× sky sigma)")
    flux_scale_sigma = forms.FloatField(min_value=0, max_value=1, initial=AUGMENT_DEFAULTS["flux_scale_sigma"],
                                        label="Per-band flux scatter (mag)")
    reddening_max_ebv = forms.FloatField(min_value=0, max_value=1, initial=AUGMENT_DEFAULTS["reddening_max_ebv"],
                                         label="Dust reddening, max E(B−V)")
    embed_after = forms.BooleanField(required=False, initial=True, label="Embed the training surveys when done")

    AUGMENT_FIELDS = ("rotate", "flip", "max_shift", "scale_min", "scale_max", "blur_fwhm_max", "noise_max",
                      "flux_scale_sigma", "reddening_max_ebv")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["surveys"].choices = survey_choices()
        if not self.fields["surveys"].choices:
            self.fields["surveys"].help_text = "No survey is ready yet: ingest or simulate one first."

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        if data["scale_min"] > data["scale_max"]:
            self.add_error("scale_max", "“Zoom to” must be at least “Zoom from”.")
            return data
        for problem in validate_train_params(self.job_params()):
            self.add_error(None, problem)
        return data

    def job_params(self) -> dict:
        data = self.cleaned_data
        params = {k: data[k] for k in ("name", "surveys", "method", "preset", "image_size", "crop_fraction",
                                       "epochs", "batch_size", "lr", "temperature", "seed")}
        params["name"] = params["name"].strip()
        params["augment"] = {k: data[k] for k in self.AUGMENT_FIELDS}
        params["embed_after"] = bool(data.get("embed_after"))
        return params


class UploadEncoderForm(forms.Form):
    name = forms.CharField(max_length=100)
    checkpoint = forms.FileField(help_text="A Latent Sky encoder checkpoint (.pt) — see “Checkpoints trained "
                                           "elsewhere” on this page — or, with a timm architecture below, a timm "
                                           "state dict (safetensors or .pth), e.g. a Zoobot encoder.")
    surveys = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, required=False,
                                        help_text="Surveys it was trained on (optional; used for evaluation).")
    # timm / Zoobot weights (ml/timm_encoder.py); empty timm_arch = a Latent Sky checkpoint
    timm_arch = forms.CharField(max_length=120, required=False, label="timm architecture",
                                help_text="Only for timm weights: convnext_nano, efficientnet_b0, resnet18, … "
                                          "(Zoobot's hf_hub:mwalmsley/zoobot-encoder-convnext_nano works too; "
                                          "nothing is downloaded).")
    image_size = forms.IntegerField(required=False, min_value=16, max_value=1024, label="input size (px)",
                                    help_text="Default: the architecture's (224, as Zoobot trains).")
    greyscale = forms.BooleanField(required=False, label="average the bands (greyscale weights)")
    imagenet_norm = forms.BooleanField(required=False, label="ImageNet mean/std",
                                       help_text="For ImageNet weights; Zoobot's take pixels in [0, 1] as they are.")
    crop_fraction = forms.FloatField(required=False, min_value=0.05, max_value=1.0, initial=1.0,
                                     label="centre crop fraction")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["surveys"].choices = survey_choices()

    def clean_checkpoint(self):
        upload = self.cleaned_data["checkpoint"]
        if upload.size > CHECKPOINT_LIMIT:
            raise forms.ValidationError(f"The file is {upload.size / 2 ** 20:.1f} MiB; checkpoints are limited to "
                                        f"{CHECKPOINT_LIMIT / 2 ** 20:.0f} MiB.")
        if upload.size == 0:
            raise forms.ValidationError("The file is empty.")
        return upload

    def timm_options(self):
        """services.encoders.TimmOptions from the timm fields (call after is_valid)."""
        from webapp.embeddings.services.encoders import TimmOptions

        data = self.cleaned_data
        return TimmOptions(image_size=data.get("image_size"), greyscale=bool(data.get("greyscale")),
                           imagenet_norm=bool(data.get("imagenet_norm")),
                           crop_fraction=data.get("crop_fraction") or 1.0)


class EmbedForm(forms.Form):
    surveys = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple,
                                        help_text="All chosen surveys go into one shared embedding set.")

    def __init__(self, *args, encoder=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.encoder = encoder
        self.fields["surveys"].choices = survey_choices()

    def clean_surveys(self):
        slugs = self.cleaned_data["surveys"]
        pre = (self.encoder.config or {}).get("preprocess", {}) if self.encoder else {}
        try:
            resolve_surveys(slugs, image_kind=pre.get("image_kind"), bands=pre.get("bands"))
        except SurveyProblem as exc:
            raise forms.ValidationError(str(exc)) from None
        return slugs


class ImportEmbeddingsForm(forms.Form):
    """Import an embedding table from DATA_DIR/imports/ (services/external.py)."""
    path = forms.ChoiceField(label="File", help_text="under the data directory's imports/ folder")
    layout = forms.ChoiceField(initial="latentsky", help_text="column names of a known public table")
    name = forms.CharField(max_length=100, required=False, help_text="encoder and embedding set name "
                           "(default: the file name)")
    survey_name = forms.CharField(max_length=100, required=False, help_text="default: the name")
    id_column = forms.CharField(max_length=100, required=False, help_text="overrides the layout's")
    ra_column = forms.CharField(max_length=100, required=False)
    dec_column = forms.CharField(max_length=100, required=False)
    embedding_column = forms.CharField(max_length=100, required=False)

    def __init__(self, *args, files_available=(), **kwargs):
        super().__init__(*args, **kwargs)
        from ml.embedding_table import LAYOUTS
        self.fields["path"].choices = [(f["name"], f"{f['name']} ({f['size']:,} bytes)") for f in files_available]
        self.fields["layout"].choices = [(name, name) for name in LAYOUTS]

    def job_params(self) -> dict:
        return {k: v for k, v in self.cleaned_data.items() if v not in (None, "")}
