// SPDX-License-Identifier: Apache-2.0
/*
 * Chaos: a fault injector for any interface (the machines have no netem).
 *
 * sluice_chaos (XDP, ingress of the interface it is attached to), for each
 * IPv4/IPv6 packet that matches the filter (TCP only unless ALL_IP; optional
 * port, source or destination; optional address, source or destination),
 * in this order:
 *
 *   count SEEN
 *   drop_ppm ─────────────────────────────────────────────► XDP_DROP (DROPPED)
 *   TCP SYN-ACK, one of the first synack_drop ───────────► XDP_DROP (SYNACK_DROPPED)
 *   TCP SYN or SYN-ACK with an MSS option, MSS flag ─────► rewrite it (MSS_REWRITTEN)
 *   TCP without SYN/RST, rst_ppm ─────────────────────────► make it a RST (RST_FORGED)
 *   corrupt_ppm ──────────────────────────────────────────► flip a byte (CORRUPTED)
 *   ──────────────────────────────────────────────────────► XDP_PASS
 *
 * Checksums are fixed incrementally (RFC 1624) after the MSS and RST edits,
 * and deliberately not after corruption, so the receiver drops the packet.
 * They are only correct if the sender wrote a full checksum (a kernel sender
 * on veth with tx checksumming on leaves it partial and marks the skb so the
 * receiver does not check it: turn it off with `ethtool -K IF tx off`).
 *
 * sluice_chaos_tc (TCX egress) duplicates matching packets with
 * bpf_clone_redirect to the same interface. The copy carries CHAOS_DUP_MARK
 * in skb->mark so that its own pass through the hook lets it go unchanged.
 *
 * Non-IP frames (ARP), truncated headers and non-first IPv4 fragments (for
 * the L4 actions and the port filter) are passed untouched.
 */
#include "parsing.h"
#include "csum.h"

#include <linux/pkt_cls.h>

/* TCX: let the next program (or the stack) decide; linux/bpf.h >= 6.6 calls it TCX_NEXT. */
#define CHAOS_TCX_NEXT TC_ACT_UNSPEC
#define CHAOS_DUP_MARK 0x51c0c4a5
#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10
#define TCP_OPT_EOL 0
#define TCP_OPT_NOP 1
#define TCP_OPT_MSS 2
#define TCP_MAX_OPT_WALK 20 /* options walked before giving up (40 bytes of options) */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sluice_chaos_config);
} chaos_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sluice_chaos_state);
} chaos_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLUICE_CHAOS_COUNTER_MAX);
	__type(key, __u32);
	__type(value, struct sluice_counter);
} chaos_counters SEC(".maps");

/* Anchors the ABI enum in the object's BTF for the layout tests. */
const volatile enum sluice_chaos_counter sluice_chaos_counter_max = SLUICE_CHAOS_COUNTER_MAX;

static __always_inline void chaos_count(enum sluice_chaos_counter c, __u64 bytes)
{
	__u32 key = c;
	struct sluice_counter *v = bpf_map_lookup_elem(&chaos_counters, &key);

	if (v) {
		v->packets += 1;
		v->bytes += bytes;
	}
}

static __always_inline int chance(__u32 ppm)
{
	if (ppm == 0)
		return 0;
	if (ppm >= SLUICE_CHAOS_PPM_MAX)
		return 1;
	return bpf_get_prandom_u32() % SLUICE_CHAOS_PPM_MAX < ppm;
}

static __always_inline int addr16_eq(const void *a, const void *b)
{
	__u32 x[4], y[4];

	__builtin_memcpy(x, a, 16);
	__builtin_memcpy(y, b, 16);
	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3])) == 0;
}

/* What the filter and the actions need to know about a packet. */
struct chaos_pkt {
	void *l4;      /* start of the L4 header, NULL if there is none to act on */
	__u32 l4_len;  /* L4 length according to the IP header */
	__u8 proto;    /* IPPROTO_* of L4 */
	__u8 addr_hit; /* source or destination is cfg->addr */
};

/*
 * Parses Ethernet (up to two VLAN tags), IPv4 or IPv6 (extension headers)
 * and checks the filter. Returns 1 if the packet matches.
 */
static __always_inline int chaos_match(void *data, void *end, const struct sluice_chaos_config *cfg,
				       struct chaos_pkt *pkt)
{
	struct cursor c = { .pos = data, .end = end };
	struct l2_info l2;
	__u8 a[16];

	pkt->l4 = NULL;
	pkt->l4_len = 0;
	pkt->proto = 0;
	pkt->addr_hit = 0;

	if (parse_eth(&c, &l2) < 0)
		return 0;

	if (l2.proto == ETH_P_IP) {
		struct iphdr *ip;
		__u32 l4_len;

		if (parse_ipv4(&c, &ip, &l4_len) < 0)
			return 0;
		pkt->proto = ip->protocol;
		if (cfg->flags & SLUICE_CHAOS_ADDR) {
			ipv4_mapped(a, ip->saddr);
			if (addr16_eq(a, cfg->addr))
				pkt->addr_hit = 1;
			ipv4_mapped(a, ip->daddr);
			if (addr16_eq(a, cfg->addr))
				pkt->addr_hit = 1;
		}
		if (!(bpf_ntohs(ip->frag_off) & SLUICE_IP_OFFSET)) {
			pkt->l4 = c.pos;
			pkt->l4_len = l4_len;
		}
	} else if (l2.proto == ETH_P_IPV6) {
		struct ipv6hdr *ip6;
		__u32 remaining;
		__u8 nh;
		int r;

		if (parse_ipv6(&c, &ip6, &remaining) < 0)
			return 0;
		if (cfg->flags & SLUICE_CHAOS_ADDR)
			pkt->addr_hit = addr16_eq(&ip6->saddr, cfg->addr) ||
					addr16_eq(&ip6->daddr, cfg->addr);
		nh = ip6->nexthdr;
		r = ipv6_skip_ext(&c, &nh, &remaining);
		if (r < 0)
			return 0;
		pkt->proto = nh;
		if (r == IPV6_EXT_UPPER) {
			pkt->l4 = c.pos;
			pkt->l4_len = remaining;
		}
	} else {
		return 0;
	}

	if (!(cfg->flags & SLUICE_CHAOS_ALL_IP) && pkt->proto != IPPROTO_TCP)
		return 0;
	if ((cfg->flags & SLUICE_CHAOS_ADDR) && !pkt->addr_hit)
		return 0;
	if (pkt->proto == IPPROTO_TCP) {
		struct tcphdr *tcp = pkt->l4;

		if (!tcp || (void *)(tcp + 1) > end || pkt->l4_len < sizeof(*tcp) ||
		    tcp->doff < 5 || tcp->doff * 4 > pkt->l4_len)
			pkt->l4 = NULL; /* no TCP actions on a truncated header */
	} else if (pkt->proto == IPPROTO_UDP) {
		struct udphdr *udp = pkt->l4;

		if (!udp || (void *)(udp + 1) > end || pkt->l4_len < sizeof(*udp))
			pkt->l4 = NULL;
	}
	if (cfg->flags & SLUICE_CHAOS_PORT) {
		__be16 *ports = pkt->l4; /* source, destination: same place in TCP and UDP */

		if (!ports || (pkt->proto != IPPROTO_TCP && pkt->proto != IPPROTO_UDP))
			return 0;
		if ((void *)(ports + 2) > end)
			return 0;
		if (ports[0] != cfg->port && ports[1] != cfg->port)
			return 0;
	}
	return 1;
}

static __always_inline __u8 tcp_flags(struct tcphdr *tcp)
{
	return ((__u8 *)tcp)[13];
}

/*
 * Rewrites the MSS option of a SYN or SYN-ACK to `mss` (host order). Returns
 * 1 if there was one. The TCP checksum covers 16-bit words from the start of
 * the header: a value at an odd offset spans two words and counts byte-swapped.
 */
static __always_inline int rewrite_mss(struct tcphdr *tcp, void *end, __u16 mss)
{
	__u32 opt_len = tcp->doff * 4;
	__u32 off = sizeof(*tcp);
	__u16 old, new;
	__u8 *p;
	int i;

	for (i = 0; i < TCP_MAX_OPT_WALK; i++) {
		__u8 kind, len;

		off &= 0x3f;
		if (off + 1 > opt_len)
			return 0;
		p = (__u8 *)tcp + off;
		if ((void *)(p + 1) > end)
			return 0;
		kind = p[0];
		if (kind == TCP_OPT_EOL)
			return 0;
		if (kind == TCP_OPT_NOP) {
			off += 1;
			continue;
		}
		if (off + 2 > opt_len || (void *)(p + 2) > end)
			return 0;
		len = p[1];
		if (len < 2 || off + len > opt_len)
			return 0;
		if (kind == TCP_OPT_MSS && len == 4) {
			if ((void *)(p + 4) > end)
				return 0;
			__builtin_memcpy(&old, p + 2, 2);
			new = bpf_htons(mss);
			__builtin_memcpy(p + 2, &new, 2);
			if (off & 1) {
				old = __builtin_bswap16(old);
				new = __builtin_bswap16(new);
			}
			tcp->check = csum_replace16(tcp->check, old, new);
			return 1;
		}
		off += len;
	}
	return 0;
}

/* Turns a TCP segment into a RST (keeping ACK and the payload). */
static __always_inline void forge_rst(struct tcphdr *tcp, __u32 seq_offset)
{
	__u16 *word = (__u16 *)((__u8 *)tcp + 12); /* data offset, flags */
	__u16 old = *word, new;
	__u8 *flags = (__u8 *)tcp + 13;

	*flags = TCP_FLAG_RST | (*flags & TCP_FLAG_ACK);
	new = *word;
	tcp->check = csum_replace16(tcp->check, old, new);

	if (seq_offset) {
		__u16 *w = (__u16 *)&tcp->seq;
		__u16 o0 = w[0], o1 = w[1];

		tcp->seq = bpf_htonl(bpf_ntohl(tcp->seq) + seq_offset);
		tcp->check = csum_replace16(tcp->check, o0, w[0]);
		tcp->check = csum_replace16(tcp->check, o1, w[1]);
	}
}

/*
 * Flips the last byte of the L4 segment (segments up to 8 KiB); its checksum
 * is left as it was.
 */
static __always_inline int corrupt(struct chaos_pkt *pkt, void *end)
{
	__u32 off;
	__u8 *b;

	/* Bounded well below the verifier's limit on packet offsets (0xffff). */
	if (!pkt->l4 || pkt->l4_len == 0 || pkt->l4_len > 0x2000)
		return 0;
	off = (pkt->l4_len - 1) & 0x1fff;
	b = (__u8 *)pkt->l4 + off;
	if ((void *)(b + 1) > end)
		return 0;
	*b ^= 0xff;
	return 1;
}

SEC("xdp")
int sluice_chaos(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 bytes = end - data;
	struct sluice_chaos_config *cfg;
	struct chaos_pkt pkt;
	struct tcphdr *tcp = NULL;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&chaos_config, &zero);
	if (!cfg)
		return XDP_PASS;
	if (!chaos_match(data, end, cfg, &pkt))
		return XDP_PASS;
	chaos_count(SLUICE_CHAOS_SEEN, bytes);

	if (chance(cfg->drop_ppm)) {
		chaos_count(SLUICE_CHAOS_DROPPED, bytes);
		return XDP_DROP;
	}

	if (pkt.proto == IPPROTO_TCP && pkt.l4) {
		tcp = pkt.l4;
		if ((void *)(tcp + 1) > end)
			return XDP_PASS;
	}
	if (tcp) {
		__u8 flags = tcp_flags(tcp);

		if ((flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == (TCP_FLAG_SYN | TCP_FLAG_ACK) &&
		    cfg->synack_drop) {
			struct sluice_chaos_state *st = bpf_map_lookup_elem(&chaos_state, &zero);

			if (st) {
				__u64 seen = __sync_fetch_and_add(&st->synacks, 1);

				if (cfg->synack_drop == SLUICE_CHAOS_SYNACK_ALL ||
				    seen < cfg->synack_drop) {
					chaos_count(SLUICE_CHAOS_SYNACK_DROPPED, bytes);
					return XDP_DROP;
				}
			}
		}
		if ((flags & TCP_FLAG_SYN) && (cfg->flags & SLUICE_CHAOS_MSS) &&
		    rewrite_mss(tcp, end, cfg->mss))
			chaos_count(SLUICE_CHAOS_MSS_REWRITTEN, bytes);
		if (!(flags & (TCP_FLAG_SYN | TCP_FLAG_RST)) && chance(cfg->rst_ppm)) {
			forge_rst(tcp, cfg->rst_seq_offset);
			chaos_count(SLUICE_CHAOS_RST_FORGED, bytes);
		}
	}

	if (chance(cfg->corrupt_ppm) && corrupt(&pkt, end))
		chaos_count(SLUICE_CHAOS_CORRUPTED, bytes);
	return XDP_PASS;
}

SEC("tcx/egress")
int sluice_chaos_tc(struct __sk_buff *skb)
{
	struct sluice_chaos_config *cfg;
	struct chaos_pkt pkt;
	__u32 zero = 0, mark, pull;
	void *data, *end;

	if (skb->mark == CHAOS_DUP_MARK) {
		skb->mark = 0; /* our own copy, on its way out */
		return CHAOS_TCX_NEXT;
	}
	cfg = bpf_map_lookup_elem(&chaos_config, &zero);
	if (!cfg || cfg->dup_ppm == 0)
		return CHAOS_TCX_NEXT;

	/* Headers into the linear part, so direct packet access sees them. */
	pull = skb->len < 128 ? skb->len : 128;
	bpf_skb_pull_data(skb, pull);
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	if (!chaos_match(data, end, cfg, &pkt))
		return CHAOS_TCX_NEXT;
	chaos_count(SLUICE_CHAOS_EGRESS_SEEN, skb->len);

	if (chance(cfg->dup_ppm)) {
		mark = skb->mark;
		skb->mark = CHAOS_DUP_MARK;
		if (bpf_clone_redirect(skb, skb->ifindex, 0) == 0)
			chaos_count(SLUICE_CHAOS_DUPLICATED, skb->len);
		skb->mark = mark;
	}
	return CHAOS_TCX_NEXT;
}

char LICENSE[] SEC("license") = "Apache-2.0";
