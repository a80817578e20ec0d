/* sk_lookup: refuse plaintext to STRICT pods unless it came through the node Envoy.
 *
 * Attached (one link per netns) to the network namespace of every meshed pod.  sk_lookup runs only when a
 * packet matches no established socket, i.e. for new connections: established ones are never touched,
 * whatever the mode becomes.  SK_DROP fails the listener lookup, so the kernel answers the SYN with a RST
 * and the client gets ECONNREFUSED at once, rather than retransmitting SYNs into a silent drop.
 *
 * "Came through the node Envoy": HBONE is terminated by the destination node's Envoy, which connects to
 * the pod from the node's own address (the Envoy listener address in nodemesh_config).
 */
#include "lib/nodemesh.h"
#include "lib/config.h"
#include "lib/policy.h"
#include "lib/inbound.h"

#define NODEMESH_IPPROTO_TCP 6

static __always_inline void count(__u32 idx)
{
    __u64 *value = nodemesh_inbound_counters.lookup(&idx);
    if (value)
        *value += 1;
}

static __always_inline int from_envoy(__u32 ip)
{
    __u32 zero = 0;
    struct nodemesh_config *cfg = nodemesh_config.lookup(&zero);
    if (!cfg)
        return 0;
#pragma unroll
    for (int i = 0; i < NODEMESH_MAX_ENVOY_ADDRS; i++) {
        if (i < cfg->n_envoy_ips && cfg->envoy_ips[i] == ip)
            return 1;
    }
    return 0;
}

int nodemesh_inbound(struct bpf_sk_lookup *ctx)
{
    if (ctx->family != NODEMESH_AF_INET || ctx->protocol != NODEMESH_IPPROTO_TCP)
        return SK_PASS;
    __u32 local_ip = ctx->local_ip4;                /* network order */
    __u16 local_port = (__u16)ctx->local_port;      /* host order */
    __u32 remote_ip = ctx->remote_ip4;              /* network order */

    struct nodemesh_inbound_key key = {.ip = local_ip, .port = local_port};
    __u32 refused = NODEMESH_IN_REFUSED_STRICT_PORT;
    __u8 *mode = nodemesh_inbound_policy.lookup(&key);
    if (!mode) {
        key.port = 0;
        refused = NODEMESH_IN_REFUSED_STRICT_WORKLOAD;
        mode = nodemesh_inbound_policy.lookup(&key);
    }
    if (!mode || *mode != NODEMESH_INBOUND_STRICT) {
        count(NODEMESH_IN_ACCEPTED_PERMISSIVE);
        return SK_PASS;
    }
    if (from_envoy(remote_ip)) {
        count(NODEMESH_IN_ACCEPTED_ENVOY);
        return SK_PASS;
    }
    if (remote_ip == local_ip) {
        /* The pod calling itself on its own address (not redirected: an excluded port). */
        count(NODEMESH_IN_ACCEPTED_SAME_POD);
        return SK_PASS;
    }
    if (nodemesh_excluded_ports.lookup(&local_port)) {
        /* A port the mesh leaves alone: meshed callers reach it in plaintext too, so it cannot be STRICT. */
        count(NODEMESH_IN_ACCEPTED_EXCLUDED_PORT);
        return SK_PASS;
    }
    count(refused);
    return SK_DROP;
}
