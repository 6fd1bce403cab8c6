//! A BPF object built by clang from source embedded in sluice-bench, in a
//! temporary directory removed on drop (the topology's helper programs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;

use crate::exec::Shell;

pub struct TempBpfObject {
    dir: PathBuf,
    obj: PathBuf,
}

impl TempBpfObject {
    /// Compiles `source` (no headers needed) with `clang -O2 -g -target bpf`
    /// and the extra `args` (e.g. `-DNAME=VALUE`).
    pub fn build(sh: &Shell, stem: &str, source: &str, args: &[String]) -> anyhow::Result<Self> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sluice-bench-{stem}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let src = dir.join(format!("{stem}.bpf.c"));
        let obj = dir.join(format!("{stem}.bpf.o"));
        std::fs::write(&src, source).with_context(|| format!("writing {}", src.display()))?;
        let this = Self { dir, obj };
        sh.run(
            Command::new("clang")
                .args(["-O2", "-g", "-target", "bpf"])
                .args(args)
                .arg("-c")
                .arg(&src)
                .arg("-o")
                .arg(&this.obj),
        )?;
        Ok(this)
    }

    pub fn path(&self) -> &Path {
        &self.obj
    }
}

impl Drop for TempBpfObject {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
