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
 *   │  ├ TCP SYN (no ACK/RST/FIN) to a listener while
 *   │  │   health[FLAGS] has ALL_EJECTED ─ RST|ACK back ──► TX_RST_NO_BACKEND
 *   │  ├ TCP/UDP listener ───────────────────────────────► REDIRECT_LISTENER
 *   │  ├ TCP/UDP in local port range (LOCAL_PORTS) ──────► REDIRECT_LOCAL_PORT
 *   │  ├ echo request (ICMP_ECHO) ───────────────────────► REDIRECT_ICMP_ECHO
 *   │  └ anything else ──────────────────────────────────► PASS_VIP_UNBOUND
 *   └ other ethertype ───────────────────────────────────► PASS_NON_IP
 *
 *   REDIRECT_* with no socket in xsks[rx_queue_index] ───► DROP_NO_SOCKET
 *   a helper failed (adjust_tail, csum_diff) ────────────► ABORTED_INTERNAL
 */
#include "parsing.h"
#include "csum.h"
#include "gateway_maps.h"
#include "neigh.h"

/*
 * Anchor the ABI enums in the object's BTF (types only reachable through
 * inlined code are not emitted), so userspace tests can check their mirrors.
 */
const volatile enum sluice_xdp_counter sluice_xdp_counter_max = SLUICE_XDP_COUNTER_MAX;
const volatile enum sluice_health_layout sluice_health_words = SLUICE_HEALTH_WORDS;
const volatile enum sluice_health_flag sluice_health_all_ejected = SLUICE_HEALTH_ALL_EJECTED;

#define ICMP_ECHO_REQUEST 8
#define ICMPV6_ECHO_REQ 128
#define ND_FIRST_TYPE 133 /* router solicitation */
#define ND_LAST_TYPE 137  /* redirect */

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10
#define RST_TTL 64 /* TTL / hop limit of the refusals */

/*
 * TCP or UDP to a VIP: listener, then local port range, else unbound.
 * `l4_len` is the L4 length according to the IP header. Returns
 * SLUICE_TX_RST_NO_BACKEND for a SYN the caller must refuse (refuse_syn4/6);
 * the cursor is left at the L4 header.
 */
static __always_inline enum sluice_xdp_counter steer_l4(struct cursor *c, const __u8 addr[16],
							__u32 vip_flags, __u8 proto, __u32 l4_len)
{
	struct sluice_listener_key key = {};
	__u32 zero = 0;
	struct sluice_config *cfg;
	int syn_only = 0;
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
		__u8 flags;

		if ((void *)(tcp + 1) > c->end || l4_len < sizeof(*tcp))
			return SLUICE_DROP_MALFORMED_L4;
		doff = tcp->doff * 4;
		if (doff < sizeof(*tcp) || doff > l4_len)
			return SLUICE_DROP_MALFORMED_L4;
		dport = tcp->dest;
		flags = ((__u8 *)tcp)[13];
		syn_only = (flags & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST | TCP_FLAG_FIN)) ==
			   TCP_FLAG_SYN;
	}

	__builtin_memcpy(key.addr, addr, 16);
	key.port = dport;
	key.proto = proto;
	if (bpf_map_lookup_elem(&listeners, &key)) {
		/* A new connection with nowhere to go: refused here, not in user space. */
		if (syn_only && (health_flags() & SLUICE_HEALTH_ALL_EJECTED))
			return SLUICE_TX_RST_NO_BACKEND;
		return SLUICE_REDIRECT_LISTENER;
	}

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

/*
 * Refusing a SYN while no backend is eligible: the SYN is turned, in place,
 * into the RST|ACK a closed port answers with (RFC 9293 3.10.7.1, LISTEN
 * state, segment without ACK): SEQ=0, ACK=SEG.SEQ+SEG.LEN (the SYN counts
 * one, plus any data it carried), window 0, no options, no payload. MACs,
 * addresses and ports are swapped, VLAN tags stay; the IP header is rebuilt
 * without options or extension headers (IPv4: DF, id 0, TTL 64; IPv6: no
 * class or flow label, hop limit 64) and both checksums are computed anew.
 * The frame shrinks to exactly the reply (it never grows: the SYN carried at
 * least these headers).
 */

/* Pseudo-header and TCP header of an IPv4 RST, summed in one go. */
struct rst4_csum_buf {
	__be32 saddr;
	__be32 daddr;
	__u8 zero;
	__u8 proto;
	__be16 len;
	struct tcphdr tcp;
};

/* Pseudo-header (RFC 8200 8.1) and TCP header of an IPv6 RST. */
struct rst6_csum_buf {
	__u8 saddr[16];
	__u8 daddr[16];
	__be32 len;
	__be32 nexthdr;
	struct tcphdr tcp;
};

/* The RST|ACK's TCP header (checksum 0) for `syn`, whose segment is `l4_len` bytes. */
static __always_inline void rst_tcp(struct tcphdr *out, const struct tcphdr *syn, __u32 l4_len)
{
	__u32 doff = syn->doff * 4;
	__u32 data = l4_len > doff ? l4_len - doff : 0;

	__builtin_memset(out, 0, sizeof(*out));
	out->source = syn->dest;
	out->dest = syn->source;
	out->ack_seq = bpf_htonl(bpf_ntohl(syn->seq) + 1 + data);
	((__u8 *)out)[12] = (sizeof(*out) / 4) << 4; /* data offset 5, no options */
	((__u8 *)out)[13] = TCP_FLAG_RST | TCP_FLAG_ACK;
}

static __always_inline void swap_macs(struct ethhdr *eth)
{
	__u8 tmp[ETH_ALEN];

	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
}

/*
 * Swaps the MACs and cuts the frame to `l3_off + l3_len + 20` bytes. Every
 * packet pointer is stale afterwards. Returns 0, or -1 if adjust_tail failed.
 */
static __always_inline int rst_reshape(struct xdp_md *ctx, struct l2_info *l2, __u32 l3_len)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	int delta = (int)(l2->l3_off + l3_len + sizeof(struct tcphdr)) - (int)(end - data);

	swap_macs(l2->eth);
	if (delta != 0 && bpf_xdp_adjust_tail(ctx, delta) < 0)
		return -1;
	return 0;
}

static __always_inline enum sluice_xdp_counter refuse_syn4(struct xdp_md *ctx, struct l2_info *l2,
							   struct iphdr *ip, struct cursor *c,
							   __u32 l4_len)
{
	struct tcphdr *tcp = c->pos;
	struct rst4_csum_buf b;
	struct iphdr h;
	__u32 l3_off = l2->l3_off;
	void *data, *end;
	__s64 sum;

	if ((void *)(tcp + 1) > c->end)
		return SLUICE_DROP_MALFORMED_L4;

	b.saddr = ip->daddr;
	b.daddr = ip->saddr;
	b.zero = 0;
	b.proto = IPPROTO_TCP;
	b.len = bpf_htons(sizeof(struct tcphdr));
	rst_tcp(&b.tcp, tcp, l4_len);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&b, sizeof(b), 0);
	if (sum < 0)
		return SLUICE_ABORTED_INTERNAL;
	b.tcp.check = csum_fold32((__u32)sum);

	__builtin_memset(&h, 0, sizeof(h));
	*(__u8 *)&h = 0x45; /* version 4, IHL 5 */
	h.tot_len = bpf_htons(sizeof(h) + sizeof(struct tcphdr));
	h.frag_off = bpf_htons(0x4000); /* DF */
	h.ttl = RST_TTL;
	h.protocol = IPPROTO_TCP;
	h.saddr = b.saddr;
	h.daddr = b.daddr;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&h, sizeof(h), 0);
	if (sum < 0)
		return SLUICE_ABORTED_INTERNAL;
	h.check = csum_fold32((__u32)sum);

	if (rst_reshape(ctx, l2, sizeof(h)) < 0)
		return SLUICE_ABORTED_INTERNAL;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (l3_off > sizeof(struct ethhdr) + SLUICE_MAX_VLAN_TAGS * sizeof(struct vlan_hdr))
		return SLUICE_ABORTED_INTERNAL;
	{
		void *out = data + l3_off;

		if (out + sizeof(h) + sizeof(b.tcp) > end)
			return SLUICE_ABORTED_INTERNAL;
		__builtin_memcpy(out, &h, sizeof(h));
		__builtin_memcpy(out + sizeof(h), &b.tcp, sizeof(b.tcp));
	}
	return SLUICE_TX_RST_NO_BACKEND;
}

static __always_inline enum sluice_xdp_counter refuse_syn6(struct xdp_md *ctx, struct l2_info *l2,
							   struct ipv6hdr *ip6, struct cursor *c,
							   __u32 l4_len)
{
	struct tcphdr *tcp = c->pos;
	struct rst6_csum_buf b;
	struct ipv6hdr h;
	__u32 l3_off = l2->l3_off;
	void *data, *end;
	__s64 sum;

	if ((void *)(tcp + 1) > c->end)
		return SLUICE_DROP_MALFORMED_L4;

	__builtin_memcpy(b.saddr, &ip6->daddr, 16);
	__builtin_memcpy(b.daddr, &ip6->saddr, 16);
	b.len = bpf_htonl(sizeof(struct tcphdr));
	b.nexthdr = bpf_htonl(IPPROTO_TCP);
	rst_tcp(&b.tcp, tcp, l4_len);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&b, sizeof(b), 0);
	if (sum < 0)
		return SLUICE_ABORTED_INTERNAL;
	b.tcp.check = csum_fold32((__u32)sum);

	*(__be32 *)&h = bpf_htonl(0x60000000); /* version 6, no class, no flow label */
	h.payload_len = bpf_htons(sizeof(struct tcphdr));
	h.nexthdr = IPPROTO_TCP;
	h.hop_limit = RST_TTL;
	__builtin_memcpy(&h.saddr, b.saddr, 16);
	__builtin_memcpy(&h.daddr, b.daddr, 16);

	if (rst_reshape(ctx, l2, sizeof(h)) < 0)
		return SLUICE_ABORTED_INTERNAL;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (l3_off > sizeof(struct ethhdr) + SLUICE_MAX_VLAN_TAGS * sizeof(struct vlan_hdr))
		return SLUICE_ABORTED_INTERNAL;
	{
		void *out = data + l3_off;

		if (out + sizeof(h) + sizeof(b.tcp) > end)
			return SLUICE_ABORTED_INTERNAL;
		__builtin_memcpy(out, &h, sizeof(h));
		__builtin_memcpy(out + sizeof(h), &b.tcp, sizeof(b.tcp));
	}
	return SLUICE_TX_RST_NO_BACKEND;
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

static __always_inline enum sluice_xdp_counter classify_ipv4(struct xdp_md *ctx, struct cursor *c,
							     struct l2_info *l2)
{
	enum sluice_xdp_counter verdict;
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
		verdict = steer_l4(c, key.addr, vip->flags, ip->protocol, l4_len);
		if (verdict == SLUICE_TX_RST_NO_BACKEND)
			return refuse_syn4(ctx, l2, ip, c, l4_len);
		return verdict;
	case IPPROTO_ICMP:
		return steer_icmp(c, vip->flags, ICMP_ECHO_REQUEST, l4_len);
	default:
		return SLUICE_PASS_VIP_UNBOUND;
	}
}

static __always_inline enum sluice_xdp_counter classify_ipv6(struct xdp_md *ctx, struct cursor *c,
							     struct l2_info *l2)
{
	enum sluice_xdp_counter verdict;
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
		verdict = steer_l4(c, key.addr, vip->flags, nexthdr, remaining);
		if (verdict == SLUICE_TX_RST_NO_BACKEND)
			return refuse_syn6(ctx, l2, ip6, c, remaining);
		return verdict;
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
		return classify_ipv4(ctx, &c, &l2);
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
	case SLUICE_TX_RST_NO_BACKEND:
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
