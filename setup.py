"""The compiled parts (everything else is in pyproject.toml): bulk kernels over raw
records, pysam records made from them, the qual codec's rANS and the consensus codec's per-base work."""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("bams3._kernels", ["bams3/_kernels.c"], extra_compile_args=["-O3"]),
    Extension("bams3._segments", ["bams3/_segments.c"], extra_compile_args=["-O3"]),
    Extension("bams3.builtins._rans", ["bams3/builtins/_rans.c"], extra_compile_args=["-O3"]),
    Extension("bams3.builtins._qctx", ["bams3/builtins/_qctx.c"], extra_compile_args=["-O3"]),
    Extension("bams3.builtins._consensus", ["bams3/builtins/_consensus.c"], extra_compile_args=["-O3"]),
    Extension("bams3.builtins._tags", ["bams3/builtins/_tags.c"], extra_compile_args=["-O3"]),
    Extension("bams3.builtins._mates", ["bams3/builtins/_mates.c"], extra_compile_args=["-O3"]),
    Extension("bams3.builtins._names", ["bams3/builtins/_names.c"], extra_compile_args=["-O3"]),
])
