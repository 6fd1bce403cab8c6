//! Network interfaces as the kernel knows them (in this network namespace;
//! sysfs must be mounted for it, as `ip netns exec` does).

use std::fs;
use std::path::PathBuf;

use crate::error::{BpfError, Result};

/// A network interface as the kernel knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
    pub rx_queues: u32,
}

impl Interface {
    /// Index (if_nametoindex), MAC (/sys/class/net/NAME/address) and receive
    /// queue count (/sys/class/net/NAME/queues/rx-*).
    pub fn lookup(name: &str) -> Result<Self> {
        if name.is_empty() || name.len() > 15 || name.contains('/') {
            return Err(BpfError::NoSuchInterface(name.to_string()));
        }
        let index = nix::net::if_::if_nametoindex(name)
            .map_err(|_| BpfError::NoSuchInterface(name.to_string()))?;
        let sys = PathBuf::from("/sys/class/net").join(name);
        let address = fs::read_to_string(sys.join("address")).map_err(|e| {
            BpfError::io(
                format!(
                    "reading the MAC of {name} from {} (is sysfs of this network namespace mounted?)",
                    sys.join("address").display()
                ),
                e,
            )
        })?;
        let mac = parse_mac(address.trim()).ok_or_else(|| {
            BpfError::Other(format!(
                "interface {name} has no Ethernet address ('{}')",
                address.trim()
            ))
        })?;
        let queues = sys.join("queues");
        let rx_queues = fs::read_dir(&queues)
            .map_err(|e| BpfError::io(format!("listing {}", queues.display()), e))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
            .count() as u32;
        Ok(Self {
            name: name.to_string(),
            index,
            mac,
            rx_queues: rx_queues.max(1),
        })
    }
}

/// `aa:bb:cc:dd:ee:ff` to bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in mac.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Bytes to `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_and_format() {
        let mac = parse_mac("02:00:c6:12:00:01").unwrap();
        assert_eq!(mac, [2, 0, 0xc6, 0x12, 0, 1]);
        assert_eq!(format_mac(&mac), "02:00:c6:12:00:01");
        assert_eq!(parse_mac("02:00:c6:12:00"), None);
        assert_eq!(parse_mac("02:00:c6:12:00:01:02"), None);
        assert_eq!(parse_mac("zz:00:c6:12:00:01"), None);
    }

    #[test]
    fn missing_interface_is_named() {
        let err = Interface::lookup("slb-nonexist0").unwrap_err();
        assert_eq!(err.to_string(), "no such interface 'slb-nonexist0'");
    }
}

/// A list of queue or CPU ids as given on a command line: "0", "0-3",
/// "0,2,4-5". Sorted, without duplicates (a repeated id is an error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdList(pub Vec<u32>);

impl std::str::FromStr for IdList {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let mut out = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(format!("empty item in list {s:?}"));
            }
            let num = |x: &str| {
                x.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("{x:?} is not a number (in {s:?})"))
            };
            match part.split_once('-') {
                Some((lo, hi)) => {
                    let (lo, hi) = (num(lo)?, num(hi)?);
                    if lo > hi {
                        return Err(format!("range {part:?} runs backwards"));
                    }
                    if hi - lo >= 4096 {
                        return Err(format!("range {part:?} is too large"));
                    }
                    out.extend(lo..=hi);
                }
                None => out.push(num(part)?),
            }
        }
        let len = out.len();
        out.sort_unstable();
        out.dedup();
        if out.len() != len {
            return Err(format!("{s:?} names an item twice"));
        }
        Ok(IdList(out))
    }
}

#[cfg(test)]
mod id_list_tests {
    use super::IdList;

    fn p(s: &str) -> Result<Vec<u32>, String> {
        s.parse::<IdList>().map(|l| l.0)
    }

    #[test]
    fn lists_and_ranges() {
        assert_eq!(p("0").unwrap(), vec![0]);
        assert_eq!(p("0-3").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(p("4-5,0,2").unwrap(), vec![0, 2, 4, 5]);
        assert_eq!(p(" 1 , 3 ").unwrap(), vec![1, 3]);
    }

    #[test]
    fn bad_lists_say_why() {
        assert!(p("").unwrap_err().contains("empty"));
        assert!(p("1,,2").unwrap_err().contains("empty"));
        assert!(p("a").unwrap_err().contains("not a number"));
        assert!(p("3-1").unwrap_err().contains("backwards"));
        assert!(p("1,1").unwrap_err().contains("twice"));
        assert!(p("0-100000").unwrap_err().contains("too large"));
        assert!(p("-1").unwrap_err().contains("not a number"));
    }
}
