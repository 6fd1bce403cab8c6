//! `sluice-bench gen`.

use sluice_bench::gen::{self, GenArgs};

pub fn run(args: GenArgs) -> anyhow::Result<()> {
    let json = args.json;
    let report = gen::run(args)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", gen::human(&report));
    }
    Ok(())
}
