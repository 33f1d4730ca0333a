//! Plain data-parallel SGD (GNC paper §2): g~ = (1/M) Σ_i g_i, every worker at x.

use super::Method;

pub struct Baseline;

/// Every worker computes at the parameters: [`Method`]'s defaults.
impl Method for Baseline {}
