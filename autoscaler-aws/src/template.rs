//! Scale-from-zero templates and per-group options from cluster-autoscaler's ASG tags:
//!
//! - `k8s.io/cluster-autoscaler/node-template/label/<key>` = `<value>`
//! - `k8s.io/cluster-autoscaler/node-template/taint/<key>` = `<value>:<effect>`
//! - `k8s.io/cluster-autoscaler/node-template/resources/<name>` = `<quantity>`
//! - `k8s.io/cluster-autoscaler/node-template/autoscaling-options/<option>` = `<value>`

use autoscaler_core::quantity::{parse_bytes, parse_count, parse_cpu_millis};
use autoscaler_core::{NodeTemplate, Resources, Taint, TaintEffect};
use std::collections::BTreeMap;
use std::time::Duration;

/// Prefix of template labels.
pub const LABEL_PREFIX: &str = "k8s.io/cluster-autoscaler/node-template/label/";
/// Prefix of template taints.
pub const TAINT_PREFIX: &str = "k8s.io/cluster-autoscaler/node-template/taint/";
/// Prefix of template resources.
pub const RESOURCES_PREFIX: &str = "k8s.io/cluster-autoscaler/node-template/resources/";
/// Prefix of per-group autoscaling options.
pub const OPTIONS_PREFIX: &str = "k8s.io/cluster-autoscaler/node-template/autoscaling-options/";

/// Resource overrides from `…/resources/*` tags: each replaces what the instance type
/// says, for every instance type of the group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceOverrides {
    /// `cpu`, in millicores.
    pub cpu_millis: Option<u64>,
    /// `memory`, in bytes.
    pub memory_bytes: Option<u64>,
    /// `pods`.
    pub pods: Option<u64>,
    /// `ephemeral-storage`, in bytes.
    pub ephemeral_storage_bytes: Option<u64>,
    /// Anything else (`nvidia.com/gpu`, `vpc.amazonaws.com/pod-eni`, ...).
    pub extended: BTreeMap<String, u64>,
}

impl ResourceOverrides {
    /// Applies the overrides to an instance type's allocatable.
    pub fn apply(&self, r: &mut Resources) {
        if let Some(v) = self.cpu_millis {
            r.cpu_millis = v;
        }
        if let Some(v) = self.memory_bytes {
            r.memory_bytes = v;
        }
        if let Some(v) = self.pods {
            r.pods = v;
        }
        if let Some(v) = self.ephemeral_storage_bytes {
            r.ephemeral_storage_bytes = v;
        }
        for (k, v) in &self.extended {
            r.extended.insert(k.clone(), *v);
        }
    }
}

/// CA's per-group autoscaling options (`…/autoscaling-options/*`), parsed and validated.
/// The ones the core applies per group (utilization threshold, unneeded time, unready
/// time, max provision time) reach it through [`GroupOptions::to_core`] on the group's
/// [`autoscaler_core::NodeGroup::options`]; the others are carried here and not applied
/// (see [`GroupOptions::not_applied`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupOptions {
    /// `scaledownutilizationthreshold` (0..=1).
    pub scale_down_utilization_threshold: Option<f64>,
    /// `scaledowngpuutilizationthreshold` (0..=1).
    pub scale_down_gpu_utilization_threshold: Option<f64>,
    /// `scaledownunneededtime`.
    pub scale_down_unneeded_time: Option<Duration>,
    /// `scaledownunreadytime`.
    pub scale_down_unready_time: Option<Duration>,
    /// `maxnodeprovisiontime`.
    pub max_node_provision_time: Option<Duration>,
    /// `ignoredaemonsetsutilization`.
    pub ignore_daemonsets_utilization: Option<bool>,
    /// `zeroormaxnodescaling`.
    pub zero_or_max_node_scaling: Option<bool>,
    /// `allowscaledown` (false marks the group as never scaled down).
    pub allow_scale_down: Option<bool>,
}

impl GroupOptions {
    /// The options the core applies per group.
    pub fn to_core(&self) -> autoscaler_core::GroupOptions {
        autoscaler_core::GroupOptions {
            scale_down_utilization_threshold: self.scale_down_utilization_threshold,
            scale_down_unneeded_time: self.scale_down_unneeded_time,
            scale_down_unready_time: self.scale_down_unready_time,
            max_node_provision_time: self.max_node_provision_time,
        }
    }

    /// The tag names of options that are set but that the core does not apply.
    pub fn not_applied(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.scale_down_gpu_utilization_threshold.is_some() {
            v.push("scaledowngpuutilizationthreshold");
        }
        if self.ignore_daemonsets_utilization.is_some() {
            v.push("ignoredaemonsetsutilization");
        }
        if self.zero_or_max_node_scaling.is_some() {
            v.push("zeroormaxnodescaling");
        }
        if self.allow_scale_down.is_some() {
            v.push("allowscaledown");
        }
        v
    }
}

/// Everything the tags say about new nodes of a group.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TagTemplate {
    /// Labels and taints.
    pub template: NodeTemplate,
    /// Resource overrides.
    pub resources: ResourceOverrides,
    /// Options.
    pub options: GroupOptions,
}

/// Parses a Go-style duration (`10m`, `1h30m`, `90s`, `500ms`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return Err(format!("{s:?} is not a duration like \"10m\" or \"1h30m\""));
        }
        let n: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("{s:?} is not a duration like \"10m\""))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            other => {
                return Err(format!(
                    "{s:?}: unit {other:?} is not one of h, m, s, ms (write e.g. \"10m\")"
                ))
            }
        };
        total += n * secs;
        rest = &rest[unit_end..];
    }
    Ok(Duration::from_secs_f64(total))
}

fn parse_effect(s: &str) -> Option<TaintEffect> {
    match s {
        "NoSchedule" => Some(TaintEffect::NoSchedule),
        "PreferNoSchedule" => Some(TaintEffect::PreferNoSchedule),
        "NoExecute" => Some(TaintEffect::NoExecute),
        _ => None,
    }
}

fn parse_fraction(key: &str, v: &str) -> Result<f64, String> {
    match v.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "tag {key:?}={v:?}: expected a number between 0 and 1"
        )),
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("tag {key:?}={v:?}: expected true or false")),
    }
}

/// Reads the template tags of a group. Every malformed tag is reported; the caller
/// decides what to do with the group (the adapter skips it, so a missing taint never
/// makes pods look schedulable where they are not).
pub fn parse_tags<'a>(
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<TagTemplate, Vec<String>> {
    let mut out = TagTemplate::default();
    let mut problems = Vec::new();
    for (key, value) in tags {
        if let Some(label) = key.strip_prefix(LABEL_PREFIX) {
            if label.is_empty() {
                problems.push(format!("tag {key:?} has no label key after the prefix"));
            } else {
                out.template
                    .labels
                    .insert(label.to_string(), value.to_string());
            }
        } else if let Some(taint_key) = key.strip_prefix(TAINT_PREFIX) {
            let (v, effect) = value.rsplit_once(':').unwrap_or(("", value));
            match parse_effect(effect) {
                Some(effect) if !taint_key.is_empty() => out.template.taints.push(Taint {
                    key: taint_key.to_string(),
                    value: v.to_string(),
                    effect,
                }),
                _ => problems.push(format!(
                    "tag {key:?}={value:?}: a taint tag's value must be \"value:Effect\" with \
                     Effect NoSchedule, PreferNoSchedule or NoExecute"
                )),
            }
        } else if let Some(name) = key.strip_prefix(RESOURCES_PREFIX) {
            let r = &mut out.resources;
            let parsed = match name {
                "cpu" => parse_cpu_millis(value).map(|v| r.cpu_millis = Some(v)),
                "memory" => parse_bytes(value).map(|v| r.memory_bytes = Some(v)),
                "ephemeral-storage" => {
                    parse_bytes(value).map(|v| r.ephemeral_storage_bytes = Some(v))
                }
                "pods" => parse_count(value).map(|v| r.pods = Some(v)),
                "" => {
                    problems.push(format!("tag {key:?} has no resource name after the prefix"));
                    Ok(())
                }
                other => parse_count(value).map(|v| {
                    r.extended.insert(other.to_string(), v);
                }),
            };
            if let Err(e) = parsed {
                problems.push(format!("tag {key:?}: {e}"));
            }
        } else if let Some(option) = key.strip_prefix(OPTIONS_PREFIX) {
            let o = &mut out.options;
            let parsed = match option {
                "scaledownutilizationthreshold" => {
                    parse_fraction(key, value).map(|v| o.scale_down_utilization_threshold = Some(v))
                }
                "scaledowngpuutilizationthreshold" => parse_fraction(key, value)
                    .map(|v| o.scale_down_gpu_utilization_threshold = Some(v)),
                "scaledownunneededtime" => parse_duration(value)
                    .map(|v| o.scale_down_unneeded_time = Some(v))
                    .map_err(|e| format!("tag {key:?}: {e}")),
                "scaledownunreadytime" => parse_duration(value)
                    .map(|v| o.scale_down_unready_time = Some(v))
                    .map_err(|e| format!("tag {key:?}: {e}")),
                "maxnodeprovisiontime" => parse_duration(value)
                    .map(|v| o.max_node_provision_time = Some(v))
                    .map_err(|e| format!("tag {key:?}: {e}")),
                "ignoredaemonsetsutilization" => {
                    parse_bool(key, value).map(|v| o.ignore_daemonsets_utilization = Some(v))
                }
                "zeroormaxnodescaling" => {
                    parse_bool(key, value).map(|v| o.zero_or_max_node_scaling = Some(v))
                }
                "allowscaledown" => parse_bool(key, value).map(|v| o.allow_scale_down = Some(v)),
                other => Err(format!(
                    "tag {key:?}: unknown autoscaling option {other:?} (known: \
                     scaledownutilizationthreshold, scaledowngpuutilizationthreshold, \
                     scaledownunneededtime, scaledownunreadytime, maxnodeprovisiontime, \
                     ignoredaemonsetsutilization, zeroormaxnodescaling, allowscaledown)"
                )),
            };
            if let Err(e) = parsed {
                problems.push(e);
            }
        }
    }
    out.template.taints.sort();
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ca_template_tags() {
        let tags = [
            ("k8s.io/cluster-autoscaler/node-template/label/team", "ml"),
            (
                "k8s.io/cluster-autoscaler/node-template/taint/dedicated",
                "gpu:NoSchedule",
            ),
            (
                "k8s.io/cluster-autoscaler/node-template/taint/spot",
                "NoExecute",
            ),
            (
                "k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu",
                "4",
            ),
            (
                "k8s.io/cluster-autoscaler/node-template/resources/ephemeral-storage",
                "100Gi",
            ),
            (
                "k8s.io/cluster-autoscaler/node-template/autoscaling-options/scaledownunneededtime",
                "1h30m",
            ),
            (
                "k8s.io/cluster-autoscaler/node-template/autoscaling-options/scaledownutilizationthreshold",
                "0.6",
            ),
            ("Name", "ignored"),
        ];
        let t = parse_tags(tags).unwrap();
        assert_eq!(t.template.labels["team"], "ml");
        assert_eq!(t.template.taints.len(), 2);
        assert_eq!(t.template.taints[0].key, "dedicated");
        assert_eq!(t.template.taints[0].value, "gpu");
        assert_eq!(t.template.taints[1].value, "");
        assert_eq!(t.template.taints[1].effect, TaintEffect::NoExecute);
        assert_eq!(t.resources.extended["nvidia.com/gpu"], 4);
        assert_eq!(t.resources.ephemeral_storage_bytes, Some(100 << 30));
        assert_eq!(
            t.options.scale_down_unneeded_time,
            Some(Duration::from_secs(5400))
        );
        assert_eq!(t.options.scale_down_utilization_threshold, Some(0.6));
    }

    #[test]
    fn reports_every_malformed_tag() {
        let tags = [
            ("k8s.io/cluster-autoscaler/node-template/taint/x", "gpu:Sometimes"),
            ("k8s.io/cluster-autoscaler/node-template/resources/memory", "lots"),
            (
                "k8s.io/cluster-autoscaler/node-template/autoscaling-options/scaledownutilizationthreshold",
                "2",
            ),
            (
                "k8s.io/cluster-autoscaler/node-template/autoscaling-options/bogus",
                "1",
            ),
        ];
        let errs = parse_tags(tags).unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs[0].contains("value:Effect"), "{}", errs[0]);
        assert!(
            errs[3].contains("unknown autoscaling option"),
            "{}",
            errs[3]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("10 minutes").is_err());
        assert!(parse_duration("").is_err());
    }
}
