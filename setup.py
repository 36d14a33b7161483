"""The build's one part that pyproject.toml cannot declare (its ext-modules table is still
experimental): the content digest's per-document walk in C (engine/_content_digest.c says
why). It is optional: without a C compiler the package still installs, and engine/digest.py
walks the documents in Python, to the same digest, more slowly."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mongo_backup.engine._content_digest",
            sources=["operator/mongo_backup/engine/_content_digest.c"],
            include_dirs=["operator/native/xxhash"],
            depends=["operator/native/xxhash/xxhash.h"],
            optional=True,
        )
    ]
)
