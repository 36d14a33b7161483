"""The demo and the local stand-ins it shares with the tests: the Kubernetes API emulator
(kmock with our compatibility layer) and the operator in a thread of its own. Not part of the
product: it lives beside it in the source tree, never in the wheel or the image (`make demo`
and the tests put it on the path). Its servers are test extras (SecantusDB, kmock)."""
