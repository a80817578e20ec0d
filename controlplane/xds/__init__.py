"""The xDS transport: per-node snapshots of serialize-once resources, SotW and delta ADS, CSDS.

Modules: typeurls (type URLs, push order), resource (Resource, ResourcePool), snapshot (Snapshot), cache
(SnapshotCache, the SnapshotSource seam), sotw / delta (per-stream protocol state and handlers), stream (the
shared stream loop), status (ProxyStatusRegistry), csds, metrics, debounce, server (XdsServer,
ServerSettings),
errors. Imports no model, translation, sources or Kubernetes code.
"""
