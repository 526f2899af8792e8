"""Conformance tests a bams3 plugin package runs against its own plugins.

Subclass a test class, provide its fixture, and pytest runs the checks::

    from bams3_conformance.store import StoreTests

    class TestMyStore(StoreTests):
        @pytest.fixture
        def store_url(self, tmp_path):
            return "myscheme://test-bucket/" + tmp_path.name
"""
