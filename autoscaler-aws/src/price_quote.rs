//! An on-demand price and where it comes from: plain data shared by `prices` (which
//! makes them) and `metrics` (which exports them), so neither depends on the other.

/// Where one on-demand price comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PriceSource {
    /// The configuration's overrides.
    Override,
    /// The Price List API.
    Api,
    /// The built-in table.
    Table,
    /// Estimated from vCPUs, memory and GPUs (no listed price).
    Estimate,
}

impl PriceSource {
    /// `override`, `api`, `table` or `estimate` (status ConfigMap, metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            PriceSource::Override => "override",
            PriceSource::Api => "api",
            PriceSource::Table => "table",
            PriceSource::Estimate => "estimate",
        }
    }
}

/// One instance type's on-demand price and its source.
#[derive(Clone, Debug, PartialEq)]
pub struct PriceQuote {
    /// Instance type.
    pub instance_type: String,
    /// USD per hour.
    pub usd_per_hour: f64,
    /// Where it comes from.
    pub source: PriceSource,
}
