//! CPU accounting shared by the benchmarks: per-core time from /proc/stat
//! (user, system, softirq: on veth a receiver's softirq work runs on the
//! sender's core, so process times alone would hide it), per-process
//! user/system time and resident memory from /proc/PID.

use std::fs;

use anyhow::{Context, Result};
use serde::Serialize;

/// CPU time of one core, in USER_HZ ticks, from /proc/stat.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CoreTime {
    pub user: u64,
    pub system: u64,
    pub softirq: u64,
    pub irq: u64,
    pub idle: u64,
}

impl CoreTime {
    pub fn busy(&self) -> u64 {
        self.user + self.system + self.softirq + self.irq
    }

    pub fn total(&self) -> u64 {
        self.busy() + self.idle
    }

    pub fn delta(&self, before: &CoreTime) -> CoreTime {
        CoreTime {
            user: self.user - before.user,
            system: self.system - before.system,
            softirq: self.softirq - before.softirq,
            irq: self.irq - before.irq,
            idle: self.idle - before.idle,
        }
    }
}

/// Parse the `cpuN` lines of /proc/stat.
pub fn parse_proc_stat(text: &str) -> Vec<CoreTime> {
    let mut cores = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some(name) = f.next() else { continue };
        let Some(idx) = name
            .strip_prefix("cpu")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let v: Vec<u64> = f.filter_map(|x| x.parse().ok()).collect();
        if v.len() < 7 {
            continue;
        }
        if cores.len() <= idx {
            cores.resize(idx + 1, CoreTime::default());
        }
        // user nice system idle iowait irq softirq [steal ...]
        cores[idx] = CoreTime {
            user: v[0] + v[1],
            system: v[2] + v.get(7).copied().unwrap_or(0),
            idle: v[3] + v[4],
            irq: v[5],
            softirq: v[6],
        };
    }
    cores
}

pub fn read_cores() -> Result<Vec<CoreTime>> {
    Ok(parse_proc_stat(&fs::read_to_string("/proc/stat")?))
}

pub fn ticks_per_sec() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map(|v| v as f64)
        .unwrap_or(100.0)
}

/// User CPU seconds of every child (and their waited-for descendants) so far.
pub fn children_user_secs() -> f64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map(|r| {
            let t = r.user_time();
            t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6
        })
        .unwrap_or(0.0)
}

/// System CPU seconds of every child (and their waited-for descendants) so far.
pub fn children_sys_secs() -> f64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map(|r| {
            let t = r.system_time();
            t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6
        })
        .unwrap_or(0.0)
}

/// User and system CPU seconds a process has used so far (/proc/PID/stat).
pub fn process_times(pid: u32) -> Result<(f64, f64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_process_times(&text, ticks_per_sec()).with_context(|| format!("parsing /proc/{pid}/stat"))
}

fn parse_process_times(stat: &str, hz: f64) -> Option<(f64, f64)> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime / hz, stime / hz))
}

/// Nanoseconds all threads of a process have run on a CPU so far (the
/// first field of /proc/PID/task/TID/schedstat, summed): user and system
/// together, without the tick granularity of /proc/PID/stat.
pub fn process_cpu_ns(pid: u32) -> Result<u64> {
    let mut total = 0;
    for t in fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("reading /proc/{pid}/task"))?
    {
        let path = t?.path().join("schedstat");
        // A thread that exited in between is not an error.
        if let Ok(text) = fs::read_to_string(&path) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

/// Resident set size of a process in bytes (VmRSS of /proc/PID/status).
pub fn process_rss(pid: u32) -> Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    meminfo_field(&text, "VmRSS:").with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// Kernel slab memory in bytes (Slab of /proc/meminfo): where kernel
/// sockets live.
pub fn slab_bytes() -> Result<u64> {
    meminfo_field(&fs::read_to_string("/proc/meminfo")?, "Slab:")
        .context("no Slab in /proc/meminfo")
}

/// A "Name:   123 kB" field, in bytes.
fn meminfo_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kb: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_stat_fields_parse() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_process_times(stat, 100.0), Some((2.5, 0.5)));
    }

    #[test]
    fn own_cpu_time_is_counted() {
        let t = process_cpu_ns(std::process::id()).unwrap();
        assert!(t > 0);
    }

    #[test]
    fn meminfo_fields_parse() {
        let text = "MemTotal:  100 kB\nSlab:     2048 kB\n";
        assert_eq!(meminfo_field(text, "Slab:"), Some(2048 * 1024));
        assert_eq!(meminfo_field(text, "VmRSS:"), None);
    }

    #[test]
    fn proc_stat_lines_parse() {
        let text = "cpu  10 0 20 300 0 1 2 0 0 0\n\
                    cpu0 1 2 3 4 5 6 7 8 0 0\n\
                    cpu1 10 0 20 30 0 1 2 0 0 0\n\
                    intr 12345\n";
        let c = parse_proc_stat(text);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].user, 3);
        assert_eq!(c[0].system, 11);
        assert_eq!(c[0].idle, 9);
        assert_eq!(c[0].irq, 6);
        assert_eq!(c[0].softirq, 7);
        assert_eq!(c[1].busy(), 33);
        assert_eq!(c[1].delta(&c[1]).busy(), 0);
    }
}
