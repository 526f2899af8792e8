"""``bams3 serve``: a GA4GH htsget 1.3 ``reads`` server over datasets on any store, so that
htslib (samtools, pysam, bcftools), IGV, igv.js and htsget clients read a dataset as a BAM.

A ticket (``GET``/``POST /reads/{id}``) lists data URLs served by the same process: the BAM
header as BGZF, one URL per chunk of the dataset the request touches (its records, selected as
``samtools view`` selects them, as BGZF blocks made on the fly) and the BGZF end-of-file block
as a ``data:`` URL. The concatenation is a valid BAM holding exactly the records ``samtools
view`` returns for the regions. ``fields`` leaves the name, CIGAR, sequence and quality
columns unread where they are not asked for (filled as SAM's defaults: ``*``); ``tags=`` (an
empty list) leaves the tags unread. Any other tag selection returns every tag (the spec allows
more than asked). CRAM is refused with ``UnsupportedFormat``.

Identifiers name datasets under the served prefix: ``/reads/sample1`` is ``PREFIX/sample1.bams3``
or ``PREFIX/sample1``; when the server is given one dataset, its name without ``.bams3``.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterable

from . import __version__
from .bgzf import EOF_BLOCK, compress
from .errors import Bams3Error, NotADatasetError, UsageError
from .region import POS_MAX, Region

FIELDS = ("QNAME", "FLAG", "RNAME", "POS", "MAPQ", "CIGAR", "RNEXT", "PNEXT", "TLEN", "SEQ", "QUAL")
# the stored column a field needs beyond the fixed ones (which every record is made from)
FIELD_COLUMN = {"QNAME": "read_name", "CIGAR": "cigar", "SEQ": "seq", "QUAL": "qual"}
EOF_URL = "data:application/octet-stream;base64," + base64.b64encode(EOF_BLOCK).decode()
TICKET_TYPE = "application/vnd.ga4gh.htsget.v1.3.0+json; charset=utf-8"
# the published igv.js build the viewer loads by default (the package ships no JavaScript)
IGV_JS = "https://cdn.jsdelivr.net/npm/igv@3.8.10/dist/igv.min.js"
_ID = re.compile(r"^[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*$")
MAX_REGIONS = 10_000
MAX_LIST = 1_000  # fields, tags: more items than this is not a request


class HtsgetError(Exception):
    """An error as the spec answers it: HTTP status, error type and a message."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message

    def json(self) -> dict:
        return {"htsget": {"error": self.kind, "message": self.message}}


def invalid(message: str) -> HtsgetError:
    return HtsgetError(400, "InvalidInput", message)


class Query:
    """A reads request, checked: ``regions`` [(name, start, end)] (None: every read; name ``*``:
    unplaced reads; start/end None: the whole reference), ``header_only``, ``fields`` (None: all)
    and ``tags``/``notags`` (None: not given)."""

    def __init__(self, fmt: str | None, klass: str | None, regions, fields, tags, notags):
        fmt = fmt or "BAM"
        if fmt == "CRAM":
            raise HtsgetError(400, "UnsupportedFormat", "CRAM is not served; ask for format=BAM")
        if fmt != "BAM":
            raise HtsgetError(400, "UnsupportedFormat", f"format {fmt!r} is not a reads format this server has")
        if klass not in (None, "header", "body"):
            raise invalid(f"class {klass!r}: use header (or leave it out)")
        self.header_only = klass == "header"
        if self.header_only and (regions is not None or fields is not None or tags is not None or notags is not None):
            raise invalid("class=header takes no other parameter but format")
        self.regions = regions
        self.fields = None if fields is None else _names(fields, "fields")
        if self.fields is not None:
            bad = [f for f in self.fields if f not in FIELDS]
            if bad:
                raise invalid(f"unknown field {bad[0]!r}; the fields are {','.join(FIELDS)}")
        self.tags = None if tags is None else _names(tags, "tags")
        self.notags = None if notags is None else _names(notags, "notags")
        for t in (self.tags or []) + (self.notags or []):
            if len(t) != 2:
                raise invalid(f"{t!r} is not a tag name (two characters, as NM)")
        if self.tags is not None and self.notags is not None and set(self.tags) & set(self.notags):
            raise invalid("a tag is both in tags and notags")

    def skip(self) -> frozenset[str]:
        """The variable columns the request does not need."""
        out = set()
        if self.fields is not None:
            want = set(self.fields)
            if "QUAL" in want:
                want.add("SEQ")  # BAM keeps qualities only under a sequence
            out |= {col for f, col in FIELD_COLUMN.items() if f not in want}
        if self.tags == []:
            out.add("aux")
        return frozenset(out)

    @classmethod
    def from_params(cls, params) -> Query:
        for k in params.keys():
            if k not in ("format", "class", "referenceName", "start", "end", "fields", "tags", "notags"):
                raise invalid(f"unknown parameter {k!r}")
            if len(params.getlist(k)) > 1:
                raise invalid(f"parameter {k!r} is given twice")
        name, start, end = params.get("referenceName"), params.get("start"), params.get("end")
        regions = None
        if name is not None:
            regions = [_region(name, _int(start, "start"), _int(end, "end"))]
        elif start is not None or end is not None:
            raise invalid("start and end need a referenceName")

        def listed(key):
            v = params.get(key)
            return None if v is None else [t for t in v.split(",") if t] if v else []

        return cls(params.get("format"), params.get("class"), regions, listed("fields"), listed("tags"),
                   listed("notags"))

    @classmethod
    def from_body(cls, body) -> Query:
        if not isinstance(body, dict):
            raise invalid("the request body is not a JSON object")
        for k in body:
            if k not in ("format", "class", "regions", "fields", "tags", "notags"):
                raise invalid(f"unknown field {k!r} in the request body")
        regions = body.get("regions")
        if regions is not None:
            if not isinstance(regions, list) or not regions or len(regions) > MAX_REGIONS:
                raise invalid(f"regions must be a list of 1 to {MAX_REGIONS:,} objects")
            out = []
            for r in regions:
                if not isinstance(r, dict) or not isinstance(r.get("referenceName"), str) or \
                        set(r) - {"referenceName", "start", "end"}:
                    raise invalid("each region is an object with referenceName, and start and end if wanted")
                out.append(_region(r["referenceName"], _int(r.get("start"), "start"), _int(r.get("end"), "end")))
            regions = out
        for k in ("format", "class"):
            if body.get(k) is not None and not isinstance(body[k], str):
                raise invalid(f"{k} must be a string")
        return cls(body.get("format"), body.get("class"), regions, body.get("fields"), body.get("tags"),
                   body.get("notags"))


def _names(value, key) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid(f"{key} must be a list of strings")
    if len(value) > MAX_LIST:
        raise invalid(f"{key} lists {len(value):,} items; at most {MAX_LIST:,}")
    return list(value)


def _int(value, key) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise invalid(f"{key} must be an integer")
    try:
        v = int(value)
    except ValueError:
        raise invalid(f"{key} must be an integer, not {value!r}") from None
    if v < 0 or v > POS_MAX:
        raise HtsgetError(400, "InvalidRange", f"{key} {v} is outside 0..{POS_MAX}")
    return v


def _region(name: str, start: int | None, end: int | None) -> tuple[str, int | None, int | None]:
    if name == "*" and (start is not None or end is not None):
        raise invalid("referenceName * (unplaced reads) takes no start or end")
    if start is not None and end is not None and start > end:
        raise HtsgetError(400, "InvalidRange", f"start {start} is after end {end}")
    return name, start, end


class Catalog:
    """The datasets under one URL (a prefix, or one dataset), opened once each."""

    def __init__(self, root: str, workers: int = 4):
        from .dataset import Dataset

        self.root = root.rstrip("/")
        self.workers = workers
        self._open: dict[str, object] = {}
        self._lock = threading.Lock()
        self.single = None
        try:
            ds = Dataset.open(self.root, workers=workers)
        except NotADatasetError:
            return
        name = self.root.rsplit("/", 1)[-1]
        self.single = name[: -len(".bams3")] if name.endswith(".bams3") else name
        self._open[self.single] = ds

    def names(self) -> list[str]:
        """The identifiers of the datasets served."""
        if self.single is not None:
            return [self.single]
        from .cohort import find_datasets, sample_name

        return sorted(sample_name(u) for u in find_datasets(self.root + "/"))

    def get(self, ident: str):
        from .dataset import Dataset

        if not _ID.match(ident) or any(p in (".", "..") for p in ident.split("/")):
            raise HtsgetError(404, "NotFound", f"no dataset {ident!r}")
        with self._lock:
            ds = self._open.get(ident)
        if ds is not None:
            return ds
        if self.single is not None:
            raise HtsgetError(404, "NotFound", f"no dataset {ident!r}; this server has {self.single!r}")
        for url in (f"{self.root}/{ident}.bams3", f"{self.root}/{ident}"):
            try:
                ds = Dataset.open(url, workers=self.workers)
            except (NotADatasetError, FileNotFoundError):
                continue
            with self._lock:
                return self._open.setdefault(ident, ds)
        raise HtsgetError(404, "NotFound", f"no dataset {ident!r}")


def resolve(ds, regions) -> list[Region] | None:
    """The Regions of a query's (name, start, end) on a dataset (None: every read)."""
    if regions is None:
        return None
    tids = {name: t for t, (name, _) in enumerate(ds.meta.references)}
    out = []
    for name, start, end in regions:
        if name == "*":
            out.append(Region(-1, 0, POS_MAX, "*"))
            continue
        if name not in tids:
            raise HtsgetError(404, "NotFound", f"no reference {name!r} in this dataset")
        beg, stop = start or 0, POS_MAX if end is None else end
        out.append(Region(tids[name], beg, stop, f"{name}:{beg + 1}-{stop}"))
    return out


def _selection(ds, regions: list[Region] | None):
    if regions is None:
        return ds.selection(None)
    return ds.selection(regions, multi=True)


def chunks_of(ds, regions: list[Region] | None) -> list[int]:
    """The chunks holding the records of the regions, in file order."""
    if regions is None:
        return list(range(len(ds.chunks)))
    return sorted({index for index, _, _ in ds._plan(_selection(ds, regions))})


def encode_regions(regions: list[Region] | None) -> list[str]:
    return [] if regions is None else [f"{r.tid}:{r.beg}:{r.end}" for r in regions]


def decode_regions(ds, values: Iterable[str]) -> list[Region] | None:
    values = list(values)
    if not values:
        return None
    out = []
    for v in values:
        try:
            tid, beg, end = (int(x) for x in v.split(":"))
        except ValueError:
            raise invalid(f"bad region {v!r} in a data URL") from None
        if not -1 <= tid < len(ds.meta.references) or not 0 <= beg <= end <= POS_MAX:
            raise invalid(f"bad region {v!r} in a data URL")
        text = "*" if tid < 0 else f"{ds.meta.references[tid][0]}:{beg + 1}-{end}"
        out.append(Region(tid, beg, end, text))
    return out


class Server:
    """The htsget application (Starlette), over a Catalog."""

    def __init__(self, root: str, *, token: str | None = None, base_url: str | None = None,
                 access_log=None, workers: int = 4, level: int = 6, concurrency: int = 2, ahead: int = 2,
                 cache_bytes: int = 256 << 20, viewer: bool = False, igv_js: str = IGV_JS):
        self.catalog = Catalog(root, workers=workers)
        self.token = token.encode() if token else None
        self.base_url = base_url.rstrip("/") if base_url else None
        self.access_log = access_log
        self.level = level
        self.ahead = ahead
        self.viewer = viewer
        self.igv_js = igv_js
        self._prepared = Prepared(concurrency, cache_bytes)
        self._log_lock = threading.Lock()

    # ------------------------------------------------------------------ app
    def app(self):
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
        from starlette.middleware.cors import CORSMiddleware
        from starlette.routing import Route

        routes = [
            Route("/reads/service-info", self.service_info, methods=["GET"]),
            Route("/reads/{ident:path}", self.reads, methods=["GET", "POST"]),
            Route("/data/{ident:path}/header", self.data_header, methods=["GET"]),
            Route("/data/{ident:path}/body", self.data_body, methods=["GET"]),
        ]
        if self.viewer:
            routes += [Route("/", self.index, methods=["GET"]), Route("/datasets", self.datasets, methods=["GET"]),
                       Route("/view/{ident:path}", self.view, methods=["GET"]),
                       Route("/chromsizes/{ident:path}", self.chromsizes, methods=["GET"])]
        middleware = [Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "POST", "OPTIONS"],
                                 allow_headers=["Authorization", "Content-Type", "Range"],
                                 expose_headers=["Content-Length", "Content-Range", "Accept-Ranges"])]
        app = Starlette(routes=routes, middleware=middleware, exception_handlers={
            HtsgetError: self._error, Exception: self._crash, 404: self._not_found, 405: self._not_allowed})
        return self._logged(app)

    def _logged(self, app):
        """One line per request in the access log (no header is written: never the token)."""
        async def wrapped(scope, receive, send):
            if scope["type"] != "http" or self.access_log is None:
                return await app(scope, receive, send)
            t0, state = time.perf_counter(), {"status": 0, "bytes": 0}

            async def counting_send(message):
                if message["type"] == "http.response.start":
                    state["status"] = message["status"]
                elif message["type"] == "http.response.body":
                    state["bytes"] += len(message.get("body", b""))
                await send(message)

            try:
                await app(scope, receive, counting_send)
            finally:
                client = (scope.get("client") or ("-",))[0]
                path = scope.get("path", "")
                qs = scope.get("query_string", b"").decode("latin-1")
                line = (f'{client} [{time.strftime("%d/%b/%Y:%H:%M:%S %z")}] "{scope["method"]} {path}'
                        f'{"?" + qs if qs else ""}" {state["status"]} {state["bytes"]} '
                        f'{(time.perf_counter() - t0) * 1000:.1f}ms\n')
                with self._log_lock:
                    self.access_log.write(line)
                    self.access_log.flush()
        return wrapped

    # ------------------------------------------------------------------ helpers
    def _check(self, request) -> None:
        if self.token is None:
            return
        auth = request.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        # the spec's table: PermissionDenied (403) "authorization is required", InvalidAuthentication
        # (401) "authorization provided is invalid"
        if scheme.lower() != "bearer" or not value.strip():
            raise HtsgetError(403, "PermissionDenied", "a bearer token is required (Authorization: Bearer ...)")
        if not hmac.compare_digest(value.strip().encode(), self.token):
            raise HtsgetError(401, "InvalidAuthentication", "the bearer token is not accepted")

    def _base(self, request) -> str:
        return self.base_url or str(request.base_url).rstrip("/")

    def _headers(self) -> dict:
        return {"Authorization": "Bearer " + self.token.decode()} if self.token else {}

    async def _error(self, request, exc: HtsgetError):
        from starlette.responses import JSONResponse

        return JSONResponse(exc.json(), status_code=exc.status, media_type=TICKET_TYPE)

    async def _not_found(self, request, exc):
        return await self._error(request, HtsgetError(404, "NotFound", f"no such endpoint {request.url.path}"))

    async def _not_allowed(self, request, exc):
        return await self._error(request, HtsgetError(405, "InvalidInput",
                                                      f"{request.method} is not allowed on {request.url.path}"))

    async def _crash(self, request, exc):
        if isinstance(exc, UsageError):
            return await self._error(request, invalid(str(exc)))
        if isinstance(exc, Bams3Error):  # a dataset that cannot be read: one line, no traceback
            print(f"bams3 serve: {request.url.path}: {exc}", file=sys.stderr)
            return await self._error(request, HtsgetError(500, "InternalError", str(exc)))
        print(f"bams3 serve: {request.url.path}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return await self._error(request, HtsgetError(500, "InternalError", "the server failed on this request"))

    # ------------------------------------------------------------------ endpoints
    async def service_info(self, request):
        from starlette.responses import JSONResponse

        self._check(request)
        return JSONResponse({
            "id": "org.bams3.htsget", "name": "bams3 htsget server", "version": __version__,
            "type": {"group": "org.ga4gh", "artifact": "htsget", "version": "1.3.0"},
            "description": "Reads of bams3 datasets as BAM, assembled per request from the stored columns",
            "organization": {"name": "bams3", "url": "https://github.com/bams3"},
            "htsget": {"datatype": "reads", "formats": ["BAM"], "fieldsParameterEffective": True,
                       "tagsParametersEffective": False},
        })

    async def reads(self, request):
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse

        self._check(request)
        ident = request.path_params["ident"]
        if request.method == "POST":
            raw = await request.body()
            if len(raw) > 4 << 20:
                raise HtsgetError(413, "PayloadTooLarge", "the request body is larger than 4 MiB")
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                raise invalid("the request body is not JSON") from None
            query = Query.from_body(body)
        else:
            query = Query.from_params(request.query_params)
        try:
            ds = await run_in_threadpool(self.catalog.get, ident)
        except HtsgetError as e:
            if e.kind == "NotFound" and re.search(r"\.(bai|csi|crai|tbi)$", ident):
                raise HtsgetError(426, "HtsgetRequired", f"{ident} is an index; this server answers htsget requests "
                                  f"for {ident.rsplit('.', 1)[0]} instead") from None
            raise
        regions = resolve(ds, query.regions)
        base, quoted = self._base(request), urllib.parse.quote(ident)
        headers = self._headers()

        def url(u, klass):
            d = {"url": u, "class": klass}
            if headers:
                d["headers"] = headers
            return d

        urls = [url(f"{base}/data/{quoted}/header", "header")]
        if not query.header_only:
            skip = sorted(query.skip())
            for index in chunks_of(ds, regions):
                params = [("chunk", str(index))] + [("r", r) for r in encode_regions(regions)]
                if regions is None:
                    params.append(("all", "1"))
                if skip:
                    params.append(("skip", ",".join(skip)))
                urls.append(url(f"{base}/data/{quoted}/body?{urllib.parse.urlencode(params)}", "body"))
        urls.append({"url": EOF_URL, "class": "body"})
        return JSONResponse({"htsget": {"format": "BAM", "urls": urls}}, media_type=TICKET_TYPE)

    async def data_header(self, request):
        from starlette.concurrency import run_in_threadpool

        self._check(request)
        ds = await run_in_threadpool(self.catalog.get, request.path_params["ident"])
        data = compress(ds.header.to_bam_bytes(), self.level)
        return _ranged(request, data)

    async def data_body(self, request):
        from starlette.concurrency import run_in_threadpool

        self._check(request)
        ds = await run_in_threadpool(self.catalog.get, request.path_params["ident"])
        params = request.query_params
        try:
            index = int(params.get("chunk", ""))
        except ValueError:
            raise invalid("a data URL needs chunk=N") from None
        if not 0 <= index < len(ds.chunks):
            raise HtsgetError(404, "NotFound", f"no chunk {index}")
        regions = decode_regions(ds, params.getlist("r"))
        if regions is None and params.get("all") != "1":
            raise invalid("a data URL needs regions or all=1")
        skip = frozenset(s for s in (params.get("skip") or "").split(",") if s)
        if skip - {"read_name", "cigar", "seq", "qual", "aux"}:
            raise invalid("bad skip in a data URL")
        ident = request.path_params["ident"]
        data = await run_in_threadpool(self._body, ident, ds, regions, index, skip)
        return _ranged(request, data)

    # ------------------------------------------------------------------ viewer
    # The pages hold no data: their scripts ask for it with the token the user gives after '#'
    # (a fragment never reaches a server or a log): /#token=..., /view/ID?locus=chr1:1-1000#token=...
    async def index(self, request):
        from starlette.responses import HTMLResponse

        return HTMLResponse(_INDEX.replace("{{base}}", json.dumps(self._base(request))))

    async def datasets(self, request):
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse

        self._check(request)
        return JSONResponse({"datasets": await run_in_threadpool(self.catalog.names)})

    async def view(self, request):
        from starlette.responses import HTMLResponse

        ident = request.path_params["ident"]
        if not _ID.match(ident):
            raise HtsgetError(404, "NotFound", f"no dataset {ident!r}")
        page = _VIEW.replace("{{igv}}", html_escape(self.igv_js)).replace("{{id}}", json.dumps(ident))
        return HTMLResponse(page.replace("{{title}}", html_escape(ident)).replace("{{base}}",
                                                                                   json.dumps(self._base(request))))

    async def chromsizes(self, request):
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import PlainTextResponse

        self._check(request)
        ds = await run_in_threadpool(self.catalog.get, request.path_params["ident"])
        return PlainTextResponse("".join(f"{name}\t{length}\n" for name, length in ds.meta.references))

    def _body(self, ident: str, ds, regions, index: int, skip: frozenset) -> bytes:
        """A chunk's BGZF blocks; the next chunks of the same request are made meanwhile (a
        client such as htslib fetches the data URLs one after another)."""
        def job(i):
            key = (ident, i, tuple(encode_regions(regions)), skip)
            return key, lambda: self._make(ds, regions, i, skip)

        if self.ahead:
            following = [i for i in chunks_of(ds, regions) if i > index][: self.ahead]
            self._prepared.prefetch([job(i) for i in following])
        return self._prepared.get(*job(index))

    def _make(self, ds, regions, index: int, skip: frozenset) -> bytes:
        parts = [compress(memoryview(b.data)[b.offsets[0]: b.offsets[-1]], self.level)
                 for b in ds.batches(_selection(ds, regions), skip=skip, chunks=[index])]
        return b"".join(parts)


class Prepared:
    """Chunk bodies made on a few threads (bounded memory: at most ``workers`` being made, at
    most ``limit`` bytes kept for clients that come back for them, oldest dropped first)."""

    def __init__(self, workers: int, limit: int):
        from collections import OrderedDict
        from concurrent.futures import ThreadPoolExecutor

        self._ex = ThreadPoolExecutor(max(1, workers), thread_name_prefix="bams3-serve")
        self._futures: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._limit = limit

    def _submit(self, key, make):
        fut = self._futures.get(key)
        if fut is None:
            fut = self._futures[key] = self._ex.submit(make)
        self._futures.move_to_end(key)
        return fut

    def prefetch(self, jobs) -> None:
        with self._lock:
            for key, make in jobs:
                if key not in self._futures:
                    self._submit(key, make)

    def get(self, key, make) -> bytes:
        with self._lock:
            fut = self._submit(key, make)
        try:
            return fut.result()
        except BaseException:
            with self._lock:
                if self._futures.get(key) is fut:
                    del self._futures[key]
            raise
        finally:
            self._trim()

    def _trim(self) -> None:
        with self._lock:
            done = [(k, f) for k, f in self._futures.items() if f.done() and not f.exception()]
            total = sum(len(f.result()) for _, f in done)
            for k, f in done:
                if total <= self._limit:
                    break
                total -= len(f.result())
                del self._futures[k]


def html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


_INDEX = """<!doctype html>
<html><head><meta charset="utf-8"><title>bams3 datasets</title>
<style>body{font-family:sans-serif;margin:2em}li{margin:.3em 0}</style></head>
<body><h1>Datasets</h1><ul id="list"></ul><p id="error"></p>
<script>
(async () => {
  const base = {{base}};
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  const headers = token ? {Authorization: "Bearer " + token} : {};
  const r = await fetch(base + "/datasets", {headers});
  if (!r.ok) throw new Error((await r.json()).htsget.message);
  for (const name of (await r.json()).datasets) {
    const a = document.createElement("a");
    a.href = base + "/view/" + name.split("/").map(encodeURIComponent).join("/") + location.hash;
    a.textContent = name;
    const li = document.createElement("li");
    li.append(a);
    document.getElementById("list").append(li);
  }
})().catch(e => { document.getElementById("error").textContent = String(e); });
</script></body></html>
"""

_VIEW = """<!doctype html>
<html><head><meta charset="utf-8"><title>bams3: {{title}}</title>
<script src="{{igv}}"></script></head>
<body><div id="igv"></div><p id="error"></p>
<script>
window.bams3 = {ready: false};
(async () => {
  const base = {{base}}, id = {{id}};
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  const headers = token ? {Authorization: "Bearer " + token} : {};
  const r = await fetch(base + "/chromsizes/" + id.split("/").map(encodeURIComponent).join("/"), {headers: headers});
  if (!r.ok) throw new Error((await r.json()).htsget.message);
  const sizes = await r.text();
  const first = sizes.split("\\n")[0].split("\\t");
  const locus = new URLSearchParams(location.search).get("locus") || (first[0] + ":1-" + Math.min(10000, +first[1]));
  if (token) igv.setOauthToken(token, new URL(base).hostname);  // igv.js sends it to this host only
  const path = id.split("/").map(encodeURIComponent).join("/");
  const browser = await igv.createBrowser(document.getElementById("igv"), {
    reference: {id: id, name: id, format: "chromsizes", fastaURL: base + "/chromsizes/" + path},
    locus: locus,
    tracks: [{type: "alignment", format: "bam", sourceType: "htsget", name: id, url: base + "/reads/" + path}]
  });
  window.bams3 = {ready: true, browser: browser};
})().catch(e => { window.bams3 = {ready: false, error: String(e)};
                  document.getElementById("error").textContent = String(e); });
</script></body></html>
"""


def _ranged(request, data: bytes):
    """The bytes, or one range of them for a ``Range: bytes=a-b`` request (206)."""
    from starlette.responses import Response

    headers = {"Accept-Ranges": "bytes"}
    spec = request.headers.get("range")
    if spec:
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", spec.strip())
        if m and (m.group(1) or m.group(2)):
            n = len(data)
            if m.group(1):
                a = int(m.group(1))
                b = min(int(m.group(2)), n - 1) if m.group(2) else n - 1
            else:
                a, b = max(0, n - int(m.group(2))), n - 1
            if a >= n or a > b:
                return Response(status_code=416, headers={"Content-Range": f"bytes */{n}"})
            headers["Content-Range"] = f"bytes {a}-{b}/{n}"
            return Response(data[a: b + 1], status_code=206, media_type="application/octet-stream", headers=headers)
    return Response(data, media_type="application/octet-stream", headers=headers)


def run(root: str, host: str = "127.0.0.1", port: int = 8080, **kw) -> None:
    """Serve until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise UsageError("bams3 serve needs uvicorn and starlette: pip install 'bams3[serve]'") from None
    app = Server(root, **kw).app()
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
