"""Forms of the catalogue app: the browser ingest form and the remote cutout settings (curators)."""
from __future__ import annotations

from django import forms

from webapp.catalog.models import Survey
from webapp.catalog.services.ingest import FORMATS, PRESETS, build_options, resolve_allowed_path
from webapp.catalog.services.ingest_pixels import NAN_POLICIES, IngestError
from webapp.catalog.services.ingest_types import MAX_SIZE

FORMAT_LABELS = {
    "folder": "Folder of JPEG/PNG cutouts + CSV catalogue",
    "fits": "FITS cutouts (one file per object or per band) + optional table",
    "hdf5": "HDF5 arrays with labels (Galaxy10 style)",
    "gz_decals": "Galaxy Zoo DECaLS vote tables + PNGs",
    "gz2": "Galaxy Zoo 2 (Hart et al. 2016) table + filename mapping + JPEGs",
    "gz_kaggle": "Kaggle Galaxy Zoo challenge solutions + JPEGs",
}
# Form fields passed on to the job as ingest options (names of IngestOptions fields).
OPTION_FIELDS = ("survey", "catalog", "id_column", "image_pattern", "size", "crop_fraction", "limit",
                 "bands", "label_column", "label_key", "nan_policy", "description")


class IngestForm(forms.Form):
    format = forms.ChoiceField(choices=[(k, FORMAT_LABELS.get(k, k)) for k in FORMATS], initial="folder")
    preset = forms.ChoiceField(required=False, choices=[("", "— none —")] + [(k, k) for k in PRESETS],
                               help_text="gz1_sdss: the Galaxy Zoo 1 SDSS sample; fills every option below.")
    path = forms.CharField(max_length=1000, help_text="Absolute folder (or HDF5 file) on the server, "
                                                      "under one of the allowed folders.")
    survey = forms.CharField(max_length=100, required=False,
                             help_text="Survey name; an existing name is updated in place.")
    catalog = forms.CharField(max_length=500, required=False, help_text="Catalogue table, relative to the folder.")
    id_column = forms.CharField(max_length=100, required=False, help_text="Blank: auto-detect (OBJID, id, …).")
    image_pattern = forms.CharField(max_length=200, required=False,
                                    help_text='e.g. images/{id}.jpeg — blank: any image named <id>.')
    size = forms.IntegerField(required=False, min_value=8, max_value=MAX_SIZE, help_text="Stored cutout side (px), default 64.")
    crop_fraction = forms.FloatField(required=False, min_value=0.01, max_value=1.0,
                                     help_text="Centre fraction kept before resizing (default 1; GZ1 0.4).")
    limit = forms.IntegerField(required=False, min_value=0, help_text="At most this many rows (blank: all).")
    bands = forms.CharField(max_length=100, required=False, help_text="FITS/HDF5 bands, blue to red: g,r,i")
    label_column = forms.CharField(max_length=100, required=False, help_text="Integer class column.")
    label_key = forms.CharField(max_length=40, required=False, help_text='Metadata prefix ("gz1" adds names).')
    nan_policy = forms.ChoiceField(choices=[(p, p) for p in NAN_POLICIES], initial="skip", required=False)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def clean_path(self):
        try:
            return str(resolve_allowed_path(self.cleaned_data["path"]))
        except IngestError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            _, options = build_options(self._params(data))
            from pathlib import Path
            base = Path(data["path"])
            for name in filter(None, options.catalog.split(",")):
                resolve_allowed_path(name.strip(), base=base if base.is_dir() else base.parent)
        except IngestError as exc:
            raise forms.ValidationError(str(exc)) from None
        return data

    def job_params(self) -> dict:
        """Params of the "ingest" job (services.ingest_job.run_ingest_job)."""
        params = self._params(self.cleaned_data)
        params["path"] = self.cleaned_data["path"]
        return params

    @staticmethod
    def _params(data: dict) -> dict:
        params = {"format": data["format"], "preset": data.get("preset") or ""}
        params.update({k: data.get(k) for k in OPTION_FIELDS if data.get(k) not in (None, "")})
        return params


class CutoutSourceForm(forms.ModelForm):
    """A survey's remote cutout service; the template is validated by the model field
    (services.remote_cutouts.validate_template)."""

    class Meta:
        model = Survey
        fields = ("cutout_url_template", "cutout_layer", "cutout_field_arcsec")
        labels = {"cutout_url_template": "Cutout URL template", "cutout_layer": "Layer",
                  "cutout_field_arcsec": "Field width (arcsec)"}
        widgets = {"cutout_url_template": forms.TextInput(attrs={"size": 100, "class": "mono"})}

    def clean_cutout_url_template(self):
        return (self.cleaned_data.get("cutout_url_template") or "").strip()

    def clean_cutout_field_arcsec(self):
        value = self.cleaned_data.get("cutout_field_arcsec")
        if value is not None and not 1.0 <= value <= 3600.0:
            raise forms.ValidationError("field width must be between 1 and 3600 arcsec")
        return value
