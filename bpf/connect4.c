/* cgroup/connect4: send meshed pods' outbound TCP connections to the node Envoy's outbound listener.
 *
 * Attached (BPF_F_ALLOW_MULTI) to the cgroup that holds the node's pods.  Runs before the kernel picks the
 * ephemeral port, so the original destination is recorded by socket cookie; sockops re-keys it by 4-tuple.
 * Always returns 1: this program redirects, it never refuses a connection.
 */
#include "lib/nodemesh.h"
#include "lib/meshed.h"
#include "lib/origdst.h"
#include "lib/policy.h"
#include "lib/config.h"
#include "lib/counters.h"

static __always_inline void count(__u32 idx)
{
    __u64 *value = nodemesh_counters.lookup(&idx);
    if (value)
        *value += 1;
}

static __always_inline int is_envoy(const struct nodemesh_config *cfg, __u32 ip)
{
#pragma unroll
    for (int i = 0; i < NODEMESH_MAX_ENVOY_ADDRS; i++) {
        if (i < cfg->n_envoy_ips && cfg->envoy_ips[i] == ip)
            return 1;
    }
    return 0;
}

static __always_inline int pod_excludes(const struct nodemesh_pod_settings *pod, __u16 port)
{
#pragma unroll
    for (int i = 0; i < NODEMESH_MAX_POD_EXCLUDED_PORTS; i++) {
        if (i < pod->n_exclude_ports && pod->exclude_ports[i] == port)
            return 1;
    }
    return 0;
}

int nodemesh_connect4(struct bpf_sock_addr *ctx)
{
    if (ctx->type != NODEMESH_SOCK_STREAM) {
        count(NODEMESH_CTR_SKIP_NOT_TCP);
        return 1;
    }
    __u32 dst_ip = ctx->user_ip4;                          /* network order */
    __u16 dst_port_be = (__u16)ctx->user_port;             /* network order in the low 16 bits */
    __u16 dst_port = bpf_ntohs(dst_port_be);
    if ((bpf_ntohl(dst_ip) >> 24) == 127) {
        count(NODEMESH_CTR_SKIP_LOOPBACK);
        return 1;
    }

    __u64 netns = bpf_get_netns_cookie(ctx);
    struct nodemesh_pod_settings *pod = nodemesh_meshed_netns.lookup(&netns);
    if (!pod) {
        /* Envoy's own sockets land here too: the node netns is never meshed, so no loop. */
        count(NODEMESH_CTR_SKIP_NOT_MESHED);
        return 1;
    }

    __u32 zero = 0;
    struct nodemesh_config *cfg = nodemesh_config.lookup(&zero);
    if (!cfg || cfg->n_envoy_ips == 0 || cfg->n_envoy_ips > NODEMESH_MAX_ENVOY_ADDRS) {
        count(NODEMESH_CTR_SKIP_NO_CONFIG);
        return 1;
    }
    if (is_envoy(cfg, dst_ip)) {
        count(NODEMESH_CTR_SKIP_ENVOY);
        return 1;
    }
    if (nodemesh_excluded_ports.lookup(&dst_port) || pod_excludes(pod, dst_port)) {
        count(NODEMESH_CTR_SKIP_EXCLUDED_PORT);
        return 1;
    }
    struct nodemesh_cidr_key cidr = {.prefixlen = 32, .ip = dst_ip};
    if (nodemesh_excluded_cidrs.lookup(&cidr)) {
        count(NODEMESH_CTR_SKIP_EXCLUDED_CIDR);
        return 1;
    }
    if (!(pod->flags & NODEMESH_POD_REDIRECT_ALL)) {
        struct nodemesh_service_key svc = {.ip = dst_ip, .port = dst_port};
        if (!nodemesh_services.lookup(&svc)) {
            count(NODEMESH_CTR_SKIP_NOT_SERVICE);
            return 1;
        }
    }

    __u64 cookie = bpf_get_socket_cookie(ctx);
    struct nodemesh_origdst orig = {.ip = dst_ip, .port = dst_port_be};
    nodemesh_origdst_by_cookie.update(&cookie, &orig);

    /* Spread destinations over the listener's addresses and ports; one destination always picks the same. */
    __u32 idx = 0;
    __u32 offset = 0;
    __u32 n_ports = cfg->n_outbound_ports;
    if (n_ports > NODEMESH_MAX_OUTBOUND_PORTS)
        n_ports = NODEMESH_MAX_OUTBOUND_PORTS;
    if (cfg->n_envoy_ips > 1 || n_ports > 1) {
        /* Fold the port in multiplicatively, then murmur3's fmix32: every input bit reaches the low bits. */
        __u32 hash = dst_ip ^ ((__u32)dst_port_be * 0x9e3779b1);
        hash ^= hash >> 16;
        hash *= 0x85ebca6b;
        hash ^= hash >> 13;
        hash *= 0xc2b2ae35;
        hash ^= hash >> 16;
        idx = hash % cfg->n_envoy_ips;
        if (n_ports > 1)
            offset = (hash / cfg->n_envoy_ips) % n_ports;
    }
    /* idx < n_envoy_ips <= NODEMESH_MAX_ENVOY_ADDRS (a power of two): the mask changes nothing but gives the
     * verifier a bound it keeps through clang's reordering (a compare was dropped once the port offset came). */
    idx &= NODEMESH_MAX_ENVOY_ADDRS - 1;
    ctx->user_ip4 = cfg->envoy_ips[idx];
    ctx->user_port = (__u32)bpf_htons((__u16)(bpf_ntohs(cfg->outbound_port) + offset));
    count(NODEMESH_CTR_REDIRECTED);
    return 1;
}
