//! The Rust mirrors in `sluice_bpf::abi` against the BTF of the compiled
//! objects: same size, same fields at the same offsets, no implicit padding,
//! same enumerators. Reads the object files only (no kernel, no root).

use std::mem::{offset_of, size_of};

use libbpf_rs::btf::types::{Enum, MemberAttr, Struct};
use libbpf_rs::{Btf, HasSize};
use sluice_bpf::abi::{
    self, AbiType, ChaosConfigValue, ChaosCounter, ChaosState, Config, Counter, ListenerKey,
    ListenerValue, ReflectorConfig, ReflectorCounter, VipKey, VipValue, XdpCounter,
};
use sluice_bpf::object::{CHAOS_OBJECT, GATEWAY_OBJECT, REFLECTOR_OBJECT};

fn btf_of(name: &'static str, bytes: &'static [u8]) -> Btf<'static> {
    Btf::from_raw(name, bytes)
        .unwrap_or_else(|e| panic!("parsing the BTF of {name}: {e}"))
        .unwrap_or_else(|| panic!("{name} has no BTF"))
}

/// Size of a field, from a projection (so the macro needs no field types).
fn field_size<T, F>(_: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

/// (name, offset, size) of every field of a Rust mirror, in order.
macro_rules! fields {
    ($t:ty { $($f:ident),* $(,)? }) => {
        vec![$(
            (stringify!($f), offset_of!($t, $f), field_size::<$t, _>(|v: &$t| &v.$f)),
        )*]
    };
}

fn check_struct<T: AbiType>(btf: &Btf<'_>, rust_fields: Vec<(&str, usize, usize)>) {
    let name = T::C_NAME;
    let s: Struct<'_> = btf
        .type_by_name(name)
        .unwrap_or_else(|| panic!("struct {name} is not in the object's BTF"));
    assert_eq!(s.size(), size_of::<T>(), "size of struct {name}");

    let c_fields: Vec<(String, usize)> = s
        .iter()
        .map(|m| {
            let offset = match m.attr {
                MemberAttr::Normal { offset } => offset,
                MemberAttr::BitField { .. } => panic!("{name} has a bitfield"),
            };
            assert_eq!(offset % 8, 0, "{name} member at bit offset {offset}");
            (
                m.name.expect("named member").to_string_lossy().into_owned(),
                offset as usize / 8,
            )
        })
        .collect();
    let rust: Vec<(String, usize)> = rust_fields
        .iter()
        .map(|(n, o, _)| (n.to_string(), *o))
        .collect();
    assert_eq!(
        c_fields, rust,
        "fields (name, byte offset) of struct {name}"
    );

    // No implicit padding: the fields tile the struct exactly.
    let mut end = 0;
    for (field, offset, size) in &rust_fields {
        assert_eq!(*offset, end, "{name}: hole before {field}");
        end = offset + size;
    }
    assert_eq!(end, size_of::<T>(), "{name}: padding at the end");

    // Encoding writes exactly the C size.
    assert_eq!(
        T::decode(&vec![0; size_of::<T>()]).map(|v| v.to_bytes().len()),
        Some(size_of::<T>())
    );
}

fn check_enum(btf: &Btf<'_>, c_enum: &str, rust: &[(&str, u32)], max_name: &str) {
    let e: Enum<'_> = btf
        .type_by_name(c_enum)
        .unwrap_or_else(|| panic!("enum {c_enum} is not in the object's BTF"));
    let c: Vec<(String, i64)> = e
        .iter()
        .map(|m| {
            (
                m.name
                    .expect("named enumerator")
                    .to_string_lossy()
                    .into_owned(),
                m.value,
            )
        })
        .collect();
    let mut expected: Vec<(String, i64)> = rust
        .iter()
        .map(|(n, v)| (n.to_string(), *v as i64))
        .collect();
    expected.push((max_name.to_string(), rust.len() as i64));
    assert_eq!(c, expected, "enumerators of {c_enum}");
}

#[test]
fn gateway_structs_match_btf() {
    let btf = btf_of("gateway", GATEWAY_OBJECT);
    check_struct::<VipKey>(&btf, fields!(VipKey { addr }));
    check_struct::<VipValue>(&btf, fields!(VipValue { flags }));
    check_struct::<ListenerKey>(
        &btf,
        fields!(ListenerKey {
            addr,
            port,
            proto,
            pad
        }),
    );
    check_struct::<ListenerValue>(&btf, fields!(ListenerValue { service_id }));
    check_struct::<Config>(
        &btf,
        fields!(Config {
            mac,
            local_port_lo,
            local_port_hi,
            pad,
            flags
        }),
    );
    check_struct::<Counter>(&btf, fields!(Counter { packets, bytes }));
}

#[test]
fn reflector_structs_match_btf() {
    let btf = btf_of("reflector", REFLECTOR_OBJECT);
    check_struct::<ReflectorConfig>(&btf, fields!(ReflectorConfig { addr, port, pad }));
    check_struct::<Counter>(&btf, fields!(Counter { packets, bytes }));
}

#[test]
fn gateway_counter_enum_matches_btf() {
    let btf = btf_of("gateway", GATEWAY_OBJECT);
    let rust: Vec<(&str, u32)> = XdpCounter::ALL
        .iter()
        .map(|c| (c.name(), c.index()))
        .collect();
    check_enum(&btf, XdpCounter::C_ENUM, &rust, abi::XDP_COUNTER_MAX_NAME);
}

#[test]
fn reflector_counter_enum_matches_btf() {
    let btf = btf_of("reflector", REFLECTOR_OBJECT);
    let rust: Vec<(&str, u32)> = ReflectorCounter::ALL
        .iter()
        .map(|c| (c.name(), c.index()))
        .collect();
    check_enum(
        &btf,
        ReflectorCounter::C_ENUM,
        &rust,
        abi::REFLECTOR_COUNTER_MAX_NAME,
    );
}

#[test]
fn chaos_structs_and_counters_match_btf() {
    let btf = btf_of("chaos", CHAOS_OBJECT);
    check_struct::<ChaosConfigValue>(
        &btf,
        fields!(ChaosConfigValue {
            addr,
            flags,
            drop_ppm,
            synack_drop,
            rst_ppm,
            rst_seq_offset,
            corrupt_ppm,
            dup_ppm,
            port,
            mss
        }),
    );
    check_struct::<ChaosState>(&btf, fields!(ChaosState { synacks }));
    check_struct::<Counter>(&btf, fields!(Counter { packets, bytes }));
    let rust: Vec<(&str, u32)> = ChaosCounter::ALL
        .iter()
        .map(|c| (c.name(), c.index()))
        .collect();
    check_enum(
        &btf,
        ChaosCounter::C_ENUM,
        &rust,
        abi::CHAOS_COUNTER_MAX_NAME,
    );
}

/// The values of an enum in the object's BTF, by enumerator name.
fn enum_values(btf: &Btf<'_>, c_enum: &str) -> Vec<(String, i64)> {
    let e: Enum<'_> = btf
        .type_by_name(c_enum)
        .unwrap_or_else(|| panic!("enum {c_enum} is not in the object's BTF"));
    e.iter()
        .map(|m| {
            (
                m.name
                    .expect("named enumerator")
                    .to_string_lossy()
                    .into_owned(),
                m.value,
            )
        })
        .collect()
}

#[test]
fn health_layout_matches_btf() {
    let btf = btf_of("gateway", GATEWAY_OBJECT);
    let named = |v: &[(&str, i64)]| -> Vec<(String, i64)> {
        v.iter().map(|(n, v)| (n.to_string(), *v)).collect()
    };
    assert_eq!(
        enum_values(&btf, "sluice_health_layout"),
        named(&[
            ("SLUICE_HEALTH_GENERATION", abi::HEALTH_GENERATION as i64),
            ("SLUICE_HEALTH_FLAGS", abi::HEALTH_FLAGS as i64),
            (
                "SLUICE_HEALTH_FIRST_CLUSTER_WORD",
                abi::HEALTH_FIRST_CLUSTER_WORD as i64
            ),
            ("SLUICE_HEALTH_WORDS", abi::HEALTH_WORDS as i64),
        ])
    );
    assert_eq!(
        enum_values(&btf, "sluice_health_flag"),
        named(&[("SLUICE_HEALTH_ALL_EJECTED", abi::HEALTH_ALL_EJECTED as i64)])
    );
}
