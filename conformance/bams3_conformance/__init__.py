"""Conformance tests a bams3 plugin package runs against its own plugins.

- ``store.StoreTests`` (override ``store_url``) and ``store.store_state_machine(make_url)``,
  a hypothesis rule-based test of put/get/range/list/size/delete against a model;
- ``codec.CodecTests`` (set ``codec_name``);
- ``formats.OutputFormatTests`` (set ``format_name``, implement ``read_back`` returning dicts of
  the SAM fields the format holds; a lossy format sets ``fields`` and overrides ``expected``);
- ``strategies``: hypothesis strategies for records, regions and record batches;
- ``proxy.CountingProxy`` and ``motoserver.MotoServer`` for S3 tests on loopback.

Subclass a test class, provide its fixture, and pytest runs the checks::

    from bams3_conformance.store import StoreTests

    class TestMyStore(StoreTests):
        @pytest.fixture
        def store_url(self, tmp_path):
            return "myscheme://test-bucket/" + tmp_path.name
"""
