//! route-default: Hearth's default route plugin (world `route-plugin`), which owns
//! the choice of target among a deployment's candidates.
//!
//! Policy (see [`policy::rank`]):
//! - Candidates are ranked in classes: healthy with weight ≥ 1, then healthy
//!   with weight 0 (drained), then unhealthy with weight ≥ 1, then unhealthy
//!   with weight 0. Health is the host's view and may be stale, so unhealthy
//!   targets are still tried, only last.
//! - Within a class: weighted least-in-flight, score = (in_flight + 1) / weight
//!   (compared exactly, as fractions), lower first; ties go to the lower recent
//!   latency (a candidate with no measurement yet counts as slower than any
//!   measured one), then to the smaller id, so the order is deterministic.
//! - The first ranked candidate is the target; all the others, in rank order,
//!   are the fallbacks. With no healthy candidate the best unhealthy one is
//!   picked, so that the host can still try.
//! - No candidates → `default-routing`. The plugin never denies.
//! - `attempt` is only logged (debug) and counted (`retries`): the host has
//!   already removed the targets that failed.
//!
//! Config: none; any config other than an empty table is refused at admission.

pub mod policy;

#[cfg(target_arch = "wasm32")]
mod glue;
