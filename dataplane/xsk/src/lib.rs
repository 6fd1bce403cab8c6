//! AF_XDP sockets, UMEM frame ownership and the kernel calls around them.
//! This is the only crate of sluice that contains unsafe code.
pub mod link;
pub mod probe;
