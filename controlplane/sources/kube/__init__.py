"""The Kubernetes source: generic informers (list + watch) over kubernetes-asyncio, and status writes.

This package is the only importer of kubernetes-asyncio in the control plane.
"""
