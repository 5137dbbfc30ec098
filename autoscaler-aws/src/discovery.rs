//! Discovery: AutoScalingGroups -> the core's [`NodeGroup`]s, cluster-autoscaler-compatible.
//!
//! One scan costs one `DescribeAutoScalingGroups` page per 100 groups (instances come
//! inline). Everything else is cached with explicit refresh: instance types
//! (`DescribeInstanceTypes`, 100 per call, never change), launch templates
//! (`DescribeLaunchTemplateVersions`, per template version; `$Latest`/`$Default` are
//! re-read after [`ScanConfig::template_ttl`]), launch configurations (immutable), spot
//! prices (`DescribeSpotPriceHistory`, refreshed after [`ScanConfig::spot_price_ttl`]),
//! and the market of each new instance of a group that runs both markets
//! (`DescribeInstances`; a group with one market gives it to its instances).

use crate::api::{Api, GroupQuery, Op};
use crate::error::{AwsError, GroupError, GroupProblem};
use crate::instance_requirements::{is_attribute_based, RequirementsResolver};
use crate::prices::OnDemandPrices;
use crate::template::{parse_tags, GroupOptions, ResourceOverrides};
use autoscaler_core::model::CAPACITY_TYPE_LABEL;
use autoscaler_core::{CapacityMix, CapacityType, InstanceType, Node, NodeGroup};
use aws_sdk_autoscaling::types::{AutoScalingGroup, Filter as AsgFilter, LifecycleState};
use aws_sdk_ec2::types::{Filter as Ec2Filter, InstanceLifecycleType, MarketType};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Mutex;

/// Tag CA uses to mark groups for auto-discovery.
pub const ENABLED_TAG: &str = "k8s.io/cluster-autoscaler/enabled";
/// Page size of `DescribeAutoScalingGroups` (the API's maximum).
pub const ASG_PAGE_SIZE: i32 = 100;
/// Instance types per `DescribeInstanceTypes` call (the API's maximum).
pub const INSTANCE_TYPES_PER_CALL: usize = 100;
/// Instance ids per `DescribeInstances` call when asking by id.
pub const INSTANCE_IDS_PER_CALL: usize = 200;
/// `DescribeInstances` calls in flight while a scan reads the markets of new instances
/// (the first scan of a large cluster: 25 calls at 5,000 instances).
pub const INSTANCE_CALLS_IN_FLIGHT: usize = 4;

/// A `--nodes` or `--node-group-auto-discovery` value that does not parse. The message
/// names the flag, what is wrong and how to write it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A `--nodes` value.
    #[error(
        "invalid --nodes {input:?}: {problem}; write it as min:max:asg-name, e.g. 1:10:web-spot-a"
    )]
    Nodes {
        /// The value given.
        input: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A `--node-group-auto-discovery` value.
    #[error("invalid --node-group-auto-discovery {input:?}: {problem}; only asg:tag=key1,key2 (or asg:tag=key=value) is supported")]
    AutoDiscovery {
        /// The value given.
        input: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// One `--nodes=<min>:<max>:<asg-name>`: this group, with these bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodesSpec {
    /// Min size (overrides the ASG's).
    pub min: u32,
    /// Max size (overrides the ASG's).
    pub max: u32,
    /// ASG name.
    pub name: String,
}

impl NodesSpec {
    /// Parses `min:max:name` (`1:10:my-asg`), the grammar of cluster-autoscaler's `--nodes`.
    pub fn parse(input: &str) -> Result<Self, SpecError> {
        let err = |problem: String| SpecError::Nodes {
            input: input.to_string(),
            problem,
        };
        let mut parts = input.trim().splitn(3, ':');
        let (Some(min), Some(max), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(err("expected three parts separated by ':'".into()));
        };
        let bound = |v: &str, what: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| err(format!("{what} {v:?} is not a whole number")))
        };
        let (min, max) = (bound(min, "min")?, bound(max, "max")?);
        if name.is_empty() {
            return Err(err("the ASG name is empty".into()));
        }
        if min > max {
            return Err(err(format!("min {min} is above max {max}")));
        }
        Ok(NodesSpec {
            min,
            max,
            name: name.to_string(),
        })
    }
}

/// One `--node-group-auto-discovery=asg:tag=<key>[=<value>],...`: every group that has
/// all the tags (keys ANDed; a value, when given, must match).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoDiscovery {
    /// `(key, Some(value))`, or `(key, None)` for "tag present".
    pub tags: Vec<(String, Option<String>)>,
}

impl AutoDiscovery {
    /// Parses cluster-autoscaler's `asg:tag=k1,k2=v` auto-discovery spec.
    pub fn parse(input: &str) -> Result<Self, SpecError> {
        let err = |problem: &str| SpecError::AutoDiscovery {
            input: input.to_string(),
            problem: problem.to_string(),
        };
        let spec = input
            .trim()
            .strip_prefix("asg:tag=")
            .ok_or_else(|| err("it does not start with asg:tag="))?;
        let tags: Vec<_> = spec
            .split(',')
            .filter(|t| !t.is_empty())
            .map(|t| match t.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (t.to_string(), None),
            })
            .collect();
        if tags.is_empty() {
            return Err(err("no tag given"));
        }
        if tags.iter().any(|(k, _)| k.is_empty()) {
            return Err(err("empty tag key"));
        }
        Ok(AutoDiscovery { tags })
    }
}

/// Which groups to manage, as cluster-autoscaler's flags say it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupSpec {
    /// `--nodes=<min>:<max>:<asg-name>`: this group, with these bounds.
    Explicit {
        /// Min size (overrides the ASG's).
        min: u32,
        /// Max size (overrides the ASG's).
        max: u32,
        /// ASG name.
        name: String,
    },
    /// `--node-group-auto-discovery=asg:tag=<key>[=<value>],...`: every group that has all
    /// the tags (keys ANDed; a value, when given, must match).
    Tags(Vec<(String, Option<String>)>),
}

impl From<NodesSpec> for GroupSpec {
    fn from(n: NodesSpec) -> Self {
        GroupSpec::Explicit {
            min: n.min,
            max: n.max,
            name: n.name,
        }
    }
}

impl From<AutoDiscovery> for GroupSpec {
    fn from(d: AutoDiscovery) -> Self {
        GroupSpec::Tags(d.tags)
    }
}

impl GroupSpec {
    /// Parses `--nodes` (`1:10:my-asg`); see [`NodesSpec::parse`].
    pub fn parse_nodes(s: &str) -> Result<Self, SpecError> {
        NodesSpec::parse(s).map(Self::from)
    }

    /// Parses `--node-group-auto-discovery`
    /// (`asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/<cluster>`);
    /// see [`AutoDiscovery::parse`].
    pub fn parse_auto_discovery(s: &str) -> Result<Self, SpecError> {
        AutoDiscovery::parse(s).map(Self::from)
    }

    /// CA's usual auto-discovery for a cluster: the `enabled` tag and the cluster's tag.
    pub fn for_cluster(cluster: &str) -> Self {
        GroupSpec::Tags(vec![
            (ENABLED_TAG.to_string(), None),
            (format!("k8s.io/cluster-autoscaler/{cluster}"), None),
        ])
    }
}

/// Scan settings.
#[derive(Clone, Debug)]
pub struct ScanConfig {
    /// Groups to manage (union of the specs).
    pub specs: Vec<GroupSpec>,
    /// On-demand price table.
    pub on_demand_prices: OnDemandPrices,
    /// How long spot prices are reused.
    pub spot_price_ttl: Duration,
    /// How long `$Latest`/`$Default` launch template versions are reused.
    pub template_ttl: Duration,
    /// Whether to look up the market of each new instance of a group that runs both
    /// markets with `DescribeInstances`.
    pub instance_lifecycle: bool,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            specs: Vec::new(),
            on_demand_prices: OnDemandPrices::default(),
            spot_price_ttl: Duration::from_secs(3600),
            template_ttl: Duration::from_secs(600),
            instance_lifecycle: true,
        }
    }
}

/// One instance of a group (also the bin's provider seam's instance, whatever the cloud).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// `i-...`.
    pub id: String,
    /// ASG name.
    pub group: String,
    /// Zone.
    pub zone: String,
    /// Instance type.
    pub instance_type: String,
    /// Spot or on-demand, when known: the group's market for a group with one, from
    /// `DescribeInstances` in a group that runs both.
    pub lifecycle: Option<CapacityType>,
    /// The ASG lifecycle state (`Pending`, `InService`, `Terminating`, ...).
    pub state: String,
}

impl Instance {
    /// An instance in service, of unknown market (the static provider, tests).
    pub fn in_service(
        id: impl Into<String>,
        group: impl Into<String>,
        zone: impl Into<String>,
        instance_type: impl Into<String>,
    ) -> Self {
        Instance {
            id: id.into(),
            group: group.into(),
            zone: zone.into(),
            instance_type: instance_type.into(),
            lifecycle: None,
            state: LifecycleState::InService.as_str().to_string(),
        }
    }

    /// Whether the instance counts toward the group's capacity (pending or in service).
    pub fn is_active(&self) -> bool {
        !(self.state.starts_with("Terminating")
            || self.state.starts_with("Terminated")
            || self.state.starts_with("Detach")
            || self.state.starts_with("Standby")
            || self.state.starts_with("EnteringStandby")
            || self.state.starts_with("Warmed"))
    }

    /// The Kubernetes `providerID` of its node.
    pub fn provider_id(&self) -> String {
        format!("aws:///{}/{}", self.zone, self.id)
    }
}

/// One managed group.
#[derive(Clone, Debug, PartialEq)]
pub struct DiscoveredGroup {
    /// The group as the core sees it.
    pub group: NodeGroup,
    /// Its instances.
    pub instances: Vec<Instance>,
    /// Options from `…/autoscaling-options/*` tags.
    pub options: GroupOptions,
    /// The ASG's own max size (AWS rejects a desired capacity above it).
    pub asg_max_size: u32,
    /// The ASG's own min size.
    pub asg_min_size: u32,
}

/// The result of one scan.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// Managed groups, sorted by name.
    pub groups: Vec<DiscoveredGroup>,
    /// Groups that could not be used, each with the reason.
    pub errors: Vec<GroupError>,
    /// Control-plane AWS calls the scan made.
    pub aws_calls: u64,
}

/// Splits a `providerID` (`aws:///<zone>/<instance-id>`) into zone and instance id.
pub fn parse_provider_id(provider_id: &str) -> Option<(&str, &str)> {
    let rest = provider_id.strip_prefix("aws://")?;
    let rest = rest.trim_start_matches('/');
    let (zone, id) = match rest.rsplit_once('/') {
        Some((zone, id)) => (zone, id),
        None => ("", rest),
    };
    id.starts_with("i-").then_some((zone, id))
}

impl Scan {
    /// The groups as the core's model.
    pub fn node_groups(&self) -> Vec<NodeGroup> {
        self.groups.iter().map(|g| g.group.clone()).collect()
    }

    /// A group by name.
    pub fn group(&self, name: &str) -> Option<&DiscoveredGroup> {
        self.groups
            .binary_search_by(|g| g.group.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.groups[i])
    }

    /// Every instance by id.
    pub fn instances(&self) -> HashMap<&str, &Instance> {
        self.groups
            .iter()
            .flat_map(|g| g.instances.iter())
            .map(|i| (i.id.as_str(), i))
            .collect()
    }

    /// Fills each node's `group` and `capacity_type` from its `providerID`. Returns the
    /// names of nodes with a provider id of an instance in no managed group.
    pub fn map_nodes(&self, nodes: &mut [Node]) -> Vec<String> {
        let by_id = self.instances();
        let mut unmapped = Vec::new();
        for node in nodes {
            let Some((_, id)) = node.provider_id.as_deref().and_then(parse_provider_id) else {
                continue;
            };
            match by_id.get(id) {
                Some(inst) => {
                    node.group = Some(inst.group.clone());
                    if let Some(ct) = inst.lifecycle {
                        node.capacity_type = ct;
                    } else if let Some(ct) = self
                        .group(&inst.group)
                        .filter(|g| g.group.mix.is_some())
                        .and_then(|_| label_market(&node.labels))
                    {
                        // A mixed group runs both markets: the node's label tells which.
                        node.capacity_type = ct;
                    } else if let Some(g) = self.group(&inst.group) {
                        node.capacity_type = g.group.capacity_type;
                    }
                }
                None => unmapped.push(node.name.clone()),
            }
        }
        unmapped
    }
}

#[derive(Clone, Debug)]
struct TypeInfo {
    vcpus: u32,
    memory_mib: u64,
    gpus: Vec<(String, u64)>,
}

#[derive(Clone, Debug, Default)]
struct LaunchInfo {
    instance_type: Option<String>,
    spot: bool,
    attribute_based: bool,
}

#[derive(Default)]
struct Caches {
    types: HashMap<String, TypeInfo>,
    unknown_types: BTreeSet<String>,
    templates: HashMap<(String, String), (LaunchInfo, Instant)>,
    launch_configs: HashMap<String, LaunchInfo>,
    spot: HashMap<(String, String), f64>,
    spot_fetched: HashMap<String, Instant>,
    lifecycles: HashMap<String, CapacityType>,
}

/// Reads AWS into [`Scan`]s, with the caches that keep the call count low.
pub struct Scanner {
    api: Arc<Api>,
    config: ScanConfig,
    caches: Mutex<Caches>,
    requirements: RequirementsResolver,
}

fn u32_of(v: Option<i32>) -> u32 {
    v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0)
}

/// The market of a mixed-instances group's part above its base (its `capacity_type`; the
/// split itself is [`capacity_mix`]): spot unless every instance above the base is
/// on-demand (AWS's default for `OnDemandPercentageAboveBaseCapacity` is 100).
fn mixed_market(g: &AutoScalingGroup) -> Option<CapacityType> {
    let d = g.mixed_instances_policy()?.instances_distribution();
    let pct = d
        .and_then(|d| d.on_demand_percentage_above_base_capacity())
        .unwrap_or(100);
    Some(if pct >= 100 {
        CapacityType::OnDemand
    } else {
        CapacityType::Spot
    })
}

/// A mixed-instances group's split between on-demand and spot, when it runs both.
fn capacity_mix(g: &AutoScalingGroup) -> Option<CapacityMix> {
    let d = g.mixed_instances_policy()?.instances_distribution();
    let mix = CapacityMix {
        on_demand_base: u32_of(d.and_then(|d| d.on_demand_base_capacity())),
        // AWS's default for the percentage is 100.
        on_demand_percentage_above_base: d
            .and_then(|d| d.on_demand_percentage_above_base_capacity())
            .unwrap_or(100)
            .clamp(0, 100) as u8,
    };
    mix.is_mixed().then_some(mix)
}

fn label_market(labels: &BTreeMap<String, String>) -> Option<CapacityType> {
    for key in [CAPACITY_TYPE_LABEL, "eks.amazonaws.com/capacityType"] {
        match labels.get(key).map(|v| v.to_ascii_lowercase()).as_deref() {
            Some("spot") => return Some(CapacityType::Spot),
            Some("on-demand" | "on_demand" | "ondemand") => return Some(CapacityType::OnDemand),
            _ => {}
        }
    }
    None
}

impl Scanner {
    /// A scanner over `api`.
    pub fn new(api: Arc<Api>, config: ScanConfig) -> Self {
        Scanner {
            requirements: RequirementsResolver::new(config.template_ttl),
            api,
            config,
            caches: Mutex::new(Caches::default()),
        }
    }

    /// Forgets cached spot prices and `$Latest`/`$Default` templates, so the next scan
    /// reads them again.
    pub async fn refresh(&self) {
        let mut c = self.caches.lock().await;
        c.spot_fetched.clear();
        c.templates.clear();
        self.requirements.forget_moving_versions().await;
    }

    async fn describe_groups(
        &self,
        errors: &mut Vec<GroupError>,
    ) -> Result<Vec<(AutoScalingGroup, Option<(u32, u32)>)>, AwsError> {
        let mut found: BTreeMap<String, (AutoScalingGroup, Option<(u32, u32)>)> = BTreeMap::new();
        let explicit: Vec<(&str, u32, u32)> = self
            .config
            .specs
            .iter()
            .filter_map(|s| match s {
                GroupSpec::Explicit { min, max, name } => Some((name.as_str(), *min, *max)),
                GroupSpec::Tags(_) => None,
            })
            .collect();
        for chunk in explicit.chunks(ASG_PAGE_SIZE as usize) {
            let names: Vec<String> = chunk.iter().map(|(n, ..)| n.to_string()).collect();
            for g in self
                .api
                .describe_groups(GroupQuery::Names(names), ASG_PAGE_SIZE)
                .await?
            {
                let name = g.auto_scaling_group_name().unwrap_or_default().to_string();
                let bounds = chunk
                    .iter()
                    .find(|(n, ..)| *n == name)
                    .map(|(_, min, max)| (*min, *max));
                found.insert(name, (g, bounds));
            }
            for (name, ..) in chunk {
                if !found.contains_key(*name) {
                    errors.push(GroupError {
                        group: name.to_string(),
                        problem: AwsError::UnknownGroup(name.to_string()).into(),
                    });
                }
            }
        }
        for spec in &self.config.specs {
            let GroupSpec::Tags(tags) = spec else {
                continue;
            };
            let filters: Vec<AsgFilter> = tags
                .iter()
                .map(|(k, v)| match v {
                    Some(v) => AsgFilter::builder()
                        .name(format!("tag:{k}"))
                        .values(v)
                        .build(),
                    None => AsgFilter::builder().name("tag-key").values(k).build(),
                })
                .collect();
            for g in self
                .api
                .describe_groups(GroupQuery::Filters(filters), ASG_PAGE_SIZE)
                .await?
            {
                let name = g.auto_scaling_group_name().unwrap_or_default().to_string();
                // AND semantics checked here too, whatever the server's filter does.
                let has_all = tags.iter().all(|(k, v)| {
                    g.tags().iter().any(|t| {
                        t.key() == Some(k.as_str())
                            && v.as_deref().is_none_or(|v| t.value() == Some(v))
                    })
                });
                if has_all {
                    found.entry(name).or_insert_with(|| (g.clone(), None));
                }
            }
        }
        Ok(found.into_values().collect())
    }

    /// What a group launches: the instance type names and the market from its launch
    /// template or configuration (mixed-instances overrides win).
    async fn launch_info(
        &self,
        g: &AutoScalingGroup,
    ) -> Result<(Vec<String>, Option<CapacityType>), GroupProblem> {
        if let Some(mip) = g.mixed_instances_policy() {
            let lt = mip.launch_template();
            let overrides: Vec<String> = lt
                .map(|lt| lt.overrides())
                .unwrap_or_default()
                .iter()
                .filter_map(|o| o.instance_type().map(str::to_string))
                .collect();
            if is_attribute_based(g) {
                let types = self.requirements.resolve(&self.api, g).await?;
                return Ok((types, mixed_market(g)));
            }
            if !overrides.is_empty() {
                return Ok((overrides, mixed_market(g)));
            }
            let spec = lt.and_then(|lt| lt.launch_template_specification());
            let info = match spec {
                Some(s) => {
                    self.template(
                        s.launch_template_id(),
                        s.launch_template_name(),
                        s.version(),
                    )
                    .await?
                }
                None => return Err("mixed-instances policy without a launch template".into()),
            };
            return Ok((info.instance_type.into_iter().collect(), mixed_market(g)));
        }
        if let Some(s) = g.launch_template() {
            let info = self
                .template(
                    s.launch_template_id(),
                    s.launch_template_name(),
                    s.version(),
                )
                .await?;
            if info.attribute_based && info.instance_type.is_none() {
                return Err("the launch template selects instance types by attributes; \
                            set an instance type or use mixed-instances overrides"
                    .into());
            }
            let market = info.spot.then_some(CapacityType::Spot);
            return Ok((
                info.instance_type.into_iter().collect(),
                market.or(Some(CapacityType::OnDemand)),
            ));
        }
        if let Some(name) = g.launch_configuration_name() {
            let info = self.launch_configuration(name).await?;
            let market = if info.spot {
                CapacityType::Spot
            } else {
                CapacityType::OnDemand
            };
            return Ok((info.instance_type.into_iter().collect(), Some(market)));
        }
        Err(
            "the group has no launch template, launch configuration or mixed-instances policy"
                .into(),
        )
    }

    async fn template(
        &self,
        id: Option<&str>,
        name: Option<&str>,
        version: Option<&str>,
    ) -> Result<LaunchInfo, GroupProblem> {
        let version = version.unwrap_or("$Default").to_string();
        let key = (id.or(name).unwrap_or_default().to_string(), version.clone());
        let ttl = self.config.template_ttl;
        {
            let c = self.caches.lock().await;
            if let Some((info, at)) = c.templates.get(&key) {
                // Numbered versions never change; `$Latest`/`$Default` may move.
                if !version.starts_with('$') || at.elapsed() < ttl {
                    return Ok(info.clone());
                }
            }
        }
        let out = self
            .api
            .call(
                Op::DescribeLaunchTemplateVersions,
                self.api
                    .ec2
                    .describe_launch_template_versions()
                    .set_launch_template_id(id.map(str::to_string))
                    .set_launch_template_name(if id.is_some() {
                        None
                    } else {
                        name.map(str::to_string)
                    })
                    .versions(&version)
                    .send(),
            )
            .await?;
        let data = out
            .launch_template_versions()
            .first()
            .and_then(|v| v.launch_template_data())
            .ok_or_else(|| format!("launch template {} version {version} not found", key.0))?;
        let info = LaunchInfo {
            instance_type: data.instance_type().map(|t| t.as_str().to_string()),
            spot: data
                .instance_market_options()
                .and_then(|m| m.market_type())
                .is_some_and(|m| *m == MarketType::Spot),
            attribute_based: data.instance_requirements().is_some(),
        };
        self.caches
            .lock()
            .await
            .templates
            .insert(key, (info.clone(), Instant::now()));
        Ok(info)
    }

    async fn launch_configuration(&self, name: &str) -> Result<LaunchInfo, GroupProblem> {
        if let Some(info) = self.caches.lock().await.launch_configs.get(name) {
            return Ok(info.clone());
        }
        let out = self
            .api
            .call(
                Op::DescribeLaunchConfigurations,
                self.api
                    .autoscaling
                    .describe_launch_configurations()
                    .launch_configuration_names(name)
                    .send(),
            )
            .await?;
        let lc = out
            .launch_configurations()
            .first()
            .ok_or_else(|| format!("launch configuration {name:?} not found"))?;
        let info = LaunchInfo {
            instance_type: lc.instance_type().map(str::to_string),
            spot: lc.spot_price().is_some(),
            attribute_based: false,
        };
        self.caches
            .lock()
            .await
            .launch_configs
            .insert(name.to_string(), info.clone());
        Ok(info)
    }

    /// Loads the instance types not cached yet, 100 per call. Types EC2 does not know
    /// are remembered and reported.
    async fn load_types(&self, wanted: &BTreeSet<String>) -> Result<(), AwsError> {
        let missing: Vec<String> = {
            let c = self.caches.lock().await;
            wanted
                .iter()
                .filter(|t| !c.types.contains_key(*t) && !c.unknown_types.contains(*t))
                .cloned()
                .collect()
        };
        for chunk in missing.chunks(INSTANCE_TYPES_PER_CALL) {
            let mut ask: Vec<String> = chunk.to_vec();
            for _ in 0..2 {
                let result = self
                    .api
                    .call(
                        Op::DescribeInstanceTypes,
                        self.api
                            .ec2
                            .describe_instance_types()
                            .set_instance_types(Some(
                                ask.iter()
                                    .map(|t| aws_sdk_ec2::types::InstanceType::from(t.as_str()))
                                    .collect(),
                            ))
                            .send(),
                    )
                    .await;
                match result {
                    Ok(out) => {
                        let mut c = self.caches.lock().await;
                        for info in out.instance_types() {
                            let Some(name) = info.instance_type().map(|t| t.as_str().to_string())
                            else {
                                continue;
                            };
                            let gpus = info
                                .gpu_info()
                                .map(|g| g.gpus())
                                .unwrap_or_default()
                                .iter()
                                .map(|d| {
                                    let resource = match d.manufacturer() {
                                        Some(m) if m.eq_ignore_ascii_case("AMD") => "amd.com/gpu",
                                        Some(m) if m.eq_ignore_ascii_case("Habana") => {
                                            "habana.ai/gaudi"
                                        }
                                        _ => "nvidia.com/gpu",
                                    };
                                    (resource.to_string(), u64::from(u32_of(d.count())))
                                })
                                .collect();
                            c.types.insert(
                                name,
                                TypeInfo {
                                    vcpus: u32_of(
                                        info.v_cpu_info().and_then(|v| v.default_v_cpus()),
                                    ),
                                    memory_mib: info
                                        .memory_info()
                                        .and_then(|m| m.size_in_mib())
                                        .and_then(|m| u64::try_from(m).ok())
                                        .unwrap_or(0),
                                    gpus,
                                },
                            );
                        }
                        for t in &ask {
                            if !c.types.contains_key(t) {
                                c.unknown_types.insert(t.clone());
                            }
                        }
                        break;
                    }
                    Err(AwsError::Api { code, message, .. }) if code == "InvalidInstanceType" => {
                        // The whole batch fails for one bad name: drop the names AWS lists.
                        let mut c = self.caches.lock().await;
                        let before = ask.len();
                        ask.retain(|t| {
                            let bad = message.contains(t.as_str());
                            if bad {
                                c.unknown_types.insert(t.clone());
                            }
                            !bad
                        });
                        if ask.len() == before || ask.is_empty() {
                            for t in ask.drain(..) {
                                c.unknown_types.insert(t);
                            }
                            break;
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    async fn load_spot_prices(&self, wanted: &BTreeSet<String>) {
        let ttl = self.config.spot_price_ttl;
        let stale: Vec<String> = {
            let c = self.caches.lock().await;
            wanted
                .iter()
                .filter(|t| c.spot_fetched.get(*t).is_none_or(|at| at.elapsed() >= ttl))
                .cloned()
                .collect()
        };
        for chunk in stale.chunks(INSTANCE_TYPES_PER_CALL) {
            let mut token = None;
            let mut prices = Vec::new();
            loop {
                let result = self
                    .api
                    .call(
                        Op::DescribeSpotPriceHistory,
                        self.api
                            .ec2
                            .describe_spot_price_history()
                            .set_instance_types(Some(
                                chunk
                                    .iter()
                                    .map(|t| aws_sdk_ec2::types::InstanceType::from(t.as_str()))
                                    .collect(),
                            ))
                            .product_descriptions("Linux/UNIX")
                            .start_time(aws_smithy_types::DateTime::from(SystemTime::now()))
                            .max_results(1000)
                            .set_next_token(token.take())
                            .send(),
                    )
                    .await;
                let out = match result {
                    Ok(out) => out,
                    Err(e) => {
                        tracing::warn!(%e, "spot prices not refreshed; using cached or on-demand-based prices");
                        return;
                    }
                };
                for p in out.spot_price_history() {
                    if let (Some(t), Some(z), Some(price)) = (
                        p.instance_type(),
                        p.availability_zone(),
                        p.spot_price().and_then(|s| s.parse::<f64>().ok()),
                    ) {
                        prices.push(((t.as_str().to_string(), z.to_string()), price));
                    }
                }
                token = out
                    .next_token()
                    .filter(|t| !t.is_empty())
                    .map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
            let mut c = self.caches.lock().await;
            for t in chunk {
                c.spot_fetched.insert(t.clone(), Instant::now());
            }
            c.spot.extend(prices);
        }
    }

    /// Looks up the market of the new instances of groups that run both markets. A
    /// group with one market (its launch template's, or a mixed policy at 0 % or 100 %
    /// on-demand) gives it to every instance without a call: on a large cluster the
    /// lookup of every new instance was most of a scan's time.
    async fn load_lifecycles(&self, groups: &[(AutoScalingGroup, Option<(u32, u32)>)]) {
        let unknown: Vec<String> = {
            let c = self.caches.lock().await;
            groups
                .iter()
                .filter(|(g, _)| capacity_mix(g).is_some())
                .flat_map(|(g, _)| g.instances().iter().filter_map(|i| i.instance_id()))
                .filter(|id| !c.lifecycles.contains_key(*id))
                .map(str::to_string)
                .collect()
        };
        if unknown.is_empty() {
            return;
        }
        // By id, 200 a call, a few calls in flight. The `instance-id` filter (not the
        // InstanceIds parameter) skips an instance terminated since the group listing
        // instead of failing the whole call. A filter on the groups' tag would need fewer
        // pages against AWS, but moto evaluates tag filters in time quadratic in its
        // instances (no first scan at 5,000 instances in 10 min), and ids keep each
        // call's work bounded wherever it runs.
        let mut chunks = unknown
            .chunks(INSTANCE_IDS_PER_CALL)
            .map(<[String]>::to_vec);
        let mut calls = tokio::task::JoinSet::new();
        let mut found = Vec::new();
        loop {
            while calls.len() < INSTANCE_CALLS_IN_FLIGHT {
                let Some(ids) = chunks.next() else { break };
                calls.spawn(describe_markets(self.api.clone(), ids));
            }
            let Some(done) = calls.join_next().await else {
                break;
            };
            match done {
                Ok(Ok(markets)) => found.extend(markets),
                Ok(Err(e)) => tracing::warn!(%e, "instance markets unknown this round"),
                Err(e) => tracing::warn!(%e, "instance market lookup did not finish"),
            }
        }
        let mut c = self.caches.lock().await;
        c.lifecycles.extend(found);
        // Forget instances that left every group.
        if c.lifecycles.len()
            > 2 * groups
                .iter()
                .map(|(g, _)| g.instances().len())
                .sum::<usize>()
                + 1000
        {
            let live: BTreeSet<&str> = groups
                .iter()
                .flat_map(|(g, _)| g.instances().iter().filter_map(|i| i.instance_id()))
                .collect();
            c.lifecycles.retain(|id, _| live.contains(id.as_str()));
        }
    }

    /// Reads every managed group. Fails only when the groups themselves cannot be
    /// listed; a problem with one group goes to [`Scan::errors`] and the others go on.
    pub async fn scan(&self) -> Result<Scan, AwsError> {
        let calls_before = self.api.metrics().control_plane_calls();
        let mut errors = Vec::new();
        let asgs = self.describe_groups(&mut errors).await?;

        // Launch info, template tags, then one batch of instance types for all groups.
        let mut staged = Vec::new();
        for (g, bounds) in &asgs {
            let name = g.auto_scaling_group_name().unwrap_or_default().to_string();
            let tags = g
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default())));
            let tag_template = match parse_tags(tags) {
                Ok(t) => t,
                Err(problems) => {
                    errors.push(GroupError {
                        group: name,
                        problem: format!("malformed tags, group skipped: {}", problems.join("; "))
                            .into(),
                    });
                    continue;
                }
            };
            match self.launch_info(g).await {
                Ok((types, market)) if !types.is_empty() => {
                    staged.push((g, *bounds, tag_template, types, market))
                }
                Ok(_) => errors.push(GroupError {
                    group: name,
                    problem: "no instance type found in its launch template or overrides".into(),
                }),
                Err(problem) => errors.push(GroupError {
                    group: name,
                    problem,
                }),
            }
        }
        let all_types: BTreeSet<String> = staged
            .iter()
            .flat_map(|(.., types, _)| types.iter().cloned())
            .collect();
        self.load_types(&all_types).await?;
        let prices = &self.config.on_demand_prices;
        prices.refresh_from_api(&self.api, &all_types).await;
        let spot_types: BTreeSet<String> = staged
            .iter()
            .filter(|(_, _, t, _, market)| {
                label_market(&t.template.labels).or(*market) == Some(CapacityType::Spot)
            })
            .flat_map(|(.., types, _)| types.iter().cloned())
            .collect();
        self.load_spot_prices(&spot_types).await;
        if self.config.instance_lifecycle {
            self.load_lifecycles(&asgs).await;
        }

        let caches = self.caches.lock().await;
        let mut groups = Vec::new();
        for (g, bounds, tag_template, types, market) in staged {
            let name = g.auto_scaling_group_name().unwrap_or_default().to_string();
            let capacity_type = label_market(&tag_template.template.labels)
                .or(market)
                .unwrap_or(CapacityType::OnDemand);
            let mix = capacity_mix(g);
            let mut zones: Vec<String> = g.availability_zones().to_vec();
            zones.sort();
            zones.dedup();
            let mut instance_types = Vec::new();
            let mut unknown = Vec::new();
            for t in &types {
                match caches.types.get(t) {
                    Some(info) => {
                        let build = |market| {
                            build_type(
                                t,
                                info,
                                market,
                                &zones,
                                &caches.spot,
                                &self.config.on_demand_prices,
                                &tag_template.resources,
                            )
                        };
                        let mut built = build(capacity_type);
                        if mix.is_some() {
                            // Both prices: the expander blends them over the launches.
                            built.on_demand_price_per_hour =
                                Some(build(CapacityType::OnDemand).price_per_hour);
                        }
                        instance_types.push(built);
                    }
                    None => unknown.push(t.clone()),
                }
            }
            if !unknown.is_empty() {
                errors.push(GroupError {
                    group: name.clone(),
                    problem: format!(
                        "EC2 does not know instance type(s) {unknown:?} in this region; they are left out"
                    )
                    .into(),
                });
            }
            if instance_types.is_empty() {
                errors.push(GroupError {
                    group: name,
                    problem: "no usable instance type; group skipped".into(),
                });
                continue;
            }
            if zones.is_empty() {
                errors.push(GroupError {
                    group: name,
                    problem: "no availability zone; group skipped".into(),
                });
                continue;
            }
            let instances: Vec<Instance> = g
                .instances()
                .iter()
                .filter_map(|i| {
                    let id = i.instance_id()?.to_string();
                    Some(Instance {
                        lifecycle: match mix {
                            Some(_) => caches.lifecycles.get(&id).copied(),
                            None => Some(capacity_type),
                        },
                        id,
                        group: name.clone(),
                        zone: i.availability_zone().unwrap_or_default().to_string(),
                        instance_type: i.instance_type().unwrap_or_default().to_string(),
                        state: i
                            .lifecycle_state()
                            .map(LifecycleState::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    })
                })
                .collect();
            let asg_min = u32_of(g.min_size());
            let asg_max = u32_of(g.max_size());
            let (min_size, max_size) = match bounds {
                // CA semantics: the flag's bounds, within what AWS allows.
                Some((min, max)) => (min.max(asg_min), max.min(asg_max).max(min.max(asg_min))),
                None => (asg_min, asg_max),
            };
            let active = instances.iter().filter(|i| i.is_active()).count() as u32;
            groups.push(DiscoveredGroup {
                group: NodeGroup {
                    name,
                    min_size,
                    max_size,
                    target_size: u32_of(g.desired_capacity()),
                    current_instances: Some(active),
                    zones,
                    capacity_type,
                    mix,
                    instance_types,
                    template: tag_template.template,
                    options: tag_template.options.to_core(),
                },
                instances,
                options: tag_template.options,
                asg_max_size: asg_max,
                asg_min_size: asg_min,
            });
        }
        drop(caches);
        groups.sort_by(|a, b| a.group.name.cmp(&b.group.name));
        for e in &errors {
            tracing::warn!(group = %e.group, problem = %e.problem, "node group problem");
        }
        self.api.metrics().record_group_errors(errors.len() as u64);
        Ok(Scan {
            groups,
            errors,
            aws_calls: self.api.metrics().control_plane_calls() - calls_before,
        })
    }
}

fn build_type(
    name: &str,
    info: &TypeInfo,
    capacity_type: CapacityType,
    zones: &[String],
    spot: &HashMap<(String, String), f64>,
    on_demand: &OnDemandPrices,
    overrides: &ResourceOverrides,
) -> InstanceType {
    let gpus: u64 = info.gpus.iter().map(|(_, n)| n).sum();
    let (od_price, listed) = on_demand.price(name, info.vcpus, info.memory_mib, gpus);
    if !listed {
        tracing::debug!(
            instance_type = name,
            price = od_price,
            "on-demand price estimated"
        );
    }
    let price = match capacity_type {
        CapacityType::OnDemand => od_price,
        CapacityType::Spot => {
            let zone_prices: Vec<f64> = zones
                .iter()
                .filter_map(|z| spot.get(&(name.to_string(), z.clone())).copied())
                .collect();
            if zone_prices.is_empty() {
                // No spot price known: assume the usual ~65% discount.
                od_price * 0.35
            } else {
                zone_prices.iter().sum::<f64>() / zone_prices.len() as f64
            }
        }
    };
    let mut t = InstanceType::new(name, info.vcpus, info.memory_mib, price);
    for (resource, count) in &info.gpus {
        if *count > 0 {
            t = t.with_extended(resource, *count);
        }
    }
    overrides.apply(&mut t.allocatable);
    t
}

/// Each instance's market among `ids` (at most [`INSTANCE_IDS_PER_CALL`]), paging if AWS
/// splits the answer.
async fn describe_markets(
    api: Arc<Api>,
    ids: Vec<String>,
) -> Result<Vec<(String, CapacityType)>, AwsError> {
    let mut found = Vec::with_capacity(ids.len());
    let mut token = None;
    loop {
        let out = api
            .call(
                Op::DescribeInstances,
                api.ec2
                    .describe_instances()
                    .filters(
                        Ec2Filter::builder()
                            .name("instance-id")
                            .set_values(Some(ids.clone()))
                            .build(),
                    )
                    .set_next_token(token.take())
                    .send(),
            )
            .await?;
        for i in out.reservations().iter().flat_map(|r| r.instances()) {
            if let Some(id) = i.instance_id() {
                let market = if i.instance_lifecycle() == Some(&InstanceLifecycleType::Spot) {
                    CapacityType::Spot
                } else {
                    CapacityType::OnDemand
                };
                found.push((id.to_string(), market));
            }
        }
        token = out
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            return Ok(found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ca_flags() {
        assert_eq!(
            GroupSpec::parse_nodes("1:10:workers").unwrap(),
            GroupSpec::Explicit {
                min: 1,
                max: 10,
                name: "workers".into()
            }
        );
        assert!(GroupSpec::parse_nodes("10:1:x").is_err());
        assert!(GroupSpec::parse_nodes("a:1:x").is_err());
        assert!(GroupSpec::parse_nodes("1:2").is_err());
        assert_eq!(
            GroupSpec::parse_auto_discovery(
                "asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/prod=owned"
            )
            .unwrap(),
            GroupSpec::Tags(vec![
                ("k8s.io/cluster-autoscaler/enabled".into(), None),
                (
                    "k8s.io/cluster-autoscaler/prod".into(),
                    Some("owned".into())
                ),
            ])
        );
        assert!(GroupSpec::parse_auto_discovery("mig:foo").is_err());
        assert!(GroupSpec::parse_auto_discovery("asg:tag=").is_err());
        assert!(GroupSpec::parse_auto_discovery("asg:tag==v").is_err());
        assert!(NodesSpec::parse("1:2:").is_err());
        let n = NodesSpec::parse(" 0:10:static-spot ").unwrap();
        assert_eq!((n.min, n.max, n.name.as_str()), (0, 10, "static-spot"));
    }

    #[test]
    fn spec_errors_name_the_flag_and_the_fix() {
        let e = NodesSpec::parse("10:1:x").unwrap_err().to_string();
        assert!(
            e.contains("--nodes")
                && e.contains("min 10 is above max 1")
                && e.contains("min:max:asg-name"),
            "{e}"
        );
        let e = AutoDiscovery::parse("mig:namePrefix=x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--node-group-auto-discovery") && e.contains("asg:tag=key1,key2"),
            "{e}"
        );
    }

    #[test]
    fn provider_ids() {
        assert_eq!(
            parse_provider_id("aws:///us-east-1a/i-0abc"),
            Some(("us-east-1a", "i-0abc"))
        );
        assert_eq!(parse_provider_id("aws:///i-0abc"), Some(("", "i-0abc")));
        assert_eq!(parse_provider_id("gce://p/z/n"), None);
        assert_eq!(parse_provider_id("aws:///us-east-1a/fargate-ip"), None);
    }
}
