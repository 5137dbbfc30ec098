//! On-demand prices from the Price List API, with the real SDK clients.
//!
//! moto has no Price List service. The fault proxy in front of moto answers
//! `GetProducts` with an AWS-shaped JSON answer (or AWS's AccessDenied): this stands
//! in for AWS, not for our code; the adapter's real `aws-sdk-pricing` call, its filters
//! and the parsing of the product documents all run. Groups, launch templates and
//! instance types are moto's.

mod common;

use autoscaler_aws::{AwsCloud, AwsConfig, GroupSpec, PriceQuote, PriceSource, RetrySettings};
use common::{sdk_config, tag, Fault, FaultProxy, Moto, Raw};
use std::time::Duration;

/// One `GetProducts` product document (the API returns each as a JSON string).
fn product(instance_type: &str, usd: f64) -> String {
    serde_json::json!({
        "product": {
            "productFamily": "Compute Instance",
            "attributes": {
                "instanceType": instance_type,
                "regionCode": "us-east-1",
                "operatingSystem": "Linux",
                "tenancy": "Shared",
            },
            "sku": "SKU1",
        },
        "terms": {"OnDemand": {"SKU1.JRTCKXETXF": {"priceDimensions": {
            "SKU1.JRTCKXETXF.6YS6EN2CT7": {
                "unit": "Hrs",
                "pricePerUnit": {"USD": format!("{usd:.10}")},
            },
        }}}},
    })
    .to_string()
}

fn get_products_answer(products: &[String]) -> String {
    serde_json::json!({"FormatVersion": "aws_v1", "PriceList": products}).to_string()
}

async fn on_demand_group(raw: &Raw, name: &str, instance_type: &str, subnet: &str) {
    let lt = raw
        .launch_template(&format!("lt-{name}"), instance_type, false)
        .await;
    raw.asg
        .create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .min_size(0)
        .max_size(5)
        .desired_capacity(0)
        .vpc_zone_identifier(subnet)
        .launch_template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_id(lt)
                .version("$Latest")
                .build(),
        )
        .tags(tag(name, "k8s.io/cluster-autoscaler/enabled", "true"))
        .send()
        .await
        .expect("create group");
}

fn cloud(endpoint: &str) -> AwsCloud {
    let mut config = AwsConfig {
        retry: RetrySettings {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
        },
        ..AwsConfig::default()
    };
    config.scan.specs = vec![GroupSpec::Tags(vec![(
        "k8s.io/cluster-autoscaler/enabled".into(),
        None,
    )])];
    AwsCloud::new(&sdk_config(endpoint), config)
}

fn quote<'a>(quotes: &'a [PriceQuote], instance_type: &str) -> &'a PriceQuote {
    quotes
        .iter()
        .find(|q| q.instance_type == instance_type)
        .unwrap_or_else(|| panic!("no price for {instance_type} in {quotes:?}"))
}

fn group_price(scan: &autoscaler_aws::Scan, group: &str) -> f64 {
    scan.group(group)
        .expect("group discovered")
        .group
        .instance_types[0]
        .price_per_hour
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_prices_come_from_the_price_list_api_and_are_cached() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port).await;
    let raw = Raw::new(&sdk_config(&moto.endpoint()));
    let subnet = raw.subnet("us-east-1a").await;
    on_demand_group(&raw, "od-c5", "c5.xlarge", &subnet).await;
    on_demand_group(&raw, "od-m5", "m5.large", &subnet).await;
    // The API knows c5.xlarge (at a price unlike the table's 0.17), not m5.large.
    proxy.inject(Fault::json_answer(
        "GetProducts",
        get_products_answer(&[product("c5.xlarge", 0.2345)]),
    ));
    let cloud = cloud(&proxy.endpoint());

    let scan = cloud.scan().await.expect("scan");
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    assert_eq!(group_price(&scan, "od-c5"), 0.2345);
    assert_eq!(group_price(&scan, "od-m5"), 0.096, "the table's price");
    let quotes = cloud.metrics().on_demand_prices();
    assert_eq!(quote(&quotes, "c5.xlarge").source, PriceSource::Api);
    assert_eq!(quote(&quotes, "m5.large").source, PriceSource::Table);

    assert_eq!(proxy.answered("GetProducts"), 1, "one call for both types");
    let request = proxy.answered_bodies.lock().unwrap()[0].clone();
    let request: serde_json::Value = serde_json::from_str(&request).expect("JSON request");
    assert_eq!(request["ServiceCode"], "AmazonEC2");
    let filters = request["Filters"].as_array().expect("filters");
    let filter = |field: &str| {
        filters
            .iter()
            .find(|f| f["Field"] == field)
            .unwrap_or_else(|| panic!("no {field} filter in {filters:?}"))
            .clone()
    };
    assert_eq!(filter("instanceType")["Type"], "ANY_OF");
    assert_eq!(filter("instanceType")["Value"], "c5.xlarge,m5.large");
    assert_eq!(filter("regionCode")["Value"], "us-east-1");
    assert_eq!(filter("operatingSystem")["Value"], "Linux");
    assert_eq!(filter("tenancy")["Value"], "Shared");

    // Prices are kept for hours: the next scans make no Price List call.
    for _ in 0..2 {
        let again = cloud.scan().await.expect("scan");
        assert_eq!(group_price(&again, "od-c5"), 0.2345);
    }
    assert_eq!(proxy.answered("GetProducts"), 1, "prices were read again");
    let stats = cloud.metrics().op(autoscaler_aws::Op::GetProducts);
    assert_eq!((stats.calls, stats.errors), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_price_list_falls_back_to_the_table_and_says_so() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port).await;
    let raw = Raw::new(&sdk_config(&moto.endpoint()));
    let subnet = raw.subnet("us-east-1a").await;
    on_demand_group(&raw, "od-c5", "c5.xlarge", &subnet).await;
    proxy.inject(Fault::json_error(
        "GetProducts",
        400,
        "AccessDeniedException",
        u32::MAX,
    ));
    let cloud = cloud(&proxy.endpoint());

    let scan = cloud
        .scan()
        .await
        .expect("a denied Price List does not fail the scan");
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    assert_eq!(group_price(&scan, "od-c5"), 0.17, "the table's price");
    let quotes = cloud.metrics().on_demand_prices();
    assert_eq!(quote(&quotes, "c5.xlarge").source, PriceSource::Table);
    let stats = cloud.metrics().op(autoscaler_aws::Op::GetProducts);
    assert_eq!(
        (stats.calls, stats.errors),
        (1, 1),
        "the denied call is counted"
    );

    // Not asked again every scan (one warning, next try after the refresh period).
    cloud.scan().await.expect("second scan");
    assert_eq!(proxy.answered("GetProducts"), 1);
}
