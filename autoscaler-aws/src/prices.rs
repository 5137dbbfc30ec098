//! On-demand prices, USD/hour, Linux, shared tenancy, from (first that has the type):
//! 1. the configuration's overrides;
//! 2. the Price List query API (`pricing:GetProducts`, us-east-1 endpoint, the cluster's
//!    region), read for the instance types in use, refreshed every
//!    [`DEFAULT_REFRESH`] through the `Pricing` token bucket;
//! 3. a built-in table (us-east-1), like cluster-autoscaler's; the only source when the
//!    Price List API is denied (one warning) or unreachable;
//! 4. an estimate from vCPUs, memory and GPUs.
//!
//! Spot prices come from `DescribeSpotPriceHistory` (see [`crate::discovery`]).

use crate::api::{Api, Op};
use crate::error::AwsError;
pub use crate::price_quote::{PriceQuote, PriceSource};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
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

/// How often Price List prices are read again (on-demand prices change a few times a
/// year; the API's own data is refreshed daily at most).
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(6 * 3600);
/// Retry delay after a failed (not denied) Price List read.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(15 * 60);
/// Instance types per `GetProducts` call (`ANY_OF` on `instanceType`).
const TYPES_PER_CALL: usize = 50;
/// Products per `GetProducts` page (the API's maximum).
const PRODUCTS_PER_PAGE: i32 = 100;

/// Prices read from the Price List API, shared by every clone.
#[derive(Debug, Default)]
struct ApiPrices {
    prices: BTreeMap<String, f64>,
    /// Types asked for, and when (answered or not), so an unpriced type is not re-asked
    /// every scan.
    asked: BTreeMap<String, Instant>,
    /// No call before this.
    not_before: Option<Instant>,
    /// The API was denied (warned once).
    denied: bool,
}

/// On-demand prices per instance type, USD/hour.
#[derive(Clone, Debug)]
pub struct OnDemandPrices {
    table: BTreeMap<String, f64>,
    overrides: BTreeMap<String, f64>,
    /// Whether to read the Price List API at all.
    pub use_api: bool,
    /// How long Price List prices are kept.
    pub refresh: Duration,
    from_api: Arc<RwLock<ApiPrices>>,
}

impl PartialEq for OnDemandPrices {
    fn eq(&self, other: &Self) -> bool {
        self.table == other.table
            && self.overrides == other.overrides
            && self.use_api == other.use_api
            && self.refresh == other.refresh
    }
}

impl Default for OnDemandPrices {
    fn default() -> Self {
        OnDemandPrices {
            table: TABLE.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            overrides: BTreeMap::new(),
            use_api: true,
            refresh: DEFAULT_REFRESH,
            from_api: Arc::default(),
        }
    }
}

impl OnDemandPrices {
    /// The built-in table with `overrides` on top.
    pub fn with_overrides(overrides: impl IntoIterator<Item = (String, f64)>) -> Self {
        OnDemandPrices {
            overrides: overrides.into_iter().collect(),
            ..OnDemandPrices::default()
        }
    }

    /// The listed price (override, API or table) and its source.
    pub fn listed_with_source(&self, instance_type: &str) -> Option<(f64, PriceSource)> {
        if let Some(p) = self.overrides.get(instance_type) {
            return Some((*p, PriceSource::Override));
        }
        let api = self
            .from_api
            .read()
            .ok()?
            .prices
            .get(instance_type)
            .copied();
        api.map(|p| (p, PriceSource::Api)).or_else(|| {
            self.table
                .get(instance_type)
                .map(|p| (*p, PriceSource::Table))
        })
    }

    /// The listed price (override, API or table), if any.
    pub fn listed(&self, instance_type: &str) -> Option<f64> {
        self.listed_with_source(instance_type).map(|(p, _)| p)
    }

    /// The listed price with its source, or an estimate at m5 rates (USD 0.0336 per
    /// vCPU-hour plus 0.0036 per GiB-hour) plus USD 0.50 per GPU.
    pub fn quote(&self, instance_type: &str, vcpus: u32, memory_mib: u64, gpus: u64) -> PriceQuote {
        let (usd_per_hour, source) = self.listed_with_source(instance_type).unwrap_or_else(|| {
            (
                0.0336 * f64::from(vcpus)
                    + 0.0036 * (memory_mib as f64 / 1024.0)
                    + 0.5 * gpus as f64,
                PriceSource::Estimate,
            )
        });
        PriceQuote {
            instance_type: instance_type.to_string(),
            usd_per_hour,
            source,
        }
    }

    /// The listed price or the estimate, with `false` for an estimate.
    pub fn price(
        &self,
        instance_type: &str,
        vcpus: u32,
        memory_mib: u64,
        gpus: u64,
    ) -> (f64, bool) {
        let q = self.quote(instance_type, vcpus, memory_mib, gpus);
        (q.usd_per_hour, q.source != PriceSource::Estimate)
    }

    /// Whether the Price List API was denied (the table is in use).
    pub fn api_denied(&self) -> bool {
        self.from_api.read().is_ok_and(|a| a.denied)
    }

    /// Reads the Price List prices of `types` in the cluster's region when they are
    /// older than [`OnDemandPrices::refresh`] or never asked. Denied: the table stays,
    /// one warning, asked again after the refresh period. Other failures keep the
    /// prices already read and retry after 15 minutes.
    pub async fn refresh_from_api(&self, api: &Api, types: &BTreeSet<String>) {
        if !self.use_api {
            return;
        }
        let Some(region) = api.region().map(str::to_string) else {
            return;
        };
        let due: Vec<String> = {
            let Ok(state) = self.from_api.read() else {
                return;
            };
            if state.not_before.is_some_and(|t| Instant::now() < t) {
                return;
            }
            types
                .iter()
                .filter(|t| !self.overrides.contains_key(*t))
                .filter(|t| {
                    state
                        .asked
                        .get(*t)
                        .is_none_or(|at| at.elapsed() >= self.refresh)
                })
                .cloned()
                .collect()
        };
        if due.is_empty() {
            return;
        }
        for chunk in due.chunks(TYPES_PER_CALL) {
            match get_products(api, &region, chunk).await {
                Ok(found) => {
                    let Ok(mut state) = self.from_api.write() else {
                        return;
                    };
                    let now = Instant::now();
                    for t in chunk {
                        state.asked.insert(t.clone(), now);
                    }
                    if state.denied {
                        tracing::info!("pricing:GetProducts allowed again: on-demand prices from the Price List API");
                    }
                    state.denied = false;
                    state.prices.extend(found);
                }
                Err(e) => {
                    let Ok(mut state) = self.from_api.write() else {
                        return;
                    };
                    if matches!(e, AwsError::AccessDenied { .. }) {
                        if !state.denied {
                            tracing::warn!(error = %e, "on-demand prices come from the built-in table; grant pricing:GetProducts for prices from the Price List API");
                        }
                        state.denied = true;
                        state.not_before = Some(Instant::now() + self.refresh);
                    } else {
                        tracing::warn!(error = %e, "on-demand prices not refreshed from the Price List API; retrying in 15 minutes");
                        state.not_before = Some(Instant::now() + RETRY_AFTER_FAILURE);
                    }
                    return;
                }
            }
        }
    }
}

/// One `GetProducts` query: Linux, shared tenancy, no pre-installed software, on-demand
/// capacity in use, `types` in `region`; every page.
async fn get_products(
    api: &Api,
    region: &str,
    types: &[String],
) -> Result<BTreeMap<String, f64>, AwsError> {
    use aws_sdk_pricing::types::{Filter, FilterType};
    let filter = |kind: FilterType, field: &str, value: &str| {
        Filter::builder()
            .r#type(kind)
            .field(field)
            .value(value)
            .build()
            .map_err(|e| AwsError::Config(format!("Price List filter {field}: {e}")))
    };
    let filters = vec![
        filter(FilterType::AnyOf, "instanceType", &types.join(","))?,
        filter(FilterType::TermMatch, "regionCode", region)?,
        filter(FilterType::TermMatch, "operatingSystem", "Linux")?,
        filter(FilterType::TermMatch, "tenancy", "Shared")?,
        filter(FilterType::TermMatch, "preInstalledSw", "NA")?,
        filter(FilterType::TermMatch, "capacitystatus", "Used")?,
        filter(FilterType::TermMatch, "licenseModel", "No License required")?,
    ];
    let mut prices = BTreeMap::new();
    let mut token = None;
    loop {
        let out = api
            .call(
                Op::GetProducts,
                api.pricing
                    .get_products()
                    .service_code("AmazonEC2")
                    .format_version("aws_v1")
                    .set_filters(Some(filters.clone()))
                    .max_results(PRODUCTS_PER_PAGE)
                    .set_next_token(token.take())
                    .send(),
            )
            .await?;
        for product in out.price_list() {
            match parse_product(product) {
                Some((t, p)) => {
                    prices.entry(t).or_insert(p);
                }
                None => tracing::debug!(product, "Price List product without an hourly USD price"),
            }
        }
        token = out
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            return Ok(prices);
        }
    }
}

/// The instance type and hourly on-demand USD price of one Price List product document
/// (`product.attributes.instanceType`, `terms.OnDemand.*.priceDimensions.*`).
fn parse_product(document: &str) -> Option<(String, f64)> {
    let v: serde_json::Value = serde_json::from_str(document).ok()?;
    let instance_type = v
        .pointer("/product/attributes/instanceType")?
        .as_str()?
        .to_string();
    let price = v
        .pointer("/terms/OnDemand")?
        .as_object()?
        .values()
        .filter_map(|term| term.get("priceDimensions")?.as_object())
        .flat_map(|dims| dims.values())
        .filter(|d| d.get("unit").and_then(|u| u.as_str()) == Some("Hrs"))
        .filter_map(|d| {
            d.pointer("/pricePerUnit/USD")?
                .as_str()?
                .parse::<f64>()
                .ok()
        })
        .find(|p| *p > 0.0)?;
    Some((instance_type, price))
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
        assert_eq!(p.quote("x1.custom", 1, 1, 0).source, PriceSource::Override);
        assert_eq!(p.quote("m5.large", 2, 8192, 0).source, PriceSource::Table);
        assert_eq!(
            p.quote("m9.large", 2, 8192, 0).source,
            PriceSource::Estimate
        );
    }

    #[test]
    fn price_list_product_documents_parse() {
        // The shape of one GetProducts PriceList entry (trimmed).
        let doc = r#"{"product":{"productFamily":"Compute Instance","attributes":
            {"instanceType":"m5.large","regionCode":"eu-west-1","operatingSystem":"Linux"}},
            "terms":{"OnDemand":{"SKU.JRTCKXETXF":{"priceDimensions":{"SKU.JRTCKXETXF.6YS6EN2CT7":
            {"unit":"Hrs","pricePerUnit":{"USD":"0.1070000000"}}}}}}}"#;
        assert_eq!(parse_product(doc), Some(("m5.large".to_string(), 0.107)));
        let no_hours = doc.replace("\"Hrs\"", "\"Quantity\"");
        assert_eq!(parse_product(&no_hours), None);
        assert_eq!(parse_product("not json"), None);
    }
}
