//! zz-experiments: the deterministic simulator ([`sim`]) that drives the real agreement
//! drivers through seeded fault schedules, and the experiments built on it.

pub mod sim;
