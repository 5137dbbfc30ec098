//! Hedged launches. After a spot capacity shortage, the next spot pools tried are likely
//! short too, and finding out costs a failed launch each (the failure arrives ~10 s
//! after the launch, in the next round). So while a shortage is recent, one scale-up is
//! shared between every spot family (balance set) that could take the same pods at
//! about the same price: one round tells which families still have capacity. The node
//! count does not change, so hedging is free when spot is fine; optionally a share
//! starts on-demand at once (drained back once spot returns).

use crate::config::HedgeConfig;
use crate::index::GroupIdx;
use crate::model::{CapacityType, NodeGroup};
use crate::time::{human_duration, Timestamp};

/// The latest spot capacity failure, for the hedge window.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SpotShortage {
    pub at: Timestamp,
    pub group: String,
    pub zone: Option<String>,
}

/// A group that could take the chosen scale-up in place of the chosen group.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Alternative {
    pub group: GroupIdx,
    /// Balance set of the group.
    pub set: usize,
    pub price_per_hour: f64,
    /// Pods it would help and nodes it would need for them.
    pub helped: usize,
    pub nodes: u32,
    pub priority: Option<i64>,
}

/// Why a share of the scale-up goes where it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShareKind {
    /// The expander's choice.
    Chosen,
    /// Another spot family.
    Family,
    /// On-demand, started at once.
    OnDemand,
}

/// Nodes for one group (to be split over its balance set by zone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Share {
    pub group: GroupIdx,
    pub nodes: u32,
    pub kind: ShareKind,
}

/// Whether scale-ups are hedged at `now`.
pub(crate) fn active(
    config: &HedgeConfig,
    shortage: Option<&SpotShortage>,
    now: Timestamp,
) -> bool {
    config.enabled && shortage.is_some_and(|s| now.since(s.at) <= config.window)
}

/// What the hedge says about the shortage, for decision reasons.
pub(crate) fn describe(shortage: &SpotShortage, now: Timestamp) -> String {
    format!(
        "spot capacity ran short {} ago ({}{})",
        human_duration(now.since(shortage.at)),
        shortage.group,
        shortage
            .zone
            .as_deref()
            .map(|z| format!(" in {z}"))
            .unwrap_or_default()
    )
}

/// How many spot families are short at once: the distinct balance sets among the spot
/// capacity failures within the window (`failures`: set and time), or `None` when a spot
/// node joined after the latest of them (`latest_spot_join`), since spot then still has
/// capacity somewhere. Distinct families, not failures: one family failing in every zone
/// says nothing of the others.
pub(crate) fn broad_families(
    config: &HedgeConfig,
    failures: impl IntoIterator<Item = (usize, Timestamp)>,
    latest_spot_join: Option<Timestamp>,
    now: Timestamp,
) -> Option<usize> {
    if !config.enabled || config.broad_shortage_families == 0 {
        return None;
    }
    let mut sets = Vec::new();
    let mut latest = None;
    for (set, at) in failures {
        if now.since(at) > config.window {
            continue;
        }
        latest = latest.max(Some(at));
        if !sets.contains(&set) {
            sets.push(set);
        }
    }
    let latest = latest?;
    if latest_spot_join.is_some_and(|joined| joined > latest) {
        return None;
    }
    (sets.len() >= config.broad_shortage_families as usize).then_some(sets.len())
}

/// Splits `nodes` of the chosen spot group over the spot families that could take the
/// same pods with the same node count at the same priority and a price within the
/// tolerance, one family per balance set (the first alternative of each set stands for
/// it), plus the on-demand share. In a `broad` shortage (see [`broad_families`]) every
/// node starts on-demand, a single one too, and the chosen group keeps an empty share
/// (it takes back what the on-demand groups cannot). Without a hedge (not active, the
/// chosen group not a plain spot group, a single node outside a broad shortage) the
/// chosen group takes everything.
pub(crate) fn shares(
    config: &HedgeConfig,
    groups: &[NodeGroup],
    chosen: &Alternative,
    alternatives: &[Alternative],
    broad: bool,
) -> Vec<Share> {
    let all_chosen = vec![Share {
        group: chosen.group,
        nodes: chosen.nodes,
        kind: ShareKind::Chosen,
    }];
    let g = &groups[chosen.group];
    if (chosen.nodes < 2 && !broad)
        || chosen.nodes == 0
        || g.capacity_type != CapacityType::Spot
        || g.mixed().is_some()
    {
        return all_chosen;
    }
    let same_pods = |a: &Alternative| a.helped == chosen.helped && a.nodes == chosen.nodes;
    let mut families: Vec<&Alternative> = Vec::new();
    for a in alternatives {
        let ag = &groups[a.group];
        if a.group == chosen.group
            || a.set == chosen.set
            || ag.capacity_type != CapacityType::Spot
            || ag.mixed().is_some()
            || !same_pods(a)
            || a.priority != chosen.priority
            || a.price_per_hour > chosen.price_per_hour * (1.0 + config.price_tolerance)
            || families.iter().any(|f| f.set == a.set)
        {
            continue;
        }
        families.push(a);
    }
    let on_demand = alternatives
        .iter()
        .filter(|a| {
            let ag = &groups[a.group];
            ag.capacity_type == CapacityType::OnDemand && ag.mixed().is_none() && same_pods(a)
        })
        .min_by(|a, b| a.price_per_hour.total_cmp(&b.price_per_hour));
    let on_demand_nodes = match on_demand {
        Some(_) if broad => chosen.nodes,
        Some(_) => ((f64::from(chosen.nodes) * config.on_demand_fraction).round() as u32)
            .min(chosen.nodes - 1),
        None => 0,
    };
    if families.is_empty() && on_demand_nodes == 0 {
        return all_chosen;
    }
    let spot_nodes = chosen.nodes - on_demand_nodes;
    let count = families.len() as u32 + 1;
    let mut out = Vec::with_capacity(families.len() + 2);
    for (i, group) in std::iter::once(chosen.group)
        .chain(families.iter().map(|f| f.group))
        .enumerate()
    {
        let nodes = spot_nodes / count + u32::from((i as u32) < spot_nodes % count);
        // The chosen group's share stays, empty or not: it takes back what the others
        // cannot take.
        if nodes > 0 || i == 0 {
            out.push(Share {
                group,
                nodes,
                kind: if i == 0 {
                    ShareKind::Chosen
                } else {
                    ShareKind::Family
                },
            });
        }
    }
    if let Some(od) = on_demand.filter(|_| on_demand_nodes > 0) {
        out.push(Share {
            group: od.group,
            nodes: on_demand_nodes,
            kind: ShareKind::OnDemand,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::group;

    fn alt(group: GroupIdx, set: usize, price: f64, nodes: u32) -> Alternative {
        Alternative {
            group,
            set,
            price_per_hour: price,
            helped: 10,
            nodes,
            priority: Some(50),
        }
    }

    fn groups() -> Vec<NodeGroup> {
        vec![
            group("spot-a", CapacityType::Spot, &["z1"], &["m5.large"]),
            group("spot-b", CapacityType::Spot, &["z1"], &["m5.large"]),
            group("spot-c", CapacityType::Spot, &["z1"], &["m5.large"]),
            group("od", CapacityType::OnDemand, &["z1"], &["m5.large"]),
        ]
    }

    #[test]
    fn spreads_over_one_group_per_spot_family_within_the_price_tolerance() {
        let gs = groups();
        let chosen = alt(GroupIdx(0), 0, 0.15, 7);
        let alternatives = [
            alt(GroupIdx(1), 1, 0.16, 7),
            alt(GroupIdx(2), 2, 0.30, 7), // too dear
            alt(GroupIdx(3), 3, 0.38, 7),
        ];
        let s = shares(&HedgeConfig::default(), &gs, &chosen, &alternatives, false);
        assert_eq!(
            s,
            vec![
                Share {
                    group: GroupIdx(0),
                    nodes: 4,
                    kind: ShareKind::Chosen
                },
                Share {
                    group: GroupIdx(1),
                    nodes: 3,
                    kind: ShareKind::Family
                },
            ]
        );
        assert_eq!(
            s.iter().map(|s| s.nodes).sum::<u32>(),
            7,
            "the node count is kept"
        );
    }

    #[test]
    fn on_demand_share_and_what_is_never_hedged() {
        let gs = groups();
        let config = HedgeConfig {
            on_demand_fraction: 0.5,
            ..HedgeConfig::default()
        };
        let chosen = alt(GroupIdx(0), 0, 0.15, 4);
        let od = alt(GroupIdx(3), 3, 0.38, 4);
        let s = shares(&config, &gs, &chosen, &[od], false);
        assert_eq!(
            s,
            vec![
                Share {
                    group: GroupIdx(0),
                    nodes: 2,
                    kind: ShareKind::Chosen
                },
                Share {
                    group: GroupIdx(3),
                    nodes: 2,
                    kind: ShareKind::OnDemand
                },
            ]
        );
        // Another pod set (a different node count), another priority, one node, an
        // on-demand choice: the chosen group keeps it all.
        let other_shape = alt(GroupIdx(1), 1, 0.15, 5);
        let other_priority = Alternative {
            priority: Some(10),
            ..alt(GroupIdx(2), 2, 0.15, 4)
        };
        let s = shares(
            &HedgeConfig::default(),
            &gs,
            &chosen,
            &[other_shape, other_priority],
            false,
        );
        assert_eq!(s.len(), 1);
        let single = alt(GroupIdx(0), 0, 0.15, 1);
        assert_eq!(shares(&config, &gs, &single, &[od], false).len(), 1);
        let od_chosen = alt(GroupIdx(3), 3, 0.38, 4);
        let s = shares(&config, &gs, &od_chosen, &[chosen], false);
        assert_eq!(
            s,
            vec![Share {
                group: GroupIdx(3),
                nodes: 4,
                kind: ShareKind::Chosen
            }]
        );
    }

    #[test]
    fn a_broad_shortage_starts_everything_on_demand_even_one_node() {
        let gs = groups();
        let od = alt(GroupIdx(3), 3, 0.38, 1);
        let single = alt(GroupIdx(0), 0, 0.15, 1);
        let s = shares(&HedgeConfig::default(), &gs, &single, &[od], true);
        assert_eq!(
            s,
            vec![
                Share {
                    group: GroupIdx(0),
                    nodes: 0,
                    kind: ShareKind::Chosen
                },
                Share {
                    group: GroupIdx(3),
                    nodes: 1,
                    kind: ShareKind::OnDemand
                },
            ],
            "the chosen group keeps an empty share to take back what on-demand cannot"
        );
        // Without an on-demand group that helps the same pods, nothing changes.
        assert_eq!(
            shares(&HedgeConfig::default(), &gs, &single, &[], true),
            vec![Share {
                group: GroupIdx(0),
                nodes: 1,
                kind: ShareKind::Chosen
            }]
        );
    }

    #[test]
    fn broad_counts_distinct_families_within_the_window_until_a_spot_node_joins() {
        let c = HedgeConfig::default();
        let t = Timestamp::from_secs;
        // Family 0 failing in three zones is one family.
        let one_family = [(0, t(100)), (0, t(110)), (0, t(120))];
        assert_eq!(broad_families(&c, one_family, None, t(130)), None);
        let three = [(0, t(100)), (1, t(110)), (2, t(120))];
        assert_eq!(broad_families(&c, three, None, t(130)), Some(3));
        // A spot node joined after the latest failure (not before it).
        assert_eq!(broad_families(&c, three, Some(t(121)), t(130)), None);
        assert_eq!(broad_families(&c, three, Some(t(120)), t(130)), Some(3));
        // The oldest failure left the window.
        assert_eq!(broad_families(&c, three, None, t(100 + 901)), None);
        let off = HedgeConfig {
            broad_shortage_families: 0,
            ..c.clone()
        };
        assert_eq!(broad_families(&off, three, None, t(130)), None);
    }

    #[test]
    fn active_only_within_the_window() {
        let shortage = SpotShortage {
            at: Timestamp::from_secs(100),
            group: "spot-a".into(),
            zone: None,
        };
        let c = HedgeConfig::default();
        assert!(active(&c, Some(&shortage), Timestamp::from_secs(100 + 900)));
        assert!(!active(
            &c,
            Some(&shortage),
            Timestamp::from_secs(100 + 901)
        ));
        assert!(!active(&c, None, Timestamp::from_secs(100)));
        let off = HedgeConfig {
            enabled: false,
            ..c
        };
        assert!(!active(&off, Some(&shortage), Timestamp::from_secs(100)));
    }
}
