/* Original destinations of redirected connections.
 *
 * connect4 records the destination by socket cookie (the 4-tuple does not exist yet: the ephemeral port is
 * chosen after connect4 ran); sockops moves it to the 4-tuple when the connection is established, which is the
 * key Envoy's accepted socket can rebuild in getsockopt.
 */
#ifndef NODEMESH_ORIGDST_H
#define NODEMESH_ORIGDST_H

#include "lib/nodemesh.h"

#define NODEMESH_ORIGDST_MAX 65536

struct nodemesh_origdst {
    __u32 ip;   /* network order */
    __u16 port; /* network order */
    __u16 _pad;
};

/* A redirected connection as the client sees it: client (pod) -> Envoy outbound listener. */
struct nodemesh_tuple {
    __u32 client_ip;   /* network order */
    __u32 envoy_ip;    /* network order */
    __u16 client_port; /* host order */
    __u16 envoy_port;  /* host order */
};

#ifndef NODEMESH_STRUCTS_ONLY
/* LRU: a connect that never establishes (refused, timed out) leaves no entry forever. */
BPF_TABLE_PINNED("lru_hash", __u64, struct nodemesh_origdst, nodemesh_origdst_by_cookie, NODEMESH_ORIGDST_MAX,
                 NODEMESH_PIN(nodemesh_origdst_by_cookie));
BPF_TABLE_PINNED("lru_hash", struct nodemesh_tuple, struct nodemesh_origdst, nodemesh_origdst_by_tuple,
                 NODEMESH_ORIGDST_MAX, NODEMESH_PIN(nodemesh_origdst_by_tuple));
#endif

#endif
