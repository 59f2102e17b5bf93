"""tests/e2e/contract.py — every answer the e2e harness receives is checked against docs/openapi.yaml:
its route (the path template that matches, as the daemon's router matches: one trailing slash ignored),
method and status must be described, a JSON body must validate (JSON Schema 2020-12, Debian's
python3-jsonschema) against the schema of that route and status, and a non-JSON body must have a media
type the document gives there. URLs no template matches (or methods a path does not take) may only get
the router's own errors, listed in the document's x-unrouted-responses. A mismatch raises AssertionError
naming the route, status and the validation error. `validated` counts the checked answers (tests run in
run.py's process, which prints it)."""
import os
import re
import urllib.parse

import jsonschema
import yaml

DOC_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "openapi.yaml")
validated = 0
_doc = None
_routes = None


def doc():
    global _doc, _routes
    if _doc is None:
        with open(DOC_PATH) as f:
            _doc = yaml.safe_load(f)
        _routes = []
        for template in _doc["paths"]:
            # a {param} is one segment, except the dashboard's /web/{file} (a path under the web root)
            rx = re.escape(template.rstrip("/") if template != "/" else template)
            rx = rx.replace(r"\{file\}", ".+") if template.startswith("/web/") else re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", rx)
            _routes.append((template, re.compile("^" + rx + ("/?$" if template.startswith("/v1/") else "$"))))
    return _doc


def _pointer_of(node):
    cur = doc()
    for part in node["$ref"][2:].split("/"):
        cur = cur[part.replace("~1", "/").replace("~0", "~")]
    return cur


def _deref(node):
    while isinstance(node, dict) and "$ref" in node:
        node = _pointer_of(node)
    return node


def route_of(path):
    """The template that describes path (query string dropped), or None."""
    doc()
    p = urllib.parse.urlsplit(path).path
    for template, rx in _routes:
        if rx.match(p):
            return template
    return None


def _fail(method, path, template, status, why):
    raise AssertionError(f"docs/openapi.yaml: {method} {path} (route {template or 'none'}) answered {status}: {why}")


def _validate(schema, body, method, path, template, status):
    # The schema travels inside a root that also holds the document's components, so its "#/components/..."
    # references resolve the same way in every jsonschema (RefResolver is gone from the newer ones).
    root = {"$ref": "#/x-checked", "x-checked": schema, "components": doc()["components"]}
    v = jsonschema.Draft202012Validator(root, format_checker=None)
    err = jsonschema.exceptions.best_match(v.iter_errors(body))
    if err is not None:
        where = "/".join(str(x) for x in err.absolute_path) or "(the body)"
        _fail(method, path, template, status, f"at {where}: {err.message}")


def check(method, path, status, body, headers):
    """Check one answer. body: parsed JSON or bytes (as the harness returns it); headers: the reply's."""
    global validated
    d = doc()
    template = route_of(path)
    op = d["paths"][template].get("get" if method == "HEAD" else method.lower()) if template else None
    if op is not None:
        responses = op["responses"]
    else:
        responses = d["x-unrouted-responses"]
    resp = responses.get(str(status))
    if resp is None and op is not None and status == 405:  # HEAD on a GET-only row: the router's 405
        resp = d["x-unrouted-responses"].get("405")
    if resp is None:
        _fail(method, path, template, status, f"the document gives this {'operation' if op else 'unrouted request'} "
                                              f"no {status} (it has {', '.join(sorted(responses))})")
    resp = _deref(resp)
    content = resp.get("content", {})
    if isinstance(body, (bytes, bytearray)):
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip() if headers is not None else ""
        if method == "HEAD" or not body and not content:
            validated += 1
            return
        if ctype == "application/json":
            _fail(method, path, template, status, "the body is not JSON although its type says so")
        if ctype not in content and "*/*" not in content:
            _fail(method, path, template, status, f"Content-Type {ctype!r} is not among {sorted(content)}")
        validated += 1
        return
    media = content.get("application/json")
    if media is None:
        _fail(method, path, template, status, f"a JSON body where the document gives {sorted(content) or 'none'}")
    _validate(media["schema"], body, method, path, template, status)
    validated += 1


def check_sse(path, event, data):
    """One server-sent frame's data: an Event, or the closing {"job_id"} frame."""
    global validated
    template = route_of(path)
    if event == "end":
        schema = {"type": "object", "additionalProperties": False, "required": ["job_id"],
                  "properties": {"job_id": {"type": "string"}}}
    else:
        schema = {"$ref": "#/components/schemas/Event"}
    _validate(schema, data, "GET", path, template, "200 (event stream frame)")
    validated += 1
