"""Build hook: compile every cython_ext/<name>.pyx into fluxforge._kernels.<name>.

setup.py exists only because Cython extensions need cythonize(); all metadata
lives in pyproject.toml.  Flags: -O3 but -ffp-contract=off and never
-ffast-math, so x86-64 and aarch64 produce bit-identical features.
"""
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
COMPILE_ARGS = ["-O3", "-ffp-contract=off", "-fno-fast-math", "-Wno-unreachable-code"]

extensions = [
    Extension(
        f"fluxforge._kernels.{pyx.stem}",
        [str(pyx.relative_to(HERE))],
        include_dirs=[numpy.get_include(), "cython_ext"],
        extra_compile_args=COMPILE_ARGS,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for pyx in sorted((HERE / "cython_ext").glob("*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    )
)
