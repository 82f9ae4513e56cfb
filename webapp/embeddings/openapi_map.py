"""OpenAPI description of the map, search and collection endpoints (merged by webapp.openapi)."""
from webapp.openapi import error_responses, json_ok

_ID = {"type": "integer"}


def _path_id(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": _ID}


def _q(name: str, schema: dict, description: str = "", required: bool = False) -> dict:
    out = {"name": name, "in": "query", "schema": schema, "required": required}
    if description:
        out["description"] = description
    return out


SET_PARAM = _q("set", _ID, "embedding set id; default: the newest ready set containing the galaxy (or any)")
K_PARAM = _q("k", {"type": "integer", "minimum": 1, "maximum": 500}, "number of results")
BBOX_PARAM = _q("bbox", {"type": "string"}, "view x0,y0,x1,y1 in map coordinates (whole map when absent)")
GALAXY_IDS = {"type": "array", "items": _ID, "maxItems": 10000}

SCHEMAS = {
    "SearchResult": {"type": "object", "required": ["id", "distance"], "properties": {
        "id": _ID, "distance": {"type": "number", "description": "1 - cosine similarity (lower = closer); "
                                                                  "in rrf mode minus the fused score"},
        "source_id": {"type": "string"}, "survey": {"type": "string"}, "survey_name": {"type": "string"},
        "ra": {"type": ["number", "null"]}, "dec": {"type": ["number", "null"]},
        "url": {"type": "string"}, "thumb_url": {"type": "string"},
        "x": {"type": "number", "description": "map x (when a map is known)"}, "y": {"type": "number"}}},
    "EmbeddingSetRef": {"type": "object", "properties": {
        "id": _ID, "name": {"type": "string"}, "n": _ID, "dim": _ID,
        "index": {"type": "string", "description": "what answers queries, e.g. 'IVF (nprobe 32)' or 'exact'"}}},
    "LatentMap": {"type": "object", "properties": {
        "id": _ID, "embedding_set": _ID, "name": {"type": "string"}, "n": _ID, "status": {"type": "string"},
        "seconds": {"type": ["number", "null"]}, "params": {"type": "object", "description": "UMAPConfig"},
        "created_at": {"type": "string"}, "url": {"type": "string"}}},
    "Collection": {"type": "object", "properties": {
        "id": _ID, "name": {"type": "string"}, "description": {"type": "string"}, "count": _ID,
        "created_at": {"type": "string"}, "url": {"type": "string"}}},
}
_RESULTS = {"type": "array", "items": {"$ref": "#/components/schemas/SearchResult"}}
_SET = {"$ref": "#/components/schemas/EmbeddingSetRef"}
_COLLECTION = {"$ref": "#/components/schemas/Collection"}
_IMAGE = {"200": {"description": "Image", "content": {"image/png": {}, "image/jpeg": {}}}}

PATHS = {
    "/api/maps/": {"get": {
        "summary": "Latent maps (UMAP of an embedding set)", "operationId": "listMaps", "tags": ["map"],
        "responses": json_ok({"type": "object", "properties": {
            "maps": {"type": "array", "items": {"$ref": "#/components/schemas/LatentMap"}}}})}},
    "/api/maps/{map_id}/": {"get": {
        "summary": "One map with what the page needs: bounds, sky bounds, colour layers, budgets, URLs",
        "operationId": "getMap", "tags": ["map"], "parameters": [_path_id("map_id")],
        "responses": {**json_ok({"$ref": "#/components/schemas/LatentMap"}), **error_responses(404)}}},
    "/api/maps/{map_id}/points": {"get": {
        "summary": "Points in a view, in a fixed random priority order (a capped view is a uniform sample)",
        "description": "format=bin returns application/octet-stream: the arrays named in the X-Fields header "
                       "(name:dtype with little-endian numpy dtypes f4, f8, i4, u4), each X-Count long, "
                       "concatenated in that order; X-Total is the number of points in the view. format=json "
                       "pages with offset/limit (next_offset). Fields: row (map row), id (galaxy), x, y (map), "
                       "ra, dec (degrees), c (colour value of `layer`: number, or category code; NaN = none).",
        "operationId": "getMapPoints", "tags": ["map"],
        "parameters": [_path_id("map_id"), BBOX_PARAM,
                       _q("format", {"type": "string", "enum": ["json", "bin"]}),
                       _q("limit", {"type": "integer", "minimum": 1, "maximum": 200000}),
                       _q("offset", {"type": "integer", "minimum": 0}),
                       _q("fields", {"type": "string"}, "comma list of row,id,x,y,ra,dec,c"),
                       _q("layer", {"type": "string"}, "colour layer key for field c, e.g. survey, meta:mag_r")],
        "responses": {"200": {"description": "Points", "content": {
            "application/json": {"schema": {"type": "object", "properties": {
                "count": _ID, "total": _ID, "offset": _ID, "limit": _ID, "next_offset": {"type": ["integer", "null"]},
                "points": {"type": "object", "additionalProperties": {"type": "array"}}}}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            **error_responses(400, 404)}}},
    "/api/maps/{map_id}/layers": {"get": {
        "summary": "Colour layers offered for this map, or one layer's legend with ?key=",
        "operationId": "getMapLayers", "tags": ["map"],
        "parameters": [_path_id("map_id"), _q("key", {"type": "string"})],
        "responses": {**json_ok({"type": "object", "properties": {
            "layers": {"type": "array", "items": {"type": "object"}}, "default": {"type": "string"},
            "kind": {"type": "string", "enum": ["numeric", "categorical"]},
            "categories": {"type": "array", "items": {"type": "string"}}, "counts": {"type": "array"},
            "low": {"type": "number"}, "high": {"type": "number"}, "missing": _ID}}), **error_responses(400, 404)}}},
    "/api/maps/{map_id}/density": {"get": {
        "summary": "Point density over a view: log-shaded PNG (default) or counts as JSON",
        "operationId": "getMapDensity", "tags": ["map"],
        "parameters": [_path_id("map_id"), BBOX_PARAM, _q("bins", {"type": "integer", "minimum": 8, "maximum": 1024}),
                       _q("space", {"type": "string", "enum": ["map", "sky"]}),
                       _q("format", {"type": "string", "enum": ["png", "json"]}),
                       _q("flip", {"type": "string", "enum": ["x"]}, "mirror horizontally (sky: RA grows left)")],
        "responses": {**_IMAGE, **error_responses(400, 404)}}},
    "/api/maps/{map_id}/mosaic": {"get": {
        "summary": "Cutouts at their map positions over a view (JPEG), or the chosen galaxy per cell (JSON)",
        "operationId": "getMapMosaic", "tags": ["map"],
        "parameters": [_path_id("map_id"), BBOX_PARAM, _q("cells", {"type": "integer", "minimum": 2, "maximum": 64}),
                       _q("tile", {"type": "integer", "minimum": 16, "maximum": 128}),
                       _q("format", {"type": "string", "enum": ["jpeg", "json"]})],
        "responses": {**_IMAGE, **error_responses(400, 404)}}},
    "/api/search/neighbours/{galaxy_id}": {"get": {
        "summary": "The k nearest galaxies to one galaxy (itself excluded)", "operationId": "searchNeighbours",
        "tags": ["search"],
        "parameters": [_path_id("galaxy_id"), SET_PARAM, K_PARAM, _q("map", _ID, "add x, y of this map")],
        "responses": {**json_ok({"type": "object", "properties": {
            "embedding_set": _SET, "galaxy": {"$ref": "#/components/schemas/SearchResult"}, "results": _RESULTS}}),
            **error_responses(400, 404)}}},
    "/api/search/similar": {"get": {
        "summary": "More like these: galaxies similar to several positives (positives excluded)",
        "operationId": "searchSimilar", "tags": ["search"],
        "parameters": [_q("ids", {"type": "string"}, "comma-separated galaxy ids", required=True), SET_PARAM,
                       K_PARAM, _q("mode", {"type": "string", "enum": ["mean", "rrf"]}), _q("map", _ID)],
        "responses": {**json_ok({"type": "object", "properties": {
            "embedding_set": _SET, "positives": {"type": "array", "items": _ID}, "results": _RESULTS}}),
            **error_responses(400, 404)}}},
    "/api/search/sky": {"get": {
        "summary": "Nearest catalogue object to an RA/Dec (ICRS), then its look-alikes",
        "operationId": "searchSky", "tags": ["search"],
        "parameters": [_q("ra", {"type": "string"}, "degrees (0..360) or hh:mm:ss", required=True),
                       _q("dec", {"type": "string"}, "degrees (-90..90) or ±dd:mm:ss", required=True),
                       _q("max_sep", {"type": "number"}, "arcsec; default 60"), SET_PARAM, K_PARAM],
        "responses": {**json_ok({"type": "object", "properties": {
            "embedding_set": _SET, "match": {"$ref": "#/components/schemas/SearchResult"}, "results": _RESULTS}}),
            **error_responses(400, 404)}}},
    "/api/search/upload": {"post": {
        "summary": "Search by an uploaded FITS, PNG or JPEG cutout (preprocessed like the survey; nothing stored)",
        "operationId": "searchUpload", "tags": ["search"],
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["image"], "properties": {
                "image": {"type": "string", "format": "binary", "description": "FITS (.fits/.fits.gz), PNG or JPEG; "
                          "size limit LATENTSKY_MAX_UPLOAD_BYTES"},
                "set": _ID, "survey": {"type": "string", "description": "survey slug to preprocess like"},
                "crop": {"type": "number", "description": "centre-crop fraction for PNG/JPEG (default: the survey's)"},
                "k": _ID}}}}},
        "responses": {**json_ok({"type": "object", "properties": {
            "embedding_set": _SET, "survey": {"type": "string"}, "format": {"type": "string"},
            "notes": {"type": "array", "items": {"type": "string"}}, "results": _RESULTS}}),
            **error_responses(400, 404), "503": {"description": "This server cannot embed images"}}}},
    "/api/search/galaxies": {"get": {
        "summary": "Galaxy cards (source id, survey, position, thumbnail URL) by id or source id",
        "operationId": "searchGalaxies", "tags": ["search"],
        "parameters": [_q("ids", {"type": "string"}), _q("source", {"type": "string"}), SET_PARAM],
        "responses": {**json_ok({"type": "object", "properties": {"results": _RESULTS}}), **error_responses(400, 404)}}},
    "/api/collections/": {
        "get": {"summary": "My collections", "operationId": "listCollections", "tags": ["collections"],
                "responses": json_ok({"type": "object", "properties": {
                    "collections": {"type": "array", "items": _COLLECTION}}})},
        "post": {"summary": "Add galaxies to my collection of this name (created when new; viewer role)",
                 "operationId": "addToNamedCollection", "tags": ["collections"],
                 "requestBody": {"required": True, "content": {"application/json": {"schema": {
                     "type": "object", "required": ["name", "galaxy_ids"],
                     "properties": {"name": {"type": "string", "maxLength": 120}, "galaxy_ids": GALAXY_IDS}}}}},
                 "responses": {**json_ok({"type": "object", "properties": {
                     "collection": _COLLECTION, "added": _ID, "created": {"type": "boolean"}}}),
                     "201": {"description": "Created"}, **error_responses(400, 403)}}},
    "/api/collections/{collection_id}/": {"get": {
        "summary": "One of my collections with its galaxy ids", "operationId": "getCollection",
        "tags": ["collections"], "parameters": [_path_id("collection_id")],
        "responses": {**json_ok(_COLLECTION), **error_responses(404)}}},
    "/api/collections/{collection_id}/add": {"post": {
        "summary": "Add galaxies to my collection", "operationId": "addToCollection", "tags": ["collections"],
        "parameters": [_path_id("collection_id")],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["galaxy_ids"], "properties": {"galaxy_ids": GALAXY_IDS}}}}},
        "responses": {**json_ok({"type": "object"}), **error_responses(400, 403, 404)}}},
    "/api/collections/{collection_id}/remove": {"post": {
        "summary": "Remove galaxies from my collection", "operationId": "removeFromCollection",
        "tags": ["collections"], "parameters": [_path_id("collection_id")],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["galaxy_ids"], "properties": {"galaxy_ids": GALAXY_IDS}}}}},
        "responses": {**json_ok({"type": "object", "properties": {"removed": _ID}}), **error_responses(400, 403, 404)}}},
    "/api/collections/{collection_id}/delete": {"post": {
        "summary": "Delete my collection (the galaxies stay in the catalogue)", "operationId": "deleteCollection",
        "tags": ["collections"], "parameters": [_path_id("collection_id")],
        "responses": {**json_ok({"type": "object", "properties": {"deleted": _ID}}), **error_responses(403, 404)}}},
}
