"""bams3 storage plugin: S3, GCS, Azure (read/write) and HTTP(S) (read-only), via obstore.

Credentials and settings come the way their users already have them: for S3 the
AWS_* environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN, AWS_REGION/AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, named
profiles (AWS_PROFILE, ~/.aws/credentials and ~/.aws/config),
AWS_SKIP_SIGNATURE for public buckets, AWS_REQUESTER_PAYS), instance and task
roles; for GCS and Azure obstore's own GOOGLE_*/AZURE_* variables.

Every request is retried here (not inside obstore, so that --trace shows every
attempt) with exponential backoff on 5xx, 429, SlowDown, dropped connections,
cut-short or over-long bodies and timeouts: AWS_MAX_ATTEMPTS attempts in all
(default 6, as the AWS CLI counts them), BAMS3_TIMEOUT seconds per request
(default 60) and BAMS3_CONNECT_TIMEOUT seconds to connect (default 5). A
request that still fails is one line naming the object and what to change.
"""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import timedelta

from urllib.parse import urlsplit

import attrs
from obstore.store import from_url

from bams3.plugin_api import (
    DatasetError,
    ObstoreStore,
    StorageBackend,
    StorageError,
    TransportError,
    UsageError,
    check_interrupted,
    hookimpl,
    interrupted,
    redact,
)

_BACKOFF = {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=5), "base": 2}
_NO_BUCKET_CODES = ("NoSuchBucket", "ContainerNotFound")  # S3's and Azure's error codes (in the answer's body)


def _interruptible(fn, *args, **kwargs):
    """``fn(...)``; on the main thread, run on a thread of its own while the main thread waits
    for it where Ctrl-C and SIGTERM reach it (a Python signal handler runs only between
    bytecodes of the main thread: a request blocked in obstore held off a Ctrl-C until its
    attempt timed out, up to BAMS3_TIMEOUT). The request left behind ends with its attempt."""
    if threading.current_thread() is not threading.main_thread():
        return fn(*args, **kwargs)
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 (raised again on the main thread)
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True, name="bams3-request")
    worker.start()
    worker.join()
    if "error" in box:
        raise box.pop("error")
    return box["value"]


def _clean(text: str) -> str:
    """The first line of an error, through the redactor."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return redact(line)[:200]


def _number(name: str, default: float, low: float, high: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text.removesuffix("s"))
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise UsageError(f"{name}={text!r} is not a number from {low:g} to {high:g}")
    return value


def settings() -> dict:
    """Timeouts and retries from the environment (validated; see the module docstring)."""
    attempts = _number("AWS_MAX_ATTEMPTS", 6, 1, 100)
    if attempts != int(attempts):
        raise UsageError(f"AWS_MAX_ATTEMPTS={os.environ['AWS_MAX_ATTEMPTS']!r} is not a whole number")
    attempts = int(attempts)
    timeout = _number("BAMS3_TIMEOUT", 60, 0.1, 86400)
    connect = _number("BAMS3_CONNECT_TIMEOUT", 5, 0.1, 3600)
    # the retries of one request stop once this long has passed since its first attempt
    budget = max(30.0, attempts * (timeout + 5))
    return {"attempts": attempts, "timeout": timeout, "connect": connect, "budget": budget,
            "client": {"timeout": f"{int(timeout * 1000)}ms", "connect_timeout": f"{int(connect * 1000)}ms"},
            # streams (whole inputs read from a store) are retried by obstore; every other request here
            "retry": {"max_retries": attempts - 1, "retry_timeout": timedelta(seconds=budget), "backoff": _BACKOFF},
            "no_retry": {"max_retries": 0, "retry_timeout": timedelta(seconds=budget), "backoff": _BACKOFF}}


@attrs.frozen
class Failure:
    """What obstore knows of a failed request, as fields: the HTTP ``status`` the server answered,
    the transport ``http_kind`` (``Timeout``, ``Connect``, ``Interrupted``, ``Decode``, …), the
    store's own ``cause`` (``NotPartial``: a server that ignored the Range header), the S3 error
    ``code`` of the answer's body (``NoSuchBucket``), the ``host`` asked, and obstore's own
    ``retries`` and ``elapsed`` seconds.

    obstore 0.12 carries these only in the ``Debug source:`` rendering of object_store's typed
    error (``RetryError { status: 503, … }``, ``HttpError { kind: Timeout }``), so they are read
    there, field by field, one per line; a key, a URL or a message (escaped inside quoted
    strings there) can never pass for one."""

    status: int | None = None
    http_kind: str | None = None
    cause: str | None = None
    code: str | None = None
    host: str | None = None
    retries: int = 0
    elapsed: float | None = None

    _LINE = re.compile(r"^\s*(status|kind|source|retries|elapsed|body|uri): (.*?),?$")
    _DURATION = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}

    @classmethod
    def of(cls, exc: BaseException) -> Failure:
        _, found, debug = str(exc).partition("\n\nDebug source:\n")
        if not found:
            return cls()
        fields: dict = {}
        lines = debug.splitlines()
        for i, line in enumerate(lines):
            m = cls._LINE.match(line)
            if not m:
                continue
            name, value = m.groups()
            if value == "Some(" and i + 1 < len(lines):  # uri: Some(\n <uri>,\n ) and body: Some(\n "…",\n )
                value = lines[i + 1].strip().rstrip(",")
            if name == "status" and value.isdigit():
                fields.setdefault("status", int(value))
            elif name == "kind" and value.isidentifier():
                fields.setdefault("http_kind", value)
            elif name == "source" and value.isidentifier():
                fields.setdefault("cause", value)
            elif name == "retries" and value.isdigit():
                fields.setdefault("retries", int(value))
            elif name == "elapsed":
                d = re.fullmatch(r"([\d.]+)(ns|µs|us|ms|s)", value)
                if d:
                    fields.setdefault("elapsed", float(d.group(1)) * cls._DURATION[d.group(2)])
            elif name == "body":
                c = re.search(r"<Code>(\w+)</Code>", value)
                if c:
                    fields.setdefault("code", c.group(1))
            elif name == "uri":
                fields.setdefault("host", urlsplit(value).hostname)
        return cls(**fields)


# where SDKs find instance and task credentials when none are configured
_CREDENTIAL_HOSTS = {"169.254.169.254", "fd00:ec2::254", "169.254.170.2", "169.254.170.23", "metadata.google.internal"}
_S3_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}


def _attempts(failure: Failure, attempts: int | None = None, seconds: float | None = None) -> str:
    """' after N attempts in S s': ours, or obstore's own retries, or ''."""
    if attempts is not None and attempts > 1:
        return f" after {attempts} attempts in {seconds:.0f} s"
    if failure.retries and failure.elapsed is not None:
        return f" after {failure.retries + 1} attempts in {failure.elapsed:.0f} s"
    return ""


def transient(exc: BaseException) -> bool:
    """A failure worth another attempt: 5xx, 429 and SlowDown answers, dropped or refused
    connections, bodies cut short or longer than asked, timeouts."""
    from obstore import exceptions as oe

    if isinstance(exc, TransportError):
        return True
    if not isinstance(exc, oe.GenericError):  # not found, denied, unauthenticated, precondition, a bad path, …
        return False
    f = Failure.of(exc)
    if f.status is not None:
        return f.status >= 500 or f.status == 429 or f.code == "SlowDown"
    if f.host in _CREDENTIAL_HOSTS:
        return False
    return f.http_kind is not None  # no answer: a timeout, a refused or dropped connection, a body cut short


def display_endpoint(endpoint: str | None = None) -> str:
    """The S3 endpoint as it may be shown: without a user or password in it."""
    return redact(endpoint or os.environ.get("AWS_ENDPOINT_URL") or "S3")


def translate(exc: BaseException, url: str, key: str, attempts: int | None = None,
              seconds: float | None = None, endpoint: str | None = None) -> BaseException:
    """Turn an obstore error into one line a user can act on, naming the object and the cause
    (never echoing credentials). Decided by the exception's type and :class:`Failure` fields."""
    from obstore import exceptions as oe

    f = Failure.of(exc)
    tried = _attempts(f, attempts, seconds)
    where = f"{url}: {key}" if key else url
    if f.code == "NoSuchBucket":
        return StorageError(f"{url}: the bucket does not exist (check its name and AWS_REGION)", kind="no-bucket",
                            key=key)
    if f.code == "ContainerNotFound":  # Azure's answer for a missing container (a 404, as for a missing blob)
        return StorageError(f"{url}: the container does not exist (check its name and the storage account)",
                            kind="no-bucket", key=key)
    if isinstance(exc, FileNotFoundError):
        return exc
    if f.host in _CREDENTIAL_HOSTS:
        return StorageError(f"{url}: no credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                            "(or AWS_PROFILE), or pass --no-sign-request for a public bucket", kind="no-credentials",
                            key=key)
    if isinstance(exc, oe.UnauthenticatedError) or f.status == 401 or f.code in _S3_CREDENTIAL_CODES:
        return StorageError(f"{where}: the credentials were rejected; check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                            "(or AWS_SESSION_TOKEN), or use --no-sign-request for a public bucket",
                            kind="unauthenticated", key=key)
    if isinstance(exc, oe.PermissionDeniedError) or f.status == 403:
        return StorageError(f"{where}: access denied; check the credentials' permissions on this bucket",
                            kind="denied", key=key)
    if f.http_kind == "Timeout":
        limit = settings()["timeout"]
        return StorageError(f"{url}: no answer for {key} within {limit:g} s{tried}; check the network, "
                            "or allow more time with BAMS3_TIMEOUT=SECONDS", kind="timeout", key=key)
    if f.status is None and f.http_kind in ("Connect", "Request"):
        if url.lower().startswith("s3://"):
            return StorageError(f"{url}: cannot reach {display_endpoint(endpoint)}{tried} (for {key}); check the network "
                                "and AWS_ENDPOINT_URL", kind="unreachable", key=key)
        return StorageError(f"{url}: cannot reach the server{tried} (for {key}); check the network and the URL",
                            kind="unreachable", key=key)
    if f.status is not None:
        return StorageError(f"{where}: the server answered {f.status}{' ' + f.code if f.code else ''}{tried}; "
                            "try again later (AWS_MAX_ATTEMPTS=N retries more)", kind="server", key=key)
    if isinstance(exc, TransportError):
        return StorageError(f"{url}: {exc}{tried}; not using what it sent", kind="transport", key=key)
    if f.cause == "NotPartial":
        return StorageError(f"{where}: the server ignored the byte range asked for (a server or proxy that does "
                            "not support Range requests)", kind="range", key=key)
    if f.http_kind is not None:
        return StorageError(f"{where}: the connection dropped while the answer arrived{tried}; check the network",
                            kind="transport", key=key)
    return StorageError(f"{where}: the storage request failed{tried} ({_clean(str(exc))})", key=key)


class CloudStore(ObstoreStore):
    """An ObstoreStore that retries transient failures itself (each attempt counted and traced)
    and translates errors into one-line, actionable messages."""

    def __init__(self, store, url: str, read_only: bool = False, stream_store=None, endpoint: str | None = None,
                 prefix: str = ""):
        super().__init__(store, url, prefix)
        self.endpoint = endpoint  # S3's, when one was given
        self.read_only = read_only
        # the same store with obstore's own retries, for stream(): made on first use (its own
        # client, ~5 ms of the GIL, which a process that never streams need not make), from
        # the environment of that moment, and kept
        self._stream_store = stream_store
        self._conf = settings()

    def _guard(self, fn, key, *args, **kwargs):
        """``fn(key, ...)``, one request per attempt, retried with backoff while it fails transiently."""
        conf = self._conf
        start = time.monotonic()
        delay = 0.1
        for attempt in range(1, conf["attempts"] + 1):
            check_interrupted()  # Ctrl-C: no further attempt (cohort samples, uploads on other threads)
            try:
                return fn(key, *args, **kwargs)
            except BaseException as exc:
                if isinstance(exc, FileNotFoundError) and Failure.of(exc).code in _NO_BUCKET_CODES:
                    raise translate(exc, self.url, key, endpoint=self.endpoint) from None
                if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit, FileNotFoundError)):
                    raise
                if isinstance(exc, StorageError) and not isinstance(exc, TransportError):
                    raise
                elapsed = time.monotonic() - start
                if not transient(exc) or attempt == conf["attempts"] or elapsed + delay > conf["budget"]:
                    raise translate(exc, self.url, key, attempt, elapsed, self.endpoint) from None
            interrupted.wait(delay)
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def _guard_read(self, fn, key, *args):
        """A read, as :meth:`_guard`; on the main thread each attempt waits where Ctrl-C reaches it
        (:func:`_interruptible`). Writes are not: one left running behind an interrupt could land
        after the cleanup that follows it (a dataset's metadata after its run was removed)."""
        return self._guard(lambda *a: _interruptible(fn, *a), key, *args)

    def get(self, key):
        return self._guard_read(super().get, key)

    def get_range(self, key, start, end):
        return self._guard_read(super().get_range, key, start, end)

    def get_ranges(self, key, ranges):
        return self._guard_read(super().get_ranges, key, ranges)

    def head(self, key):
        return self._guard_read(super().head, key)

    def put_if(self, key, data, *, expect):
        if self.read_only:
            raise StorageError(f"{self.url} is read-only (HTTP); write to s3://, gs://, az:// or a path instead",
                               kind="read-only")
        return self._guard(lambda k: super(CloudStore, self).put_if(k, data, expect=expect), key)

    def _streamed(self, key, piece):
        store = self._stream_store  # a whole object: obstore's own retries resume it
        if callable(store):
            store = self._stream_store = store()
        store = self._store if store is None else store
        with self.counter.request("GET", key) as moved:
            for b in self._obs.get(store, self._path(key)).stream(min_chunk_size=piece):
                b = bytes(b)
                moved["in"] += len(b)
                yield b

    def stream(self, key, piece=8 << 20):
        it = self._streamed(key, piece)
        while True:
            try:
                b = next(it)
            except StopIteration:
                return
            except BaseException as exc:
                if isinstance(exc, (KeyboardInterrupt, SystemExit, StorageError, GeneratorExit)):
                    raise
                raise translate(exc, self.url, key, endpoint=self.endpoint) from None
            yield b

    def put(self, key, data):
        if self.read_only:
            raise StorageError(f"{self.url} is read-only (HTTP); write to s3://, gs://, az:// or a path instead",
                               kind="read-only")
        return self._guard(super().put, key, data)

    def list(self, prefix=""):
        return self._guard_read(lambda p: list(super(CloudStore, self).list(p)), prefix)

    def delete(self, key):
        if self.read_only:
            raise StorageError(f"{self.url} is read-only (HTTP)", kind="read-only")
        return self._guard(super().delete, key)

    def size(self, key):
        meta = self.head(key)
        return None if meta is None else meta["size"]

    def list_dirs(self, prefix=""):
        return self._guard_read(lambda p: super(CloudStore, self).list_dirs(p), prefix)


def _profile_config(unsigned: bool = False) -> dict:
    """Static keys, region and endpoint of the AWS named profile in use, from
    ~/.aws/credentials and ~/.aws/config (AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE),
    when the environment does not already hold keys (nor are requests unsigned)."""
    if unsigned or os.environ.get("AWS_ACCESS_KEY_ID"):
        return {}
    profile = os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE")
    cred_file = os.path.expanduser(os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"))
    conf_file = os.path.expanduser(os.environ.get("AWS_CONFIG_FILE", "~/.aws/config"))
    import configparser  # here: most runs have keys in the environment, and never read a profile

    creds, conf = configparser.RawConfigParser(), configparser.RawConfigParser()
    creds.read(cred_file)
    conf.read(conf_file)
    name = profile or "default"
    conf_section = name if name == "default" else f"profile {name}"
    section = {**(dict(conf[conf_section]) if conf.has_section(conf_section) else {}),
               **(dict(creds[name]) if creds.has_section(name) else {})}
    if not section:
        if profile:
            raise StorageError(f"AWS profile {profile!r} is not in {cred_file} or {conf_file}")
        return {}
    out = {}
    if "aws_access_key_id" in section and "aws_secret_access_key" in section:
        out.update(access_key_id=section["aws_access_key_id"], secret_access_key=section["aws_secret_access_key"])
        if section.get("aws_session_token"):
            out["token"] = section["aws_session_token"]
    elif profile:
        raise StorageError(f"AWS profile {profile!r} has no static keys (roles, SSO and credential_process "
                           "profiles are not supported yet); export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    if section.get("region") and not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        out["region"] = section["region"]
    if section.get("endpoint_url") and not os.environ.get("AWS_ENDPOINT_URL"):
        out["endpoint"] = section["endpoint_url"]
    return out


def split_url(url: str) -> tuple[str, str, str]:
    """``(scheme, bucket, prefix)`` of ``s3://bucket/prefix`` (gs://, az:// alike), the prefix taken
    verbatim: ``?``, ``#`` and ``%`` are parts of object keys, never a URL's query, fragment or
    escapes, so distinct names never meet in one key. Empty, ``.`` and ``..`` segments are
    refused (object_store would fold them, and two names would meet)."""
    scheme, rest = url.split("://", 1)
    bucket, _, prefix = rest.partition("/")
    if prefix.endswith("/"):
        prefix = prefix[:-1]
    if not bucket:
        raise UsageError(f"{redact(url)}: no bucket name")
    if prefix and any(seg in ("", ".", "..") for seg in prefix.split("/")):
        raise UsageError(f"{redact(url)}: empty, '.' or '..' segments are not allowed in an object key")
    return scheme.lower(), bucket, prefix


def check_endpoint(endpoint: str, what: str = "AWS_ENDPOINT_URL") -> None:
    """An endpoint must be an http(s) URL with a host; anything else is one line (exit 2),
    not a panic inside the HTTP client."""
    from urllib.parse import urlsplit

    try:
        u = urlsplit(endpoint)
        ok = u.scheme in ("http", "https") and bool(u.hostname) and not any(c.isspace() for c in endpoint)
        u.port  # raises on a bad port
    except ValueError:
        ok = False
    if not ok:
        raise UsageError(f"{what} {redact(endpoint)!r} is not an http:// or https:// URL with a host "
                         "(e.g. http://127.0.0.1:9000)")


def open_cloud(url: str, create: bool = False, endpoint_url: str | None = None, no_sign_request: bool = False):
    """The store at ``url``. ``endpoint_url`` and ``no_sign_request`` (``--endpoint-url``,
    ``--no-sign-request``) apply to s3:// and take precedence over AWS_ENDPOINT_URL,
    AWS_SKIP_SIGNATURE and the profile."""
    from obstore.store import AzureStore, GCSStore, S3Store

    scheme = url.split("://", 1)[0].lower()
    if create and scheme in ("http", "https"):
        raise StorageError(f"{redact(url)} is read-only (HTTP); write to s3://, gs://, az:// or a path "
                           "instead")
    conf = settings()
    options = dict(conf["client"])
    kwargs = {}
    endpoint = ""
    if scheme == "s3":
        unsigned = no_sign_request or os.environ.get("AWS_SKIP_SIGNATURE", "").lower() == "true"
        kwargs.update(_profile_config(unsigned))
        if unsigned:
            kwargs["skip_signature"] = True
        endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL", "") or kwargs.get("endpoint", "")
        if endpoint:
            check_endpoint(endpoint, "--endpoint-url (AWS_ENDPOINT_URL)" if endpoint_url else
                           "AWS_ENDPOINT_URL" if os.environ.get("AWS_ENDPOINT_URL") else "the profile's endpoint_url")
            kwargs["endpoint"] = endpoint
        if endpoint.startswith("http://"):
            options["allow_http"] = True
        if os.environ.get("AWS_S3_USE_ACCELERATE", "").lower() == "true" and not endpoint:
            bucket = url.split("://", 1)[1].split("/", 1)[0]
            kwargs["endpoint"] = f"https://{bucket}.s3-accelerate.amazonaws.com"
            kwargs["virtual_hosted_style_request"] = True
    elif scheme == "http":
        options["allow_http"] = True
    prefix = ""
    if scheme in ("s3", "gs", "az"):
        _, bucket, prefix = split_url(url)

    def store(retry: dict):
        """A client as obstore makes it now, from the environment as it is now (so is its key)."""
        try:
            if scheme in ("s3", "gs", "az"):
                cls = {"s3": S3Store, "gs": GCSStore, "az": AzureStore}[scheme]
                return _bucket_store(cls, bucket, options, retry, kwargs, _client_env())
            return from_url(url.rstrip("/"), client_options=options, retry_config=retry, **kwargs)
        except UsageError:
            raise
        except Exception as exc:
            raise DatasetError(f"cannot use {redact(url)}: {_clean(str(exc))}") from None

    return CloudStore(store(conf["no_retry"]), url, read_only=scheme in ("http", "https"),
                      stream_store=lambda: store(conf["retry"]), endpoint=endpoint or None, prefix=prefix)


# One client per bucket and configuration, shared by the stores of every dataset in it: making
# one takes ~6 ms of the GIL (a cohort of 1,000 samples opened 2,000 of them), and a shared one
# keeps its connections open from one dataset to the next. Its key holds the configuration the
# client was made from: the arguments, and the environment variables obstore reads itself
# (credentials, region, proxies, certificates), so a change of either makes a new one.
_CLIENTS: dict[tuple, object] = {}
_CLIENTS_LOCK = threading.Lock()
_MAX_CLIENTS = 64
_CLIENT_ENV = ("AWS_", "GOOGLE_", "AZURE_", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "SSL_CERT_")


_ENV_SEEN: tuple = (None, ())  # (a copy of os.environ's own mapping, _client_env() of it)


def _client_env() -> tuple:
    """The variables of the environment obstore reads itself, as part of a client's key: read
    again only when the environment has changed since (a scan of it all took ~35 us, twice a
    dataset; comparing os.environ's own mapping with a copy of it takes well under 1 us)."""
    global _ENV_SEEN
    data = getattr(os.environ, "_data", None)  # CPython's: every change through os.environ lands there
    seen, env = _ENV_SEEN
    if data is not None and seen == data:
        return env
    copy = dict(data) if data is not None else None  # before the scan: a change during it is seen next time
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.upper().startswith(_CLIENT_ENV)))
    _ENV_SEEN = (copy, env)
    return env


def _bucket_store(cls, bucket: str, options: dict, retry: dict, kwargs: dict, env: tuple):
    key = (cls.__name__, bucket, repr(sorted(options.items())), repr(sorted(retry.items())),
           repr(sorted(kwargs.items())), env, os.getpid())
    with _CLIENTS_LOCK:
        store = _CLIENTS.get(key)
    if store is None:
        store = cls(bucket, client_options=options, retry_config=retry, **kwargs)
        with _CLIENTS_LOCK:
            if len(_CLIENTS) >= _MAX_CLIENTS:
                _CLIENTS.clear()
            store = _CLIENTS.setdefault(key, store)
    return store


@hookimpl
def bams3_register_storage(register):
    register(StorageBackend(name="cloud", schemes=("s3", "gs", "az", "http", "https"), open=open_cloud,
                            options=("endpoint_url", "no_sign_request"),
                            description="S3, Google Cloud Storage, Azure Blob (obstore); HTTP(S) read-only"))
