"""Interoperability with desktop astronomy tools and sky surveys' imagery.

SAMP (Simple Application Messaging Protocol): the page talks to the SAMP Web Profile hub on
the user's machine (static/js/samp.js); TOPCAT or Aladin then fetch the tables and cutouts
from short-lived signed URLs here (links.py, tables.py, views.py), and tables they send back
become map selections (views.samp_rows).  HiPS imagery for the sky view: hips.py.

This package sits above the domain apps (it reads collections, anomaly lists and task
exports); no domain app imports it.
"""
