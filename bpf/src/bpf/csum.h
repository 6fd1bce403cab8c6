/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internet checksum helpers (RFC 1071, RFC 1624).
 *
 * Sums are kept as 32-bit one's complement partial sums of 16-bit words read
 * in memory order; folding and complementing gives a value that is stored in
 * memory order again, so no byte swapping is needed anywhere.
 */
#ifndef SLUICE_CSUM_H
#define SLUICE_CSUM_H

#include <linux/types.h>

static __always_inline __u32 csum_add32(__u32 sum, __u32 add)
{
	sum += add;
	return sum + (sum < add);
}

/* Fold a 32-bit partial sum to 16 bits and complement it. */
static __always_inline __u16 csum_fold32(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/*
 * RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for one 16-bit word `old` of the
 * covered data replaced by `new`. All three in memory order.
 */
static __always_inline __u16 csum_replace16(__u16 check, __u16 old, __u16 new)
{
	__u32 sum = (__u16)~check;

	sum += (__u16)~old;
	sum += new;
	return csum_fold32(sum);
}

#endif /* SLUICE_CSUM_H */
