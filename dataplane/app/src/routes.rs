//! The built-in direct-response routes, the same over every HTTP version
//! (docs/http.md): `GET|HEAD /bytes/N`, `POST /echo`, `GET|HEAD /health`.
//! The versions differ in framing only; what a path means lives here once.

/// `PATTERN[i] == i % 251`: `/bytes/N` bodies are slices of it. 251 is
/// prime, so no power-of-two buffer boundary lines up with the pattern and
/// a misplaced byte shows.
pub const PATTERN_LEN: usize = 251 * 261;
pub static PATTERN: [u8; PATTERN_LEN] = {
    let mut p = [0u8; PATTERN_LEN];
    let mut i = 0;
    while i < PATTERN_LEN {
        p[i] = (i % 251) as u8;
        i += 1;
    }
    p
};

/// The byte at offset `i` of a `/bytes/N` body.
pub fn bytes_pattern(i: u64) -> u8 {
    (i % 251) as u8
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/bytes/N`, N within the limit.
    Bytes(u64),
    /// `/bytes/...` with N not a number or over the limit: 400.
    BadBytes,
    Echo,
    Health,
    NotFound,
}

/// The route of a request path (origin form, query already removed).
pub fn route(path: &[u8], max_bytes: u64) -> Route {
    match path {
        b"/health" => Route::Health,
        b"/echo" => Route::Echo,
        _ => match path.strip_prefix(b"/bytes/") {
            Some(n) => match parse_decimal(n) {
                Some(n) if n <= max_bytes => Route::Bytes(n),
                _ => Route::BadBytes,
            },
            None => Route::NotFound,
        },
    }
}

/// `1*DIGIT` as a u64; None if empty, not digits, or overflowing.
pub fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |v, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        v.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(route(b"/health", 10), Route::Health);
        assert_eq!(route(b"/echo", 10), Route::Echo);
        assert_eq!(route(b"/bytes/007", 10), Route::Bytes(7));
        assert_eq!(route(b"/bytes/11", 10), Route::BadBytes);
        assert_eq!(route(b"/bytes/+1", 10), Route::BadBytes);
        assert_eq!(route(b"/bytes/", 10), Route::BadBytes);
        assert_eq!(route(b"/bytes", 10), Route::NotFound);
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
    }

    #[test]
    fn pattern_is_i_mod_251() {
        assert!(PATTERN
            .iter()
            .enumerate()
            .all(|(i, &b)| b == bytes_pattern(i as u64)));
    }
}
