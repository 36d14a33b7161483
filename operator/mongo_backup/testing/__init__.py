"""Local stand-ins used by the tests and the demo (never by the operator in production):
an embedded MongoDB-compatible server and a Kubernetes API emulator. Their packages are
test extras and are imported lazily."""
