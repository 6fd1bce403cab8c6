// SPDX-License-Identifier: Apache-2.0
/*
 * sluice's XDP front: steers the gateway's own traffic into the AF_XDP socket
 * of the receiving queue, answers ARP/ND for its VIPs, passes the rest.
 *
 * Verdict flow (each packet ends in exactly one counter, see sluice_abi.h):
 *
 *   Ethernet, <= 2 VLAN tags ─ truncated ─────────────────► DROP_MALFORMED_ETH
 *   ├ ARP ─ request for VIP(ANSWER_NEIGH) ───────────────► TX_ARP_REPLY
 *   │       truncated / not Ethernet-IPv4 ───────────────► DROP_MALFORMED_ARP
 *   │       anything else ───────────────────────────────► PASS_NEIGH_OTHER
 *   ├ IPv4 / IPv6 ─ bad header ──────────────────────────► DROP_MALFORMED_IP
 *   │  ├ ICMPv6 ND (types 133-137) ─ NS for VIP ─────────► TX_NEIGH_ADVERT
 *   │  │                             otherwise ──────────► PASS_NEIGH_OTHER
 *   │  ├ destination not a VIP ──────────────────────────► PASS_NOT_VIP
 *   │  ├ fragment ───────────────────────────────────────► DROP_FRAGMENT
 *   │  ├ truncated ext. header / L4 header ──────────────► DROP_MALFORMED_IP / _L4
 *   │  ├ TCP/UDP listener ───────────────────────────────► REDIRECT_LISTENER
 *   │  ├ TCP/UDP in local port range (LOCAL_PORTS) ──────► REDIRECT_LOCAL_PORT
 *   │  ├ echo request (ICMP_ECHO) ───────────────────────► REDIRECT_ICMP_ECHO
 *   │  └ anything else ──────────────────────────────────► PASS_VIP_UNBOUND
 *   └ other ethertype ───────────────────────────────────► PASS_NON_IP
 *
 *   REDIRECT_* with no socket in xsks[rx_queue_index] ───► DROP_NO_SOCKET
 */
#include "parsing.h"
#include "csum.h"
#include "gateway_maps.h"
#include "neigh.h"

/*
 * Anchors the ABI enum in the object's BTF (types only reachable through
 * inlined code are not emitted), so userspace tests can check its mirror.
 */
const volatile enum sluice_xdp_counter sluice_xdp_counter_max = SLUICE_XDP_COUNTER_MAX;

#define ICMP_ECHO_REQUEST 8
#define ICMPV6_ECHO_REQ 128
#define ND_FIRST_TYPE 133 /* router solicitation */
#define ND_LAST_TYPE 137  /* redirect */

/*
 * TCP or UDP to a VIP: listener, then local port range, else unbound.
 * `l4_len` is the L4 length according to the IP header.
 */
static __always_inline enum sluice_xdp_counter steer_l4(struct cursor *c, const __u8 addr[16],
							__u32 vip_flags, __u8 proto, __u32 l4_len)
{
	struct sluice_listener_key key = {};
	__u32 zero = 0;
	struct sluice_config *cfg;
	__be16 dport;

	if (proto == IPPROTO_UDP) {
		struct udphdr *udp = c->pos;
		__u32 ulen;

		if ((void *)(udp + 1) > c->end || l4_len < sizeof(*udp))
			return SLUICE_DROP_MALFORMED_L4;
		ulen = bpf_ntohs(udp->len);
		if (ulen < sizeof(*udp) || ulen > l4_len)
			return SLUICE_DROP_MALFORMED_L4;
		dport = udp->dest;
	} else {
		struct tcphdr *tcp = c->pos;
		__u32 doff;

		if ((void *)(tcp + 1) > c->end || l4_len < sizeof(*tcp))
			return SLUICE_DROP_MALFORMED_L4;
		doff = tcp->doff * 4;
		if (doff < sizeof(*tcp) || doff > l4_len)
			return SLUICE_DROP_MALFORMED_L4;
		dport = tcp->dest;
	}

	__builtin_memcpy(key.addr, addr, 16);
	key.port = dport;
	key.proto = proto;
	if (bpf_map_lookup_elem(&listeners, &key))
		return SLUICE_REDIRECT_LISTENER;

	if (vip_flags & SLUICE_VIP_LOCAL_PORTS) {
		cfg = bpf_map_lookup_elem(&config, &zero);
		if (cfg && cfg->local_port_hi != 0) {
			__u16 port = bpf_ntohs(dport);

			if (port >= bpf_ntohs(cfg->local_port_lo) &&
			    port <= bpf_ntohs(cfg->local_port_hi))
				return SLUICE_REDIRECT_LOCAL_PORT;
		}
	}
	return SLUICE_PASS_VIP_UNBOUND;
}

/* ICMP or ICMPv6 to a VIP: echo requests are steered if the VIP asks for it. */
static __always_inline enum sluice_xdp_counter steer_icmp(struct cursor *c, __u32 vip_flags,
							  __u8 echo_type, __u32 l4_len)
{
	/* Type, code, checksum, identifier, sequence: 8 bytes in both. */
	__u8 *icmp = c->pos;

	if ((void *)(icmp + 8) > c->end || l4_len < 8)
		return SLUICE_DROP_MALFORMED_L4;
	if (icmp[0] == echo_type && icmp[1] == 0 && (vip_flags & SLUICE_VIP_ICMP_ECHO))
		return SLUICE_REDIRECT_ICMP_ECHO;
	return SLUICE_PASS_VIP_UNBOUND;
}

static __always_inline enum sluice_xdp_counter classify_ipv4(struct cursor *c)
{
	struct sluice_vip_value *vip;
	struct sluice_vip_key key;
	struct iphdr *ip;
	__u32 l4_len;

	if (parse_ipv4(c, &ip, &l4_len) < 0)
		return SLUICE_DROP_MALFORMED_IP;

	ipv4_mapped(key.addr, ip->daddr);
	vip = bpf_map_lookup_elem(&vips, &key);
	if (!vip)
		return SLUICE_PASS_NOT_VIP;

	if (ip->frag_off & bpf_htons(SLUICE_IP_MF | SLUICE_IP_OFFSET))
		return SLUICE_DROP_FRAGMENT;

	switch (ip->protocol) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		return steer_l4(c, key.addr, vip->flags, ip->protocol, l4_len);
	case IPPROTO_ICMP:
		return steer_icmp(c, vip->flags, ICMP_ECHO_REQUEST, l4_len);
	default:
		return SLUICE_PASS_VIP_UNBOUND;
	}
}

static __always_inline enum sluice_xdp_counter classify_ipv6(struct xdp_md *ctx, struct cursor *c,
							     struct l2_info *l2)
{
	struct sluice_vip_value *vip;
	struct sluice_vip_key key;
	struct ipv6hdr *ip6;
	__u32 remaining;
	__u8 nexthdr;
	int ext;

	if (parse_ipv6(c, &ip6, &remaining) < 0)
		return SLUICE_DROP_MALFORMED_IP;

	/* Neighbour discovery comes without extension headers (RFC 4861). */
	if (ip6->nexthdr == IPPROTO_ICMPV6) {
		__u8 *type = c->pos;

		if ((void *)(type + 1) <= c->end && remaining >= 1 && *type >= ND_FIRST_TYPE &&
		    *type <= ND_LAST_TYPE) {
			if (*type == SLUICE_ND_NS)
				return answer_ns(ctx, l2, ip6, c, remaining);
			return SLUICE_PASS_NEIGH_OTHER;
		}
	}

	__builtin_memcpy(key.addr, &ip6->daddr, 16);
	vip = bpf_map_lookup_elem(&vips, &key);
	if (!vip)
		return SLUICE_PASS_NOT_VIP;

	nexthdr = ip6->nexthdr;
	ext = ipv6_skip_ext(c, &nexthdr, &remaining);
	if (ext < 0)
		return SLUICE_DROP_MALFORMED_IP;
	if (ext == IPV6_EXT_FRAGMENT)
		return SLUICE_DROP_FRAGMENT;
	if (ext == IPV6_EXT_OTHER)
		return SLUICE_PASS_VIP_UNBOUND;

	switch (nexthdr) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		return steer_l4(c, key.addr, vip->flags, nexthdr, remaining);
	case IPPROTO_ICMPV6:
		return steer_icmp(c, vip->flags, ICMPV6_ECHO_REQ, remaining);
	default:
		return SLUICE_PASS_VIP_UNBOUND;
	}
}

static __always_inline enum sluice_xdp_counter classify(struct xdp_md *ctx)
{
	struct cursor c = {
		.pos = (void *)(long)ctx->data,
		.end = (void *)(long)ctx->data_end,
	};
	struct l2_info l2;

	if (parse_eth(&c, &l2) < 0)
		return SLUICE_DROP_MALFORMED_ETH;

	switch (l2.proto) {
	case ETH_P_ARP:
		return answer_arp(&c, &l2);
	case ETH_P_IP:
		return classify_ipv4(&c);
	case ETH_P_IPV6:
		return classify_ipv6(ctx, &c, &l2);
	default:
		return SLUICE_PASS_NON_IP;
	}
}

/* Redirect into the socket of the receiving queue, if there is one. */
static __always_inline int redirect_to_xsk(struct xdp_md *ctx, enum sluice_xdp_counter *verdict)
{
	__u32 queue = ctx->rx_queue_index;

	if (!bpf_map_lookup_elem(&xsks, &queue)) {
		*verdict = SLUICE_DROP_NO_SOCKET;
		return XDP_DROP;
	}
	/* The socket may close between lookup and redirect: then drop. */
	if (bpf_redirect_map(&xsks, queue, XDP_DROP) != XDP_REDIRECT) {
		*verdict = SLUICE_DROP_NO_SOCKET;
		return XDP_DROP;
	}
	return XDP_REDIRECT;
}

SEC("xdp")
int sluice_xdp(struct xdp_md *ctx)
{
	__u64 bytes = ctx->data_end - ctx->data;
	enum sluice_xdp_counter verdict = classify(ctx);
	int action;

	switch (verdict) {
	case SLUICE_REDIRECT_LISTENER:
	case SLUICE_REDIRECT_LOCAL_PORT:
	case SLUICE_REDIRECT_ICMP_ECHO:
		action = redirect_to_xsk(ctx, &verdict);
		break;
	case SLUICE_TX_ARP_REPLY:
	case SLUICE_TX_NEIGH_ADVERT:
		action = XDP_TX;
		break;
	case SLUICE_DROP_MALFORMED_ETH:
	case SLUICE_DROP_MALFORMED_ARP:
	case SLUICE_DROP_MALFORMED_IP:
	case SLUICE_DROP_MALFORMED_L4:
	case SLUICE_DROP_FRAGMENT:
	case SLUICE_DROP_NO_SOCKET:
		action = XDP_DROP;
		break;
	case SLUICE_ABORTED_INTERNAL:
		action = XDP_ABORTED;
		break;
	default:
		action = XDP_PASS;
		break;
	}

	count(verdict, bytes);
	return action;
}

/* Matches the SPDX line; no GPL-only helper is used. */
char LICENSE[] SEC("license") = "Apache-2.0";
