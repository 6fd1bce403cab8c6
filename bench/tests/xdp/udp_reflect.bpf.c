/* Test-only XDP program (bench/tests/xdp_tx.rs, scripts/veth-xdp-facts.sh):
 * reflects UDP datagrams sent to port 7777 back to their sender with XDP_TX,
 * swapping MACs, IP addresses and ports. The checksums stay valid because a
 * swap does not change any ones'-complement sum, provided the sender wrote a
 * complete checksum (TX checksum offload off). Everything else passes.
 * No system headers, so it builds with a bare `clang -target bpf`. */
#define SEC(name) __attribute__((section(name), used))
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "written for little-endian BPF (bpfel)"
#endif

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;

struct xdp_md {
	u32 data;
	u32 data_end;
	u32 data_meta;
	u32 ingress_ifindex;
	u32 rx_queue_index;
	u32 egress_ifindex;
};

#define XDP_PASS 2
#define XDP_TX 3
#define BE16(x) ((u16)__builtin_bswap16(x))
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86dd
#define IPPROTO_UDP 17
#define ECHO_PORT 7777

struct eth { u8 dst[6]; u8 src[6]; u16 proto; };
struct ip4 { u8 vihl; u8 tos; u16 len; u16 id; u16 frag; u8 ttl; u8 proto; u16 csum; u32 saddr; u32 daddr; };
struct ip6 { u32 vtcfl; u16 plen; u8 nexthdr; u8 hlim; u8 saddr[16]; u8 daddr[16]; };
struct udp { u16 sport; u16 dport; u16 len; u16 csum; };

static __attribute__((always_inline)) int swap_udp(struct udp *u, void *end)
{
	if ((void *)(u + 1) > end || u->dport != BE16(ECHO_PORT))
		return 0;
	u16 p = u->sport;
	u->sport = u->dport;
	u->dport = p;
	return 1;
}

SEC("xdp") int xdp_udp_reflect(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct eth *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (eth->proto == BE16(ETH_P_IP)) {
		struct ip4 *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || ip->vihl != 0x45 || ip->proto != IPPROTO_UDP)
			return XDP_PASS;
		if (!swap_udp((void *)(ip + 1), end))
			return XDP_PASS;
		u32 a = ip->saddr;
		ip->saddr = ip->daddr;
		ip->daddr = a;
	} else if (eth->proto == BE16(ETH_P_IPV6)) {
		struct ip6 *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_UDP)
			return XDP_PASS;
		if (!swap_udp((void *)(ip6 + 1), end))
			return XDP_PASS;
		u8 a[16];
		__builtin_memcpy(a, ip6->saddr, 16);
		__builtin_memcpy(ip6->saddr, ip6->daddr, 16);
		__builtin_memcpy(ip6->daddr, a, 16);
	} else {
		return XDP_PASS;
	}
	u8 mac[6];
	__builtin_memcpy(mac, eth->src, 6);
	__builtin_memcpy(eth->src, eth->dst, 6);
	__builtin_memcpy(eth->dst, mac, 6);
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
