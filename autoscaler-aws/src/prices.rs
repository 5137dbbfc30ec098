//! On-demand prices. EC2 has no API for them (the Price List API is a separate,
//! us-east-1-only service), so, like cluster-autoscaler, the adapter ships a table of
//! Linux on-demand prices (us-east-1, USD/hour) that the configuration can replace or
//! extend, and estimates types it does not know from their vCPUs and memory.
//! Spot prices come from `DescribeSpotPriceHistory` (see [`crate::discovery`]).

use std::collections::BTreeMap;

const TABLE: &[(&str, f64)] = &[
    ("t3.medium", 0.0416),
    ("t3.large", 0.0832),
    ("t3.xlarge", 0.1664),
    ("t3.2xlarge", 0.3328),
    ("m5.large", 0.096),
    ("m5.xlarge", 0.192),
    ("m5.2xlarge", 0.384),
    ("m5.4xlarge", 0.768),
    ("m5.8xlarge", 1.536),
    ("m5a.large", 0.086),
    ("m5a.xlarge", 0.172),
    ("m5a.2xlarge", 0.344),
    ("m6i.large", 0.096),
    ("m6i.xlarge", 0.192),
    ("m6i.2xlarge", 0.384),
    ("m6i.4xlarge", 0.768),
    ("m6a.large", 0.0864),
    ("m6a.xlarge", 0.1728),
    ("m7i.large", 0.1008),
    ("m7i.xlarge", 0.2016),
    ("m7i.2xlarge", 0.4032),
    ("c5.large", 0.085),
    ("c5.xlarge", 0.17),
    ("c5.2xlarge", 0.34),
    ("c5.4xlarge", 0.68),
    ("c5a.large", 0.077),
    ("c6i.large", 0.085),
    ("c6i.xlarge", 0.17),
    ("c6i.2xlarge", 0.34),
    ("c7i.large", 0.08925),
    ("c7i.xlarge", 0.1785),
    ("r5.large", 0.126),
    ("r5.xlarge", 0.252),
    ("r5.2xlarge", 0.504),
    ("r6i.large", 0.126),
    ("r6i.xlarge", 0.252),
    ("r6i.2xlarge", 0.504),
    ("g4dn.xlarge", 0.526),
    ("g4dn.2xlarge", 0.752),
    ("g5.xlarge", 1.006),
    ("p3.2xlarge", 3.06),
];

/// On-demand prices per instance type, USD/hour.
#[derive(Clone, Debug, PartialEq)]
pub struct OnDemandPrices {
    table: BTreeMap<String, f64>,
}

impl Default for OnDemandPrices {
    fn default() -> Self {
        OnDemandPrices {
            table: TABLE.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }
}

impl OnDemandPrices {
    /// The built-in table with `overrides` on top.
    pub fn with_overrides(overrides: impl IntoIterator<Item = (String, f64)>) -> Self {
        let mut p = OnDemandPrices::default();
        p.table.extend(overrides);
        p
    }

    /// The price from the table, if listed.
    pub fn listed(&self, instance_type: &str) -> Option<f64> {
        self.table.get(instance_type).copied()
    }

    /// The listed price, or an estimate at m5 rates (USD 0.0336 per vCPU-hour plus
    /// 0.0036 per GiB-hour) plus USD 0.50 per GPU, flagged by `false`.
    pub fn price(
        &self,
        instance_type: &str,
        vcpus: u32,
        memory_mib: u64,
        gpus: u64,
    ) -> (f64, bool) {
        match self.listed(instance_type) {
            Some(p) => (p, true),
            None => (
                0.0336 * f64::from(vcpus)
                    + 0.0036 * (memory_mib as f64 / 1024.0)
                    + 0.5 * gpus as f64,
                false,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_and_estimated() {
        let p = OnDemandPrices::with_overrides([("x1.custom".to_string(), 9.0)]);
        assert_eq!(p.price("m5.large", 2, 8192, 0), (0.096, true));
        assert_eq!(p.price("x1.custom", 1, 1, 0), (9.0, true));
        let (est, listed) = p.price("m9.large", 2, 8192, 0);
        assert!(!listed);
        assert!((est - 0.096).abs() < 1e-9, "{est}");
    }
}
