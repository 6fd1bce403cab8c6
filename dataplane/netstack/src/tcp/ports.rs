//! Ephemeral ports for active opens, chosen so that the owning core can be
//! recovered from the packet: core k of n uses only ports p with
//! p % n == k. STUB: bodies come with the components branch.

use core::ops::RangeInclusive;

#[derive(Clone, Debug)]
pub struct EphemeralPorts {
    range: RangeInclusive<u16>,
    core: u16,
    ncores: u16,
}

impl EphemeralPorts {
    /// Ports of `range` that belong to `core` of `ncores`, tried starting at
    /// a point derived from `seed`. None if the range has no port for it.
    pub fn new(range: RangeInclusive<u16>, core: u16, ncores: u16, _seed: u64) -> Option<Self> {
        Some(Self {
            range,
            core,
            ncores,
        })
    }
    /// The next port of this core for which `in_use` says false.
    pub fn allocate(&mut self, _in_use: impl FnMut(u16) -> bool) -> Option<u16> {
        let _ = (&self.range, self.core, self.ncores);
        todo!("components branch")
    }
    /// The core that owns `port` among `ncores`.
    pub fn owner(port: u16, ncores: u16) -> u16 {
        port % ncores.max(1)
    }
}
