//! `topo down`: delete the topology's namespaces (their veths go with them).

use std::fmt;
use std::path::{Path, PathBuf};

use super::{require_root, Topology};
use crate::exec::Shell;
use crate::netns;

/// What `down` did.
#[derive(Debug, Default)]
pub struct DownReport {
    /// Namespaces deleted.
    pub deleted: Vec<String>,
    /// Namespaces that still had processes when deleted, with their PIDs:
    /// the namespace lives on, unnamed, until those processes exit.
    pub busy: Vec<(String, Vec<i32>)>,
    /// Other `{prefix}-*` namespaces, not part of the topology, left alone.
    pub foreign: Vec<String>,
    /// The topology's directory on the shared bpffs, removed with the pins
    /// a dataplane killed before its own cleanup left in it.
    pub pins_removed: Option<PathBuf>,
}

impl Topology {
    /// Deletes every namespace of the topology that exists. Nothing to do is
    /// not an error. Processes still inside are not touched (whoever started
    /// them stops them); they are listed in the report.
    pub fn down(&self, sh: &Shell) -> anyhow::Result<DownReport> {
        require_root("topo down")?;
        let mut report = DownReport::default();
        let mut errors = Vec::new();
        let ours = self.namespaces();
        // Endpoints first, the bridge last.
        for ns in ours.iter().rev() {
            if !netns::exists(ns) {
                continue;
            }
            let pids: Vec<i32> = sh
                .ip(None, ["netns", "pids", ns])
                .map(|out| {
                    out.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            if !pids.is_empty() {
                report.busy.push((ns.clone(), pids));
            }
            match sh.ip(None, ["netns", "del", ns]) {
                Ok(_) => report.deleted.push(ns.clone()),
                Err(e) => errors.push(e.to_string()),
            }
        }
        // A dataplane that cleans up removes its pins itself; one that was
        // killed leaves them, and its maps live as long as they are pinned.
        let pins = Path::new(sluice_bpf::system::SHARED_BPFFS).join(&self.prefix);
        if pins.is_dir() {
            match std::fs::remove_dir_all(&pins) {
                Ok(()) => report.pins_removed = Some(pins),
                Err(e) => errors.push(format!("removing {}: {e}", pins.display())),
            }
        }
        report.foreign = self
            .existing_namespaces()?
            .into_iter()
            .filter(|n| !ours.contains(n))
            .collect();
        if !errors.is_empty() {
            anyhow::bail!("topo down `{}`: {}", self.prefix, errors.join("; "));
        }
        Ok(report)
    }
}

impl fmt::Display for DownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.deleted.is_empty() {
            writeln!(f, "nothing to delete")?;
        } else {
            writeln!(f, "deleted {}", self.deleted.join(", "))?;
        }
        if let Some(p) = &self.pins_removed {
            writeln!(f, "removed {}", p.display())?;
        }
        for (ns, pids) in &self.busy {
            let pids: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
            writeln!(
                f,
                "warning: {ns} still had processes (pids {}); the namespace lives on, unnamed, until they exit",
                pids.join(" ")
            )?;
        }
        if !self.foreign.is_empty() {
            writeln!(
                f,
                "left alone (not part of the topology): {}",
                self.foreign.join(", ")
            )?;
        }
        Ok(())
    }
}
