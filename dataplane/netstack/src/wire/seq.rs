//! TCP sequence numbers: 32-bit values compared with wraparound
//! (RFC 9293 §3.4, "serial number arithmetic", RFC 1982).
use core::cmp::Ordering;
use core::fmt;
use core::ops::{Add, AddAssign, Sub, SubAssign};

/// A TCP sequence (or acknowledgment) number.
///
/// `a < b` means `b` is ahead of `a` by less than 2³¹. The order is not
/// transitive across the whole ring, so `SeqNumber` implements `PartialOrd`
/// but not `Ord`; two numbers exactly 2³¹ apart compare as neither.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// Signed distance from `other` to `self` (`self - other`).
    #[inline]
    pub const fn distance(self, other: Self) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// True when `self` lies in `[start, end)` on the ring.
    #[inline]
    pub const fn in_window(self, start: Self, end: Self) -> bool {
        self.0.wrapping_sub(start.0) < end.0.wrapping_sub(start.0)
    }

    /// The later of two numbers.
    #[inline]
    pub fn max(self, other: Self) -> Self {
        if self.distance(other) > 0 {
            self
        } else {
            other
        }
    }

    /// The earlier of two numbers.
    #[inline]
    pub fn min(self, other: Self) -> Self {
        if self.distance(other) < 0 {
            self
        } else {
            other
        }
    }
}

impl PartialOrd for SeqNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.distance(*other) {
            0 => Some(Ordering::Equal),
            i32::MIN => None,
            d if d < 0 => Some(Ordering::Less),
            _ => Some(Ordering::Greater),
        }
    }
}

impl Add<u32> for SeqNumber {
    type Output = Self;
    #[inline]
    fn add(self, rhs: u32) -> Self {
        Self(self.0.wrapping_add(rhs))
    }
}

impl AddAssign<u32> for SeqNumber {
    #[inline]
    fn add_assign(&mut self, rhs: u32) {
        self.0 = self.0.wrapping_add(rhs);
    }
}

impl Sub<u32> for SeqNumber {
    type Output = Self;
    #[inline]
    fn sub(self, rhs: u32) -> Self {
        Self(self.0.wrapping_sub(rhs))
    }
}

impl SubAssign<u32> for SeqNumber {
    #[inline]
    fn sub_assign(&mut self, rhs: u32) {
        self.0 = self.0.wrapping_sub(rhs);
    }
}

/// `a - b` is the signed distance, as [`SeqNumber::distance`].
impl Sub for SeqNumber {
    type Output = i32;
    #[inline]
    fn sub(self, rhs: Self) -> i32 {
        self.distance(rhs)
    }
}

impl fmt::Debug for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SeqNumber({})", self.0)
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraparound_order() {
        let a = SeqNumber(u32::MAX - 10);
        let b = a + 20; // wrapped to 9
        assert_eq!(b.0, 9);
        assert!(a < b);
        assert!(b > a);
        assert_eq!(b - a, 20);
        assert_eq!(a - b, -20);
        assert_eq!(b - 20u32, a);
        assert_eq!(a.max(b), b);
        assert_eq!(a.min(b), a);
        let mut c = a;
        c += 11;
        assert_eq!(c, SeqNumber(0));
        c -= 1;
        assert_eq!(c, SeqNumber(u32::MAX));
        let half = a + 0x8000_0000;
        assert_eq!(a.partial_cmp(&half), None);
        assert_eq!(a.partial_cmp(&a), Some(Ordering::Equal));
    }

    #[test]
    fn windows() {
        let start = SeqNumber(u32::MAX - 1);
        let end = start + 4;
        assert!(start.in_window(start, end));
        assert!((start + 3).in_window(start, end));
        assert!(!end.in_window(start, end));
        assert!(!(start - 1).in_window(start, end));
        assert!(!start.in_window(start, start));
    }
}
