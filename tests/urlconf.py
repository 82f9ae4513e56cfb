"""The project's URL patterns as flat (route, view) pairs, for tests that check every URL."""
from django.urls import URLPattern, URLResolver, get_resolver


def url_routes(resolver=None, prefix=""):
    """(route, view callback) for every URL pattern, includes flattened; the route is the patterns'
    text joined, e.g. "api/tasks/<int:task_id>/queue" (a regex pattern keeps its ^ and $)."""
    resolver = resolver or get_resolver()
    for p in resolver.url_patterns:
        route = prefix + str(p.pattern)
        if isinstance(p, URLResolver):
            yield from url_routes(p, route)
        elif isinstance(p, URLPattern):
            yield route, p.callback
