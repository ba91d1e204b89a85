"""Build hook for the optional compiled order-book loop (okx/_bookaccel.c).

All metadata lives in pyproject.toml; this file only declares the C extension. The build is
best effort: without a C compiler or the Python headers, installation still succeeds with a
warning, and okx.book uses its pure-Python loop (okx.book.ACCELERATED is then False).
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that warns instead of failing when the extension cannot be compiled."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler at all, unsupported platform, ...
            self._skip(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # compile or link error, missing Python.h, ...
            self._skip(exc, ext.name)

    @staticmethod
    def _skip(exc, name="extensions"):
        msg = (
            f"WARNING: building {name} failed ({type(exc).__name__}: {exc}); "
            "installing without it: okx.book falls back to pure Python"
        )
        # setuptools' own log may be silenced (pip -q); stderr reaches pip's verbose output.
        import sys

        print(msg, file=sys.stderr)


setup(
    ext_modules=[Extension("okx._bookaccel", ["okx/_bookaccel.c"], optional=True)],
    cmdclass={"build_ext": OptionalBuildExt},
)
