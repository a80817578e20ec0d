"""nodemesh's benchmarks (`make bench`, `python -m bench`): not tests, they measure and report.

Modules: benchmark (Benchmark, RunOptions), registry (the list `python -m bench` runs), result (Figure,
Target, BenchResult), stats (percentiles), report (docs/benchmarks.{md,json}), machine, memory; xds_push with
its helpers xds_config, ackwatch, clientproc and adsclients (the simulated Envoys' process); xds_scale (the
translated mesh through publisher, cache and server to simulated Envoys at issue 7's scales); translate; the
data-path benchmarks datapath, hbone and envoy_memory on the integration MeshHarness (meshscene draws the
pods; podclient and hboneclient run inside pods); ca with its client process caclient.
"""
