//! Shared helpers for the integration tests: a tiny pcap reader for the
//! captures in tests/fixtures/ (made by scripts/capture-fixtures.sh).
#![allow(dead_code)]

use std::path::PathBuf;

/// Path of a fixture file.
pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Every frame of a classic (libpcap) capture file, in order.
pub fn read_pcap(name: &str) -> Vec<Vec<u8>> {
    let data = std::fs::read(fixture_path(name)).expect("fixture exists");
    parse_pcap(&data)
}

/// Parse a classic pcap file (either byte order, µs or ns timestamps).
pub fn parse_pcap(data: &[u8]) -> Vec<Vec<u8>> {
    assert!(data.len() >= 24, "pcap global header");
    let magic = u32::from_le_bytes(data[..4].try_into().unwrap());
    let le = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        m => panic!("not a pcap file (magic {m:#x})"),
    };
    let u32_at = |at: usize| {
        let b: [u8; 4] = data[at..at + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    assert_eq!(u32_at(20), 1, "link type Ethernet");
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let incl = u32_at(at + 8) as usize;
        let start = at + 16;
        frames.push(data[start..start + incl].to_vec());
        at = start + incl;
    }
    frames
}

/// Every frame of every fixture, with the file it came from.
pub fn all_fixture_frames() -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<_> = std::fs::read_dir(fixture_path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".pcap"))
        .collect();
    names.sort();
    names
        .into_iter()
        .flat_map(|n| read_pcap(&n).into_iter().map(move |f| (n.clone(), f)))
        .collect()
}

pub mod tcp;
