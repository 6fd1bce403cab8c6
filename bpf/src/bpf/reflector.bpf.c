// SPDX-License-Identifier: Apache-2.0
/*
 * UDP reflector: the in-kernel ceiling for sluice's benchmarks. UDP to the
 * configured (addr, port) is sent back to where it came from with XDP_TX:
 * MACs, addresses and ports swapped (which leaves every checksum as it was),
 * TTL / hop limit reset to 64 (IPv4 header checksum updated incrementally).
 * Everything else goes to the kernel. IPv4 fragments and IPv6 extension
 * headers are not reflected.
 */
#include "parsing.h"
#include "csum.h"

#define REFLECTOR_TTL 64

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sluice_reflector_config);
} reflector_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLUICE_REFLECTOR_COUNTER_MAX);
	__type(key, __u32);
	__type(value, struct sluice_counter);
} reflector_counters SEC(".maps");

/* Anchors the ABI enum in the object's BTF for the layout tests. */
const volatile enum sluice_reflector_counter sluice_reflector_counter_max =
	SLUICE_REFLECTOR_COUNTER_MAX;

static __always_inline void reflector_count(enum sluice_reflector_counter c, __u64 bytes)
{
	__u32 key = c;
	struct sluice_counter *v = bpf_map_lookup_elem(&reflector_counters, &key);

	if (v) {
		v->packets += 1;
		v->bytes += bytes;
	}
}

/* 16-byte address comparison; BPF has no memcmp. */
static __always_inline int addr16_eq(const void *a, const void *b)
{
	__u32 x[4], y[4];

	__builtin_memcpy(x, a, 16);
	__builtin_memcpy(y, b, 16);
	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3])) == 0;
}

static __always_inline void swap_bytes(__u8 *a, __u8 *b, __u32 len)
{
	__u8 tmp[16];

	__builtin_memcpy(tmp, a, len);
	__builtin_memcpy(a, b, len);
	__builtin_memcpy(b, tmp, len);
}

/* Swap the UDP ports at the cursor if they are to `port`. Returns 1 if so. */
static __always_inline int reflect_udp(struct cursor *c, __be16 port, __u32 l4_len)
{
	struct udphdr *udp = c->pos;
	__be16 tmp;

	if ((void *)(udp + 1) > c->end || l4_len < sizeof(*udp))
		return 0;
	if (udp->dest != port)
		return 0;
	tmp = udp->source;
	udp->source = udp->dest;
	udp->dest = tmp;
	return 1;
}

static __always_inline int reflect_ipv4(struct cursor *c, const struct sluice_reflector_config *cfg)
{
	__u8 addr[16];
	struct iphdr *ip;
	__u32 l4_len;
	__u16 old, new;

	if (parse_ipv4(c, &ip, &l4_len) < 0)
		return 0;
	if (ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(SLUICE_IP_MF | SLUICE_IP_OFFSET)))
		return 0;
	ipv4_mapped(addr, ip->daddr);
	if (!addr16_eq(addr, cfg->addr))
		return 0;
	if (!reflect_udp(c, cfg->port, l4_len))
		return 0;

	swap_bytes((__u8 *)&ip->saddr, (__u8 *)&ip->daddr, 4);
	/* TTL and protocol share one 16-bit word of the header checksum. */
	old = *(__u16 *)&ip->ttl;
	ip->ttl = REFLECTOR_TTL;
	new = *(__u16 *)&ip->ttl;
	ip->check = csum_replace16(ip->check, old, new);
	return 1;
}

static __always_inline int reflect_ipv6(struct cursor *c, const struct sluice_reflector_config *cfg)
{
	struct ipv6hdr *ip6;
	__u32 plen;

	if (parse_ipv6(c, &ip6, &plen) < 0)
		return 0;
	if (ip6->nexthdr != IPPROTO_UDP)
		return 0;
	if (!addr16_eq(&ip6->daddr, cfg->addr))
		return 0;
	if (!reflect_udp(c, cfg->port, plen))
		return 0;

	swap_bytes((__u8 *)&ip6->saddr, (__u8 *)&ip6->daddr, 16);
	ip6->hop_limit = REFLECTOR_TTL;
	return 1;
}

SEC("xdp")
int sluice_reflect(struct xdp_md *ctx)
{
	struct cursor c = {
		.pos = (void *)(long)ctx->data,
		.end = (void *)(long)ctx->data_end,
	};
	__u64 bytes = ctx->data_end - ctx->data;
	struct sluice_reflector_config *cfg;
	struct l2_info l2;
	__u32 zero = 0;
	int reflected = 0;

	cfg = bpf_map_lookup_elem(&reflector_config, &zero);
	if (cfg && cfg->port != 0 && parse_eth(&c, &l2) == 0) {
		if (l2.proto == ETH_P_IP)
			reflected = reflect_ipv4(&c, cfg);
		else if (l2.proto == ETH_P_IPV6)
			reflected = reflect_ipv6(&c, cfg);
	}

	if (!reflected) {
		reflector_count(SLUICE_REFLECTOR_PASSED, bytes);
		return XDP_PASS;
	}
	swap_bytes(l2.eth->h_dest, l2.eth->h_source, ETH_ALEN);
	reflector_count(SLUICE_REFLECTOR_REFLECTED, bytes);
	return XDP_TX;
}

/* Matches the SPDX line; no GPL-only helper is used. */
char LICENSE[] SEC("license") = "Apache-2.0";
