/* cgroup/getpeername4: a redirected client asking for its peer sees the original destination, not Envoy. */
#include "lib/nodemesh.h"
#include "lib/origdst.h"
#include "lib/config.h"
#include "lib/counters.h"

static __always_inline void count(__u32 idx)
{
    __u64 *value = nodemesh_counters.lookup(&idx);
    if (value)
        *value += 1;
}

int nodemesh_getpeername4(struct bpf_sock_addr *ctx)
{
    struct bpf_sock *sk = ctx->sk;
    if (!sk)
        return 1;
    /* Only a socket connected to Envoy's outbound port can be a redirected one: every other socket (Envoy's
     * accepted ones, servers, unredirected clients) leaves before the hash lookup. The config is an array
     * (the JIT inlines its lookup) that connect4 reads on every connect. */
    __u32 zero = 0;
    struct nodemesh_config *cfg = nodemesh_config.lookup(&zero);
    if (!cfg)
        return 1;
    __u32 first = bpf_ntohs(cfg->outbound_port);
    __u32 port = bpf_ntohs((__u16)sk->dst_port);
    __u32 n_ports = cfg->n_outbound_ports > 1 ? cfg->n_outbound_ports : 1;
    if (port < first || port >= first + n_ports)
        return 1;
    /* The client's socket: local = pod, remote = Envoy listener. */
    struct nodemesh_tuple tuple = {
        .client_ip = sk->src_ip4,
        .envoy_ip = sk->dst_ip4,
        .client_port = (__u16)sk->src_port,             /* host order */
        .envoy_port = bpf_ntohs((__u16)sk->dst_port),   /* network order */
    };
    struct nodemesh_origdst *orig = nodemesh_origdst_by_tuple.lookup(&tuple);
    if (!orig)
        return 1;
    ctx->user_ip4 = orig->ip;
    ctx->user_port = (__u32)orig->port;
    count(NODEMESH_CTR_PEERNAME_REWRITTEN);
    return 1;
}
