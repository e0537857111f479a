"""Build of the optional C accelerator; everything else is declared in pyproject.toml.

``qosinspect._speedups`` is ``optional``: on a machine without a C compiler or Python headers
the build of the extension fails quietly and the package installs and runs in pure Python
(qosinspect/_accel.py explains the split).
"""

from glob import glob

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "qosinspect._speedups",
            sources=sorted(glob("qosinspect/_csrc/*.c")),
            depends=sorted(glob("qosinspect/_csrc/*.h")),
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                "-Wno-missing-field-initializers", "-Wno-cast-function-type"],
            optional=True,
        ),
    ],
)
