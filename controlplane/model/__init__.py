"""The mesh model: frozen values for what the control plane watches, and the immutable `MeshSnapshot`.

Pure (no I/O). Modules: `refs` (ObjectRef, Kind), `namespace`, `node`, `workload`, `service`, `endpoints`,
`routes` (HTTPRoute, GRPCRoute), `policy` (TrafficPolicy), `authz` (AuthorizationPolicy and its reference
evaluator), `peerauth` (PeerAuthentication), `security` (which of them apply to a workload, effective mTLS),
`objects` (the MeshObject union, Upsert/Delete events), `snapshot` (MeshSnapshot and its indexes),
`diagnostics`, `duration`, `regex` (RE2 checks), and `kube` (conversion from Kubernetes JSON).
"""
