"""The Kubernetes source: generic informers (list + watch) over kubernetes-asyncio, and status writes.

Modules: `client` (the connection), `resources`, `informer` (one kind's list + watch), `kinds` (the kinds
the mesh reads), `projection` (informer events to model events), `source` (`KubeSource`: every kind, one
TaskGroup), `status` (one resource's `/status` PATCH), `writeback` (the status reporter's patcher),
`castore` (the CA's root in a Secret), `tokenreview` (node agents' tokens checked by TokenReview).

This package is the only importer of kubernetes-asyncio in the control plane.
"""
