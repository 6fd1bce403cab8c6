//! `sluice-bench tls-load`: see [`sluice_bench::tls_client::tls_load`].

use sluice_bench::tls_client::{tls_load, TlsLoadArgs};

pub fn run(args: TlsLoadArgs) -> anyhow::Result<()> {
    let report = tls_load(&args)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
