"""Translation: a `MeshSnapshot` to each node's Envoy resources, agent plan and diagnostics. Pure.

`translator.Translator` is the entry point: `translate_mesh(mesh) -> MeshConfig` once per snapshot (clusters,
load assignments, route configs, filter chains: the same for every node), then `translate_node(mesh, node,
mesh_config) -> NodeConfig` per node (its outbound listener and plan). Incremental: only what the change
touches is translated again (`impact`), resources are persistent maps by name (`config`), and
`changed_since(previous)` says which resources differ. Builders,
one job each: `clusters`, `assignments` (EDS), `routing` + `matches` (HTTPRoute/GRPCRoute route configs),
`binding` (GAMMA parentRefs), `policies` (TrafficPolicy), `listener` (15001 and its filter-chain matcher),
`plan` (agent resources); every resource name comes from `naming`.
"""
