//! Scale-up planning: place pending pods on free and upcoming capacity, then estimate,
//! for each available group, how many new nodes would help which pods.

use crate::cooloff::CoolOffs;
use crate::index::{GroupIdx, PodIdx};
use crate::model::{
    CapacityMix, CapacityType, Labels, NodeGroup, Pod, CAPACITY_TYPE_LABEL, INSTANCE_TYPE_LABEL,
    ZONE_LABEL,
};
use crate::predicates::{
    anti_affinity_fit, full_fit, resource_fit, static_fit, AffinityState, SimNode, SpreadState,
    Unfit, Variant,
};
use crate::resources::{ResourceName, Resources};
use crate::snapshot::ClusterSnapshot;
use crate::time::Timestamp;
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet};

pub(crate) use crate::predicates::DEFAULT_MAX_PODS;

/// What a new node of a group looks like this round, given its cool-offs.
#[derive(Clone, Debug)]
pub(crate) struct GroupPlan {
    pub group: GroupIdx,
    pub variants: Vec<Variant>,
    pub labels: Labels,
    /// Guaranteed allocatable whichever variant launches, after DaemonSets.
    pub allocatable: Resources,
    /// Largest capacity among the variants (for cluster-wide limits: conservative).
    pub capacity: Resources,
    /// Per new node, blended over the next launches of a mixed group.
    pub price_per_hour: f64,
    pub pod_slots: u64,
    /// A mixed group's split, the size its next launch starts from, the market whose
    /// every pool is in cool-off (its launches will not come), and each market's price.
    pub mix: Option<MixPlan>,
    /// Where the next new nodes will land, when it can be told: for the k-th new node,
    /// the variants of the zones AWS may pick for it. An ASG launches into the zone
    /// where it has the fewest instances, so with every instance's zone known (none in
    /// flight, no pool cooled off) the zone of each new node follows from the counts;
    /// ties keep every tied zone. Empty: unknown, every variant applies.
    pub launch_order: Vec<Vec<Variant>>,
}

/// How a mixed group's next launches split between its markets this round.
#[derive(Clone, Debug)]
pub(crate) struct MixPlan {
    pub mix: CapacityMix,
    pub from_size: u32,
    /// Registered on-demand nodes: AWS launches on-demand only past what the group has
    /// (after a spot outage it may hold more than its split).
    pub on_demand_registered: u32,
    pub market_out: Option<CapacityType>,
    pub on_demand_price: f64,
    pub spot_price: f64,
}

/// Launches over which a mixed group's price per node is blended for the expander.
const PRICE_BLEND_LAUNCHES: u32 = 10;

/// How many new nodes' zones [`GroupPlan::launch_order`] predicts (a scale-up of one
/// group is rarely larger; later nodes fall back to every variant).
const PREDICTED_LAUNCHES: usize = 64;

/// Why a group cannot be planned this round.
#[derive(Clone, Debug)]
pub(crate) struct Unavailable {
    pub until: Timestamp,
    pub why: String,
}

impl GroupPlan {
    /// Builds the plan of group `gi`, or says why every pool is blocked.
    pub fn build(
        gi: GroupIdx,
        group: &NodeGroup,
        snap: &ClusterSnapshot,
        cool_offs: &CoolOffs,
        now: Timestamp,
    ) -> Result<GroupPlan, Unavailable> {
        let OpenPools {
            variants,
            latest_block,
            market_out,
        } = open_pools(group, cool_offs, now);
        if variants.is_empty() {
            return Err(latest_block.unwrap_or(Unavailable {
                until: now,
                why: "no launchable pool".into(),
            }));
        }
        let types: BTreeSet<&str> = variants.iter().map(|v| v.instance_type.as_str()).collect();
        let zones: BTreeSet<&str> = variants.iter().map(|v| v.zone.as_str()).collect();
        let mut allocatable: Option<Resources> = None;
        let mut capacity = Resources::default();
        let mut price = 0.0;
        let mut market_price = [0.0; 2];
        for t in group
            .instance_types
            .iter()
            .filter(|t| types.contains(t.name.as_str()))
        {
            allocatable = Some(match allocatable {
                None => t.allocatable.clone(),
                Some(a) => a.component_min(&t.allocatable),
            });
            capacity = capacity.component_max(&t.capacity());
            price += t.price_per_hour;
            for market in [CapacityType::OnDemand, CapacityType::Spot] {
                market_price[market as usize] += t.price_in(market) / types.len() as f64;
            }
        }
        let mut allocatable = allocatable.unwrap_or_default();
        let mut price_per_hour = price / types.len() as f64;
        let mix = MixPlan::build(gi, group, snap, market_out, market_price);
        if let Some(m) = &mix {
            price_per_hour = m.blended_price();
        }
        let mut labels = group.template.labels.clone();
        // A mixed group's new node may be either market: its label is not predictable.
        if mix.is_none() {
            labels.insert(CAPACITY_TYPE_LABEL.into(), group.capacity_type.to_string());
        }
        if zones.len() == 1 {
            labels.insert(ZONE_LABEL.into(), zones.iter().next().unwrap().to_string());
        }
        if types.len() == 1 {
            labels.insert(
                INSTANCE_TYPE_LABEL.into(),
                types.iter().next().unwrap().to_string(),
            );
        }
        let mut pod_slots = if allocatable.pods == 0 {
            DEFAULT_MAX_PODS
        } else {
            allocatable.pods
        };
        // DaemonSet pods land on every new node they select and tolerate.
        for ds in snap.daemonsets() {
            let ds_pod = Pod {
                namespace: ds.namespace.clone(),
                name: ds.name.clone(),
                spec: ds.spec.clone(),
                ..Pod::default()
            };
            let lands = variants.iter().any(|v| {
                let probe = SimNode {
                    existing: None,
                    group: Some(gi),
                    labels: &labels,
                    variants: std::slice::from_ref(v),
                    taints: &group.template.taints,
                    free: Resources::default(),
                    free_pods: 1,
                    pod_slots: 1,
                    schedulable: true,
                    bound: &[],
                    placed: Vec::new(),
                    hostname: "".into(),
                };
                static_fit(&ds_pod, &probe).is_ok()
            });
            if lands {
                allocatable.saturating_sub(&ds.spec.requests);
                pod_slots = pod_slots.saturating_sub(1);
            }
        }
        allocatable.pods = pod_slots;
        let launch_order = launch_order(gi, group, snap, &variants);
        Ok(GroupPlan {
            launch_order,
            group: gi,
            variants,
            labels,
            allocatable,
            capacity,
            price_per_hour,
            pod_slots,
            mix,
        })
    }

    /// Starts a mixed group's next launches at `size` (its target once this round's
    /// reverts are settled).
    pub fn launch_from(&mut self, size: u32) {
        if let Some(m) = &mut self.mix {
            m.from_size = size;
        }
    }

    /// Whether the `k`-th new node will come (a mixed group's launch into a market
    /// whose every pool is in cool-off will not).
    pub fn comes(&self, k: usize) -> bool {
        self.mix
            .as_ref()
            .is_none_or(|m| m.comes(u32::try_from(k).unwrap_or(u32::MAX)))
    }

    /// Whether an in-flight launch taking the group from `size` to `size + 1` will come.
    pub fn slot_comes(&self, size: u32) -> bool {
        self.mix.as_ref().is_none_or(|m| m.slot_comes(size))
    }

    /// What `count` new nodes cost per hour (the ones that come).
    pub fn cost_of(&self, count: u32) -> f64 {
        match &self.mix {
            Some(m) => m.cost_of(count),
            None => self.price_per_hour * f64::from(count),
        }
    }

    /// A slot a mixed group must launch for AWS to reach the next on-demand node, in
    /// the market that will not come: it takes no pods.
    fn placeholder<'a>(&'a self, group: &'a NodeGroup, k: usize) -> SimNode<'a> {
        let mut node = self.new_node(group, k, format!("new-{}-{k}-not-coming", group.name));
        node.free = Resources::default();
        node.free_pods = 0;
        node.schedulable = false;
        node
    }

    /// The `k`-th new node of this plan: in its predicted zone(s) when known.
    pub fn new_node<'a>(
        &'a self,
        group: &'a NodeGroup,
        k: usize,
        hostname: impl Into<std::borrow::Cow<'a, str>>,
    ) -> SimNode<'a> {
        let mut node = self.fresh_node(group, hostname);
        if let Some(variants) = self.launch_order.get(k) {
            node.variants = variants;
        }
        node
    }

    /// A fresh hypothetical node of this plan.
    pub fn fresh_node<'a>(
        &'a self,
        group: &'a NodeGroup,
        hostname: impl Into<std::borrow::Cow<'a, str>>,
    ) -> SimNode<'a> {
        SimNode {
            existing: None,
            group: Some(self.group),
            labels: &self.labels,
            variants: &self.variants,
            taints: &group.template.taints,
            free: self.allocatable.clone(),
            free_pods: self.pod_slots,
            pod_slots: self.pod_slots,
            schedulable: true,
            bound: &[],
            placed: Vec::new(),
            hostname: hostname.into(),
        }
    }
}

impl MixPlan {
    /// The plan of a mixed group (`None` for any other), with each market's price.
    fn build(
        gi: GroupIdx,
        group: &NodeGroup,
        snap: &ClusterSnapshot,
        market_out: Option<CapacityType>,
        market_price: [f64; 2],
    ) -> Option<MixPlan> {
        let mix = *group.mixed()?;
        let on_demand_registered = snap
            .nodes_of_group(gi)
            .iter()
            .filter(|&&ni| snap.nodes()[ni].capacity_type == CapacityType::OnDemand)
            .count() as u32;
        Some(MixPlan {
            mix,
            from_size: group.target_size,
            on_demand_registered,
            market_out,
            on_demand_price: market_price[CapacityType::OnDemand as usize],
            spot_price: market_price[CapacityType::Spot as usize],
        })
    }

    /// Price per coming node over the next launches.
    fn blended_price(&self) -> f64 {
        let coming = (0..PRICE_BLEND_LAUNCHES)
            .filter(|&k| self.comes(k))
            .count()
            .max(1);
        self.cost_of(PRICE_BLEND_LAUNCHES) / coming as f64
    }

    /// The market of the `k`-th new node: on-demand when AWS's split of the group
    /// grown by `k + 1` asks for one more on-demand instance than it has.
    pub fn market(&self, k: u32) -> CapacityType {
        // In flight below `from_size` follows the split; registered may exceed it.
        let have = self
            .on_demand_registered
            .max(self.mix.on_demand_at(self.from_size));
        let on_demand_wanted =
            |n: u32| (self.mix.on_demand_at(self.from_size.saturating_add(n))).saturating_sub(have);
        if on_demand_wanted(k + 1) > on_demand_wanted(k) {
            CapacityType::OnDemand
        } else {
            CapacityType::Spot
        }
    }

    /// Whether the `k`-th new node will come.
    pub fn comes(&self, k: u32) -> bool {
        self.market_out != Some(self.market(k))
    }

    /// Whether the launch that takes the group from `size` to `size + 1` will come.
    pub fn slot_comes(&self, size: u32) -> bool {
        self.market_out != Some(self.mix.market_of_launch(size))
    }

    /// What the first `count` new nodes cost per hour (the ones that come).
    pub fn cost_of(&self, count: u32) -> f64 {
        (0..count)
            .filter(|&k| self.comes(k))
            .map(|k| match self.market(k) {
                CapacityType::OnDemand => self.on_demand_price,
                CapacityType::Spot => self.spot_price,
            })
            .sum()
    }
}

/// The pools of a group that are not in cool-off, and what blocks the others.
struct OpenPools {
    variants: Vec<Variant>,
    latest_block: Option<Unavailable>,
    /// A mixed group's market whose every pool is in cool-off.
    market_out: Option<CapacityType>,
}

fn open_pools(group: &NodeGroup, cool_offs: &CoolOffs, now: Timestamp) -> OpenPools {
    let mut variants = Vec::new();
    let mut latest_block: Option<Unavailable> = None;
    // A mixed group launches in both markets: a pool is open while either is.
    let markets: &[CapacityType] = match group.mixed() {
        Some(_) => &[CapacityType::OnDemand, CapacityType::Spot],
        None => std::slice::from_ref(&group.capacity_type),
    };
    let mut open_in = [false; 2];
    for zone in &group.zones {
        for t in &group.instance_types {
            let mut open = false;
            for &market in markets {
                match cool_offs.blocking(&group.name, market, zone, &t.name, now) {
                    None => {
                        open = true;
                        open_in[market as usize] = true;
                    }
                    Some((key, c)) => {
                        if latest_block.as_ref().is_none_or(|b| c.until > b.until) {
                            latest_block = Some(Unavailable {
                                until: c.until,
                                why: format!("pool {key} in cool-off after {}", c.reason),
                            });
                        }
                    }
                }
            }
            if open {
                variants.push(Variant {
                    zone: zone.clone(),
                    instance_type: t.name.clone(),
                });
            }
        }
    }
    let market_out = match group.mixed() {
        Some(_) => markets.iter().copied().find(|m| !open_in[*m as usize]),
        None => None,
    };
    OpenPools {
        variants,
        latest_block,
        market_out,
    }
}

/// The zones of the next new nodes of a group (see [`GroupPlan::launch_order`]).
fn launch_order(
    gi: GroupIdx,
    group: &NodeGroup,
    snap: &ClusterSnapshot,
    variants: &[Variant],
) -> Vec<Vec<Variant>> {
    let zones: BTreeSet<&str> = variants.iter().map(|v| v.zone.as_str()).collect();
    let nodes = snap.nodes_of_group(gi);
    // A pool in cool-off, or instances whose zone we do not see yet: AWS's pick is
    // not predictable from the counts.
    let every_pool = group.zones.len() * group.instance_types.len();
    if zones.len() < 2
        || variants.len() < every_pool
        || group.target_size as usize != nodes.len()
        || group
            .current_instances
            .is_some_and(|c| c as usize != nodes.len())
    {
        return Vec::new();
    }
    let mut counts: BTreeMap<&str, usize> = zones.iter().map(|z| (*z, 0)).collect();
    for &ni in nodes {
        match snap.nodes()[ni].zone().and_then(|z| counts.get_mut(z)) {
            Some(c) => *c += 1,
            None => return Vec::new(),
        }
    }
    let mut order = Vec::new();
    while order.len() < PREDICTED_LAUNCHES {
        let min = counts.values().copied().min().unwrap_or(0);
        let tied: Vec<&str> = counts
            .iter()
            .filter(|(_, c)| **c == min)
            .map(|(z, _)| *z)
            .collect();
        if tied.len() > 1 {
            // A tie: this node and the next tied.len() - 1 go one to each tied zone,
            // in an order we cannot know.
            let any_tied: Vec<Variant> = variants
                .iter()
                .filter(|v| tied.contains(&v.zone.as_str()))
                .cloned()
                .collect();
            for z in &tied {
                if order.len() < PREDICTED_LAUNCHES {
                    order.push(any_tied.clone());
                }
                counts.insert(z, min + 1);
            }
        } else {
            let z = tied[0];
            order.push(variants.iter().filter(|v| v.zone == z).cloned().collect());
            counts.insert(z, min + 1);
        }
    }
    order
}

/// Pending pods that are interchangeable for scheduling.
#[derive(Clone, Debug)]
pub(crate) struct PodClass {
    pub rep: PodIdx,
    pub pods: Vec<PodIdx>,
}

/// Groups pods by namespace, labels and scheduling spec, largest requests first.
pub(crate) fn classify(snap: &ClusterSnapshot, pending: &[PodIdx]) -> Vec<PodClass> {
    let pods = snap.pods();
    let mut index: FxHashMap<(&str, &Labels, &crate::model::SchedulingSpec), usize> =
        FxHashMap::default();
    let mut classes: Vec<PodClass> = Vec::new();
    for &p in pending {
        let pod = &pods[p];
        let key = (pod.namespace.as_str(), &pod.labels, &pod.spec);
        match index.get(&key) {
            Some(&c) => classes[c].pods.push(p),
            None => {
                index.insert(key, classes.len());
                classes.push(PodClass {
                    rep: p,
                    pods: vec![p],
                });
            }
        }
    }
    classes.sort_by(|a, b| {
        let ra = &pods[a.rep].spec;
        let rb = &pods[b.rep].spec;
        rb.priority
            .cmp(&ra.priority)
            .then(rb.requests.cpu_millis.cmp(&ra.requests.cpu_millis))
            .then(rb.requests.memory_bytes.cmp(&ra.requests.memory_bytes))
    });
    classes
}

/// Whether a node that refused a pod may take an identical one after more placements:
/// only pod affinity opens domains (anti-affinity and resources only close them).
fn placements_can_open_nodes(pod: &Pod) -> bool {
    !pod.spec.affinity.is_empty()
}

/// First-fit of a class onto `nodes`; returns the pods that found no room and, for each
/// placed pod, the node index. A node that rejects a pod for any reason but topology
/// spread rejects the identical pods after it too (free room only shrinks, pods only
/// arrive), so it is never scanned again for the class; spread rejections depend on
/// counts that change, so those nodes stay candidates.
pub(crate) fn place_class(
    class: &PodClass,
    nodes: &mut [SimNode<'_>],
    snap: &ClusterSnapshot,
    spread: &mut SpreadState,
    mut on_placed: impl FnMut(PodIdx, usize),
) -> Vec<PodIdx> {
    let pods = snap.pods();
    let rep = &pods[class.rep];
    let mut affinity = AffinityState::build_with_placed(rep, snap, nodes);
    let mut candidates: Vec<usize> = Vec::new();
    let mut cursor = 0usize;
    for (i, &p) in class.pods.iter().enumerate() {
        let pod = &pods[p];
        let found = if spread.is_empty() && !placements_can_open_nodes(rep) {
            let found = (cursor..nodes.len())
                .find(|&k| full_fit(pod, &nodes[k], snap, spread, &affinity).is_ok());
            cursor = found.unwrap_or(nodes.len());
            found
        } else {
            if i == 0 {
                candidates = (0..nodes.len()).collect();
            }
            // Pod affinity can open a node that refused an earlier pod.
            if !rep.spec.affinity.is_empty() {
                candidates = (0..nodes.len()).collect();
            }
            let mut keep = 0;
            let mut scanned = 0;
            let mut found = None;
            while scanned < candidates.len() {
                let k = candidates[scanned];
                match full_fit(pod, &nodes[k], snap, spread, &affinity) {
                    Ok(()) => {
                        found = Some(k);
                        break;
                    }
                    Err(Unfit::TopologySpread { .. } | Unfit::PodAffinity { .. }) => {
                        candidates[keep] = k;
                        keep += 1;
                    }
                    Err(_) => {}
                }
                scanned += 1;
            }
            candidates.drain(keep..scanned);
            found
        };
        match found {
            Some(k) => {
                nodes[k].place(p, &pod.spec.requests);
                spread.record(&nodes[k]);
                affinity.record(rep, pod, p, &nodes[k]);
                on_placed(p, k);
            }
            // Nothing changed, so the identical pods left cannot fit either.
            None => return class.pods[i..].to_vec(),
        }
    }
    Vec::new()
}

/// The result of estimating one group for the remaining pods.
#[derive(Debug)]
pub(crate) struct Estimate<'a> {
    /// The new nodes, with the pods placed on them.
    pub nodes: Vec<SimNode<'a>>,
    pub helped: Vec<PodIdx>,
    pub requested: Resources,
}

impl Estimate<'_> {
    pub fn node_count(&self) -> u32 {
        self.nodes.len() as u32
    }

    /// Whether `other` helps exactly the pods this estimate helps (in any order): only
    /// then may a share of its nodes go to the other's group, which may fit other pods.
    pub fn helps_same_pods(&self, other: &Estimate<'_>) -> bool {
        if self.helped.len() != other.helped.len() {
            return false;
        }
        let mut mine = self.helped.clone();
        let mut theirs = other.helped.clone();
        mine.sort_unstable();
        theirs.sort_unstable();
        mine == theirs
    }
}

/// Whether a pod may count on a node whose zone AWS has not decided yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ZoneGuess {
    /// Only when it fits in every zone the node may land in (the default: never a node
    /// that may be useless to it).
    Never,
    /// As a last resort, in one of them: the node is then assumed to land in that zone
    /// (as cluster-autoscaler assumes of every new node). A zone-pinned pod on groups
    /// that span zones with equal counts gets a node that lands in its zone for it or,
    /// if AWS picks another, a clearer tie in the next round.
    LastResort,
}

/// Whether where a pod may go depends on the zone: a zone in its node selector or
/// required node affinity, or a zone-wide anti-affinity or spread.
pub(crate) fn depends_on_zone(pod: &Pod) -> bool {
    let spec = &pod.spec;
    spec.node_selector.contains_key(ZONE_LABEL)
        || spec
            .required_node_affinity
            .iter()
            .any(|t| t.match_expressions.iter().any(|r| r.key == ZONE_LABEL))
        || spec
            .anti_affinity
            .iter()
            .any(|t| t.topology_key == ZONE_LABEL)
        || spec
            .topology_spread
            .iter()
            .any(|t| t.topology_key == ZONE_LABEL)
}

/// Whether a hypothetical node with these variants may still land in more than one zone.
pub(crate) fn zone_open(variants: &[Variant]) -> bool {
    variants.iter().any(|v| v.zone != variants[0].zone)
}

impl ZoneGuess {
    /// Whether `fits(node)`; if not, under [`ZoneGuess::LastResort`], narrows a node
    /// whose zone is still open to the first of its zones that fits (variants are ordered
    /// by zone) and says yes. Otherwise the node is left as it was.
    pub(crate) fn fits<'a>(
        self,
        node: &mut SimNode<'a>,
        fits: impl Fn(&SimNode<'a>) -> bool,
    ) -> bool {
        if fits(node) {
            return true;
        }
        let all = node.variants;
        if self == ZoneGuess::Never || !zone_open(all) {
            return false;
        }
        for zone in all.chunk_by(|a, b| a.zone == b.zone) {
            node.variants = zone;
            if fits(node) {
                return true;
            }
        }
        node.variants = all;
        false
    }
}

/// Packs the classes onto up to `max_new` fresh nodes of `plan` (first-fit decreasing).
pub(crate) fn estimate<'a>(
    plan: &'a GroupPlan,
    group: &'a NodeGroup,
    classes: &[PodClass],
    spreads: &[SpreadState],
    max_new: u32,
    snap: &ClusterSnapshot,
    guess: ZoneGuess,
) -> Estimate<'a> {
    let pods = snap.pods();
    let mut nodes: Vec<SimNode<'a>> = Vec::new();
    let mut helped = Vec::new();
    let mut requested = Resources::default();
    for (ci, class) in classes.iter().enumerate() {
        let rep = &pods[class.rep];
        if guess == ZoneGuess::LastResort && !depends_on_zone(rep) {
            continue; // tried without guessing: a zone changes nothing for it
        }
        // A quick refusal without guessing; a guess may still find a later node's zone.
        let first = plan.new_node(group, nodes.len(), "");
        if guess == ZoneGuess::Never
            && resource_fit(rep, &first)
                .and(static_fit(rep, &first))
                .is_err()
        {
            continue;
        }
        // Bound pods (any topology key) and what earlier classes put on these nodes.
        let mut affinity = AffinityState::build_with_placed(rep, snap, &nodes);
        let mut spread = spreads[ci].clone();
        if !spread.is_empty() {
            for node in &nodes {
                for &q in &node.placed {
                    spread.record_other(rep, &pods[q], node);
                }
            }
        }
        let rescan = !spread.is_empty() || placements_can_open_nodes(rep);
        let mut cursor = 0usize;
        for &p in &class.pods {
            let pod = &pods[p];
            let start = if rescan { 0 } else { cursor };
            let mut found = (start..nodes.len())
                .find(|&k| full_fit(pod, &nodes[k], snap, &spread, &affinity).is_ok());
            if found.is_none() && guess == ZoneGuess::LastResort {
                // A node of this estimate whose zone is still open may be assumed in
                // the pod's (what it holds fits every zone, so any one of them).
                let fits = |n: &SimNode<'a>| full_fit(pod, n, snap, &spread, &affinity).is_ok();
                found = (start..nodes.len()).find(|&k| guess.fits(&mut nodes[k], fits));
            }
            // A mixed group under a spot ICE: AWS reaches the next on-demand node only
            // through the spot slots before it, which hold nothing.
            while found.is_none() && (nodes.len() as u32) < max_new && !plan.comes(nodes.len()) {
                nodes.push(plan.placeholder(group, nodes.len()));
            }
            if found.is_none() && (nodes.len() as u32) < max_new {
                let mut node = plan.new_node(
                    group,
                    nodes.len(),
                    format!("new-{}-{}", group.name, nodes.len()),
                );
                let fits = |n: &SimNode<'a>| full_fit(pod, n, snap, &spread, &affinity).is_ok();
                if guess.fits(&mut node, fits) {
                    nodes.push(node);
                    found = Some(nodes.len() - 1);
                } else if guess == ZoneGuess::LastResort && plan.mix.is_none() {
                    // AWS fills the zones in order: a later node of the launch may land
                    // where the pod fits, and the ones before it come too (other pods
                    // may use them). At most one per other zone.
                    let from = nodes.len();
                    let until = (max_new as usize)
                        .min(plan.launch_order.len())
                        .min(from + group.zones.len());
                    for j in from + 1..until {
                        let mut node = plan.new_node(group, j, format!("new-{}-{j}", group.name));
                        if guess.fits(&mut node, fits) {
                            for i in from..j {
                                nodes.push(plan.new_node(
                                    group,
                                    i,
                                    format!("new-{}-{i}", group.name),
                                ));
                            }
                            nodes.push(node);
                            found = Some(j);
                            break;
                        }
                    }
                }
            }
            let Some(k) = found else { break };
            nodes[k].place(p, &pod.spec.requests);
            spread.record(&nodes[k]);
            affinity.record(rep, pod, p, &nodes[k]);
            helped.push(p);
            requested.add(&pod.spec.requests);
            cursor = k;
        }
    }
    // Slots that would only lead to a node that did not take a pod are not asked for.
    while nodes
        .last()
        .is_some_and(|n| n.placed.is_empty() && !n.schedulable)
    {
        nodes.pop();
    }
    Estimate {
        nodes,
        helped,
        requested,
    }
}

/// Explains why a pod does not fit a fresh node of `plan`, naming the numbers; when the
/// request exceeds even the group's largest type, says so.
pub(crate) fn explain_misfit(
    pod: &Pod,
    plan: &GroupPlan,
    group: &NodeGroup,
    snap: &ClusterSnapshot,
    spread: &SpreadState,
) -> Option<String> {
    let fresh = plan.new_node(group, 0, format!("new-{}", group.name));
    let affinity = AffinityState::build(pod, snap);
    let unfit = static_fit(pod, &fresh)
        .and(resource_fit(pod, &fresh))
        .and(anti_affinity_fit(pod, &fresh, snap, &affinity))
        .and(spread.check(pod, &fresh, snap))
        .err()?;
    Some(match unfit {
        Unfit::Resources(s) => {
            let largest = group
                .instance_types
                .iter()
                .max_by_key(|t| match &s.resource {
                    ResourceName::Cpu => t.allocatable.cpu_millis,
                    ResourceName::Memory => t.allocatable.memory_bytes,
                    ResourceName::EphemeralStorage => t.allocatable.ephemeral_storage_bytes,
                    ResourceName::Pods => t.allocatable.pods,
                    ResourceName::Extended(n) => t.allocatable.extended(n),
                })?;
            let (cap, alloc) = match &s.resource {
                ResourceName::Cpu => (
                    u64::from(largest.vcpus) * 1000,
                    largest.allocatable.cpu_millis,
                ),
                ResourceName::Memory => {
                    (largest.memory_mib << 20, largest.allocatable.memory_bytes)
                }
                ResourceName::EphemeralStorage => (
                    largest.allocatable.ephemeral_storage_bytes,
                    largest.allocatable.ephemeral_storage_bytes,
                ),
                ResourceName::Pods => (largest.allocatable.pods, largest.allocatable.pods),
                ResourceName::Extended(n) => (
                    largest.allocatable.extended(n),
                    largest.allocatable.extended(n),
                ),
            };
            let r = &s.resource;
            if s.requested > alloc {
                format!(
                    "requests {} {r}, largest type {} has {} ({} allocatable)",
                    r.format_amount(s.requested),
                    largest.name,
                    r.format_amount(cap),
                    r.format_amount(alloc)
                )
            } else {
                format!(
                    "requests {} {r}, but a new node is only guaranteed {} after DaemonSets \
                     (the group may launch its smallest allowed type)",
                    r.format_amount(s.requested),
                    r.format_amount(s.available)
                )
            }
        }
        other => other.to_string(),
    })
}
