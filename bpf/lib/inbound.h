/* Inbound mTLS enforcement (PeerAuthentication STRICT): which pod addresses and ports refuse plaintext.
 *
 * Keyed by the destination as the pod sees it: (pod IP, port) for a port-level mode, (pod IP, 0) for the
 * workload's own mode; the port entry wins.  No entry means PERMISSIVE (nothing enforced).
 */
#ifndef NODEMESH_INBOUND_H
#define NODEMESH_INBOUND_H

#include "lib/nodemesh.h"

#define NODEMESH_INBOUND_MAX 65536

/* Values of nodemesh_inbound_policy. */
#define NODEMESH_INBOUND_PERMISSIVE 1 /* an explicit exception (a PERMISSIVE port of a STRICT workload) */
#define NODEMESH_INBOUND_STRICT 2     /* only connections from the node Envoy are accepted */

struct nodemesh_inbound_key {
    __u32 ip;   /* network order */
    __u16 port; /* host order; 0: every port of the workload without its own entry */
    __u16 _pad;
};

enum nodemesh_inbound_counter {
    NODEMESH_IN_REFUSED_STRICT_WORKLOAD = 0,
    NODEMESH_IN_REFUSED_STRICT_PORT = 1,
    NODEMESH_IN_ACCEPTED_ENVOY = 2,
    NODEMESH_IN_ACCEPTED_SAME_POD = 3,
    NODEMESH_IN_ACCEPTED_EXCLUDED_PORT = 4,
    NODEMESH_IN_ACCEPTED_PERMISSIVE = 5,
    NODEMESH_IN_MAX = 6,
};

#ifndef NODEMESH_STRUCTS_ONLY
BPF_TABLE_PINNED("hash", struct nodemesh_inbound_key, __u8, nodemesh_inbound_policy, NODEMESH_INBOUND_MAX,
                 NODEMESH_PIN(nodemesh_inbound_policy));
BPF_TABLE_PINNED("percpu_array", __u32, __u64, nodemesh_inbound_counters, NODEMESH_IN_MAX,
                 NODEMESH_PIN(nodemesh_inbound_counters));
#endif

#endif
