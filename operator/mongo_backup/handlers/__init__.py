"""The Kopf handlers of MongoBackup and MongoRestore: the only code that imports kopf.
Thin on purpose: parse the spec, host a run of the runner, map deletion to storage cleanup."""

from .main import configure_logging, operate, run_operator
from .runtime import Runtime

__all__ = ["Runtime", "configure_logging", "operate", "run_operator"]
