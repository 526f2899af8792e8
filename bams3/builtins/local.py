"""bams3 storage plugin: local disk, for plain paths and ``file://`` URLs.

A dataset directory is walked one component at a time from a descriptor of its root
(``openat`` with ``O_NOFOLLOW``), so no symbolic link inside a dataset is ever
followed: not to read, list, write or delete. Only regular files are opened for
reading (a FIFO or a device named like a chunk is refused at once, never waited on);
writes go to a temporary file in the same directory and are renamed into place;
deletes remove regular files only. The root itself may be a link: the user named it.
Every failure is one line naming the object and the cause.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import stat
from collections.abc import Iterator, Sequence

from bams3.plugin_api import (
    ConflictError,
    DatasetError,
    IOCounter,
    NotADatasetError,
    StorageBackend,
    StorageError,
    hookimpl,
)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_PARTIAL = re.compile(r"^\..+\.bams3-[0-9a-f]{12}\.partial$")  # a write in progress (ours)


def _path(url: str) -> str:
    if url.startswith("file://"):
        url = url[len("file://") :]
    return os.path.abspath(os.path.expanduser(url))


def _why(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symbolic link (bams3 never follows links inside a dataset)"
    if exc.errno == errno.ENOTDIR:
        return "a path component is not a directory"
    return exc.strerror or str(exc)


class LocalStore:
    """A :class:`bams3.storage.Store` over a local directory (see the module docstring)."""

    conditional_put = True

    def __init__(self, root: str, url: str):
        self.root = root
        self.url = url
        self.counter = IOCounter()

    # ------------------------------------------------------------------ walking
    def _fail(self, what: str, key: str, exc: OSError) -> StorageError:
        return StorageError(f"{self.url}: cannot {what} {key or 'the dataset directory'}: {_why(exc)}")

    def _root_fd(self) -> int:
        return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    @staticmethod
    def _parts(key: str) -> list[str]:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") or "\0" in p for p in parts):
            raise StorageError(f"bad object key {key!r}")
        return parts

    def _dir(self, parts: Sequence[str], create: bool = False) -> int:
        """A descriptor of the directory holding the object ``parts``, walked without following
        links (a link on the way is ELOOP, whatever it points to)."""
        fd = self._root_fd()
        try:
            for p in parts[:-1]:
                nfd = self._subdir(fd, p, create)
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _subdir(fd: int, name: str, create: bool) -> int:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP) and stat.S_ISLNK(
                    os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                raise OSError(errno.ELOOP, "a symbolic link", name) from None
            raise
        try:
            os.mkdir(name, 0o777, dir_fd=fd)
        except FileExistsError:
            pass
        return LocalStore._subdir(fd, name, False)

    def _open_regular(self, key: str, what: str = "read") -> int:
        parts = self._parts(key)
        try:
            d = self._dir(parts)
            try:
                fd = os.open(parts[-1], _READ_FLAGS, dir_fd=d)
            finally:
                os.close(d)
        except FileNotFoundError:
            raise
        except OSError as exc:
            if exc.errno == errno.ENOTDIR:  # a component is a file: the key cannot exist
                raise FileNotFoundError(errno.ENOENT, "no such object", key) from None
            raise self._fail(what, key, exc) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "a directory, not an object", key)
            raise StorageError(f"{self.url}: {key} is not a regular file (a FIFO, device or socket); "
                               "bams3 reads only regular files inside a dataset")
        return fd

    # ------------------------------------------------------------------ reading
    def _pread(self, fd: int, n: int, offset: int) -> bytes:
        out = []
        while n > 0:
            b = os.pread(fd, min(n, 64 << 20), offset)
            if not b:
                break
            out.append(b)
            n -= len(b)
            offset += len(b)
        return b"".join(out)

    def get(self, key: str) -> bytes:
        with self.counter.request("GET", key) as moved:
            fd = self._open_regular(key)
            try:
                data = self._pread(fd, os.fstat(fd).st_size + 1, 0)
            except OSError as exc:
                raise self._fail("read", key, exc) from None
            finally:
                os.close(fd)
            moved["in"] = len(data)
        return data

    def get_range(self, key: str, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        with self.counter.request("GET", key, rng=(start, end)) as moved:
            fd = self._open_regular(key)
            try:
                data = self._pread(fd, end - start, start)
            except OSError as exc:
                raise self._fail("read", key, exc) from None
            finally:
                os.close(fd)
            moved["in"] = len(data)
        return data

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        if not ranges:
            return []
        with self.counter.request("GET", key, rng=tuple(ranges)) as moved:
            fd = self._open_regular(key)
            try:
                out = [self._pread(fd, b - a, a) if b > a else b"" for a, b in ranges]
            except OSError as exc:
                raise self._fail("read", key, exc) from None
            finally:
                os.close(fd)
            moved["in"] = sum(map(len, out))
        return out

    def stream(self, key: str, piece: int = 8 << 20) -> Iterator[bytes]:
        with self.counter.request("GET", key) as moved:
            fd = self._open_regular(key)
            try:
                offset = 0
                while True:
                    try:
                        b = os.pread(fd, piece, offset)
                    except OSError as exc:
                        raise self._fail("read", key, exc) from None
                    if not b:
                        return
                    offset += len(b)
                    moved["in"] += len(b)
                    yield b
            finally:
                os.close(fd)

    # ------------------------------------------------------------------ writing
    def _write_temp(self, d: int, name: str, data) -> str:
        tmp = f".{name}.bams3-{secrets.token_hex(6)}.partial"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=d)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view[: 64 << 20])
                view = view[n:]
        except BaseException:
            os.close(fd)
            os.unlink(tmp, dir_fd=d)
            raise
        os.close(fd)
        return tmp

    def put(self, key: str, data: bytes) -> None:
        parts = self._parts(key)
        with self.counter.request("PUT", key) as moved:
            try:
                d = self._dir(parts, create=True)
                try:
                    tmp = self._write_temp(d, parts[-1], data)
                    try:
                        os.rename(tmp, parts[-1], src_dir_fd=d, dst_dir_fd=d)
                    except BaseException:
                        os.unlink(tmp, dir_fd=d)
                        raise
                finally:
                    os.close(d)
            except OSError as exc:
                raise self._fail("write", key, exc) from None
            moved["out"] = len(data)

    @staticmethod
    def _version(st: os.stat_result) -> str:
        return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"

    def put_if(self, key: str, data: bytes, *, expect: str | None) -> str:
        """Create-only (``expect=None``: a hard link, which fails if the name exists) or a
        compare-and-swap on the version, under an exclusive lock on the directory."""
        parts = self._parts(key)
        name = parts[-1]
        with self.counter.request("PUT", key) as moved:
            try:
                d = self._dir(parts, create=True)
            except OSError as exc:
                raise self._fail("write", key, exc) from None
            try:
                tmp = self._write_temp(d, name, data)
                try:
                    fcntl.flock(d, fcntl.LOCK_EX)
                    if expect is None:
                        try:
                            os.link(tmp, name, src_dir_fd=d, dst_dir_fd=d, follow_symlinks=False)
                        except FileExistsError:
                            raise ConflictError(f"{key} exists already") from None
                    else:
                        try:
                            st = os.stat(name, dir_fd=d, follow_symlinks=False)
                        except FileNotFoundError:
                            raise ConflictError(f"{key} has changed (it is gone)") from None
                        if not stat.S_ISREG(st.st_mode) or self._version(st) != expect:
                            raise ConflictError(f"{key} has changed")
                        os.rename(tmp, name, src_dir_fd=d, dst_dir_fd=d)
                    st = os.stat(name, dir_fd=d, follow_symlinks=False)
                finally:
                    try:
                        os.unlink(tmp, dir_fd=d)
                    except FileNotFoundError:
                        pass
            except OSError as exc:
                raise self._fail("write", key, exc) from None
            finally:
                os.close(d)  # releases the lock
            moved["out"] = len(data)
        return self._version(st)

    def delete(self, key: str) -> None:
        """Remove the object (a regular file; nothing else is ever removed), then its directory
        if that is left empty (never the dataset's first level, such as ``data/``)."""
        parts = self._parts(key)
        with self.counter.request("DELETE", key):
            try:
                d = self._dir(parts)
            except (FileNotFoundError, NotADirectoryError):
                return
            except OSError as exc:
                raise self._fail("delete", key, exc) from None
            try:
                try:
                    st = os.stat(parts[-1], dir_fd=d, follow_symlinks=False)
                except (FileNotFoundError, NotADirectoryError):
                    return
                if not stat.S_ISREG(st.st_mode):
                    raise StorageError(f"{self.url}: not deleting {key}: it is not a regular file")
                os.unlink(parts[-1], dir_fd=d)
            except OSError as exc:
                raise self._fail("delete", key, exc) from None
            finally:
                os.close(d)
            if len(parts) >= 3:
                self._prune(parts[:-1])

    def _prune(self, dirs: list[str]) -> None:
        """Remove empty directories, deepest first, down to the dataset's second level."""
        while len(dirs) >= 2:
            try:
                d = self._dir(dirs)
            except OSError:
                return
            try:
                os.rmdir(dirs[-1], dir_fd=d)
            except OSError:
                return
            finally:
                os.close(d)
            dirs = dirs[:-1]

    # ------------------------------------------------------------------ metadata
    def head(self, key: str) -> dict | None:
        parts = self._parts(key)
        with self.counter.request("HEAD", key):
            try:
                d = self._dir(parts)
            except (FileNotFoundError, NotADirectoryError):
                return None
            except OSError as exc:
                raise self._fail("look at", key, exc) from None
            try:
                st = os.stat(parts[-1], dir_fd=d, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                return None
            except OSError as exc:
                raise self._fail("look at", key, exc) from None
            finally:
                os.close(d)
        if stat.S_ISDIR(st.st_mode):
            return None
        if not stat.S_ISREG(st.st_mode):
            raise StorageError(f"{self.url}: {key} is not a regular file (a link, FIFO, device or socket)")
        return {"size": st.st_size, "version": self._version(st)}

    def size(self, key: str) -> int | None:
        meta = self.head(key)
        return None if meta is None else meta["size"]

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """``(key, size)`` of every entry under the root whose key starts with ``prefix``.
        Links, FIFOs and devices are listed too (size 0), so a destination holding only a
        link is not taken for empty, but never descended into or opened."""
        with self.counter.request("LIST", prefix):
            found = []
            try:
                root = self._root_fd()
            except FileNotFoundError:
                root = None
            except OSError as exc:
                raise self._fail("list", prefix, exc) from None
            if root is not None:
                try:
                    self._scan(root, "", prefix, found)
                except OSError as exc:
                    raise self._fail("list", prefix, exc) from None
                finally:
                    os.close(root)
        yield from sorted(found)

    def _scan(self, fd: int, base: str, prefix: str, found: list) -> None:
        with os.scandir(fd) as it:
            entries = list(it)
        for e in entries:
            key = base + e.name
            if e.is_dir(follow_symlinks=False):
                sub = key + "/"
                if sub.startswith(prefix) or prefix.startswith(sub):
                    try:
                        nfd = os.open(e.name, _DIR_FLAGS, dir_fd=fd)
                    except (FileNotFoundError, NotADirectoryError):  # gone, or replaced meanwhile
                        continue
                    try:
                        self._scan(nfd, sub, prefix, found)
                    finally:
                        os.close(nfd)
            elif key.startswith(prefix) and not _PARTIAL.match(e.name):
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                found.append((key, st.st_size if stat.S_ISREG(st.st_mode) else 0))

    def list_dirs(self, prefix: str = "") -> list[str]:
        """The directories directly under ``prefix``, links to directories included: this lists
        datasets under a prefix (``bams3 ls``, cohorts), and a dataset's own path may be a link.
        Nothing is read through them here."""
        with self.counter.request("LIST", prefix):
            parts = [p for p in prefix.split("/") if p]
            try:
                d = self._dir(parts + ["x"]) if parts else self._root_fd()
            except (FileNotFoundError, NotADirectoryError):
                return []
            except OSError as exc:
                raise self._fail("list", prefix, exc) from None
            try:
                with os.scandir(d) as it:
                    return sorted("/".join(parts + [e.name]) + "/" for e in it if e.is_dir(follow_symlinks=True))
            finally:
                os.close(d)


def open_local(url: str, create: bool = False):
    path = _path(url)
    if create:
        if os.path.lexists(path) and not os.path.isdir(path):
            raise DatasetError(f"{url} exists and is not a directory")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {url}: {_why(exc)}") from None
    elif not os.path.isdir(path):
        if os.path.exists(path):
            raise DatasetError(f"{url} is a file, not a bams3 dataset (convert it with `bams3 convert {url} DEST`)")
        raise NotADatasetError(f"no bams3 dataset at {url} (no such directory)")
    return LocalStore(path, url)


@hookimpl
def bams3_register_storage(register):
    register(StorageBackend(name="local", schemes=("file",), open=open_local,
                                  description="local disk: plain paths and file:// URLs"))
