//! Running external tools (`ip`, `ethtool`, `sysctl`, `clang`) with errors
//! that say which command failed, how, and what it printed.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::process::{Command, Output};

/// A command that could not be run or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("`{program}` is not installed or not on PATH (scripts/install-deps.sh installs it)")]
    NotFound { program: String },
    #[error("could not run `{cmdline}`: {source}")]
    Spawn {
        cmdline: String,
        #[source]
        source: io::Error,
    },
    #[error("`{cmdline}` failed ({status}): {stderr}")]
    Failed {
        cmdline: String,
        status: String,
        stderr: String,
    },
}

/// How commands are run: `verbose` echoes each one to stderr before it runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Shell {
    pub verbose: bool,
}

/// A command line rendered for messages (arguments with spaces are quoted).
pub struct CmdLine<'a>(pub &'a Command);

impl fmt::Display for CmdLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quote = |s: &OsStr| {
            let s = s.to_string_lossy();
            if s.is_empty() || s.contains(char::is_whitespace) {
                format!("'{s}'")
            } else {
                s.into_owned()
            }
        };
        write!(f, "{}", quote(self.0.get_program()))?;
        for arg in self.0.get_args() {
            write!(f, " {}", quote(arg))?;
        }
        Ok(())
    }
}

impl Shell {
    pub fn new(verbose: bool) -> Self {
        Self { verbose }
    }

    /// Runs `cmd` to completion and returns its output whatever the exit
    /// status; only a command that cannot be started is an error. For probes
    /// ("does this link exist?").
    pub fn output(&self, cmd: &mut Command) -> Result<Output, ExecError> {
        let cmdline = CmdLine(cmd).to_string();
        if self.verbose {
            eprintln!("+ {cmdline}");
        }
        cmd.stdin(std::process::Stdio::null());
        cmd.output().map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                ExecError::NotFound {
                    program: cmd.get_program().to_string_lossy().into_owned(),
                }
            } else {
                ExecError::Spawn { cmdline, source }
            }
        })
    }

    /// Runs `cmd` and returns its stdout; a non-zero exit is an error carrying
    /// the command line and its stderr.
    pub fn run(&self, cmd: &mut Command) -> Result<String, ExecError> {
        let out = self.output(cmd)?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        if stderr.is_empty() {
            stderr = "(no output)".to_string();
        }
        Err(ExecError::Failed {
            cmdline: CmdLine(cmd).to_string(),
            status: out.status.to_string(),
            stderr,
        })
    }

    /// `ip [-n NS] ARGS...`, stdout on success.
    pub fn ip<I, S>(&self, ns: Option<&str>, args: I) -> Result<String, ExecError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run(&mut ip_command(ns, args))
    }

    /// `ip netns exec NS PROGRAM ARGS...`, stdout on success.
    pub fn in_netns<I, S>(&self, ns: &str, program: &str, args: I) -> Result<String, ExecError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = crate::netns::command(ns, program);
        cmd.args(args);
        self.run(&mut cmd)
    }

    /// Fails with [`ExecError::NotFound`] unless `program` can be started.
    pub fn require_tool(&self, program: &str, version_arg: &str) -> Result<(), ExecError> {
        self.output(Command::new(program).arg(version_arg))
            .map(|_| ())
    }
}

/// `ip [-n NS] ARGS...` as a [`Command`].
pub fn ip_command<I, S>(ns: Option<&str>, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("ip");
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    cmd.args(args);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_quotes_arguments_with_spaces() {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", "sl-gw", "link", "show", "a b"]);
        assert_eq!(CmdLine(&cmd).to_string(), "ip -n sl-gw link show 'a b'");
    }

    #[test]
    fn missing_program_is_reported_by_name() {
        let err = Shell::default()
            .run(&mut Command::new("sluice-no-such-tool"))
            .unwrap_err();
        assert!(matches!(err, ExecError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("sluice-no-such-tool"));
    }

    #[test]
    fn failure_carries_stderr_and_status() {
        let err = Shell::default()
            .run(Command::new("sh").args(["-c", "echo boom >&2; exit 3"]))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("boom") && msg.contains("3"), "{msg}");
    }
}
