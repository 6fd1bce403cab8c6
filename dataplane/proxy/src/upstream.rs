//! The app on an upstream TCP connection: the TCP service drives it like
//! any other [`App`], and it hands everything to the loop's proxy.

use std::rc::Rc;

use sluice_app::{App, Close, Time};

use crate::core::LoopProxy;
use crate::UpstreamId;

/// One upstream connection's app. Dropping it (the TCP connection closed
/// or was reset, or the service gave up on it) tells the proxy, which
/// retries or fails the request it carried.
#[derive(Debug)]
pub struct UpstreamApp {
    proxy: Rc<LoopProxy>,
    id: UpstreamId,
    /// The last time the service passed in (for the drop).
    now: Time,
}

impl UpstreamApp {
    pub(crate) fn new(proxy: Rc<LoopProxy>, id: UpstreamId) -> Self {
        Self {
            proxy,
            id,
            now: Time::ZERO,
        }
    }

    pub fn id(&self) -> UpstreamId {
        self.id
    }
}

impl Drop for UpstreamApp {
    fn drop(&mut self) {
        let (id, now) = (self.id, self.now);
        self.proxy.with_core(|c| c.up_gone(now, id));
    }
}

impl App for UpstreamApp {
    fn on_read(&mut self, now: Time, data: &[u8]) -> usize {
        self.now = now;
        let id = self.id;
        self.proxy.with_core(|c| c.up_read(now, id, data))
    }

    fn on_read_eof(&mut self, now: Time) {
        self.now = now;
        let id = self.id;
        self.proxy.with_core(|c| c.up_eof(now, id))
    }

    fn poll_write(&mut self, now: Time, buf: &mut [u8]) -> usize {
        self.now = now;
        let id = self.id;
        self.proxy.with_core(|c| c.up_write(id, buf))
    }

    fn wants_read(&self) -> bool {
        self.proxy.with_core(|c| c.up_wants_read(self.id))
    }

    fn wants_write(&self) -> bool {
        self.proxy.with_core(|c| c.up_wants_write(self.id))
    }

    fn deadline(&self) -> Option<Time> {
        self.proxy.with_core(|c| c.up_deadline(self.id))
    }

    fn on_timeout(&mut self, now: Time) {
        self.now = now;
        let id = self.id;
        self.proxy.with_core(|c| c.up_timeout(now, id))
    }

    fn memory(&self) -> usize {
        self.proxy.with_core(|c| c.up_memory(self.id))
    }

    fn close(&self) -> Close {
        self.proxy.with_core(|c| c.up_close(self.id))
    }

    fn is_idle(&self) -> bool {
        self.proxy.with_core(|c| c.up_idle(self.id))
    }

    fn release_idle_memory(&mut self) {
        let id = self.id;
        self.proxy.with_core(|c| c.up_release_memory(id))
    }

    fn drain(&mut self, now: Time) {
        self.now = now;
        let id = self.id;
        self.proxy.with_core(|c| c.up_drain(id))
    }
}
