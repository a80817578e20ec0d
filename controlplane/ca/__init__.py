"""The mesh CA: SPIFFE identities (identity), signing (authority), the trust bundle and root rotation
(bundle), persistence (store), node authorization (authorization), the gRPC service (service), and the
renewal schedule certificate holders follow (rotation). identity, rotation and clock are stdlib-only, for
the node agent."""
