//! The access log: one JSON object per finished proxied request, written by
//! a thread of its own so a loop never waits on a disk. Loops hand it whole
//! lines through a bounded queue; a full queue drops the line (counted in
//! `proxy_access_log_dropped`) rather than block.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use crossbeam::channel::{self, Receiver, Sender};

/// Lines in flight between the loops and the writer.
const QUEUE: usize = 65_536;

/// Opens `path` (appending; `-` is standard output) and starts the writer.
/// The thread ends when every sender is dropped, after flushing.
pub fn spawn(path: &str) -> Result<(Sender<String>, JoinHandle<()>)> {
    let out: Box<dyn Write + Send> = if path == "-" {
        Box::new(std::io::stdout())
    } else {
        Box::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening the access log {path}"))?,
        )
    };
    let (tx, rx) = channel::bounded(QUEUE);
    let h = std::thread::Builder::new()
        .name("sluice-accesslog".into())
        .spawn(move || write_lines(rx, out))?;
    Ok((tx, h))
}

fn write_lines(rx: Receiver<String>, out: Box<dyn Write + Send>) {
    let mut w = BufWriter::with_capacity(256 * 1024, out);
    while let Ok(line) = rx.recv() {
        let _ = w.write_all(line.as_bytes());
        // Flush when the queue is empty: batches under load, promptly
        // when quiet.
        while let Ok(line) = rx.try_recv() {
            let _ = w.write_all(line.as_bytes());
        }
        let _ = w.flush();
    }
    let _ = w.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_reach_the_file_in_order_and_are_flushed_at_the_end() {
        let path = std::env::temp_dir().join(format!("sluice-access-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let (tx, h) = spawn(path.to_str().unwrap()).unwrap();
        for i in 0..1000 {
            tx.send(format!("{{\"n\":{i}}}\n")).unwrap();
        }
        drop(tx);
        h.join().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1000);
        assert_eq!(lines[999], "{\"n\":999}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn an_unwritable_path_is_an_error_naming_it() {
        let e = spawn("/nonexistent-dir/x.log").unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent-dir/x.log"));
    }
}
