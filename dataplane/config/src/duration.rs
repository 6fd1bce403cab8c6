//! Durations as written in the configuration: a decimal number and a unit,
//! `"100us"`, `"250ms"`, `"1.5s"`, `"1m"`, `"2h"`.
//!
//! A bare TOML integer is refused: `timeout = 5` would leave the unit to a
//! guess (Envoy means seconds, HAProxy milliseconds).

use std::fmt;
use std::time::Duration;

/// Units, largest first: [`format_duration`] picks the first that divides.
const UNITS: [(&str, u128); 5] = [
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
];

/// Parses `"500ms"`-style durations: digits, an optional fraction, and one
/// of the units `us`, `ms`, `s`, `m`, `h`. No sign, no spaces, no compound
/// forms (`"1m30s"`); precision finer than a nanosecond is refused rather
/// than rounded, so what parses is exactly what [`format_duration`] prints
/// back.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err("empty duration (expected e.g. \"500ms\")".to_string());
    }
    if text.starts_with('-') {
        return Err(format!("negative duration {text:?}"));
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let Some(&(_, unit_nanos)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(if unit.is_empty() {
            format!("duration {text:?} has no unit (expected us, ms, s, m or h)")
        } else {
            format!("duration {text:?}: unknown unit {unit:?} (expected us, ms, s, m or h)")
        });
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() || (number.contains('.') && fraction.is_empty()) || fraction.contains('.') {
        return Err(format!(
            "duration {text:?}: expected a number before the unit, like \"1.5s\""
        ));
    }
    let overflow = || format!("duration {text:?} is too large");
    let mut nanos: u128 = whole
        .parse::<u128>()
        .ok()
        .and_then(|w| w.checked_mul(unit_nanos))
        .ok_or_else(overflow)?;
    if !fraction.is_empty() {
        // Exact integer arithmetic: 1.5s is 1_500_000_000ns, no float drift.
        let digits = u32::try_from(fraction.len()).map_err(|_| overflow())?;
        let scale = 10u128.checked_pow(digits).ok_or_else(overflow)?;
        let f: u128 = fraction.parse().map_err(|_| overflow())?;
        let scaled = f.checked_mul(unit_nanos).ok_or_else(overflow)?;
        if scaled % scale != 0 {
            return Err(format!(
                "duration {text:?} is more precise than a nanosecond"
            ));
        }
        nanos = nanos.checked_add(scaled / scale).ok_or_else(overflow)?;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| overflow())?;
    // The remainder of a division by 1e9 always fits.
    let sub = (nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, sub))
}

/// Prints a duration in the largest unit that holds it as a whole number
/// (`90s` stays `90s`, `1.5s` becomes `1500ms`); below a microsecond it
/// falls back to a fraction of `us`. [`parse_duration`] reads it back to
/// the same value.
pub fn format_duration(d: Duration) -> String {
    DisplayDuration(d).to_string()
}

/// [`Display`](fmt::Display) adapter for [`format_duration`], for use in
/// messages without an intermediate `String`.
#[derive(Debug, Clone, Copy)]
pub struct DisplayDuration(pub Duration);

impl fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        for (name, unit) in UNITS {
            if nanos % unit == 0 {
                return write!(f, "{}{name}", nanos / unit);
            }
        }
        let frac = format!("{:03}", nanos % 1_000);
        write!(f, "{}.{}us", nanos / 1_000, frac.trim_end_matches('0'))
    }
}

/// Serde glue for `Duration` fields: the string form both ways.
pub(crate) mod serde_duration {
    use super::{format_duration, parse_duration};
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;
    use std::time::Duration;

    pub(crate) struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration string like \"500ms\"")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).map_err(E::custom)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "expected a duration string with a unit, like \"{v}s\" or \"{v}ms\", found integer {v}"
            )))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "expected a duration string with a unit, like \"{v}s\" or \"{v}ms\", found integer {v}"
            )))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "expected a duration string with a unit, like \"{v}s\", found float {v}"
            )))
        }
    }

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    /// `Option<Duration>`: an absent key (fields carry `#[serde(default)]`)
    /// or a JSON `null` is `None`; a present value must be a duration.
    pub(crate) mod option {
        use serde::{Deserialize, Deserializer, Serializer};
        use std::time::Duration;

        pub(crate) fn serialize<S: Serializer>(
            d: &Option<Duration>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        struct Wrapped(Duration);

        impl<'de> Deserialize<'de> for Wrapped {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Wrapped, D::Error> {
                super::deserialize(d).map(Wrapped)
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Duration>, D::Error> {
            Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn units() {
        assert_eq!(ok("100us"), Duration::from_micros(100));
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("2s"), Duration::from_secs(2));
        assert_eq!(ok("1m"), Duration::from_secs(60));
        assert_eq!(ok("2h"), Duration::from_secs(7200));
        assert_eq!(ok("0s"), Duration::ZERO);
    }

    #[test]
    fn fractions_are_exact() {
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("0.25ms"), Duration::from_micros(250));
        assert_eq!(ok("1.5m"), Duration::from_secs(90));
        assert_eq!(ok("0.001us"), Duration::from_nanos(1));
        assert_eq!(ok("2.0s"), Duration::from_secs(2));
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse_duration("").unwrap_err(),
            "empty duration (expected e.g. \"500ms\")"
        );
        assert_eq!(
            parse_duration("-1s").unwrap_err(),
            "negative duration \"-1s\""
        );
        assert_eq!(
            parse_duration("5").unwrap_err(),
            "duration \"5\" has no unit (expected us, ms, s, m or h)"
        );
        assert_eq!(
            parse_duration("5sec").unwrap_err(),
            "duration \"5sec\": unknown unit \"sec\" (expected us, ms, s, m or h)"
        );
        assert_eq!(
            parse_duration("5 s").unwrap_err(),
            "duration \"5 s\": unknown unit \" s\" (expected us, ms, s, m or h)"
        );
        for bad in ["s", ".5s", "1.s", "1.2.3s", "+1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_duration("99999999999999999999999h").unwrap_err(),
            "duration \"99999999999999999999999h\" is too large"
        );
        assert_eq!(
            parse_duration("0.0001us").unwrap_err(),
            "duration \"0.0001us\" is more precise than a nanosecond"
        );
        assert!(
            parse_duration("5124095576030432h").is_err(),
            "u64 seconds overflow"
        );
        assert!(parse_duration("5124095576030431h").is_ok());
    }

    #[test]
    fn format_round_trips() {
        for (input, printed) in [
            ("100us", "100us"),
            ("250ms", "250ms"),
            ("1.5s", "1500ms"),
            ("90s", "90s"),
            ("1.5m", "90s"),
            ("120s", "2m"),
            ("2h", "2h"),
            ("0ms", "0s"),
            ("1.5us", "1.5us"),
            ("0.001us", "0.001us"),
        ] {
            let d = ok(input);
            assert_eq!(format_duration(d), printed, "{input}");
            assert_eq!(ok(printed), d, "{printed}");
        }
    }
}
