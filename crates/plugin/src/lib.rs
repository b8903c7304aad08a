//! berth's isolator plugin protocol (docs/plugin-protocol.md), both sides'
//! messages in [`protocol`], and [`serve`]: any [`Isolator`] as a plugin
//! process.
//!
//! A plugin written in Rust implements the same trait as berth's built-in
//! isolators and serves it on its stdin and stdout:
//!
//! ```no_run
//! use berth_isolator::{ContainerConfig, ContainerId, Contribution, Isolator, IsolatorError};
//! struct Hello;
//! impl Isolator for Hello {
//!     fn name(&self) -> &str { "hello" }
//!     fn prepare(&self, id: &ContainerId, _: &ContainerConfig) -> Result<Contribution, IsolatorError> {
//!         let mut c = Contribution::default();
//!         c.env.insert("HELLO".into(), id.to_string());
//!         Ok(c)
//!     }
//! }
//! let stdin = std::io::stdin().lock();
//! berth_plugin::serve(Hello, "hello", stdin, std::io::stdout()).unwrap();
//! ```

pub mod protocol;
mod serve;

pub use serve::serve;
