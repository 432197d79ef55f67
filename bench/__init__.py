"""Benchmarks of the dispatcher worker: throughput, rate-limit accuracy, adaptation, memory (`make bench`)."""
