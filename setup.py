"""The build's one part that pyproject.toml cannot declare (its ext-modules table is still
experimental): the walks over BSON bytes that run once per document, in C
(engine/_bson_walk.c says why). It is optional: without a C compiler the package still
installs, and engine/digest.py and engine/batch_reply.py walk in Python, to the same results,
more slowly."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mongo_backup.engine._bson_walk",
            sources=["operator/mongo_backup/engine/_bson_walk.c"],
            include_dirs=["operator/native/xxhash"],
            depends=["operator/native/xxhash/xxhash.h"],
            optional=True,
        )
    ]
)
