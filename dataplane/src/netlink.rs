//! Route lookups and kernel-managed neighbour entries for upstream next hops.
//!
//! The poll loops build every TCP segment towards a backend from scratch and
//! need the Ethernet header that reaches it. Rather than running our own
//! ARP/ND, the dataplane asks the kernel for the route to each backend (next
//! hop, output interface, preferred source address) and creates a *managed*
//! neighbour entry (`NTF_EXT_MANAGED`, what `ip neigh add ADDR dev DEV
//! managed` sends) for each next hop: the kernel resolves it at once and keeps
//! it REACHABLE by itself, with its own state machine, rate limits and flood
//! resistance. The main thread reads the entries back and pushes the MACs to
//! the loops.
//!
//! Everything here is synchronous, blocking rtnetlink on one socket; it runs
//! on the main thread, never in a poll loop.
//!
//! Entries this module creates carry [`SLUICE_NEIGH_PROTOCOL`] in
//! `NDA_PROTOCOL` (`ip neigh` shows it as `proto 243`), so a later run can
//! tell its own leftovers (after a crash) from entries that belong to someone
//! else and must be left alone.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use netlink_packet_core::{
    ErrorMessage, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator,
    NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourExtFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteType, RouteVia,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

/// `NDA_PROTOCOL` value that marks neighbour entries created by sluice
/// (unassigned in iproute2's rt_protos).
pub const SLUICE_NEIGH_PROTOCOL: u8 = 243;

/// Nothing may hang forever on a kernel that does not answer.
const RECV_TIMEOUT: Duration = Duration::from_secs(2);
/// Larger than any rtnetlink dump datagram (the kernel sizes them to at most
/// 32 KiB), so nothing is ever truncated.
const RECV_BUFFER: usize = 64 * 1024;
/// A dump the kernel flags as interrupted (the table changed meanwhile) is
/// repeated this many times before its result is taken as it is.
const DUMP_ATTEMPTS: usize = 3;
/// How often [`NextHops::wait_resolved`] reads the table.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// `NLMSGERR_ATTR_MSG`: the extended-ack error string.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// The kernel's answer for one destination (`ip route get`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    pub dst: IpAddr,
    /// The gateway, or `dst` itself when it is on-link.
    pub next_hop: IpAddr,
    /// Output interface.
    pub ifindex: u32,
    /// The source address the kernel would use.
    pub prefsrc: Option<IpAddr>,
}

/// `NUD_*` state of a neighbour entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NeighState {
    Incomplete,
    Reachable,
    Stale,
    Delay,
    Probe,
    Failed,
    Noarp,
    Permanent,
    None,
    /// A value this crate does not know (the kernel never combines states).
    Other(u16),
}

impl NeighState {
    /// Whether an entry in this state may be used to send. Stale, Delay and
    /// Probe are: the kernel is re-confirming them, and its own transmit path
    /// sends with them too.
    pub fn is_usable(self) -> bool {
        matches!(
            self,
            Self::Reachable
                | Self::Stale
                | Self::Delay
                | Self::Probe
                | Self::Permanent
                | Self::Noarp
        )
    }
}

impl From<NeighbourState> for NeighState {
    fn from(s: NeighbourState) -> Self {
        match s {
            NeighbourState::Incomplete => Self::Incomplete,
            NeighbourState::Reachable => Self::Reachable,
            NeighbourState::Stale => Self::Stale,
            NeighbourState::Delay => Self::Delay,
            NeighbourState::Probe => Self::Probe,
            NeighbourState::Failed => Self::Failed,
            NeighbourState::Noarp => Self::Noarp,
            NeighbourState::Permanent => Self::Permanent,
            NeighbourState::None => Self::None,
            other => Self::Other(u16::from(other)),
        }
    }
}

/// One entry of the kernel's neighbour table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighbourEntry {
    pub addr: IpAddr,
    pub ifindex: u32,
    /// The link-layer address, if the entry has one and it is Ethernet-sized.
    pub mac: Option<[u8; 6]>,
    pub state: NeighState,
    /// `NTF_EXT_MANAGED`: the kernel keeps it resolved by itself.
    pub managed: bool,
    /// Tagged with [`SLUICE_NEIGH_PROTOCOL`]: created by sluice (this or an
    /// earlier run).
    pub created_by_sluice: bool,
}

impl NeighbourEntry {
    /// The MAC if the entry may be used to send now.
    pub fn usable_mac(&self) -> Option<[u8; 6]> {
        self.mac.filter(|_| self.state.is_usable())
    }

    fn from_message(msg: &NeighbourMessage) -> Option<Self> {
        let mut addr = None;
        let mut mac = None;
        let mut managed = false;
        let mut created_by_sluice = false;
        for attr in &msg.attributes {
            match attr {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                    addr = Some(IpAddr::V4(*a))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                    addr = Some(IpAddr::V6(*a))
                }
                NeighbourAttribute::LinkLayerAddress(bytes) => {
                    mac = <[u8; 6]>::try_from(bytes.as_slice()).ok()
                }
                NeighbourAttribute::ExtFlags(flags) => {
                    managed = flags.contains(NeighbourExtFlags::Managed)
                }
                NeighbourAttribute::Protocol(p) => {
                    created_by_sluice = u8::from(*p) == SLUICE_NEIGH_PROTOCOL
                }
                _ => {}
            }
        }
        Some(Self {
            addr: addr?,
            ifindex: msg.header.ifindex,
            mac,
            state: msg.header.state.into(),
            managed,
            created_by_sluice,
        })
    }
}

/// What one request brought back.
#[derive(Default)]
struct Reply {
    messages: Vec<RouteNetlinkMessage>,
    /// `NLM_F_DUMP_INTR`: the dump may be inconsistent.
    interrupted: bool,
}

/// A blocking rtnetlink socket: one request at a time, replies matched by
/// sequence number.
#[derive(Debug)]
pub struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        // Connected to the kernel: the kernel then refuses datagrams other
        // processes would send to our port.
        socket.connect(&SocketAddr::new(0, 0))?;
        let timeout = TimeVal::new(
            RECV_TIMEOUT.as_secs() as _,
            RECV_TIMEOUT.subsec_micros() as _,
        );
        setsockopt(&socket, sockopt::ReceiveTimeout, &timeout)?;
        // Error strings from the kernel (extended ack), without the echoed
        // request. Both are optional: older kernels just give bare errnos.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        Ok(Self {
            socket,
            seq: 0,
            buf: vec![0; RECV_BUFFER],
        })
    }

    /// RTM_GETROUTE for one destination, like `ip route get`.
    pub fn route_get(&mut self, dst: IpAddr) -> io::Result<Route> {
        let dst = canonical(dst);
        let reply = self
            .transact(
                RouteNetlinkMessage::GetRoute(route_get_message(dst)),
                NLM_F_ACK,
            )
            .map_err(|e| context(e, format_args!("no route to {dst}")))?;
        let msg = reply
            .messages
            .iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => Some(r),
                _ => None,
            })
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("route lookup for {dst}: the kernel answered without a route"),
                )
            })?;
        parse_route(dst, msg)
    }

    /// Create a managed entry for `addr` on `ifindex`. Ok(false) if an entry
    /// already existed: it is left as it is (permanent entries in particular
    /// are never converted) and is not ours to delete.
    pub fn add_managed_neighbour(&mut self, ifindex: u32, addr: IpAddr) -> io::Result<bool> {
        let addr = canonical(addr);
        let msg = managed_neighbour_message(ifindex, addr);
        match self.transact(
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(context(
                e,
                format_args!(
                    "creating a managed neighbour entry for {addr} on {}",
                    if_name(ifindex)
                ),
            )),
        }
    }

    /// Delete the entry for `addr` on `ifindex` (NotFound if there is none).
    pub fn delete_neighbour(&mut self, ifindex: u32, addr: IpAddr) -> io::Result<()> {
        let addr = canonical(addr);
        let mut msg = NeighbourMessage::default();
        msg.header.family = family(addr);
        msg.header.ifindex = ifindex;
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::from(
                addr,
            )));
        self.transact(RouteNetlinkMessage::DelNeighbour(msg), NLM_F_ACK)
            .map(drop)
            .map_err(|e| {
                context(
                    e,
                    format_args!(
                        "deleting the neighbour entry for {addr} on {}",
                        if_name(ifindex)
                    ),
                )
            })
    }

    /// The neighbour table of one interface, IPv4 and IPv6.
    pub fn neighbours(&mut self, ifindex: u32) -> io::Result<Vec<NeighbourEntry>> {
        let mut attempt = 1;
        loop {
            // NDA_IFINDEX makes the kernel filter; AF_UNSPEC covers ARP and ND.
            let mut msg = NeighbourMessage::default();
            msg.header.family = AddressFamily::Unspec;
            msg.attributes.push(NeighbourAttribute::IfIndex(ifindex));
            let reply = self
                .transact(RouteNetlinkMessage::GetNeighbour(msg), NLM_F_DUMP)
                .map_err(|e| {
                    context(
                        e,
                        format_args!("reading the neighbour table of {}", if_name(ifindex)),
                    )
                })?;
            if reply.interrupted && attempt < DUMP_ATTEMPTS {
                attempt += 1;
                continue;
            }
            return Ok(reply
                .messages
                .iter()
                .filter_map(|m| match m {
                    RouteNetlinkMessage::NewNeighbour(n) => NeighbourEntry::from_message(n),
                    _ => None,
                })
                // Older kernels ignore the filter attribute.
                .filter(|e| e.ifindex == ifindex)
                .collect());
        }
    }

    /// Send one request and collect the replies up to its ACK/error (or, for
    /// a dump, NLMSG_DONE).
    fn transact(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<Reply> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        let sent = self.socket.send(&out, 0)?;
        if sent != out.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("netlink: sent {sent} of {} bytes", out.len()),
            ));
        }

        let mut reply = Reply::default();
        // A message that fails to parse does not end the exchange: the rest
        // is drained first, so the next request starts clean.
        let mut failure: Option<io::Error> = None;
        loop {
            let n = self.recv()?;
            let mut finished = false;
            let mut off = 0;
            while off < n {
                let data = &self.buf[off..n];
                let nl = NetlinkBuffer::new_checked(data).map_err(invalid_data)?;
                let len = nl.length() as usize;
                off += len.next_multiple_of(4);
                // Replies to an earlier request that timed out.
                if nl.sequence_number() != seq {
                    continue;
                }
                if nl.flags() & NLM_F_DUMP_INTR != 0 {
                    reply.interrupted = true;
                }
                let kind = nl.message_type();
                let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[..len]);
                let msg = match parsed {
                    Ok(msg) => msg,
                    Err(e) => {
                        finished |= kind == NLMSG_DONE || kind == NLMSG_ERROR;
                        failure.get_or_insert_with(|| invalid_data(e));
                        continue;
                    }
                };
                match msg.payload {
                    NetlinkPayload::InnerMessage(m) => reply.messages.push(m),
                    NetlinkPayload::Done(done) => {
                        finished = true;
                        if done.code < 0 {
                            failure.get_or_insert_with(|| io::Error::from_raw_os_error(-done.code));
                        }
                    }
                    NetlinkPayload::Error(err) => {
                        finished = true;
                        if err.code.is_some() {
                            failure.get_or_insert_with(|| nack_error(msg.header.flags, &err));
                        }
                    }
                    NetlinkPayload::Overrun(_) => {
                        failure.get_or_insert_with(|| {
                            io::Error::other("netlink: the kernel reported an overrun")
                        });
                    }
                    _ => {}
                }
            }
            if finished {
                return match failure {
                    Some(e) => Err(e),
                    None => Ok(reply),
                };
            }
        }
    }

    /// One datagram into `self.buf`; its length.
    fn recv(&mut self) -> io::Result<usize> {
        loop {
            // MSG_TRUNC: the full length comes back, so truncation is seen.
            match self
                .socket
                .recv(&mut &mut self.buf[..], nix::libc::MSG_TRUNC)
            {
                Ok(n) if n > self.buf.len() => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("netlink: a {n}-byte reply does not fit the receive buffer"),
                    ))
                }
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("netlink: no reply from the kernel within {RECV_TIMEOUT:?}"),
                    ))
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The next hops the dataplane keeps resolved for a set of destinations.
///
/// Routes are looked up once; a managed entry is created for each next hop
/// that has no entry yet (and again if one disappears, e.g. after `ip neigh
/// flush`). The entries it created are removed on [`close`](Self::close) or
/// drop, so nothing stays behind. Entries that existed before are used but
/// never modified or deleted — except leftovers tagged with
/// [`SLUICE_NEIGH_PROTOCOL`] (an earlier run that could not clean up), which
/// are adopted and removed like our own.
#[derive(Debug)]
pub struct NextHops {
    nl: Netlink,
    ifindex: u32,
    /// (destination as given, its route), in the order given, without
    /// duplicates.
    routes: Vec<(IpAddr, Route)>,
    /// Next hops whose entries are ours to delete.
    owned: Vec<IpAddr>,
}

impl NextHops {
    /// Look up the route of every destination; each must leave through
    /// `ifindex`. Then create managed entries where none exist.
    pub fn new(nl: Netlink, ifindex: u32, destinations: &[IpAddr]) -> io::Result<Self> {
        // Built first, so an error below still removes what was created.
        let mut hops = Self {
            nl,
            ifindex,
            routes: Vec::with_capacity(destinations.len()),
            owned: Vec::new(),
        };
        for &dst in destinations {
            if hops.route(dst).is_some() {
                continue;
            }
            let route = hops.nl.route_get(dst)?;
            if route.ifindex != ifindex {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "the route to {} (next hop {}) leaves through {}, not through {}",
                        route.dst,
                        route.next_hop,
                        if_name(route.ifindex),
                        if_name(ifindex)
                    ),
                ));
            }
            hops.routes.push((dst, route));
        }
        let mut existing = Vec::new();
        for hop in hops.next_hops() {
            if hops.nl.add_managed_neighbour(ifindex, hop)? {
                hops.owned.push(hop);
            } else {
                existing.push(hop);
            }
        }
        if !existing.is_empty() {
            for entry in hops.nl.neighbours(ifindex)? {
                if existing.contains(&entry.addr) && entry.managed && entry.created_by_sluice {
                    tracing::info!(
                        next_hop = %entry.addr,
                        "adopting a managed neighbour entry left behind by an earlier run"
                    );
                    hops.owned.push(entry.addr);
                }
            }
        }
        Ok(hops)
    }

    /// The route of `dst` (IPv4-mapped and plain IPv4 forms are the same).
    pub fn route(&self, dst: IpAddr) -> Option<&Route> {
        let dst = canonical(dst);
        self.routes
            .iter()
            .find(|(_, r)| r.dst == dst)
            .map(|(_, r)| r)
    }

    /// The distinct next hops, in the order of the destinations.
    pub fn next_hops(&self) -> Vec<IpAddr> {
        let mut hops: Vec<IpAddr> = Vec::new();
        for (_, r) in &self.routes {
            if !hops.contains(&r.next_hop) {
                hops.push(r.next_hop);
            }
        }
        hops
    }

    /// Read the neighbour table: for every destination (as given to
    /// [`new`](Self::new)), its next hop's MAC if the entry is usable.
    pub fn refresh(&mut self) -> io::Result<Vec<(IpAddr, Option<[u8; 6]>)>> {
        let table: HashMap<IpAddr, NeighbourEntry> = self
            .nl
            .neighbours(self.ifindex)?
            .into_iter()
            .map(|e| (e.addr, e))
            .collect();
        for hop in self.next_hops() {
            if table.contains_key(&hop) {
                continue;
            }
            // Gone (flushed, or an entry we did not own was garbage
            // collected): create it again, now as ours.
            match self.nl.add_managed_neighbour(self.ifindex, hop) {
                Ok(true) => {
                    if !self.owned.contains(&hop) {
                        self.owned.push(hop);
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(next_hop = %hop, "{e}"),
            }
        }
        Ok(self
            .routes
            .iter()
            .map(|(dst, r)| (*dst, table.get(&r.next_hop).and_then(|e| e.usable_mac())))
            .collect())
    }

    /// Block up to `timeout` until every destination has a usable MAC;
    /// returns the destinations still without one.
    pub fn wait_resolved(&mut self, timeout: Duration) -> io::Result<Vec<IpAddr>> {
        let deadline = Instant::now() + timeout;
        loop {
            let missing: Vec<IpAddr> = self
                .refresh()?
                .into_iter()
                .filter(|(_, mac)| mac.is_none())
                .map(|(dst, _)| dst)
                .collect();
            let now = Instant::now();
            if missing.is_empty() || now >= deadline {
                return Ok(missing);
            }
            std::thread::sleep(POLL_INTERVAL.min(deadline - now));
        }
    }

    /// Remove the entries this instance owns.
    pub fn close(mut self) -> io::Result<()> {
        self.remove_owned()
    }

    fn remove_owned(&mut self) -> io::Result<()> {
        let owned = std::mem::take(&mut self.owned);
        if owned.is_empty() {
            return Ok(());
        }
        // Only entries that are still managed: one an operator has since
        // replaced (say, with a permanent one) is theirs now.
        let still_managed: Option<Vec<IpAddr>> = match self.nl.neighbours(self.ifindex) {
            Ok(table) => Some(
                table
                    .into_iter()
                    .filter(|e| e.managed)
                    .map(|e| e.addr)
                    .collect(),
            ),
            Err(e) => {
                tracing::warn!("{e}; deleting the entries without checking them");
                None
            }
        };
        let mut first_error = None;
        for hop in owned {
            if still_managed.as_ref().is_some_and(|m| !m.contains(&hop)) {
                continue;
            }
            match self.nl.delete_neighbour(self.ifindex, hop) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for NextHops {
    fn drop(&mut self) {
        if let Err(e) = self.remove_owned() {
            tracing::warn!("removing managed neighbour entries: {e}");
        }
    }
}

/// IPv4-mapped IPv6 addresses (the form the BPF maps use) must reach the
/// kernel as IPv4: as IPv6 they name no route and no ARP entry.
fn canonical(addr: IpAddr) -> IpAddr {
    addr.to_canonical()
}

fn family(addr: IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn route_get_message(dst: IpAddr) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family(dst);
    msg.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
    msg.header.flags = RouteFlags::LookupTable;
    msg.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(dst)));
    msg
}

/// What `ip neigh add ADDR dev DEV managed` sends (plus our protocol tag):
/// state NUD_NONE, as managed entries may not be permanent or noarp.
fn managed_neighbour_message(ifindex: u32, addr: IpAddr) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = family(addr);
    msg.header.ifindex = ifindex;
    msg.header.state = NeighbourState::None;
    msg.attributes = vec![
        NeighbourAttribute::Destination(NeighbourAddress::from(addr)),
        NeighbourAttribute::ExtFlags(NeighbourExtFlags::Managed),
        NeighbourAttribute::Protocol(RouteProtocol::from(SLUICE_NEIGH_PROTOCOL)),
    ];
    msg
}

fn parse_route(dst: IpAddr, msg: &RouteMessage) -> io::Result<Route> {
    match msg.header.kind {
        RouteType::Unicast => {}
        RouteType::Local => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{dst} is an address of this host"),
            ))
        }
        kind => {
            return Err(io::Error::new(
                io::ErrorKind::NetworkUnreachable,
                format!("no unicast route to {dst} (route type {kind:?})"),
            ))
        }
    }
    let mut route = Route {
        dst,
        next_hop: dst,
        ifindex: 0,
        prefsrc: None,
    };
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Oif(i) => route.ifindex = *i,
            RouteAttribute::Gateway(a) => {
                if let Some(a) = route_ip(a) {
                    route.next_hop = a;
                }
            }
            // An IPv4 route with an IPv6 next hop (RFC 5549).
            RouteAttribute::Via(RouteVia::Inet(a)) => route.next_hop = IpAddr::V4(*a),
            RouteAttribute::Via(RouteVia::Inet6(a)) => route.next_hop = IpAddr::V6(*a),
            RouteAttribute::PrefSource(a) => route.prefsrc = route_ip(a),
            _ => {}
        }
    }
    if route.ifindex == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the route to {dst} names no output interface"),
        ));
    }
    Ok(route)
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// An NLMSG_ERROR with a negative code, with the kernel's extended-ack
/// string when there is one. The errno's kind is kept (AlreadyExists,
/// NotFound, ...) so callers can match on it.
fn nack_error(flags: u16, err: &ErrorMessage) -> io::Error {
    let os = io::Error::from_raw_os_error(-err.raw_code());
    match extack_message(flags, &err.header) {
        Some(msg) => io::Error::new(os.kind(), format!("{os}: {msg}")),
        None => os,
    }
}

/// The NLMSGERR_ATTR_MSG string of an error's payload (after the errno): the
/// echoed request (only its header with NETLINK_CAP_ACK), then the TLVs.
fn extack_message(flags: u16, payload: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let echoed = if flags & NLM_F_CAPPED != 0 {
        16
    } else {
        u32::from_ne_bytes(payload.get(..4)?.try_into().ok()?) as usize
    };
    let tlvs = payload.get(echoed.next_multiple_of(4)..)?;
    for nla in NlasIterator::new(tlvs) {
        let nla = nla.ok()?;
        if nla.kind() == NLMSGERR_ATTR_MSG {
            let text = nla.value().split(|&b| b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
    }
    None
}

fn context(e: io::Error, what: std::fmt::Arguments<'_>) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn invalid_data(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("netlink: undecodable reply: {e}"),
    )
}

/// "NAME (index N)" for messages, or just the index if it has no name here.
fn if_name(ifindex: u32) -> String {
    // nix returns an empty name rather than an error for unknown indices.
    match nix::net::if_::if_indextoname(ifindex) {
        Ok(name) if !name.is_empty() => format!("{} (index {ifindex})", name.to_string_lossy()),
        _ => format!("interface index {ifindex}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::process::Command;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn ip4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
    }

    fn ip6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
    }

    #[test]
    fn v4_mapped_addresses_become_ipv4() {
        assert_eq!(canonical(ip6("::ffff:198.18.9.2")), ip4("198.18.9.2"));
        assert_eq!(canonical(ip6("2001:2:9::2")), ip6("2001:2:9::2"));
        let msg = route_get_message(canonical(ip6("::ffff:198.18.9.2")));
        assert_eq!(msg.header.address_family, AddressFamily::Inet);
        assert_eq!(msg.header.destination_prefix_length, 32);
    }

    #[test]
    fn managed_neighbour_request_round_trips() {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        header.sequence_number = 7;
        let msg = managed_neighbour_message(5, ip6("2001:2:9::2"));
        let mut packet = NetlinkMessage::new(
            header,
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(msg.clone())),
        );
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        // nlmsghdr (16) + ndmsg (12) + NDA_DST (4 + 16) + NDA_FLAGS_EXT (8)
        // + NDA_PROTOCOL (4 + 1, padded to 8).
        assert_eq!(bytes.len(), 16 + 12 + 20 + 8 + 8);
        assert_eq!(u16::from_ne_bytes([bytes[4], bytes[5]]), 28); // RTM_NEWNEIGH
        assert_eq!(u16::from_ne_bytes([bytes[24], bytes[25]]), 0); // NUD_NONE
        let ext = &bytes[48..56];
        assert_eq!(u16::from_ne_bytes([ext[2], ext[3]]), 15); // NDA_FLAGS_EXT
        assert_eq!(u32::from_ne_bytes(ext[4..8].try_into().unwrap()), 1); // NTF_EXT_MANAGED

        let back = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes).unwrap();
        assert_eq!(back.header.sequence_number, 7);
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(parsed)) = back.payload
        else {
            panic!("not a neighbour message: {back:?}");
        };
        assert_eq!(parsed, msg);
        let entry = NeighbourEntry::from_message(&parsed).unwrap();
        assert_eq!(entry.addr, ip6("2001:2:9::2"));
        assert_eq!(entry.ifindex, 5);
        assert_eq!(entry.state, NeighState::None);
        assert!(entry.managed && entry.created_by_sluice);
        assert_eq!(entry.usable_mac(), None);
    }

    #[test]
    fn route_replies_are_interpreted() {
        let dst = ip4("198.18.77.5");
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.kind = RouteType::Unicast;
        msg.attributes = vec![
            RouteAttribute::Destination(RouteAddress::from(dst)),
            RouteAttribute::Oif(3),
            RouteAttribute::Gateway(RouteAddress::Inet("198.18.9.2".parse().unwrap())),
            RouteAttribute::PrefSource(RouteAddress::Inet("198.18.9.1".parse().unwrap())),
        ];
        let route = parse_route(dst, &msg).unwrap();
        assert_eq!(
            route,
            Route {
                dst,
                next_hop: ip4("198.18.9.2"),
                ifindex: 3,
                prefsrc: Some(ip4("198.18.9.1")),
            }
        );
        msg.attributes
            .retain(|a| !matches!(a, RouteAttribute::Gateway(_)));
        assert_eq!(parse_route(dst, &msg).unwrap().next_hop, dst);

        msg.header.kind = RouteType::BlackHole;
        let e = parse_route(dst, &msg).unwrap_err();
        assert!(e.to_string().contains("198.18.77.5"), "{e}");
        msg.header.kind = RouteType::Local;
        assert!(parse_route(dst, &msg).is_err());
    }

    #[test]
    fn extack_strings_are_extracted() {
        // Capped: the echoed request is just its 16-byte header.
        let mut payload = vec![0u8; 16];
        let text = b"Invalid NTF_* flag combination\0";
        let nla_len = 4 + text.len();
        payload.extend_from_slice(&(nla_len as u16).to_ne_bytes());
        payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        payload.extend_from_slice(text);
        payload.resize(payload.len().next_multiple_of(4), 0);
        let flags = NLM_F_CAPPED | NLM_F_ACK_TLVS;
        assert_eq!(
            extack_message(flags, &payload).as_deref(),
            Some("Invalid NTF_* flag combination")
        );
        assert_eq!(extack_message(NLM_F_CAPPED, &payload), None);

        let mut err = ErrorMessage::default();
        err.code = std::num::NonZeroI32::new(-libc_eexist());
        err.header = payload;
        let e = nack_error(flags, &err);
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert!(e.to_string().contains("flag combination"), "{e}");
    }

    fn libc_eexist() -> i32 {
        nix::errno::Errno::EEXIST as i32
    }

    #[test]
    fn usable_states() {
        let mut entry = NeighbourEntry {
            addr: ip4("198.18.9.2"),
            ifindex: 1,
            mac: Some([2, 0, 0, 0, 0, 1]),
            state: NeighState::Stale,
            managed: true,
            created_by_sluice: false,
        };
        for (state, usable) in [
            (NeighState::Reachable, true),
            (NeighState::Stale, true),
            (NeighState::Delay, true),
            (NeighState::Probe, true),
            (NeighState::Permanent, true),
            (NeighState::Noarp, true),
            (NeighState::Incomplete, false),
            (NeighState::Failed, false),
            (NeighState::None, false),
        ] {
            entry.state = state;
            assert_eq!(entry.usable_mac().is_some(), usable, "{state:?}");
        }
        entry.state = NeighState::Reachable;
        entry.mac = None;
        assert_eq!(entry.usable_mac(), None);
    }

    // ---- Root tests: a veth pair between two network namespaces. ----

    const MAC_TIMEOUT: Duration = Duration::from_secs(3);

    fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the netlink namespace tests need root (network namespaces, veth, neighbour entries); \
             run them as root"
        );
    }

    fn run(cmd: &str, args: &[&str]) -> String {
        let out = Command::new(cmd)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
        assert!(
            out.status.success(),
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Namespaces A and B joined by a veth: A has 198.18.9.1 and
    /// 2001:2:9::1, B has .2/::2 and .3; A routes 198.18.77.0/24 and
    /// 2001:2:77::/64 via B. Deleted on drop, also when the test panics.
    struct Pair {
        a: String,
        b: String,
        va: String,
        vb: String,
    }

    impl Pair {
        fn new() -> Self {
            require_root();
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let prefix = format!(
                "slnl{}{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let pair = Self {
                a: format!("{prefix}a"),
                b: format!("{prefix}b"),
                va: format!("{prefix}x"),
                vb: format!("{prefix}y"),
            };
            let (a, b, va, vb) = (&pair.a, &pair.b, &pair.va, &pair.vb);
            run("ip", &["netns", "add", a]);
            run("ip", &["netns", "add", b]);
            // No DAD: with a tentative link-local address, ND does not start
            // until DAD ends (~2 s after link-up), which is not what these
            // tests are about.
            for ns in [a, b] {
                in_netns(ns, || {
                    for conf in ["all", "default"] {
                        let key = format!("/proc/sys/net/ipv6/conf/{conf}/accept_dad");
                        std::fs::write(&key, "0").unwrap_or_else(|e| panic!("{key}: {e}"));
                    }
                });
            }
            run(
                "ip",
                &[
                    "link", "add", va, "netns", a, "type", "veth", "peer", "name", vb, "netns", b,
                ],
            );
            for (ns, dev, v4, v6) in [
                (a, va, "198.18.9.1/24", "2001:2:9::1/64"),
                (b, vb, "198.18.9.2/24", "2001:2:9::2/64"),
            ] {
                run("ip", &["-n", ns, "addr", "add", v4, "dev", dev]);
                run("ip", &["-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
                run("ip", &["-n", ns, "link", "set", dev, "up"]);
                run("ip", &["-n", ns, "link", "set", "lo", "up"]);
            }
            run("ip", &["-n", b, "addr", "add", "198.18.9.3/24", "dev", vb]);
            run(
                "ip",
                &[
                    "-n",
                    a,
                    "route",
                    "add",
                    "198.18.77.0/24",
                    "via",
                    "198.18.9.2",
                ],
            );
            run(
                "ip",
                &[
                    "-n",
                    a,
                    "-6",
                    "route",
                    "add",
                    "2001:2:77::/64",
                    "via",
                    "2001:2:9::2",
                ],
            );
            pair
        }

        fn ifindex_a(&self) -> u32 {
            self.link_json(&self.a, &self.va)["ifindex"]
                .as_u64()
                .expect("ifindex") as u32
        }

        fn peer_mac(&self) -> [u8; 6] {
            let json = self.link_json(&self.b, &self.vb);
            let text = json["address"].as_str().expect("address");
            let bytes: Vec<u8> = text
                .split(':')
                .map(|h| u8::from_str_radix(h, 16).unwrap())
                .collect();
            bytes.try_into().unwrap()
        }

        fn link_json(&self, ns: &str, dev: &str) -> serde_json::Value {
            let out = run("ip", &["-n", ns, "-j", "link", "show", "dev", dev]);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            v[0].clone()
        }

        /// `ip neigh` in A, for failure messages.
        fn neigh_a(&self) -> String {
            run("ip", &["-n", &self.a, "neigh", "show"])
        }

        /// Run `body` in a thread that has entered namespace A.
        fn in_a<T: Send + 'static>(&self, body: impl FnOnce() -> T + Send + 'static) -> T {
            in_netns(&self.a, body)
        }
    }

    /// Run `body` in a thread that has entered network namespace `ns` (the
    /// test's own thread stays where it is).
    fn in_netns<T: Send + 'static>(ns: &str, body: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            body()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }

    impl Drop for Pair {
        fn drop(&mut self) {
            for ns in [&self.a, &self.b] {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
    }

    fn entry(table: &[NeighbourEntry], addr: IpAddr) -> Option<&NeighbourEntry> {
        table.iter().find(|e| e.addr == addr)
    }

    #[test]
    fn root_route_get() {
        let pair = Pair::new();
        let ifindex = pair.ifindex_a();
        pair.in_a(move || {
            let mut nl = Netlink::open().unwrap();
            for (dst, hop, src) in [
                ("198.18.9.2", "198.18.9.2", "198.18.9.1"),
                ("198.18.77.5", "198.18.9.2", "198.18.9.1"),
                ("::ffff:198.18.77.5", "198.18.9.2", "198.18.9.1"),
                ("2001:2:9::2", "2001:2:9::2", "2001:2:9::1"),
                ("2001:2:77::5", "2001:2:9::2", "2001:2:9::1"),
            ] {
                let dst: IpAddr = dst.parse().unwrap();
                let route = nl.route_get(dst).unwrap();
                assert_eq!(
                    route,
                    Route {
                        dst: canonical(dst),
                        next_hop: hop.parse().unwrap(),
                        ifindex,
                        prefsrc: Some(src.parse().unwrap()),
                    },
                    "{dst}"
                );
            }
            // No default route in the namespace.
            for dst in [ip4("203.0.113.9"), ip6("2001:db8::9")] {
                let e = nl.route_get(dst).unwrap_err();
                assert!(e.to_string().contains(&dst.to_string()), "{e}");
            }
            let e = nl.route_get(ip4("198.18.9.1")).unwrap_err();
            assert!(e.to_string().contains("198.18.9.1"), "{e}");
        });
    }

    #[test]
    fn root_next_hops_resolve_and_clean_up() {
        let pair = Pair::new();
        let ifindex = pair.ifindex_a();
        let peer = pair.peer_mac();
        let a = pair.a.clone();
        let va = pair.va.clone();
        // Entries that exist before and are not ours: a permanent one and a
        // managed one an operator added.
        run(
            "ip",
            &[
                "-n",
                &a,
                "neigh",
                "add",
                "198.18.9.99",
                "lladdr",
                "02:00:00:00:00:99",
                "dev",
                &va,
                "nud",
                "permanent",
            ],
        );
        run(
            "ip",
            &[
                "-n",
                &a,
                "neigh",
                "add",
                "198.18.9.3",
                "dev",
                &va,
                "managed",
            ],
        );

        let destinations = [
            ip4("198.18.9.2"),
            ip4("198.18.77.5"),
            ip6("::ffff:198.18.77.6"),
            ip6("2001:2:9::2"),
            ip6("2001:2:77::5"),
            ip4("198.18.9.99"),
            ip4("198.18.9.3"),
            ip6("::ffff:198.18.9.2"), // the same as the first
        ];
        let table = pair.in_a(move || {
            let nl = Netlink::open().unwrap();
            let mut hops = NextHops::new(nl, ifindex, &destinations).unwrap();
            assert_eq!(
                hops.next_hops(),
                [
                    ip4("198.18.9.2"),
                    ip6("2001:2:9::2"),
                    ip4("198.18.9.99"),
                    ip4("198.18.9.3")
                ]
            );
            assert_eq!(hops.owned, [ip4("198.18.9.2"), ip6("2001:2:9::2")]);
            let r = hops.route(ip4("198.18.77.6")).unwrap();
            assert_eq!(r.next_hop, ip4("198.18.9.2"));
            assert_eq!(r.prefsrc, Some(ip4("198.18.9.1")));

            let start = Instant::now();
            let missing = hops.wait_resolved(MAC_TIMEOUT).unwrap();
            eprintln!("next hops resolved in {:?}", start.elapsed());
            assert!(missing.is_empty(), "unresolved: {missing:?}");

            let macs = hops.refresh().unwrap();
            assert_eq!(macs.len(), 7);
            for (dst, mac) in &macs {
                let want = if *dst == ip4("198.18.9.99") {
                    [2, 0, 0, 0, 0, 0x99]
                } else {
                    peer
                };
                assert_eq!(*mac, Some(want), "{dst}");
            }
            assert_eq!(macs[2].0, ip6("::ffff:198.18.77.6"));

            let mut nl = Netlink::open().unwrap();
            let before = nl.neighbours(ifindex).unwrap();
            for addr in [ip4("198.18.9.2"), ip6("2001:2:9::2")] {
                let e = entry(&before, addr).unwrap_or_else(|| panic!("{addr}: {before:?}"));
                assert!(e.managed && e.created_by_sluice, "{e:?}");
            }
            let operator = entry(&before, ip4("198.18.9.3")).unwrap();
            assert!(operator.managed && !operator.created_by_sluice);
            assert_eq!(
                entry(&before, ip4("198.18.9.99")).unwrap().state,
                NeighState::Permanent
            );

            hops.close().unwrap();
            nl.neighbours(ifindex).unwrap()
        });
        assert!(entry(&table, ip4("198.18.9.2")).is_none(), "{table:?}");
        assert!(entry(&table, ip6("2001:2:9::2")).is_none(), "{table:?}");
        let permanent = entry(&table, ip4("198.18.9.99")).expect("permanent entry kept");
        assert_eq!(permanent.state, NeighState::Permanent);
        assert_eq!(permanent.mac, Some([2, 0, 0, 0, 0, 0x99]));
        assert!(
            entry(&table, ip4("198.18.9.3")).is_some_and(|e| e.managed),
            "{}",
            pair.neigh_a()
        );
    }

    #[test]
    fn root_unresolvable_next_hop_stays_none() {
        let pair = Pair::new();
        let ifindex = pair.ifindex_a();
        pair.in_a(move || {
            let nl = Netlink::open().unwrap();
            let dsts = [ip4("198.18.9.77"), ip4("198.18.9.2")];
            let mut hops = NextHops::new(nl, ifindex, &dsts).unwrap();
            let missing = hops.wait_resolved(Duration::from_millis(500)).unwrap();
            assert_eq!(missing, [ip4("198.18.9.77")]);
            let macs = hops.refresh().unwrap();
            assert_eq!(macs[0], (ip4("198.18.9.77"), None));
            assert!(macs[1].1.is_some());
            let mut nl = Netlink::open().unwrap();
            let table = nl.neighbours(ifindex).unwrap();
            let e = entry(&table, ip4("198.18.9.77")).unwrap();
            assert!(e.managed && e.usable_mac().is_none(), "{e:?}");
            drop(hops);
            let table = nl.neighbours(ifindex).unwrap();
            assert!(entry(&table, ip4("198.18.9.77")).is_none(), "{table:?}");
        });
    }

    #[test]
    fn root_next_hops_errors_recreation_drop_and_adoption() {
        let pair = Pair::new();
        let ifindex = pair.ifindex_a();
        let va = pair.va.clone();
        pair.in_a(move || {
            let lo = nix::net::if_::if_nametoindex("lo").unwrap();
            let e = NextHops::new(Netlink::open().unwrap(), lo, &[ip4("198.18.77.5")]).unwrap_err();
            let text = e.to_string();
            assert!(text.contains("198.18.77.5") && text.contains(&va), "{text}");
            let e = NextHops::new(Netlink::open().unwrap(), ifindex, &[ip6("2001:db8::9")])
                .unwrap_err();
            assert!(e.to_string().contains("2001:db8::9"), "{e}");

            let mut nl = Netlink::open().unwrap();
            // The raw calls.
            assert!(nl
                .add_managed_neighbour(ifindex, ip4("198.18.9.2"))
                .unwrap());
            assert!(!nl
                .add_managed_neighbour(ifindex, ip4("198.18.9.2"))
                .unwrap());
            nl.delete_neighbour(ifindex, ip4("198.18.9.2")).unwrap();
            let e = nl.delete_neighbour(ifindex, ip4("198.18.9.2")).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");

            // An entry flushed behind our back is created again.
            let dsts = [ip4("198.18.9.2"), ip6("2001:2:9::2")];
            let mut hops = NextHops::new(Netlink::open().unwrap(), ifindex, &dsts).unwrap();
            assert!(hops.wait_resolved(MAC_TIMEOUT).unwrap().is_empty());
            nl.delete_neighbour(ifindex, ip6("2001:2:9::2")).unwrap();
            let start = Instant::now();
            assert!(hops.wait_resolved(MAC_TIMEOUT).unwrap().is_empty());
            eprintln!("re-created v6 entry resolved in {:?}", start.elapsed());
            assert!(entry(&nl.neighbours(ifindex).unwrap(), ip6("2001:2:9::2"))
                .is_some_and(|e| e.managed));
            // Dropping without close() cleans up as well.
            drop(hops);
            let table = nl.neighbours(ifindex).unwrap();
            assert!(table.iter().all(|e| !e.managed), "{table:?}");

            // A tagged leftover of an earlier run is adopted and removed.
            assert!(nl
                .add_managed_neighbour(ifindex, ip4("198.18.9.3"))
                .unwrap());
            let hops =
                NextHops::new(Netlink::open().unwrap(), ifindex, &[ip4("198.18.9.3")]).unwrap();
            assert_eq!(hops.owned, [ip4("198.18.9.3")]);
            hops.close().unwrap();
            assert!(entry(&nl.neighbours(ifindex).unwrap(), ip4("198.18.9.3")).is_none());
        });
    }
}
