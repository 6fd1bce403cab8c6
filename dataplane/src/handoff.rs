//! Cross-core handoff: the rare segment that lands on a queue that does not
//! own its flow.
//!
//! Each poll loop owns its TCP connections. A NIC's RSS keeps a flow on one
//! queue, but not always: a peer may rehash (Linux picks a new TX queue
//! after an RTO), RSS tables change, and on veth the queue is whatever the
//! sender's socket chose. Such a segment must reach the loop that owns the
//! connection: never dropped, never a second connection.
//!
//! - [`Directory`]: who owns which 4-tuple. Written when a loop creates or
//!   forgets a connection, read only when a segment misses the local table,
//!   so it is off the hot path. Sharded mutexes keep contention negligible.
//! - [`Mailbox`] / [`Postman`]: one bounded crossbeam channel per loop
//!   carrying a copy of the frame, plus an eventfd that wakes the owner if it
//!   sleeps in ppoll(). Copying is fine: this is the rare path.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam::channel::{self, Receiver, Sender, TrySendError};
use nix::sys::eventfd::{EfdFlags, EventFd};
use sluice_netstack::tcp::tuple::FourTuple;

use crate::neigh::L2Header;

const SHARDS: usize = 64;

/// Which loop owns each connection that exists anywhere in this process.
#[derive(Debug)]
pub struct Directory {
    shards: Vec<Mutex<HashMap<FourTuple, u16>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for Directory {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
        }
    }
}

impl Directory {
    fn shard(&self, t: &FourTuple) -> &Mutex<HashMap<FourTuple, u16>> {
        &self.shards[self.hasher.hash_one(t) as usize % SHARDS]
    }

    pub fn owner(&self, t: &FourTuple) -> Option<u16> {
        self.shard(t)
            .lock()
            .expect("directory shard")
            .get(t)
            .copied()
    }

    /// Record `core` as owner unless someone already is; returns the owner.
    pub fn claim(&self, t: FourTuple, core: u16) -> u16 {
        *self
            .shard(&t)
            .lock()
            .expect("directory shard")
            .entry(t)
            .or_insert(core)
    }

    /// Forget `t` if `core` owns it.
    pub fn release(&self, t: &FourTuple, core: u16) {
        let mut m = self.shard(t).lock().expect("directory shard");
        if m.get(t) == Some(&core) {
            m.remove(t);
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().expect("directory shard").len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A frame on its way to the loop that owns its flow.
#[derive(Debug)]
pub struct Forwarded {
    pub frame: Vec<u8>,
    /// Loop that received it from the NIC.
    pub from: u16,
}

/// What a loop's mailbox carries.
#[derive(Debug)]
pub enum Mail {
    Frame(Forwarded),
    /// The main thread's word on an upstream destination (IPv4-mapped
    /// address): the Ethernet header that reaches its next hop, or None
    /// when the kernel lost it.
    Neighbour([u8; 16], Option<L2Header>),
}

/// The receiving end of a loop's handoff channel.
#[derive(Debug)]
pub struct Mailbox {
    rx: Receiver<Mail>,
    bell: Arc<EventFd>,
}

/// The sending ends of every loop's channel.
#[derive(Clone, Debug)]
pub struct Postman {
    boxes: Vec<(Sender<Mail>, Arc<EventFd>)>,
    /// Frames that found a full channel (never expected; counted).
    pub overflow: Arc<AtomicU64>,
}

/// Channels for `n` loops: mailbox i belongs to loop i.
pub fn channels(n: usize, capacity: usize) -> std::io::Result<(Vec<Mailbox>, Postman)> {
    let mut mailboxes = Vec::with_capacity(n);
    let mut boxes = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = channel::bounded(capacity);
        let bell = Arc::new(EventFd::from_flags(
            EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC,
        )?);
        mailboxes.push(Mailbox {
            rx,
            bell: Arc::clone(&bell),
        });
        boxes.push((tx, bell));
    }
    Ok((
        mailboxes,
        Postman {
            boxes,
            overflow: Arc::default(),
        },
    ))
}

impl Postman {
    /// Hand `frame` to loop `to` and ring its bell. False if its channel is
    /// full (counted in `overflow`).
    pub fn send(&self, to: u16, frame: Forwarded) -> bool {
        self.post(to, Mail::Frame(frame))
    }

    /// Tell every loop how to reach an upstream destination. False if a
    /// channel was full (that loop keeps its old word until the next
    /// change or resync).
    pub fn broadcast_neighbour(&self, addr: [u8; 16], header: Option<L2Header>) -> bool {
        // Every loop is told, even after one channel was full.
        let mut all = true;
        for to in 0..self.boxes.len() as u16 {
            all &= self.post(to, Mail::Neighbour(addr, header));
        }
        all
    }

    fn post(&self, to: u16, mail: Mail) -> bool {
        let (tx, bell) = &self.boxes[to as usize];
        match tx.try_send(mail) {
            Ok(()) => {
                let _ = bell.write(1);
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.overflow.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    pub fn loops(&self) -> usize {
        self.boxes.len()
    }
}

impl Mailbox {
    /// Next mail, if any.
    pub fn try_recv(&self) -> Option<Mail> {
        self.rx.try_recv().ok()
    }

    /// Silence the bell before draining, so a frame sent meanwhile rings it
    /// again.
    pub fn reset_bell(&self) {
        let _ = self.bell.read();
    }

    /// The fd to include in the loop's ppoll().
    pub fn bell(&self) -> BorrowedFd<'_> {
        self.bell.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(port: u16) -> FourTuple {
        FourTuple::new(
            "198.18.0.100:80".parse().unwrap(),
            format!("198.18.0.1:{port}").parse().unwrap(),
        )
    }

    #[test]
    fn first_claim_wins_and_release_is_by_owner() {
        let d = Directory::default();
        assert_eq!(d.claim(t(1), 0), 0);
        assert_eq!(d.claim(t(1), 1), 0, "a second claim must not steal");
        d.release(&t(1), 1);
        assert_eq!(d.owner(&t(1)), Some(0), "only the owner releases");
        d.release(&t(1), 0);
        assert_eq!(d.owner(&t(1)), None);
        assert!(d.is_empty());
    }

    #[test]
    fn claims_race_to_one_owner() {
        let d = Arc::new(Directory::default());
        let winners: Vec<u16> = (0..8u16)
            .map(|core| {
                let d = Arc::clone(&d);
                std::thread::spawn(move || d.claim(t(7), core))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        assert!(winners.windows(2).all(|w| w[0] == w[1]), "{winners:?}");
    }

    #[test]
    fn mail_arrives_and_rings() {
        let (boxes, post) = channels(2, 4).unwrap();
        assert!(post.send(
            1,
            Forwarded {
                frame: vec![1, 2, 3],
                from: 0
            }
        ));
        let mut fds = [nix::poll::PollFd::new(
            boxes[1].bell(),
            nix::poll::PollFlags::POLLIN,
        )];
        assert_eq!(
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap(),
            1
        );
        boxes[1].reset_bell();
        assert!(matches!(boxes[1].try_recv(), Some(Mail::Frame(f)) if f.frame == vec![1, 2, 3]));
        assert!(boxes[1].try_recv().is_none());
        for _ in 0..4 {
            assert!(post.send(
                0,
                Forwarded {
                    frame: vec![],
                    from: 1
                }
            ));
        }
        assert!(!post.send(
            0,
            Forwarded {
                frame: vec![],
                from: 1
            }
        ));
        assert_eq!(post.overflow.load(Ordering::Relaxed), 1);
    }
}
