//! The `Date` header value, handed in by the caller (no clock is read here).

use std::sync::{Arc, Mutex};

const DATE_MAX: usize = 64;

#[derive(Clone, Copy)]
struct DateValue {
    buf: [u8; DATE_MAX],
    len: u8,
}

/// A `Date` header value shared by the connections of one loop: the loop
/// sets it once a second, each response copies it. Cloning shares it.
#[derive(Clone)]
pub struct SharedDate(Arc<Mutex<DateValue>>);

impl std::fmt::Debug for SharedDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.get();
        f.debug_tuple("SharedDate")
            .field(&String::from_utf8_lossy(&v.buf[..v.len as usize]))
            .finish()
    }
}

impl Default for SharedDate {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedDate {
    /// An empty date: responses carry no `Date` header until it is set.
    pub fn new() -> Self {
        SharedDate(Arc::new(Mutex::new(DateValue {
            buf: [0; DATE_MAX],
            len: 0,
        })))
    }

    /// Sets the value (at most 64 bytes of visible ASCII and spaces; any
    /// other value is refused and the old one kept). Returns whether it was
    /// taken.
    pub fn set(&self, value: &[u8]) -> bool {
        if value.len() > DATE_MAX || !value.iter().all(|&b| (0x20..0x7f).contains(&b)) {
            return false;
        }
        let mut v = DateValue {
            buf: [0; DATE_MAX],
            len: value.len() as u8,
        };
        v.buf[..value.len()].copy_from_slice(value);
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = v;
        true
    }

    /// Sets the value from seconds since the Unix epoch (IMF-fixdate).
    pub fn set_unix_time(&self, secs: u64) {
        self.set(&format_http_date(secs));
    }

    fn get(&self) -> DateValue {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `Date: VALUE\r\n` if a value is set.
    pub(crate) fn write_header(&self, out: &mut Vec<u8>) {
        let v = self.get();
        if v.len > 0 {
            out.extend_from_slice(b"Date: ");
            out.extend_from_slice(&v.buf[..v.len as usize]);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Formats seconds since the Unix epoch as an IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7).
pub fn format_http_date(secs: u64) -> [u8; 29] {
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
        assert_eq!(
            &format_http_date(1_796_340_330),
            b"Thu, 03 Dec 2026 23:25:30 GMT"
        );
    }

    #[test]
    fn refuses_header_injection() {
        let d = SharedDate::new();
        assert!(d.set(b"x"));
        assert!(!d.set(b"x\r\nSet-Cookie: a"));
        let mut out = Vec::new();
        d.write_header(&mut out);
        assert_eq!(out, b"Date: x\r\n");
    }
}
