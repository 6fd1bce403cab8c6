//! SIGINT and SIGTERM in `sluice-bench run ...`.
//!
//! [`install`] registers one process-wide flag for both signals at the
//! start of a run. Every place a benchmark waits (quiet cores, TIME_WAIT,
//! settling sleeps, a server's start-up, a load generator) checks it through
//! [`sleep`], [`check`] or [`output`] and turns it into an [`Interrupted`]
//! error. That error unwinds through the same guards as any other failure
//! ([`crate::harness::ServerProc`], [`crate::harness::TopologyGuard`],
//! [`crate::harness::WorkDir`], ...), so an interrupted run cleans up exactly
//! as a failed one: its children stopped by PID, its topology deleted (and
//! the XDP programs on it with it), its work directory removed.
//! [`outcome`] then replaces the run's result with an [`InterruptedRun`]:
//! what was cleaned up, and an exit status of 128 + the signal.
//!
//! Why a handler is needed twice over: without one, SIGINT and SIGTERM end
//! the process on the spot and leave everything behind; and a shell without
//! job control (a script, `bash -c '... &'`) starts background commands
//! with SIGINT and SIGQUIT *ignored* (POSIX), which the process inherits, so
//! `kill -INT PID` did nothing at all. Installing a handler replaces an
//! inherited SIG_IGN.
//!
//! A second signal while cleaning up changes nothing: the cleanup is bounded
//! (a server gets a few seconds after SIGTERM, then SIGKILL). SIGKILL is the
//! way out that leaves things behind (`sluice-bench topo down --prefix P`).

use std::fmt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How often waits look at the flag.
const POLL: Duration = Duration::from_millis(50);

/// How long a child stopped with SIGTERM gets before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(3);

/// The last signal received (0: none), set by the handlers.
static FLAG: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// What the cleanup did after a signal, for the final message.
static NOTES: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Whether some cleanup failed after a signal.
static CLEANUP_FAILED: AtomicBool = AtomicBool::new(false);

fn flag() -> &'static AtomicUsize {
    FLAG.get_or_init(|| Arc::new(AtomicUsize::new(0)))
}

/// A wait cut short by SIGINT or SIGTERM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by {}", signal_name(*.0))]
pub struct Interrupted(pub i32);

/// "SIGINT", "SIGTERM", or "signal N".
pub fn signal_name(sig: i32) -> String {
    Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// Sets the process-wide flag on SIGINT and SIGTERM (once; later calls do
/// nothing). Replaces a SIG_IGN inherited from the shell.
pub fn install() -> std::io::Result<()> {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let f = FLAG.get_or_init(|| Arc::new(AtomicUsize::new(0)));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_usize(sig, Arc::clone(f), sig as usize)?;
    }
    Ok(())
}

/// The signal received, if any.
pub fn received() -> Option<i32> {
    received_on(flag())
}

fn received_on(flag: &AtomicUsize) -> Option<i32> {
    match flag.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s as i32),
    }
}

/// An error once a signal was received.
pub fn check() -> Result<(), Interrupted> {
    check_on(flag())
}

fn check_on(flag: &AtomicUsize) -> Result<(), Interrupted> {
    received_on(flag).map_or(Ok(()), |s| Err(Interrupted(s)))
}

/// Sleeps `d`, or less if a signal arrives (then an error, within 50 ms).
pub fn sleep(d: Duration) -> Result<(), Interrupted> {
    sleep_on(flag(), d)
}

fn sleep_on(flag: &AtomicUsize, d: Duration) -> Result<(), Interrupted> {
    let end = Instant::now() + d;
    loop {
        check_on(flag)?;
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(POLL));
    }
}

/// `cmd.output()` that a signal cuts short: stdin null, stdout and stderr
/// captured; on SIGINT/SIGTERM the child is stopped by its PID (SIGTERM,
/// then SIGKILL to it and its descendants after [`GRACE`]) and the error
/// is [`Interrupted`]. `what` names it in errors and in the cleanup notes.
pub fn output(cmd: &mut Command, what: &str) -> Result<Output> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {what}"))?;
    wait_output(child, what)
}

/// Waits for `child` as `Child::wait_with_output` does (what was not
/// piped is empty), stopping it as [`output`] does on a signal.
pub fn wait_output(child: Child, what: &str) -> Result<Output> {
    wait_output_on(flag(), child, what, GRACE)
}

fn wait_output_on(flag: &AtomicUsize, child: Child, what: &str, grace: Duration) -> Result<Output> {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    // The blocking wait (and the pipes' reading) on a thread of its own:
    // the child is reaped the moment it exits, and this thread only looks
    // at the flag in between. Until that thread has reaped it, its PID is
    // still ours to signal.
    std::thread::Builder::new()
        .name(format!("wait-{pid}"))
        .spawn(move || {
            let _ = tx.send(child.wait_with_output());
        })
        .with_context(|| format!("waiting for {what}"))?;
    loop {
        match rx.recv_timeout(POLL) {
            Ok(r) => return r.with_context(|| format!("waiting for {what}")),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(anyhow!("the thread waiting for {what} (pid {pid}) died"))
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        if let Err(int) = check_on(flag) {
            stop_pid(pid, what, &rx, grace);
            return Err(int.into());
        }
    }
}

/// SIGTERM to `pid`; if `reaped` says nothing within `grace`, SIGKILL to it
/// and its descendants (`timeout` and the generator under it); waits a
/// bounded time for the reaping.
fn stop_pid<T>(pid: u32, what: &str, reaped: &mpsc::Receiver<T>, grace: Duration) {
    let p = Pid::from_raw(pid as i32);
    let _ = kill(p, Signal::SIGTERM);
    if reaped.recv_timeout(grace).is_ok() {
        note(format!("stopped {what} (pid {pid})"));
        return;
    }
    let tree = descendants(pid);
    let _ = kill(p, Signal::SIGKILL);
    for d in tree {
        let _ = kill(Pid::from_raw(d as i32), Signal::SIGKILL);
    }
    if reaped.recv_timeout(Duration::from_secs(5)).is_ok() {
        note(format!("killed {what} (pid {pid})"));
    } else {
        cleanup_failed(format!("{what} (pid {pid}) did not exit after SIGKILL"));
    }
}

/// Stops a child this process started: SIGTERM by its PID, up to `grace`
/// for it to exit (nginx's master stops its workers, sluice detaches its
/// XDP program), then SIGKILL to it and its descendants (a killed nginx
/// master leaves its workers running). Returns its exit status.
pub fn stop_child(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(s)) = child.try_wait() {
        return Some(s);
    }
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break,
        }
    }
    kill_tree(child)
}

/// SIGKILL to a child and its descendants; waits for the child.
pub fn kill_tree(child: &mut Child) -> Option<ExitStatus> {
    let tree = descendants(child.id());
    let _ = child.kill();
    for d in tree {
        let _ = kill(Pid::from_raw(d as i32), Signal::SIGKILL);
    }
    child.wait().ok()
}

/// The parent PID in a /proc/PID/stat line (field 4, after the name).
pub fn parent_of(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Every descendant of `pid` (children, their children, ...), from /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            if let Some(pp) = parent_of(&stat) {
                parents.push((p, pp));
            }
        }
    }
    tree_below(pid, &parents)
}

/// The descendants of `root` in a list of (pid, parent) pairs.
fn tree_below(root: u32, parents: &[(u32, u32)]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        for &(c, _) in parents.iter().filter(|(c, pp)| *pp == p && *c != root) {
            if !out.contains(&c) {
                out.push(c);
                todo.push(c);
            }
        }
    }
    out
}

/// Records a cleanup step for the final message (only after a signal:
/// a normal run stops servers all the time).
pub fn note(what: impl Into<String>) {
    if received().is_some() {
        NOTES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what.into());
    }
}

/// Reports a cleanup step that failed (always printed; after a signal the
/// final message says the cleanup was incomplete).
pub fn cleanup_failed(what: impl Into<String>) {
    let what = what.into();
    eprintln!("cleanup: {what}");
    if received().is_some() {
        CLEANUP_FAILED.store(true, Ordering::SeqCst);
    }
}

/// How a `sluice-bench run` ended after SIGINT or SIGTERM, once everything
/// it set up was torn down.
#[derive(Debug)]
pub struct InterruptedRun {
    pub signal: i32,
    /// The cleanup steps taken after the signal.
    pub cleaned: Vec<String>,
    /// Whether every cleanup step succeeded.
    pub complete: bool,
    /// The error the run stopped with (`None`: it had finished).
    pub stopped_at: Option<String>,
}

impl InterruptedRun {
    /// 128 + the signal, as a shell reports a process the signal ended.
    pub fn exit_code(&self) -> u8 {
        u8::try_from(128 + self.signal).unwrap_or(1)
    }
}

impl fmt::Display for InterruptedRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interrupted by {}: ", signal_name(self.signal))?;
        if self.complete {
            write!(f, "cleaned up")?;
            if self.cleaned.is_empty() {
                write!(f, " (nothing was running)")?;
            } else {
                write!(f, ": {}", self.cleaned.join(", "))?;
            }
        } else {
            write!(
                f,
                "cleanup INCOMPLETE (see above; `sluice-bench topo down --prefix PREFIX` \
                 deletes a topology left behind)"
            )?;
            if !self.cleaned.is_empty() {
                write!(f, "; done: {}", self.cleaned.join(", "))?;
            }
        }
        match &self.stopped_at {
            Some(e) => write!(f, "\n  (stopped at: {e})"),
            None => write!(
                f,
                "\n  (after the last measurement: the results above are complete)"
            ),
        }
    }
}

impl std::error::Error for InterruptedRun {}

/// The result of a whole run: unchanged without a signal; after one, an
/// [`InterruptedRun`] (call it once everything the run set up is dropped).
pub fn outcome<T>(result: Result<T>) -> Result<T> {
    let Some(signal) = received() else {
        return result;
    };
    let cleaned = std::mem::take(&mut *NOTES.lock().unwrap_or_else(|e| e.into_inner()));
    Err(InterruptedRun {
        signal,
        cleaned,
        complete: !CLEANUP_FAILED.load(Ordering::SeqCst),
        stopped_at: result.err().map(|e| format!("{e:#}")),
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets `flag` to SIGINT after `after`, from another thread.
    fn raise_later(flag: &Arc<AtomicUsize>, after: Duration) {
        let f = Arc::clone(flag);
        std::thread::spawn(move || {
            std::thread::sleep(after);
            f.store(Signal::SIGINT as usize, Ordering::SeqCst);
        });
    }

    #[test]
    fn sleep_runs_its_course_without_a_signal() {
        let f = AtomicUsize::new(0);
        let t = Instant::now();
        assert_eq!(sleep_on(&f, Duration::from_millis(120)), Ok(()));
        assert!(t.elapsed() >= Duration::from_millis(120));
    }

    #[test]
    fn sleep_is_cut_short_by_a_signal() {
        let f = Arc::new(AtomicUsize::new(0));
        raise_later(&f, Duration::from_millis(100));
        let t = Instant::now();
        let r = sleep_on(&f, Duration::from_secs(30));
        assert_eq!(r, Err(Interrupted(Signal::SIGINT as i32)));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        // Once set, every later wait fails at once.
        assert!(check_on(&f).is_err());
        assert!(sleep_on(&f, Duration::from_secs(30)).is_err());
        assert_eq!(
            Interrupted(Signal::SIGTERM as i32).to_string(),
            "interrupted by SIGTERM"
        );
    }

    #[test]
    fn output_returns_what_the_child_printed() {
        let f = AtomicUsize::new(0);
        let mut c = Command::new("sh");
        c.args(["-c", "echo out; echo err >&2; exit 3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = wait_output_on(&f, c.spawn().unwrap(), "sh", GRACE).unwrap();
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    /// Whether `pid` is gone (or a zombie nobody reaped yet), within 3 s.
    fn gone(pid: u32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return true,
                Ok(s) if s[s.rfind(')').unwrap() + 2..].starts_with('Z') => return true,
                Ok(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        false
    }

    #[test]
    fn a_signal_stops_the_child_by_pid() {
        let f = Arc::new(AtomicUsize::new(0));
        let child = Command::new("sleep")
            .arg("30")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        raise_later(&f, Duration::from_millis(100));
        let t = Instant::now();
        let err = wait_output_on(&f, child, "sleep", GRACE).unwrap_err();
        assert_eq!(
            err.downcast_ref::<Interrupted>(),
            Some(&Interrupted(Signal::SIGINT as i32))
        );
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert!(gone(pid));
    }

    #[test]
    fn a_child_deaf_to_sigterm_is_killed_with_its_descendants() {
        let f = Arc::new(AtomicUsize::new(0));
        // The shell and its background sleep both ignore SIGTERM; the sleep
        // holds the stdout pipe.
        let child = Command::new("sh")
            .args(["-c", "trap '' TERM; sleep 30 & wait"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut below = descendants(pid);
        while below.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            below = descendants(pid);
        }
        assert_eq!(below.len(), 1, "the background sleep: {below:?}");
        raise_later(&f, Duration::from_millis(50));
        let t = Instant::now();
        let err = wait_output_on(&f, child, "sh", Duration::from_millis(300)).unwrap_err();
        assert!(err.downcast_ref::<Interrupted>().is_some(), "{err:#}");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert!(gone(pid) && gone(below[0]));
    }

    #[test]
    fn stop_child_kills_what_ignores_sigterm() {
        let mut child = Command::new("sh")
            .args(["-c", "trap '' TERM; sleep 30 & wait"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(3);
        while descendants(pid).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let below = descendants(pid);
        let t = Instant::now();
        let status = stop_child(&mut child, Duration::from_millis(300)).unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(Signal::SIGKILL as i32)
        );
        assert!(t.elapsed() < Duration::from_secs(3));
        assert!(below.iter().all(|&p| gone(p)), "{below:?}");
        // A child that obeys SIGTERM just exits.
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let status = stop_child(&mut child, GRACE).unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(Signal::SIGTERM as i32)
        );
    }

    #[test]
    fn descendants_follow_the_tree() {
        let pairs = [(10, 1), (11, 10), (12, 11), (13, 10), (20, 1), (21, 20)];
        let mut d = tree_below(10, &pairs);
        d.sort_unstable();
        assert_eq!(d, vec![11, 12, 13]);
        assert!(tree_below(12, &pairs).is_empty());
        assert_eq!(parent_of("77 (nginx: worker (x)) S 42 77 77 0"), Some(42));
        assert_eq!(parent_of("garbage"), None);
    }

    #[test]
    fn the_final_message_says_what_was_cleaned_up() {
        let mut r = InterruptedRun {
            signal: Signal::SIGINT as i32,
            cleaned: vec!["stopped wrk (pid 7)".into(), "deleted topology `x`".into()],
            complete: true,
            stopped_at: Some("nginx keepalive rep 0: interrupted by SIGINT".into()),
        };
        assert_eq!(
            r.to_string(),
            "interrupted by SIGINT: cleaned up: stopped wrk (pid 7), deleted topology `x`\n  \
             (stopped at: nginx keepalive rep 0: interrupted by SIGINT)"
        );
        assert_eq!(r.exit_code(), 130);
        r.complete = false;
        r.signal = Signal::SIGTERM as i32;
        assert!(r
            .to_string()
            .starts_with("interrupted by SIGTERM: cleanup INCOMPLETE (see above;"));
        assert_eq!(r.exit_code(), 143);
        assert_eq!(signal_name(2), "SIGINT");
    }
}
