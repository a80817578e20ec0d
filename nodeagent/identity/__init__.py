"""Workload identities on this node: keys made and kept here (keys), the CA client (client), and the manager
that keeps one current certificate per identity with a pod on the node (manager). Private keys never leave
the process: not to disk, not to logs."""
