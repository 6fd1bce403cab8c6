//! Running code inside a named network namespace (`ip netns add NAME`).
//!
//! Two ways in:
//! - a child process: [`command`] builds `ip netns exec NAME PROGRAM`, which
//!   also remounts /sys for the namespace; the child keeps the PID of the
//!   `Command` (ip execs the program), so it can be signalled by that PID;
//! - in-process: [`run_in`] / [`spawn_in`] run a closure on a dedicated thread
//!   that has called `setns(2)` into the namespace. Sockets it creates belong
//!   to that namespace for their whole life, so they can be handed back to
//!   any thread. Only the network namespace changes: paths such as /sys/class/net
//!   still show the caller's view (use [`command`] when that matters).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::JoinHandle;

use nix::sched::{setns, CloneFlags};

/// Where `ip netns` keeps its bind-mounted namespace handles.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Errors entering a namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace `{name}` does not exist ({path}): {source}")]
    Open {
        name: String,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("setns into network namespace `{name}` failed: {source} (needs root / CAP_SYS_ADMIN)")]
    Setns {
        name: String,
        #[source]
        source: nix::Error,
    },
    #[error("could not start a thread for network namespace `{name}`: {source}")]
    Thread {
        name: String,
        #[source]
        source: io::Error,
    },
}

/// `/run/netns/NAME`.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_RUN_DIR).join(name)
}

/// Whether `ip netns` knows a namespace called `name`.
pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Names of all namespaces `ip netns` knows, sorted.
pub fn list() -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    match std::fs::read_dir(NETNS_RUN_DIR) {
        Ok(dir) => {
            for entry in dir {
                names.push(entry?.file_name().to_string_lossy().into_owned());
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    names.sort();
    Ok(names)
}

/// `ip netns exec NAME PROGRAM`: add arguments, then spawn or run it.
pub fn command(name: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", name]).arg(program);
    cmd
}

/// Moves the calling thread into network namespace `name`, for good.
///
/// Call this only on a thread you own and that does nothing else afterwards
/// in its old namespace (see [`run_in`] and [`spawn_in`], which make one).
pub fn enter(name: &str) -> Result<(), NetnsError> {
    let p = path(name);
    let file = File::open(&p).map_err(|source| NetnsError::Open {
        name: name.to_string(),
        path: p.display().to_string(),
        source,
    })?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Setns {
        name: name.to_string(),
        source,
    })
}

/// Runs `f` on a fresh thread inside network namespace `name` and returns its
/// result. A panic in `f` is re-raised on the caller's thread.
///
/// ```no_run
/// let sock = sluice_bench::netns::run_in("sl-client", || std::net::UdpSocket::bind("0.0.0.0:0"))
///     .unwrap()
///     .unwrap();
/// // `sock` lives in sl-client's network stack, usable from any thread.
/// ```
pub fn run_in<T, F>(name: &str, f: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name(format!("netns-{name}"))
            .spawn_scoped(s, || -> Result<T, NetnsError> {
                enter(name)?;
                Ok(f())
            })
            .map_err(|source| NetnsError::Thread {
                name: name.to_string(),
                source,
            })?;
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Starts `f` on a new thread inside network namespace `name`; the handle
/// yields an error if the thread could not enter the namespace.
pub fn spawn_in<T, F>(name: &str, f: F) -> Result<JoinHandle<Result<T, NetnsError>>, NetnsError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let owned = name.to_string();
    std::thread::Builder::new()
        .name(format!("netns-{name}"))
        .spawn(move || {
            enter(&owned)?;
            Ok(f())
        })
        .map_err(|source| NetnsError::Thread {
            name: name.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_namespace_is_a_clear_error() {
        let err = run_in("sluice-no-such-ns", || ()).unwrap_err();
        assert!(matches!(err, NetnsError::Open { .. }));
        assert!(err.to_string().contains("sluice-no-such-ns"), "{err}");
    }

    #[test]
    fn command_wraps_ip_netns_exec() {
        let mut cmd = command("sl-gw", "ping");
        cmd.arg("-c1");
        assert_eq!(
            crate::exec::CmdLine(&cmd).to_string(),
            "ip netns exec sl-gw ping -c1"
        );
    }
}
