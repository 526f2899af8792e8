"""Seeded bugs for the conformance kit to catch (tests/test_mutation.py): a correct tiny store
and codec, and one subclass per realistic bug, as an outside developer might write them."""
