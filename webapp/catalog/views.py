from django.shortcuts import render

from webapp.catalog.models import Survey


def survey_list(request):
    return render(request, "catalog/survey_list.html", {"surveys": Survey.objects.all()})
