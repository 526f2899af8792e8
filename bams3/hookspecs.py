"""Hook specifications of the bams3 plugin host.

A plugin is a module or object with functions named like these, marked with
``bams3.hookimpl``, and advertised in the ``bams3`` entry-point group of its
package metadata. Each hook receives a ``register`` callback; the plugin calls
it once per thing it provides. The host owns the callback, so it knows every
scheme, codec and output format up front and refuses two plugins claiming the
same name.
"""

import pluggy

hookspec = pluggy.HookspecMarker("bams3")


@hookspec
def bams3_register_storage(register):
    """Register storage backends.

    :param register: call ``register(bams3.StorageBackend(...))`` once per
        backend. A backend names the URL schemes it serves and a factory
        ``open(url) -> bams3.storage.Store`` for a URL of one of them.
    :returns: nothing (the return value is ignored).
    """


@hookspec
def bams3_register_codecs(register):
    """Register column codecs.

    :param register: call ``register(bams3.Codec(...))`` once per codec. A codec
        has a unique ``name``, ``encode(data, level) -> bytes`` and
        ``decode(data, raw_size) -> bytes``; both must be thread-safe and should
        release the GIL for large inputs.
    :returns: nothing.
    """


@hookspec
def bams3_register_output_formats(register):
    """Register output formats for ``query`` and ``Dataset.write``.

    :param register: call ``register(bams3.OutputFormat(...))`` once per format.
        A format has a unique ``name``, file ``extensions`` and a factory
        ``open(out, header, options) -> writer``; the writer takes batches of
        raw BAM records (``write(batch)``) and is finished by ``close()``.
    :returns: nothing.
    """
