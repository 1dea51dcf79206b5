"""Development-only helpers of this repository (not shipped in the djtasks wheel): the private PostgreSQL
cluster used by the demo, the tests and the benchmarks."""
