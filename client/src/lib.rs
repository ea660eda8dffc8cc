//! zz-client: the sans-IO client core and the async client.
pub mod core;
pub use core::{Accepted, ClientCore, Destination};
