//! Between HPACK fields (sluice-h2codec) and `http`'s header types.
//!
//! A name the decoder found in the static table maps to `http`'s
//! predefined constant without parsing it: most response fields of a
//! backend (`server`, `date`, `content-type`, `content-length`) come that
//! way.

use http::header::{self, HeaderName, HeaderValue};
use sluice_h2codec::hpack::Field;

/// The header name of a decoded field, if it is valid in HTTP/2 (lowercase
/// tokens only: RFC 9113 §8.2.1 makes an uppercase name malformed).
pub(crate) fn name_of(f: &Field<'_>) -> Option<HeaderName> {
    if let Some(n) = f.static_name.and_then(static_name) {
        return Some(n);
    }
    HeaderName::from_lowercase(f.name).ok()
}

/// The header value of a decoded field; a sensitive one stays sensitive,
/// so it is forwarded never-indexed as RFC 7541 §6.2.3 asks.
pub(crate) fn value_of(f: &Field<'_>) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_bytes(f.value).ok()?;
    if f.never_index {
        v.set_sensitive(true);
    }
    Some(v)
}

/// Fields HTTP/2 forbids (RFC 9113 §8.2.2): the connection-specific ones,
/// and `te` with any value but `trailers`. A message carrying one is
/// malformed, and we never send one.
pub(crate) fn forbidden(name: &[u8], value: &[u8]) -> bool {
    matches!(
        name,
        b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade"
    ) || (name == b"te" && value != b"trailers")
}

/// `http`'s constant for a static-table name (RFC 7541 Appendix A);
/// pseudo-header names (1..=14) have none.
fn static_name(index: u8) -> Option<HeaderName> {
    Some(match index {
        15 => header::ACCEPT_CHARSET,
        16 => header::ACCEPT_ENCODING,
        17 => header::ACCEPT_LANGUAGE,
        18 => header::ACCEPT_RANGES,
        19 => header::ACCEPT,
        20 => header::ACCESS_CONTROL_ALLOW_ORIGIN,
        21 => header::AGE,
        22 => header::ALLOW,
        23 => header::AUTHORIZATION,
        24 => header::CACHE_CONTROL,
        25 => header::CONTENT_DISPOSITION,
        26 => header::CONTENT_ENCODING,
        27 => header::CONTENT_LANGUAGE,
        28 => header::CONTENT_LENGTH,
        29 => header::CONTENT_LOCATION,
        30 => header::CONTENT_RANGE,
        31 => header::CONTENT_TYPE,
        32 => header::COOKIE,
        33 => header::DATE,
        34 => header::ETAG,
        35 => header::EXPECT,
        36 => header::EXPIRES,
        37 => header::FROM,
        38 => header::HOST,
        39 => header::IF_MATCH,
        40 => header::IF_MODIFIED_SINCE,
        41 => header::IF_NONE_MATCH,
        42 => header::IF_RANGE,
        43 => header::IF_UNMODIFIED_SINCE,
        44 => header::LAST_MODIFIED,
        45 => header::LINK,
        46 => header::LOCATION,
        47 => header::MAX_FORWARDS,
        48 => header::PROXY_AUTHENTICATE,
        49 => header::PROXY_AUTHORIZATION,
        50 => header::RANGE,
        51 => header::REFERER,
        52 => header::REFRESH,
        53 => header::RETRY_AFTER,
        54 => header::SERVER,
        55 => header::SET_COOKIE,
        56 => header::STRICT_TRANSPORT_SECURITY,
        57 => header::TRANSFER_ENCODING,
        58 => header::USER_AGENT,
        59 => header::VARY,
        60 => header::VIA,
        61 => header::WWW_AUTHENTICATE,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_static_name_maps_to_the_constant_of_the_same_name() {
        for i in 15..=61u8 {
            let (name, _) = sluice_h2codec::hpack::static_entry(i).expect("static entry");
            assert_eq!(static_name(i).expect("constant").as_str().as_bytes(), name);
        }
        for i in 1..=14u8 {
            assert!(static_name(i).is_none());
        }
    }
}
