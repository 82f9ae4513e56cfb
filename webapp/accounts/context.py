from django.urls import NoReverseMatch, reverse

from webapp.accounts.roles import ROLES, has_role, highest_role

# Top navigation: (label, url name, app_name that marks it active).  An entry whose
# URL does not exist yet is left out, so apps can land one at a time.
NAV = (
    ("Encoders", "embeddings:encoder_list", "embeddings"),
    ("Map", "embeddings:map_home", "embeddings_map"),
    ("Anomalies", "anomalies:home", "anomalies"),
    ("Labeling", "labeling:task_list", "labeling"),
)


# URL names of the map/search area inside the embeddings app (the rest is "Encoders").
MAP_AREA_PREFIXES = ("map", "sky", "search", "collection")


def _nav_items(request) -> list[dict]:
    current = getattr(getattr(request, "resolver_match", None), "url_name", "") or ""
    app = getattr(getattr(request, "resolver_match", None), "app_name", "") or ""
    items = []
    for label, name, marker in NAV:
        try:
            url = reverse(name)
        except NoReverseMatch:
            continue
        in_map_area = current.startswith(MAP_AREA_PREFIXES)
        active = app == marker or (marker == "embeddings_map" and app == "embeddings" and in_map_area)
        if marker == "embeddings" and in_map_area:
            active = False
        items.append({"label": label, "url": url, "active": active})
    return items


def roles(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"user_role": None, "can": {}, "nav_items": []}
    return {"user_role": highest_role(user), "can": {r: has_role(user, r) for r in ROLES},
            "nav_items": _nav_items(request)}
