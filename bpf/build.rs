//! Compiles the XDP programs in src/bpf/ with libbpf-cargo into OUT_DIR.
//!
//! Only the object files are produced (SkeletonBuilder::build, which compiles
//! with clang and links with libbpf's BPF linker, stripping DWARF but keeping
//! BTF). The generated Rust skeleton is not used: it contains `unsafe`, and
//! this crate is `#![forbid(unsafe_code)]`; src/object.rs opens the embedded
//! object through libbpf-rs's safe API instead.

use std::env;
use std::ffi::OsStr;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

/// (source, object name): the programs, and for the attach tests a foreign
/// one and the topology's placeholder.
const PROGRAMS: &[(&str, &str)] = &[
    ("src/bpf/gateway.bpf.c", "gateway"),
    ("src/bpf/reflector.bpf.c", "reflector"),
    ("src/bpf/chaos.bpf.c", "chaos"),
    ("tests/bpf/foreign_pass.bpf.c", "foreign_pass"),
    ("tests/bpf/sluice_peer.bpf.c", "sluice_peer"),
];
const HEADERS: &[&str] = &[
    "include/sluice_abi.h",
    "src/bpf/parsing.h",
    "src/bpf/csum.h",
    "src/bpf/gateway_maps.h",
    "src/bpf/neigh.h",
];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let include = manifest_dir.join("include");

    for header in HEADERS {
        println!(
            "cargo:rerun-if-changed={}",
            manifest_dir.join(header).display()
        );
    }

    for (src, name) in PROGRAMS {
        let src = manifest_dir.join(src);
        let obj = out_dir.join(format!("{name}.bpf.o"));
        println!("cargo:rerun-if-changed={}", src.display());

        // SkeletonBuilder adds -g -O2 -target bpf itself; -Werror makes any
        // warning fail the build (libbpf-cargo would otherwise swallow it).
        let result = SkeletonBuilder::new()
            .source(&src)
            .obj(&obj)
            .clang_args([
                OsStr::new("-I"),
                include.as_os_str(),
                OsStr::new("-I/usr/include/x86_64-linux-gnu"),
                OsStr::new("-O2"),
                OsStr::new("-g"),
                OsStr::new("-Wall"),
                OsStr::new("-Werror"),
            ])
            .build();
        if let Err(err) = result {
            panic!("building {}: {err:#}", src.display());
        }
    }
}
