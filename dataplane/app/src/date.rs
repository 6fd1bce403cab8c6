//! The `Date` header value of one loop: set by the loop once a second,
//! copied by every response. Per loop (an `Rc<Cell>`), so no lock or atomic
//! is shared between loops on the per-request path.

use std::cell::Cell;
use std::rc::Rc;

/// IMF-fixdate is always 29 bytes.
pub const DATE_LEN: usize = 29;

/// One loop's `Date` value. Cloning shares it (within the loop).
#[derive(Clone, Default)]
pub struct LoopDate(Rc<Cell<Option<[u8; DATE_LEN]>>>);

impl std::fmt::Debug for LoopDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.get() {
            Some(v) => f
                .debug_tuple("LoopDate")
                .field(&String::from_utf8_lossy(&v))
                .finish(),
            None => f.write_str("LoopDate(unset)"),
        }
    }
}

impl LoopDate {
    /// Unset: responses carry no `Date` header until it is set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the value from seconds since the Unix epoch.
    pub fn set_unix_time(&self, secs: u64) {
        self.0.set(Some(format_http_date(secs)));
    }

    /// Sets a literal IMF-fixdate value (tests).
    pub fn set(&self, value: [u8; DATE_LEN]) {
        self.0.set(Some(value));
    }

    pub fn get(&self) -> Option<[u8; DATE_LEN]> {
        self.0.get()
    }
}

/// Formats seconds since the Unix epoch as an IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7).
pub fn format_http_date(secs: u64) -> [u8; DATE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86400;
    let rem = secs % 86400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil from days (Howard Hinnant's algorithm), days >= 0.
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = (yoe + era * 400 + i64::from(mo <= 2)) as u64;
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    let two = |o: &mut [u8; 29], at: usize, v: u64| {
        o[at] = b'0' + (v / 10 % 10) as u8;
        o[at + 1] = b'0' + (v % 10) as u8;
    };
    two(&mut out, 5, d as u64);
    out[8..11].copy_from_slice(MONTHS[(mo - 1) as usize]);
    let y = y % 10000;
    two(&mut out, 12, y / 100);
    two(&mut out, 14, y % 100);
    two(&mut out, 17, h);
    two(&mut out, 20, m);
    two(&mut out, 23, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_dates() {
        assert_eq!(&format_http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            &format_http_date(784_111_777),
            b"Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(
            &format_http_date(951_782_400),
            b"Tue, 29 Feb 2000 00:00:00 GMT"
        );
    }

    #[test]
    fn clones_share_the_value() {
        let d = LoopDate::new();
        let e = d.clone();
        assert_eq!(e.get(), None);
        d.set_unix_time(0);
        assert_eq!(&e.get().unwrap(), b"Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
