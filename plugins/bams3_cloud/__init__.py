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

import configparser
import os
import re
import time
from datetime import timedelta

from obstore.store import from_url

import bams3
from bams3.errors import DatasetError, StorageError, UsageError
from bams3.storage import ObstoreStore, TransportError, check_interrupted, interrupted, redact_userinfo

_BACKOFF = {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=5), "base": 2}
_NO_CONTAINER = "<Code>ContainerNotFound</Code>"  # the error code in the XML body of Azure's answer
_SECRET = re.compile(r"(X-Amz-[A-Za-z-]+|Signature|Credential|sig|token)=[^&\s]+", re.I)


def _clean(text: str) -> str:
    """The first line of an error, with anything that looks like a credential removed."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return _SECRET.sub(r"\1=…", line)[:200]


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


def _attempts(msg: str, attempts: int | None = None, seconds: float | None = None) -> str:
    """' after N attempts in S s': ours, or from obstore's retry report, or ''."""
    if attempts is not None and attempts > 1:
        return f" after {attempts} attempts in {seconds:.0f} s"
    m = re.search(r"in ([\d.]+)s, after (\d+) retries", msg)
    return f" after {int(m.group(2)) + 1} attempts in {float(m.group(1)):.0f} s" if m and int(m.group(2)) else ""


def transient(exc: BaseException) -> bool:
    """A failure worth another attempt: 5xx, 429 and SlowDown answers, dropped or refused
    connections, bodies cut short or longer than asked, timeouts."""
    if isinstance(exc, TransportError):
        return True
    if isinstance(exc, (FileNotFoundError, StorageError)):
        return False
    msg = str(exc)
    status = _status(msg)
    if status:
        return status[0] == "5" or status[:3] == "429"
    return any(s in msg for s in ("SlowDown", "HTTP error", "error sending request", "body error", "timed out",
                                  "Timeout", "onnection", "IncompleteMessage", "unexpected EOF"))


def _status(msg: str) -> str | None:
    """The HTTP status the server answered, as obstore reports it ("status code: 503 ..."), or None:
    never digits found elsewhere in the message (a key such as data/…/000403)."""
    m = re.search(r"[Ss]tatus(?: code)?: (\d{3})\b([^:,\n]*)", msg)
    return (m.group(1) + m.group(2)).strip() if m else None


def display_endpoint() -> str:
    """AWS_ENDPOINT_URL as it may be shown: without a user or password in it."""
    return redact_userinfo(os.environ.get("AWS_ENDPOINT_URL") or "S3")


def translate(exc: BaseException, url: str, key: str, attempts: int | None = None,
              seconds: float | None = None) -> BaseException:
    """Turn an obstore error into one line a user can act on, naming the object and the cause
    (never echoing credentials)."""
    from obstore import exceptions as oe

    msg = str(exc)
    tried = _attempts(msg, attempts, seconds)
    status = _status(msg)
    code = status[:3] if status else None
    where = f"{url}: {key}" if key else url
    if "NoSuchBucket" in msg:
        return StorageError(f"{url}: the bucket does not exist (check its name and AWS_REGION)", kind="no-bucket",
                            key=key)
    if _NO_CONTAINER in msg:  # Azure's answer for a missing container (a 404, as for a missing blob)
        return StorageError(f"{url}: the container does not exist (check its name and the storage account)",
                            kind="no-bucket", key=key)
    if isinstance(exc, FileNotFoundError):
        return exc
    if isinstance(exc, oe.UnauthenticatedError) or code == "401" or any(
            s in msg for s in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken")):
        return StorageError(f"{where}: the credentials were rejected; check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                            "(or AWS_SESSION_TOKEN), or use --no-sign-request for a public bucket",
                            kind="unauthenticated", key=key)
    if isinstance(exc, oe.PermissionDeniedError) or code == "403" or "<Code>AccessDenied</Code>" in msg:
        return StorageError(f"{where}: access denied; check the credentials' permissions on this bucket",
                            kind="denied", key=key)
    if "credential" in msg.lower() or "NoCredentials" in msg:
        return StorageError(f"{url}: no credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                            "(or AWS_PROFILE), or pass --no-sign-request for a public bucket", kind="no-credentials",
                            key=key)
    if "kind: Timeout" in msg or "TimedOut" in msg:
        limit = settings()["timeout"]
        return StorageError(f"{url}: no answer for {key} within {limit:g} s{tried}; check the network, "
                            "or allow more time with BAMS3_TIMEOUT=SECONDS", kind="timeout", key=key)
    if status is None and any(s in msg.lower() for s in ("connection refused", "dns error", "error sending request",
                                                          "timed out", "connect", "tcp")):
        if url.lower().startswith("s3://"):
            return StorageError(f"{url}: cannot reach {display_endpoint()}{tried} (for {key}); check the network "
                                "and AWS_ENDPOINT_URL", kind="unreachable", key=key)
        return StorageError(f"{url}: cannot reach the server{tried} (for {key}); check the network and the URL",
                            kind="unreachable", key=key)
    if status:
        return StorageError(f"{where}: the server answered {status}{tried}; "
                            "try again later (AWS_MAX_ATTEMPTS=N retries more)", kind="server", key=key)
    if isinstance(exc, TransportError):
        return StorageError(f"{url}: {exc}{tried}; not using what it sent", kind="transport", key=key)
    if "non-partial response" in msg:
        return StorageError(f"{where}: the server ignored the byte range asked for (a server or proxy that does "
                            "not support Range requests)", kind="range", key=key)
    if "body error" in msg or "IncompleteMessage" in msg:
        return StorageError(f"{where}: the connection dropped while the answer arrived{tried}; check the network",
                            kind="transport", key=key)
    return StorageError(f"{where}: the storage request failed{tried} ({_clean(msg)})", key=key)


class CloudStore(ObstoreStore):
    """An ObstoreStore that retries transient failures itself (each attempt counted and traced)
    and translates errors into one-line, actionable messages."""

    def __init__(self, store, url: str, read_only: bool = False, stream_store=None):
        super().__init__(store, url)
        self.read_only = read_only
        self._stream_store = stream_store  # the same store with obstore's own retries, for stream()
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
                if isinstance(exc, FileNotFoundError) and ("NoSuchBucket" in str(exc) or _NO_CONTAINER in str(exc)):
                    raise translate(exc, self.url, key) from None
                if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit, FileNotFoundError)):
                    raise
                if isinstance(exc, StorageError) and not isinstance(exc, TransportError):
                    raise
                elapsed = time.monotonic() - start
                if not transient(exc) or attempt == conf["attempts"] or elapsed + delay > conf["budget"]:
                    raise translate(exc, self.url, key, attempt, elapsed) from None
            interrupted.wait(delay)
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def get(self, key):
        return self._guard(super().get, key)

    def get_range(self, key, start, end):
        return self._guard(super().get_range, key, start, end)

    def get_ranges(self, key, ranges):
        return self._guard(super().get_ranges, key, ranges)

    def head(self, key):
        return self._guard(super().head, key)

    def put_if(self, key, data, *, expect):
        if self.read_only:
            raise StorageError(f"{self.url} is read-only (HTTP); write to s3://, gs://, az:// or a path instead",
                               kind="read-only")
        return self._guard(lambda k: super(CloudStore, self).put_if(k, data, expect=expect), key)

    def _streamed(self, key, piece):
        store = self._stream_store or self._store  # a whole object: obstore's own retries resume it
        with self.counter.request("GET", key) as moved:
            for b in self._obs.get(store, key).stream(min_chunk_size=piece):
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
                raise translate(exc, self.url, key) from None
            yield b

    def put(self, key, data):
        if self.read_only:
            raise StorageError(f"{self.url} is read-only (HTTP); write to s3://, gs://, az:// or a path instead",
                               kind="read-only")
        return self._guard(super().put, key, data)

    def list(self, prefix=""):
        return self._guard(lambda p: list(super(CloudStore, self).list(p)), prefix)

    def delete(self, key):
        if self.read_only:
            raise StorageError(f"{self.url} is read-only (HTTP)", kind="read-only")
        return self._guard(super().delete, key)

    def size(self, key):
        meta = self.head(key)
        return None if meta is None else meta["size"]

    def list_dirs(self, prefix=""):
        return self._guard(lambda p: super(CloudStore, self).list_dirs(p), prefix)


def _profile_config() -> dict:
    """Static keys, region and endpoint of the AWS named profile in use, from
    ~/.aws/credentials and ~/.aws/config (AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE),
    when the environment does not already hold keys."""
    if os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_SKIP_SIGNATURE", "").lower() == "true":
        return {}
    profile = os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE")
    cred_file = os.path.expanduser(os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"))
    conf_file = os.path.expanduser(os.environ.get("AWS_CONFIG_FILE", "~/.aws/config"))
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
        raise UsageError(f"{redact_userinfo(url)}: no bucket name")
    if prefix and any(seg in ("", ".", "..") for seg in prefix.split("/")):
        raise UsageError(f"{redact_userinfo(url)}: empty, '.' or '..' segments are not allowed in an object key")
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
        raise UsageError(f"{what} {redact_userinfo(endpoint)!r} is not an http:// or https:// URL with a host "
                         "(e.g. http://127.0.0.1:9000)")


def open_cloud(url: str, create: bool = False):
    from obstore.store import AzureStore, GCSStore, S3Store

    scheme = url.split("://", 1)[0].lower()
    if create and scheme in ("http", "https"):
        raise StorageError(f"{redact_userinfo(url)} is read-only (HTTP); write to s3://, gs://, az:// or a path "
                           "instead")
    conf = settings()
    options = dict(conf["client"])
    kwargs = {}
    if scheme == "s3":
        kwargs.update(_profile_config())
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "") or kwargs.get("endpoint", "")
        if endpoint:
            check_endpoint(endpoint, "AWS_ENDPOINT_URL" if os.environ.get("AWS_ENDPOINT_URL") else
                           "the profile's endpoint_url")
        if endpoint.startswith("http://"):
            options["allow_http"] = True
        if os.environ.get("AWS_S3_USE_ACCELERATE", "").lower() == "true" and not endpoint:
            bucket = url.split("://", 1)[1].split("/", 1)[0]
            kwargs["endpoint"] = f"https://{bucket}.s3-accelerate.amazonaws.com"
            kwargs["virtual_hosted_style_request"] = True
    elif scheme == "http":
        options["allow_http"] = True
    try:
        stores = []
        for retry in (conf["no_retry"], conf["retry"]):
            if scheme in ("s3", "gs", "az"):
                _, bucket, prefix = split_url(url)
                cls = {"s3": S3Store, "gs": GCSStore, "az": AzureStore}[scheme]
                stores.append(cls(bucket, prefix=prefix or None, client_options=options, retry_config=retry,
                                  **kwargs))
            else:
                stores.append(from_url(url.rstrip("/"), client_options=options, retry_config=retry, **kwargs))
    except UsageError:
        raise
    except Exception as exc:
        raise DatasetError(f"cannot use {redact_userinfo(url)}: {_clean(str(exc))}") from None
    return CloudStore(stores[0], url, read_only=scheme in ("http", "https"), stream_store=stores[1])


@bams3.hookimpl
def bams3_register_storage(register):
    register(bams3.StorageBackend(name="cloud", schemes=("s3", "gs", "az", "http", "https"), open=open_cloud,
                                  description="S3, Google Cloud Storage, Azure Blob (obstore); HTTP(S) read-only"))
