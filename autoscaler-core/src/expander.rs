//! Expanders: how to choose among node groups that could each help the pending pods.
//! Chainable like cluster-autoscaler's `--expander=priority,least-waste`: each expander
//! keeps its best options and passes ties to the next; a seeded random pick breaks the
//! last tie.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// One expander.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expander {
    /// Highest priority from the priority ConfigMap.
    Priority,
    /// Least idle CPU and memory after the pods are placed.
    LeastWaste,
    /// Most pods helped.
    MostPods,
    /// Lowest price per helped pod.
    Price,
    /// A seeded random choice.
    Random,
}

impl FromStr for Expander {
    type Err = ExpanderError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim() {
            "priority" => Expander::Priority,
            "least-waste" => Expander::LeastWaste,
            "most-pods" => Expander::MostPods,
            "price" => Expander::Price,
            "random" => Expander::Random,
            other => return Err(ExpanderError::Unknown(other.to_string())),
        })
    }
}

impl fmt::Display for Expander {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expander::Priority => "priority",
            Expander::LeastWaste => "least-waste",
            Expander::MostPods => "most-pods",
            Expander::Price => "price",
            Expander::Random => "random",
        })
    }
}

/// Errors in `--expander` or the priority ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExpanderError {
    /// An expander name we do not know.
    #[error("unknown expander {0:?}; use a comma-separated list of priority, least-waste, most-pods, price, random")]
    Unknown(String),
    /// An empty `--expander`.
    #[error("--expander is empty; use e.g. priority,least-waste")]
    Empty,
    /// The ConfigMap has no `priorities` key.
    #[error("ConfigMap cluster-autoscaler-priority-expander has no key \"priorities\"; add one holding a YAML map of priority -> list of regexes")]
    MissingKey,
    /// The `priorities` value is not the expected YAML.
    #[error("ConfigMap cluster-autoscaler-priority-expander, key priorities: {0}; expected a map like `10: [\".*-spot-.*\"]`")]
    Yaml(String),
    /// A regex does not compile.
    #[error("ConfigMap cluster-autoscaler-priority-expander, priority {priority}: regex {pattern:?} is invalid: {error}")]
    Regex {
        /// The priority level.
        priority: i64,
        /// The pattern.
        pattern: String,
        /// Compiler message.
        error: String,
    },
}

/// An ordered chain of expanders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ExpanderChain(Vec<Expander>);

impl ExpanderChain {
    /// The expanders in order.
    pub fn expanders(&self) -> &[Expander] {
        &self.0
    }
}

impl Default for ExpanderChain {
    /// `priority,least-waste`: the priority ConfigMap decides when present (without one
    /// every group passes), least waste breaks ties.
    fn default() -> Self {
        ExpanderChain(vec![Expander::Priority, Expander::LeastWaste])
    }
}

impl FromStr for ExpanderChain {
    type Err = ExpanderError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let chain = s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(Expander::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        if chain.is_empty() {
            return Err(ExpanderError::Empty);
        }
        Ok(ExpanderChain(chain))
    }
}

impl TryFrom<String> for ExpanderChain {
    type Error = ExpanderError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ExpanderChain> for String {
    fn from(c: ExpanderChain) -> String {
        c.to_string()
    }
}

impl fmt::Display for ExpanderChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(|e| e.to_string()).collect();
        f.write_str(&names.join(","))
    }
}

/// The priority expander's configuration, parsed from the `priorities` key of the
/// `cluster-autoscaler-priority-expander` ConfigMap: a YAML map from an integer priority
/// to a list of regexes, searched (unanchored) in the group name.
#[derive(Clone, Debug)]
pub struct PriorityConfig {
    /// Levels from the highest priority down.
    levels: Vec<(i64, Vec<Regex>)>,
}

impl PriorityConfig {
    /// Parses the `priorities` value.
    pub fn parse(yaml: &str) -> Result<Self, ExpanderError> {
        let raw: BTreeMap<i64, Vec<String>> =
            serde_yaml_ng::from_str(yaml).map_err(|e| ExpanderError::Yaml(e.to_string()))?;
        let mut levels = Vec::with_capacity(raw.len());
        for (priority, patterns) in raw.into_iter().rev() {
            let mut regexes = Vec::with_capacity(patterns.len());
            for pattern in patterns {
                let re = Regex::new(&pattern).map_err(|e| ExpanderError::Regex {
                    priority,
                    pattern: pattern.clone(),
                    error: e.to_string(),
                })?;
                regexes.push(re);
            }
            levels.push((priority, regexes));
        }
        Ok(PriorityConfig { levels })
    }

    /// Parses the ConfigMap's `data`, which must hold the key `priorities`.
    pub fn from_configmap_data(data: &BTreeMap<String, String>) -> Result<Self, ExpanderError> {
        let yaml = data.get("priorities").ok_or(ExpanderError::MissingKey)?;
        Self::parse(yaml)
    }

    /// The highest priority whose regexes match the group name, if any.
    pub fn priority_of(&self, group: &str) -> Option<i64> {
        self.levels
            .iter()
            .find(|(_, res)| res.iter().any(|r| r.is_match(group)))
            .map(|(p, _)| *p)
    }
}

/// What an expander needs to know of one option.
#[derive(Clone, Debug)]
pub(crate) struct OptionScore<'a> {
    pub group: &'a str,
    pub pods_helped: usize,
    /// Requested CPU and memory of the helped pods.
    pub requested_cpu_millis: u64,
    pub requested_memory_bytes: u64,
    /// Allocatable CPU and memory of the new nodes.
    pub offered_cpu_millis: u64,
    pub offered_memory_bytes: u64,
    pub cost_per_hour: f64,
}

const EPSILON: f64 = 1e-9;

/// Runs the chain over `options` and returns the chosen index, with a note of which
/// expander decided.
pub(crate) fn choose(
    chain: &ExpanderChain,
    priorities: Option<&PriorityConfig>,
    options: &[OptionScore<'_>],
    rng_seed: u64,
) -> (usize, String) {
    let mut alive: Vec<usize> = (0..options.len()).collect();
    let mut decided_by = String::from("only option");
    for expander in chain.expanders() {
        if alive.len() <= 1 {
            break;
        }
        let before = alive.len();
        alive = match expander {
            Expander::Priority => {
                let Some(cfg) = priorities else { continue };
                let prios: Vec<Option<i64>> = alive
                    .iter()
                    .map(|&i| cfg.priority_of(options[i].group))
                    .collect();
                match prios.iter().flatten().max() {
                    // No option matches any regex: all pass, as in cluster-autoscaler.
                    None => alive,
                    Some(&best) => alive
                        .iter()
                        .zip(&prios)
                        .filter(|(_, p)| **p == Some(best))
                        .map(|(i, _)| *i)
                        .collect(),
                }
            }
            Expander::LeastWaste => keep_min(&alive, |i| waste(&options[i])),
            Expander::MostPods => keep_min(&alive, |i| -(options[i].pods_helped as f64)),
            Expander::Price => keep_min(&alive, |i| {
                options[i].cost_per_hour / options[i].pods_helped.max(1) as f64
            }),
            Expander::Random => {
                let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
                let pick = (rng.next_u64() % alive.len() as u64) as usize;
                vec![alive[pick]]
            }
        };
        if alive.len() < before {
            decided_by = expander.to_string();
        }
    }
    if alive.len() > 1 {
        let mut rng = ChaCha8Rng::seed_from_u64(rng_seed ^ 0x9e37_79b9_7f4a_7c15);
        let pick = (rng.next_u64() % alive.len() as u64) as usize;
        decided_by = format!("{decided_by}, then a seeded random tie-break");
        return (alive[pick], decided_by);
    }
    (alive[0], decided_by)
}

/// cluster-autoscaler's least-waste score: idle CPU fraction plus idle memory fraction.
fn waste(o: &OptionScore<'_>) -> f64 {
    let frac = |req: u64, offered: u64| {
        if offered == 0 {
            1.0
        } else {
            offered.saturating_sub(req) as f64 / offered as f64
        }
    };
    frac(o.requested_cpu_millis, o.offered_cpu_millis)
        + frac(o.requested_memory_bytes, o.offered_memory_bytes)
}

fn keep_min(alive: &[usize], score: impl Fn(usize) -> f64) -> Vec<usize> {
    let scores: Vec<f64> = alive.iter().map(|&i| score(i)).collect();
    let best = scores.iter().copied().fold(f64::INFINITY, f64::min);
    alive
        .iter()
        .zip(&scores)
        .filter(|(_, s)| **s <= best + EPSILON)
        .map(|(i, _)| *i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(group: &str, pods: usize, offered_cpu: u64, cost: f64) -> OptionScore<'_> {
        OptionScore {
            group,
            pods_helped: pods,
            requested_cpu_millis: 1000 * pods as u64,
            requested_memory_bytes: 1 << 30,
            offered_cpu_millis: offered_cpu,
            offered_memory_bytes: 4 << 30,
            cost_per_hour: cost,
        }
    }

    #[test]
    fn chain_parses_and_rejects_unknown_names() {
        let c: ExpanderChain = "priority, least-waste".parse().unwrap();
        assert_eq!(c.expanders(), &[Expander::Priority, Expander::LeastWaste]);
        assert_eq!(c.to_string(), "priority,least-waste");
        let e = "priority,cheapest".parse::<ExpanderChain>().unwrap_err();
        assert!(e.to_string().contains("cheapest"));
        assert_eq!("".parse::<ExpanderChain>(), Err(ExpanderError::Empty));
    }

    #[test]
    fn priority_regexes_are_unanchored_and_highest_wins() {
        let cfg =
            PriorityConfig::parse("10:\n  - .*-spot-.*\n50:\n  - spot-c5\n1:\n  - .*\n").unwrap();
        assert_eq!(
            cfg.priority_of("eks-spot-c5-a"),
            Some(50),
            "search, not full match"
        );
        assert_eq!(cfg.priority_of("eks-spot-m5"), Some(10));
        assert_eq!(cfg.priority_of("on-demand"), Some(1));
        let anchored = PriorityConfig::parse("5: ['^spot$']").unwrap();
        assert_eq!(anchored.priority_of("spot-1"), None);
    }

    #[test]
    fn bad_priority_configs_are_errors_naming_the_place() {
        let e = PriorityConfig::parse("10: ['(unclosed']").unwrap_err();
        assert!(
            matches!(e, ExpanderError::Regex { priority: 10, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("(unclosed"));
        let e = PriorityConfig::parse("high: [a]").unwrap_err();
        assert!(matches!(e, ExpanderError::Yaml(_)), "{e}");
        let e = PriorityConfig::from_configmap_data(&BTreeMap::new()).unwrap_err();
        assert_eq!(e, ExpanderError::MissingKey);
    }

    #[test]
    fn priority_ties_go_to_next_expander_and_no_match_passes_all() {
        let cfg = PriorityConfig::parse("10: [spot]\n").unwrap();
        let chain: ExpanderChain = "priority,least-waste".parse().unwrap();
        let options = [
            opt("spot-big", 2, 8000, 1.0),
            opt("spot-small", 2, 2000, 1.0),
            opt("ondemand", 2, 2000, 1.0),
        ];
        let (i, by) = choose(&chain, Some(&cfg), &options, 1);
        assert_eq!(options[i].group, "spot-small");
        assert_eq!(by, "least-waste");
        // No option matches: all pass to least-waste, which picks the tightest.
        let none = PriorityConfig::parse("10: [gpu]\n").unwrap();
        let options = [opt("a", 2, 8000, 1.0), opt("b", 2, 2000, 1.0)];
        let (i, _) = choose(&chain, Some(&none), &options, 1);
        assert_eq!(options[i].group, "b");
    }

    #[test]
    fn most_pods_and_price() {
        let options = [opt("a", 3, 4000, 3.0), opt("b", 5, 8000, 4.0)];
        let (i, _) = choose(&"most-pods".parse().unwrap(), None, &options, 0);
        assert_eq!(options[i].group, "b");
        let options = [opt("a", 4, 4000, 3.0), opt("b", 1, 8000, 1.0)];
        let (i, _) = choose(&"price".parse().unwrap(), None, &options, 0);
        assert_eq!(options[i].group, "a", "0.75/pod beats 1.0/pod");
    }

    #[test]
    fn random_is_seeded() {
        let options: Vec<_> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|g| opt(g, 1, 1000, 1.0))
            .collect();
        let chain: ExpanderChain = "random".parse().unwrap();
        let picks: Vec<usize> = (0..20)
            .map(|s| choose(&chain, None, &options, s).0)
            .collect();
        let again: Vec<usize> = (0..20)
            .map(|s| choose(&chain, None, &options, s).0)
            .collect();
        assert_eq!(picks, again);
        let distinct: std::collections::BTreeSet<_> = picks.iter().collect();
        assert!(distinct.len() > 2, "seeds spread the choice: {picks:?}");
    }
}
