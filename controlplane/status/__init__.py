"""Status write-back: what the mesh tells users on their objects (Gateway API route status, our CRDs'
conditions), computed purely from diagnostics (`routes`, `policies`, `conditions`), and written by the
`reporter` through a `StatusPatcher` only when it differs from what the object already says.

Imports the model only; the Kubernetes side of the writes lives in `controlplane.sources.kube.writeback`.
"""
