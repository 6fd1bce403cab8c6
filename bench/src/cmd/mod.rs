//! One module per subcommand: its clap arguments and a `run` function.

pub mod chaos;
pub mod gen;
pub mod kernel_echo;
pub mod reflect;
pub mod run;
pub mod tls_load;
pub mod topo;
