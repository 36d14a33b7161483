"""A local Kubernetes API for tests and the demo: kmock 0.8's KubernetesEmulator over real
HTTP, with the fixes Kopf, kubectl and the `kubernetes` client need (shared/TESTING.md lists
the gaps 1-9 of plain kmock 0.8; each fix below names its gap).

    with KubeEmulator() as kube:
        kube.load_crds()                 # the MongoBackup/MongoRestore CRDs, through the API
        kube.url                         # http://127.0.0.1:PORT, for kopf.ConnectionInfo(server=...)
        kube.kubeconfig                  # a kubeconfig file for kubectl and the kubernetes client
        kube.requests                    # every resource request served: ApiRequest(verb, group, ...)

The emulator runs in a thread with its own event loop: in the loop of a Kopf operator, Kopf
treats the emulator's tasks as hung and every shutdown waits 5 s.

Modelled: objects with resourceVersion/uid/creationTimestamp/generation, finalizers and
deletionTimestamp, the status subresource (status and the rest of the object are written
separately, as for a CRD with `subresources: {status: {}}`), merge and JSON patches (a failed
`test` is a 422), preconditions on resourceVersion (409), generateName, watches resumed from a
resourceVersion, CRDs that register their resource, field selectors on name and namespace,
equality label selectors, server-side tables with a CRD's printer columns (`kubectl get`).
Not modelled (the kind e2e tests cover them): schema validation, defaulting and CEL rules,
admission, RBAC enforcement, garbage collection by ownerReferences, controllers (a Job never
runs), server-side apply.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import collections
import copy
import datetime
import importlib.metadata
import json
import random
import shutil
import string
import tempfile
import threading
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiohttp.test_utils
import attrs
import jsonpatch
import kmock
import yaml
from kmock._internal import apps, parsing, rendering

KMOCK_VERSION = "0.8"
if importlib.metadata.version("kmock") != KMOCK_VERSION:
    raise ImportError(
        f"mongo_backup_demo.kube patches kmock {KMOCK_VERSION} internals, found kmock "
        f"{importlib.metadata.version('kmock')}: pin kmock=={KMOCK_VERSION} or port the fixes"
    )

T = TypeVar("T")
Event = dict[str, Any]
CRDS = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
NAMESPACES = kmock.resource("", "v1", "namespaces")
SECRETS = kmock.resource("", "v1", "secrets")
_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class ApiRequest:
    """One resource request as RBAC sees it: `verb` is RBAC's (get, list, watch, create,
    update, patch, delete, deletecollection); `group` is "" for the core API."""

    verb: str
    group: str
    resource: str
    subresource: str | None
    namespace: str | None
    name: str | None = None
    user_agent: str = ""

    @property
    def rbac(self) -> tuple[str, str, str, str | None, str | None]:
        """(verb, group, resource, subresource, namespace): what a Role must allow."""
        return (self.verb, self.group, self.resource, self.subresource, self.namespace)


class KubeApiError(RuntimeError):
    """An error status from the emulator's API (KubeEmulator.api and its helpers)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, reason: str, message: str) -> kmock.KubernetesError:
    # non-empty details keep kmock from putting a server traceback into the client's Status
    return kmock.KubernetesError(
        status=status, reason=reason, message=message, details={"causes": [{"message": message}]}
    )


def _strip_directives(patch: Any) -> Any:
    """Strategic merge patches of built-in kinds may carry `$patch`/`$setElementOrder`
    directives; applied as a merge patch, they must not land in the object."""
    if isinstance(patch, Mapping):
        return {k: _strip_directives(v) for k, v in patch.items() if not str(k).startswith("$")}
    if isinstance(patch, list):
        return [_strip_directives(v) for v in patch]
    return patch


# Gap 4: `GET /api/v1/namespaces` crashes kmock's path parser, and `/api/v1/namespaces/NAME`
# parses as a namespace with no resource. Both address the Namespace resource itself.
_parse_path_of_kmock = parsing.parse_path


def _parse_path(path: str) -> parsing.ParsedPath:
    parts = path.strip("/").split("/")
    if len(parts) in (3, 4, 5) and parts[0] == "api" and parts[2] == "namespaces":
        if len(parts) < 5 or parts[4] in ("status", "finalize"):
            name = parts[3] if len(parts) > 3 else None
            sub = parts[4] if len(parts) > 4 else None
            return parsing.ParsedPath("", parts[1], "namespaces", None, name, sub)
    return _parse_path_of_kmock(path)


parsing.parse_path = _parse_path


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _age(timestamp: str) -> str:
    """kubectl's short duration: 5s, 3m, 2h, 4d."""
    created = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    seconds = max(0, int((datetime.datetime.now(datetime.UTC) - created).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _json_path(obj: Any, path: str) -> Any:
    for part in path.strip(".").split("."):
        obj = obj.get(part) if isinstance(obj, Mapping) else None
    return obj


def _group_version(res: kmock.resource) -> str:
    return f"{res.group}/{res.version}" if res.group else str(res.version)


def _matches(obj: Mapping[str, Any], params: Mapping[str, str]) -> bool:
    """Field selectors (any dotted path: metadata.name, involvedObject.uid for `kubectl
    describe`'s events) and equality-based label selectors."""
    meta = obj.get("metadata", {})
    for term in filter(None, params.get("fieldSelector", "").split(",")):
        negate = "!=" in term
        key, _, value = term.replace("!=", "=").replace("==", "=").partition("=")
        actual = _json_path(obj, key)
        if (("" if actual is None else str(actual)) == value) == negate:
            return False
    labels = meta.get("labels") or {}
    for term in filter(None, params.get("labelSelector", "").split(",")):
        if term.startswith("!"):
            ok = term[1:] not in labels
        elif "!=" in term:
            key, _, value = term.partition("!=")
            ok = labels.get(key) != value
        elif "=" in term:
            key, _, value = term.replace("==", "=").partition("=")
            ok = labels.get(key) == value
        else:
            ok = term in labels
        if not ok:
            return False
    return True


def _encode_string_data(res: kmock.resource, obj: dict[str, Any]) -> None:
    """A Secret's stringData is write-only: the API server stores it base64-encoded in data."""
    if res == SECRETS and obj.get("stringData"):
        data = obj.setdefault("data", {})
        for key, value in obj.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def _verb(request: rendering.Request) -> str:
    method = str(request.method.value).upper()
    if method == "GET":
        if request.params.get("watch") in ("true", "1"):
            return "watch"
        return "get" if request.name else "list"
    if method == "DELETE":
        return "delete" if request.name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


@attrs.define(kw_only=True)
class CompatEmulator(kmock.KubernetesEmulator):
    """kmock.KubernetesEmulator with the gaps of 0.8 fixed. Its state belongs to the event
    loop that serves it: from other threads, go through `KubeEmulator.call()` or HTTP."""

    #: every resource request served, in order (appended from the emulator's thread)
    api_requests: list[ApiRequest] = attrs.field(factory=list, init=False)
    _rv: int = attrs.field(default=0, init=False)
    # Gap 9: per resource, every change as (resourceVersion, event), for watch resumption.
    _log: dict[kmock.resource, list[tuple[int, Event]]] = attrs.field(
        factory=lambda: collections.defaultdict(list), init=False
    )
    _changed: dict[kmock.resource, asyncio.Event] = attrs.field(factory=dict, init=False)
    _printer_columns: dict[kmock.resource, list[dict[str, Any]]] = attrs.field(factory=dict, init=False)
    _closing: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # Gap 2: without v1/namespaces and v1/events in discovery, Kopf silently never watches.
        with warnings.catch_warnings():  # kmock 0.8 reads it with a deprecated importlib call
            warnings.simplefilter("ignore", DeprecationWarning)
            self.resources.load_bundled()
        # Gap 7: PUT (`kubectl replace`, the client's replace_*) is not served by kmock.
        self.fallback[kmock.method.PUT] << self._serve_replace
        self._store(
            NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}
        )

    # ----- bookkeeping ------------------------------------------------------------------------

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        if res is not None and res.plural:
            self.api_requests.append(
                ApiRequest(
                    verb=_verb(request),
                    group=res.group or "",
                    resource=res.plural,
                    subresource=request.subresource,
                    namespace=request.namespace,
                    name=request.name,
                    user_agent=request.headers.get("User-Agent", ""),
                )
            )
        # Skip KubernetesEmulator._handle: its state changes lack gaps 1, 5, 8, 9; the
        # _serve_* methods below change the state themselves.
        return await apps.RawHandler._handle(self, request)

    def _info(self, res: kmock.resource | None) -> kmock.ResourceInfo:
        if res is None or not res.plural or res not in self.resources:
            raise kmock.KubernetesResourceNotFoundError()
        return self.resources[res]

    def _namespace(self, request: rendering.Request, body: Mapping[str, Any] | None = None) -> str | None:
        info = self._info(request.resource)
        if not info.namespaced:
            return None
        namespace = request.namespace or (body or {}).get("metadata", {}).get("namespace")
        if not namespace:
            raise _error(400, "BadRequest", "a namespaced object needs a namespace")
        return str(namespace)

    def _current(self, res: kmock.resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (res, namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return self.objects[key].raw

    def _existing(self, request: rendering.Request) -> dict[str, Any]:
        assert request.resource is not None and request.name is not None
        obj = self._current(request.resource, self._namespace(request), request.name)
        if obj is None:
            raise _error(404, "NotFound", f'{request.resource.plural} "{request.name}" not found')
        return obj

    def _store(self, res: kmock.resource, namespace: str | None, obj: dict[str, Any]) -> dict[str, Any]:
        """Create an object as the API server would: gap 1 (resourceVersion, uid,
        creationTimestamp, generation), gap 5 (generateName)."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
            meta["name"] = meta["generateName"] + suffix
        if not meta.get("name"):
            raise _error(422, "Invalid", "metadata.name or metadata.generateName is required")
        if self._current(res, namespace, meta["name"]) is not None:
            raise _error(409, "AlreadyExists", f'{res.plural} "{meta["name"]}" already exists')
        info = self.resources[res]
        if "status" in info.subresources:
            obj.pop("status", None)  # status is written through /status only
        _encode_string_data(res, obj)
        obj.setdefault("apiVersion", _group_version(res))
        obj.setdefault("kind", info.kind)
        if namespace is not None:
            meta["namespace"] = namespace
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(field, None)
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        key = (res, namespace, meta["name"])
        if key in self.objects:
            self.objects[key].create(obj)
        else:
            self.objects[key] = obj
        self._emit(res, "ADDED", obj)
        if res == CRDS:
            self._register_crd(obj)
        return obj

    def _write(
        self, res: kmock.resource, old: dict[str, Any], new: dict[str, Any], subresource: str | None
    ) -> dict[str, Any]:
        """Store a new version of an existing object (gap 1: bump resourceVersion on a real
        change, generation on a change outside metadata and status; keep what is immutable)."""
        info = self.resources[res]
        if "status" in info.subresources:
            if subresource == "status":  # /status changes the status only
                new = {**copy.deepcopy(old), "status": new.get("status")}
                if new["status"] is None:
                    del new["status"]
            else:  # and the object itself everything but the status
                new = {k: v for k, v in new.items() if k != "status"}
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
        _encode_string_data(res, new)
        meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        for field in ("name", "namespace", "uid", "creationTimestamp", "generation", "deletionTimestamp"):
            if field in old_meta:
                meta[field] = old_meta[field]
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if new == old:
            return old  # no-op: no new version, no event (as the API server)
        separate_status = "status" in info.subresources

        def content(o: Mapping[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in o.items() if k != "metadata" and (k != "status" or not separate_status)}

        if content(new) != content(old):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        namespace = meta.get("namespace")
        key = (res, namespace, meta["name"])
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self.objects[key].history.append(new)
            self.objects[key].delete()
            self._emit(res, "DELETED", new)
            return new
        self.objects[key].history.append(new)
        self._emit(res, "MODIFIED", new)
        if res == CRDS:
            self._register_crd(new)
        return new

    def _emit(self, res: kmock.resource, kind: str, obj: dict[str, Any]) -> None:
        self._log[res].append((self._rv, {"type": kind, "object": obj}))
        if res in self._changed:  # wake the watches of this resource
            self._changed.pop(res).set()

    def close_watches(self) -> None:
        """End every open watch (before the server stops, so it need not wait for them)."""
        self._closing = True
        for event in self._changed.values():
            event.set()
        self._changed.clear()

    # Gap 8: a created CRD serves its resource (and its printer columns, for kubectl tables).
    def _register_crd(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec", {})
        names = spec.get("names", {})
        for version in spec.get("versions", []):
            if not version.get("served", True):
                continue
            res = kmock.resource(spec["group"], version["name"], names["plural"])
            self.resources[res] = kmock.ResourceInfo(
                kind=names["kind"],
                singular=names.get("singular") or names["kind"].lower(),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                verbs=_VERBS,
                shortnames=names.get("shortNames", []),
                categories=names.get("categories", []),
                subresources=set(version.get("subresources") or {}),
            )
            self._printer_columns[res] = list(version.get("additionalPrinterColumns", []))
        crd["status"] = {  # what `kubectl wait --for condition=Established` waits for
            "acceptedNames": names,
            "storedVersions": [v["name"] for v in spec.get("versions", []) if v.get("storage")],
            "conditions": [
                {"type": t, "status": "True", "reason": t, "message": "", "lastTransitionTime": _now()}
                for t in ("NamesAccepted", "Established")
            ],
        }

    def _unregister_crd(self, crd: Mapping[str, Any]) -> None:
        spec = crd.get("spec", {})
        for version in spec.get("versions", []):
            res = kmock.resource(spec["group"], version["name"], spec["names"]["plural"])
            if res in self.resources:
                del self.resources[res]
            for key in [key for key in self.objects if key[0] == res]:
                del self.objects[key]

    # ----- the verbs --------------------------------------------------------------------------

    async def _serve_create(self, request: rendering.Request) -> rendering.Payload:
        assert request.resource is not None
        body = request.data
        if "protobuf" in request.headers.get("Content-Type", ""):
            raise _error(
                415, "UnsupportedMediaType", "protobuf bodies are not emulated: use kubectl apply -f (JSON)"
            )
        if not isinstance(body, Mapping):
            raise _error(400, "BadRequest", "the request body must be a JSON object")
        obj = self._store(request.resource, self._namespace(request, body), dict(body))
        return rendering.Response(status=201, payload=obj)

    async def _serve_update(self, request: rendering.Request) -> rendering.Payload:
        assert request.resource is not None
        old = self._existing(request)
        patch = request.data
        content_type = request.headers.get("Content-Type", "")
        if "apply-patch" in content_type:
            raise _error(415, "UnsupportedMediaType", "server-side apply is not emulated")
        try:
            if isinstance(patch, list):
                new = jsonpatch.apply_patch(old, patch, in_place=False)
            elif isinstance(patch, Mapping):
                # Precondition (as the API server): a resourceVersion in the patch must match.
                expected = patch.get("metadata", {}).get("resourceVersion")
                if expected is not None and expected != old["metadata"]["resourceVersion"]:
                    raise _error(409, "Conflict", f"{request.name}: the object has been modified")
                if "strategic-merge-patch" in content_type:
                    patch = _strip_directives(patch)
                new = dict(kmock_merge_patch(old, patch))
            else:
                raise _error(400, "BadRequest", "the patch must be a JSON object or a JSON patch list")
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
            # Gap 1: Kopf's finalizer patch tests /metadata/resourceVersion; a mismatch is a 422.
            raise _error(422, "Invalid", f"the JSON patch does not apply: {e}") from None
        return self._write(request.resource, old, new, request.subresource)

    async def _serve_replace(self, request: rendering.Request) -> rendering.Payload:
        assert request.resource is not None
        if request.name is None:
            raise _error(405, "MethodNotAllowed", "PUT needs an object name")
        old = self._existing(request)
        new = request.data
        if not isinstance(new, Mapping):
            raise _error(400, "BadRequest", "the request body must be a JSON object")
        expected = new.get("metadata", {}).get("resourceVersion")
        if expected and expected != old["metadata"]["resourceVersion"]:
            raise _error(409, "Conflict", f"{request.name}: the object has been modified")
        return self._write(request.resource, old, copy.deepcopy(dict(new)), request.subresource)

    async def _serve_delete(self, request: rendering.Request) -> rendering.Payload:
        assert request.resource is not None and request.name is not None
        res, old = request.resource, self._existing(request)
        if old["metadata"].get("finalizers"):
            if old["metadata"].get("deletionTimestamp"):
                return old
            new = copy.deepcopy(old)
            new["metadata"].update(deletionTimestamp=_now(), deletionGracePeriodSeconds=0)
            self._rv += 1
            new["metadata"]["resourceVersion"] = str(self._rv)
            self.objects[res, new["metadata"].get("namespace"), request.name].history.append(new)
            self._emit(res, "MODIFIED", new)
            return new
        self._rv += 1
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self._rv)
        self.objects[res, gone["metadata"].get("namespace"), request.name].delete()
        self._emit(res, "DELETED", gone)
        if res == CRDS:
            self._unregister_crd(gone)
        return gone

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        return self._table(request, [self._existing(request)]) or self._existing(request)

    def _selected(self, request: rendering.Request) -> list[dict[str, Any]]:
        assert request.resource is not None
        namespace = self._namespace(request) if request.namespace else None
        return [
            obj.raw
            for (res, ns, name), obj in self.objects.items()
            if res == request.resource and not obj.deleted
            if namespace is None or ns == namespace
            if request.name is None or name == request.name
            if _matches(obj.raw, request.params)
        ]

    # Gap 7: lists carry apiVersion, kind (XList) and a resourceVersion to watch from.
    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        info = self._info(request.resource)
        assert request.resource is not None
        items = self._selected(request)
        table = self._table(request, items)
        if table is not None:
            return table
        return {
            "apiVersion": _group_version(request.resource),
            "kind": f"{info.kind}List",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    # Gap 7: watch streams are JSON (kubectl refuses them otherwise). Gap 9: a watch resumes
    # from ?resourceVersion=N with every change after N, instead of replaying all as ADDED.
    def _serve_watch(self, request: rendering.Request) -> rendering.Payload:  # type: ignore[override]
        self._info(request.resource)  # 404 before the stream starts
        since = request.params.get("resourceVersion", "")
        if not since.isdigit() and since != "":
            raise _error(400, "BadRequest", f"resourceVersion {since!r} is not a number")
        return rendering.Response(
            status=200, headers={"Content-Type": "application/json"}, payload=self._watch(request)
        )

    async def _watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        res = request.resource
        assert res is not None
        yield b""  # send the headers now: clients wait for them before they consider it started
        namespace, name = request.namespace, request.name
        log = self._log[res]
        since = request.params.get("resourceVersion", "")
        initial = request.params.get("sendInitialEvents") == "true"
        if since in ("", "0") or initial:
            for obj in self._selected(request):
                yield {"type": "ADDED", "object": obj}
            position = len(log)
            if initial:
                # kubectl >= 1.34 lists by watching ("WatchList"): it waits for this bookmark
                info = self.resources[res]
                yield {
                    "type": "BOOKMARK",
                    "object": {
                        "apiVersion": _group_version(res),
                        "kind": info.kind,
                        "metadata": {
                            "resourceVersion": str(self._rv),
                            "annotations": {"k8s.io/initial-events-end": "true"},
                        },
                    },
                }
        else:
            position = bisect.bisect_right([rv for rv, _ in log], int(since))
        timeout = float(request.params.get("timeoutSeconds") or 0) or None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        while not self._closing:
            changed = self._changed.setdefault(res, asyncio.Event())
            while position < len(log):
                _, event = log[position]
                position += 1
                meta = event["object"].get("metadata", {})
                if namespace is not None and meta.get("namespace") != namespace:
                    continue
                if name is not None and meta.get("name") != name:
                    continue
                if _matches(event["object"], request.params):
                    yield event
            try:
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                return

    # Gap 6: /api/v1 must report groupVersion "v1", not "/v1"; kubectl sees no core resources.
    # Also: kmock lists a subresource (mongobackups/status) with its resource's short names,
    # categories and singular name; kubectl then finds two resources for `mbk` or `mongobackup`.
    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        result = await super()._serve_version(request)
        if isinstance(result, dict):
            if result.get("groupVersion", "").startswith("/"):
                result["groupVersion"] = result["groupVersion"][1:]
            for entry in result.get("resources", []):
                if "/" in entry["name"]:
                    entry.update(
                        shortNames=[], categories=[], singularName="", verbs=["get", "patch", "update"]
                    )
        return result

    def _table(self, request: rendering.Request, items: list[dict[str, Any]]) -> dict[str, Any] | None:
        """A meta.k8s.io Table when kubectl asks for one: `kubectl get` shows the CRD's
        printer columns (Phase, Size, ...) as against a real cluster."""
        if "as=Table" not in request.headers.get("Accept", ""):
            return None
        assert request.resource is not None
        columns = self._printer_columns.get(request.resource)
        if columns is None:
            columns = [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
        definitions = [{"name": "Name", "type": "string", "format": "name", "description": "Name"}]
        definitions += [
            {
                "name": c["name"],
                "type": "string" if c["type"] == "date" else c["type"],
                "format": "",
                "description": c.get("description", ""),
                "priority": c.get("priority", 0),
            }
            for c in columns
        ]
        rows = []
        for obj in items:
            cells: list[Any] = [obj["metadata"]["name"]]
            for c in columns:
                value = _json_path(obj, c["jsonPath"])
                if c["type"] == "date" and isinstance(value, str):
                    value = _age(value)
                cells.append(value if value is not None else "")
            rows.append(
                {
                    "cells": cells,
                    "object": {
                        "apiVersion": "meta.k8s.io/v1",
                        "kind": "PartialObjectMetadata",
                        "metadata": obj["metadata"],
                    },
                }
            )
        return {
            "apiVersion": "meta.k8s.io/v1",
            "kind": "Table",
            "metadata": {"resourceVersion": str(self._rv)},
            "columnDefinitions": definitions,
            "rows": rows,
        }


def kmock_merge_patch(old: Mapping[str, Any], patch: Mapping[str, Any]) -> Mapping[str, Any]:
    """RFC 7386 merge patch (null deletes a key; lists are replaced), as kmock implements it."""
    from kmock._internal.dicts import merge_patch_dict

    return merge_patch_dict(copy.deepcopy(dict(old)), patch)


class _Server(kmock.Server):
    """kmock.Server without its DNS interceptor: the interceptor patches aiohttp's resolver
    for the whole process and must be undone in LIFO order, which emulators started and
    stopped from different threads cannot promise; clients here connect to 127.0.0.1."""

    async def __aenter__(self) -> _Server:
        await super().__aenter__()
        interceptor = self._managed_interceptor
        assert interceptor is not None
        await interceptor.__aexit__(None, None, None)
        self._managed_interceptor = _NoInterceptor()  # type: ignore[assignment]
        return self


class _NoInterceptor:
    async def __aexit__(self, *exc: object) -> None:
        return None


class KubeEmulator:
    """The compatible emulator served over HTTP from its own thread and event loop.

    `start()`/`stop()` or `with KubeEmulator() as kube:`. `url`, `kubeconfig` (written into
    `workdir`, a temporary directory by default), `requests` (the live list of ApiRequest,
    appended as requests arrive; `requests.clear()` to start afresh), `load_crds()`."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.handler = CompatEmulator()
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="kube-emulator-")) if workdir is None else workdir
        self.kubeconfig = self.workdir / "kubeconfig"
        self._url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the Kubernetes API emulator is not running: call start()")
        return self._url

    @property
    def requests(self) -> list[ApiRequest]:
        return self.handler.api_requests

    def start(self) -> KubeEmulator:
        if self._thread is not None or self._ready.is_set():
            raise RuntimeError("a KubeEmulator starts once: create a new one")
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the Kubernetes API emulator did not start within 30 s")
        if self._failure is not None:
            raise RuntimeError(f"the Kubernetes API emulator failed to start: {self._failure!r}")
        self._write_kubeconfig()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(30)
        self._thread = None
        self._url = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> KubeEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as e:  # reported by start(); a thread has no one else to tell
            self._failure = e
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        async with self.handler, _Server(self.handler) as server:
            self._url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stopping.wait()
            self.handler.close_watches()
            await asyncio.sleep(0)  # let the watches see it and end their streams

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "emulator", "user": {"token": "emulator"}}],
            "contexts": [
                {
                    "name": "emulator",
                    "context": {"cluster": "emulator", "user": "emulator", "namespace": "default"},
                }
            ],
            "current-context": "emulator",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    def call(self, fn: Callable[[CompatEmulator], T]) -> T:
        """Run `fn(handler)` in the emulator's loop (its state is not thread-safe) and return
        its result, e.g. `kube.call(lambda h: h.objects[...].raw)`."""
        if self._loop is None or self._url is None:
            raise RuntimeError("the Kubernetes API emulator is not running")

        async def run() -> T:
            return fn(self.handler)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(30)

    def api(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        """One synchronous HTTP request to the emulator; returns the decoded JSON reply and
        raises KubeApiError (with the HTTP status and the API's message) on an error."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", content_type)
        req.add_header("User-Agent", "mongo-backup-testing")
        try:
            with urllib.request.urlopen(req, timeout=30) as reply:
                return json.loads(reply.read() or b"null")
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            try:
                detail = json.loads(detail).get("message", detail)
            except ValueError:
                pass
            raise KubeApiError(e.code, f"{method} {path}: HTTP {e.code}: {detail}") from None

    def get(
        self, api_version: str, plural: str, name: str, namespace: str | None = "default"
    ) -> dict[str, Any] | None:
        """An object, or None when there is none."""
        try:
            return dict(self.api("GET", resource_path(api_version, plural, namespace, name)))
        except KubeApiError as e:
            if e.status == 404:
                return None
            raise

    def list_objects(
        self, api_version: str, plural: str, namespace: str | None = "default"
    ) -> list[dict[str, Any]]:
        return list(self.api("GET", resource_path(api_version, plural, namespace))["items"])

    def delete(self, api_version: str, plural: str, name: str, namespace: str | None = "default") -> None:
        """Ask for deletion (with finalizers, the object stays until they are removed)."""
        self.api("DELETE", resource_path(api_version, plural, namespace, name))

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create an object, or merge-patch it when it exists (`kubectl apply` for tests)."""
        api_version, kind = str(obj["apiVersion"]), str(obj["kind"])
        res, info = self.call(lambda h: _resource_of(h, api_version, kind))
        namespace = obj.get("metadata", {}).get("namespace") or ("default" if info.namespaced else None)
        base = resource_path(api_version, str(res.plural), namespace if info.namespaced else None)
        try:
            return dict(self.api("POST", base, dict(obj)))
        except KubeApiError as e:
            if e.status != 409:
                raise
        name = obj["metadata"]["name"]
        return dict(self.api("PATCH", f"{base}/{name}", dict(obj), "application/merge-patch+json"))

    def load_crds(self, crds: Path | Iterable[Mapping[str, Any]] | None = None) -> list[str]:
        """Create CRDs through the API: from a directory of YAML files, one YAML file, CRD
        dicts, or by default the ones generated from mongo_backup.api's models. Returns the
        CRDs' names."""
        docs: list[Mapping[str, Any]]
        if crds is None:
            from mongo_backup.api.crdgen import generate_crds

            docs = list(generate_crds().values())
        elif isinstance(crds, Path):
            files = sorted(crds.glob("*.yaml")) if crds.is_dir() else [crds]
            docs = [d for f in files for d in yaml.safe_load_all(f.read_text(encoding="utf-8")) if d]
        else:
            docs = list(crds)
        return [self.apply(doc)["metadata"]["name"] for doc in docs]


def resource_path(
    api_version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The API path of a collection or object: `resource_path("mongobackup.io/v1alpha1",
    "mongobackups", "default", "nightly", "status")`."""
    path = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    if namespace:
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


def _resource_of(
    handler: CompatEmulator, api_version: str, kind: str
) -> tuple[kmock.resource, kmock.ResourceInfo]:
    group, _, version = api_version.rpartition("/")
    for res in handler.resources:
        info = handler.resources[res]
        if res.group == group and res.version == version and info.kind == kind:
            return res, info
    raise RuntimeError(f"the emulator serves no {kind} in {api_version}: load its CRD first")
