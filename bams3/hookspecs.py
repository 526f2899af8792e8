"""Hook specifications of the bams3 plugin host.

A plugin is a module or object with functions named like these, marked with
``bams3.hookimpl``, and advertised in the ``bams3`` entry-point group of its
package metadata. Each hook receives a ``register`` callback; the plugin calls
it once per thing it provides. The host owns the callback, so it knows every
scheme, codec and output format up front and refuses two plugins claiming the
same name.

docs/plugins.md carries the reference generated from this module
(``python -m bams3.plugindoc``); a test fails when the two differ.
"""

import pluggy

hookspec = pluggy.HookspecMarker("bams3")


@hookspec
def bams3_register_storage(register):
    """Register storage backends (by URL scheme).

    :param register: call ``register(bams3.StorageBackend(name, schemes, open))``
        once per backend. ``open(url, create=False)`` returns a store rooted at
        the URL: an object with the methods of :class:`bams3.storage.Store`
        (get, get_range, get_ranges, stream, put, list, delete, size).
    :returns: nothing; the return value is ignored (not a firstresult hook:
        every plugin's implementation is called, once, when the registry is built).
    :raises: ``open`` raises ``bams3.DatasetError`` for a URL that holds no
        dataset, ``bams3.StorageError`` for access and network failures, with a
        one-line message that says what to do and never contains credentials;
        ``get``/``get_range`` raise ``FileNotFoundError`` for a missing key.
    :threads: a store is used from many threads at once (chunk fetches run in a
        pool); every method must be thread-safe and should release the GIL while
        waiting on I/O. Calls are synchronous: a backend built on async I/O runs
        its own loop and blocks until the result is ready.
    :atomicity: ``put`` is atomic (readers see the old object or the new one,
        never part of one); bams3 writes ``_metadata.json`` last, so a dataset
        appears only when complete.
    """


@hookspec
def bams3_register_codecs(register):
    """Register column codecs (by name).

    :param register: call ``register(bams3.Codec(name, encode, decode))`` once
        per codec. ``encode(data: bytes, level) -> bytes`` and
        ``decode(data: bytes, raw_size: int) -> bytes``; a codec with
        ``record_aware=True`` also receives ``records=bams3.RecordFields(...)``
        (per-record lengths, flags, positions and CIGARs of the chunk) in both.
    :returns: nothing; the return value is ignored (every implementation is called).
    :raises: ``decode`` raises any exception (``ValueError`` is usual) for input
        it cannot decode; the host turns it into a one-line "the dataset is
        corrupt" error naming the chunk. ``decode`` must never return more than
        ``raw_size`` bytes and must not allocate beyond what ``raw_size`` implies.
    :threads: called from several threads at once on different data; must be
        thread-safe and should release the GIL on large inputs.
    :format: a dataset records the names of the codecs it was written with;
        once a codec name is published its output must stay decodable by later
        versions of the plugin (version the payload, as ``qual`` does).
    """


@hookspec
def bams3_register_output_formats(register):
    """Register output formats for ``query``/``Dataset.write`` (by name).

    :param register: call ``register(bams3.OutputFormat(name, extensions, open))``
        once per format. ``open(out, header, options) -> writer``: ``out`` is a
        binary file object, ``header`` a :class:`bams3.records.Header`,
        ``options`` a dict (``header``: include the header; ``threads``; ...).
        The writer's ``write(batch)`` takes a :class:`bams3.records.RecordBatch`
        (raw BAM records), ``close()`` finishes the output without closing
        ``out``, and an optional ``abort()`` cleans up after an error.
    :returns: nothing; the return value is ignored (every implementation is called).
    :raises: ``BrokenPipeError`` when the reader of ``out`` went away (the CLI
        then exits quietly, as samtools does); ``bams3.Bams3Error`` with a
        one-line message for anything else the user must act on.
    :threads: ``write`` and ``close`` are called from one thread, in order; a
        writer may use threads or processes of its own.
    """
