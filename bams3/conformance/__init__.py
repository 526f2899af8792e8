"""The plugin conformance kit, as ``bams3.conformance`` (it lives in the ``bams3_conformance``
package, which is also a pytest plugin: its fixtures are available in any test session).

    from bams3.conformance import CodecTests, OutputFormatTests, StoreTests, store_state_machine
    from bams3.conformance import strategies
"""

from bams3_conformance import strategies
from bams3_conformance.codec import CodecTests
from bams3_conformance.formats import OutputFormatTests
from bams3_conformance.store import StoreTests, store_state_machine

__all__ = ["CodecTests", "OutputFormatTests", "StoreTests", "store_state_machine", "strategies"]
