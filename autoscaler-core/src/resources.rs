//! Resource vectors: what a node offers and what a pod requests.

use crate::quantity::{self, QuantityError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Resources in integer units: millicores, bytes, pod slots, and extended resources
/// such as `nvidia.com/gpu` by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU in millicores.
    #[serde(default)]
    pub cpu_millis: u64,
    /// Memory in bytes.
    #[serde(default)]
    pub memory_bytes: u64,
    /// Pod slots (only meaningful on nodes; a pod always takes one).
    #[serde(default)]
    pub pods: u64,
    /// Ephemeral storage in bytes.
    #[serde(default)]
    pub ephemeral_storage_bytes: u64,
    /// Extended resources (`nvidia.com/gpu`, `vpc.amazonaws.com/pod-eni`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extended: BTreeMap<String, u64>,
}

/// The name of one dimension of [`Resources`], for reasons.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResourceName {
    /// CPU.
    Cpu,
    /// Memory.
    Memory,
    /// Pod slots.
    Pods,
    /// Ephemeral storage.
    EphemeralStorage,
    /// An extended resource by name.
    Extended(String),
}

impl fmt::Display for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourceName::Cpu => f.write_str("CPU"),
            ResourceName::Memory => f.write_str("memory"),
            ResourceName::Pods => f.write_str("pod slots"),
            ResourceName::EphemeralStorage => f.write_str("ephemeral-storage"),
            ResourceName::Extended(name) => f.write_str(name),
        }
    }
}

impl ResourceName {
    /// Renders an amount of this resource in the unit people use for it.
    pub fn format_amount(&self, amount: u64) -> String {
        match self {
            ResourceName::Cpu => {
                if amount % 1000 == 0 {
                    format!("{}", amount / 1000)
                } else {
                    format!("{:.3}", amount as f64 / 1000.0)
                        .trim_end_matches('0')
                        .to_string()
                }
            }
            ResourceName::Memory | ResourceName::EphemeralStorage => format_bytes(amount),
            ResourceName::Pods | ResourceName::Extended(_) => amount.to_string(),
        }
    }
}

fn format_bytes(bytes: u64) -> String {
    const GI: u64 = 1 << 30;
    const MI: u64 = 1 << 20;
    if bytes >= GI && bytes % (GI / 10) == 0 || bytes >= 10 * GI {
        format!("{:.1}Gi", bytes as f64 / GI as f64)
    } else if bytes >= MI {
        format!("{}Mi", bytes.div_ceil(MI))
    } else {
        format!("{bytes}B")
    }
}

/// Where a request exceeds what is free: the first resource that does not fit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortfall {
    /// The resource that does not fit.
    pub resource: ResourceName,
    /// How much is requested.
    pub requested: u64,
    /// How much is available.
    pub available: u64,
}

impl Resources {
    /// Resources with the given CPU (millicores) and memory (bytes).
    pub fn new(cpu_millis: u64, memory_bytes: u64) -> Self {
        Resources {
            cpu_millis,
            memory_bytes,
            ..Resources::default()
        }
    }

    /// Parses Kubernetes quantities: `Resources::parse("500m", "1Gi")`.
    pub fn parse(cpu: &str, memory: &str) -> Result<Self, QuantityError> {
        Ok(Resources::new(
            quantity::parse_cpu_millis(cpu)?,
            quantity::parse_bytes(memory)?,
        ))
    }

    /// Sets the pod slots (for node allocatable).
    pub fn with_pods(mut self, pods: u64) -> Self {
        self.pods = pods;
        self
    }

    /// Sets an extended resource.
    pub fn with_extended(mut self, name: impl Into<String>, amount: u64) -> Self {
        self.extended.insert(name.into(), amount);
        self
    }

    /// Sets ephemeral storage.
    pub fn with_ephemeral_storage(mut self, bytes: u64) -> Self {
        self.ephemeral_storage_bytes = bytes;
        self
    }

    /// Amount of an extended resource, zero when absent.
    pub fn extended(&self, name: &str) -> u64 {
        self.extended.get(name).copied().unwrap_or(0)
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Resources) {
        self.cpu_millis = self.cpu_millis.saturating_add(other.cpu_millis);
        self.memory_bytes = self.memory_bytes.saturating_add(other.memory_bytes);
        self.pods = self.pods.saturating_add(other.pods);
        self.ephemeral_storage_bytes = self
            .ephemeral_storage_bytes
            .saturating_add(other.ephemeral_storage_bytes);
        for (name, amount) in &other.extended {
            let slot = self.extended.entry(name.clone()).or_insert(0);
            *slot = slot.saturating_add(*amount);
        }
    }

    /// Subtracts `other` from `self`, stopping at zero.
    pub fn saturating_sub(&mut self, other: &Resources) {
        self.cpu_millis = self.cpu_millis.saturating_sub(other.cpu_millis);
        self.memory_bytes = self.memory_bytes.saturating_sub(other.memory_bytes);
        self.pods = self.pods.saturating_sub(other.pods);
        self.ephemeral_storage_bytes = self
            .ephemeral_storage_bytes
            .saturating_sub(other.ephemeral_storage_bytes);
        for (name, amount) in &other.extended {
            if let Some(slot) = self.extended.get_mut(name) {
                *slot = slot.saturating_sub(*amount);
            }
        }
    }

    /// The first dimension in which `request` exceeds `self` (taken as free capacity),
    /// or `None` when it fits. Pod slots are not checked here: a pod takes one slot,
    /// see [`Resources::pods`].
    pub fn shortfall(&self, request: &Resources) -> Option<Shortfall> {
        let dims = [
            (ResourceName::Cpu, request.cpu_millis, self.cpu_millis),
            (
                ResourceName::Memory,
                request.memory_bytes,
                self.memory_bytes,
            ),
            (
                ResourceName::EphemeralStorage,
                request.ephemeral_storage_bytes,
                self.ephemeral_storage_bytes,
            ),
        ];
        for (resource, requested, available) in dims {
            if requested > available {
                return Some(Shortfall {
                    resource,
                    requested,
                    available,
                });
            }
        }
        for (name, &requested) in &request.extended {
            let available = self.extended(name);
            if requested > available {
                return Some(Shortfall {
                    resource: ResourceName::Extended(name.clone()),
                    requested,
                    available,
                });
            }
        }
        None
    }

    /// Component-wise minimum: what every one of several shapes is guaranteed to offer.
    pub fn component_min(&self, other: &Resources) -> Resources {
        let mut extended = BTreeMap::new();
        for (name, &amount) in &self.extended {
            let m = amount.min(other.extended(name));
            if m > 0 {
                extended.insert(name.clone(), m);
            }
        }
        Resources {
            cpu_millis: self.cpu_millis.min(other.cpu_millis),
            memory_bytes: self.memory_bytes.min(other.memory_bytes),
            pods: self.pods.min(other.pods),
            ephemeral_storage_bytes: self
                .ephemeral_storage_bytes
                .min(other.ephemeral_storage_bytes),
            extended,
        }
    }

    /// Component-wise maximum (extended resources: the union, each at its larger amount).
    pub fn component_max(&self, other: &Resources) -> Resources {
        let mut extended = self.extended.clone();
        for (name, &amount) in &other.extended {
            let slot = extended.entry(name.clone()).or_insert(0);
            *slot = (*slot).max(amount);
        }
        Resources {
            cpu_millis: self.cpu_millis.max(other.cpu_millis),
            memory_bytes: self.memory_bytes.max(other.memory_bytes),
            pods: self.pods.max(other.pods),
            ephemeral_storage_bytes: self
                .ephemeral_storage_bytes
                .max(other.ephemeral_storage_bytes),
            extended,
        }
    }

    /// True when every dimension is zero.
    pub fn is_zero(&self) -> bool {
        self.cpu_millis == 0
            && self.memory_bytes == 0
            && self.pods == 0
            && self.ephemeral_storage_bytes == 0
            && self.extended.values().all(|v| *v == 0)
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} CPU, {} memory",
            ResourceName::Cpu.format_amount(self.cpu_millis),
            ResourceName::Memory.format_amount(self.memory_bytes)
        )?;
        for (name, amount) in &self.extended {
            write!(f, ", {amount} {name}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortfall_names_the_first_missing_dimension() {
        let free = Resources::new(2000, 4 << 30);
        assert_eq!(free.shortfall(&Resources::new(1000, 1 << 30)), None);
        let s = free.shortfall(&Resources::new(3000, 1 << 30)).unwrap();
        assert_eq!(s.resource, ResourceName::Cpu);
        assert_eq!((s.requested, s.available), (3000, 2000));
        let gpu = Resources::new(100, 100).with_extended("nvidia.com/gpu", 1);
        let s = free.shortfall(&gpu).unwrap();
        assert_eq!(s.resource, ResourceName::Extended("nvidia.com/gpu".into()));
        assert_eq!(s.available, 0);
    }

    #[test]
    fn arithmetic_round_trips() {
        let mut a = Resources::new(1000, 1000).with_extended("x", 2);
        let b = Resources::new(300, 200).with_extended("x", 1);
        a.add(&b);
        a.saturating_sub(&b);
        assert_eq!(a, Resources::new(1000, 1000).with_extended("x", 2));
        a.saturating_sub(&Resources::new(5000, 5000));
        assert_eq!((a.cpu_millis, a.memory_bytes), (0, 0));
    }

    #[test]
    fn component_min_keeps_only_common_extended() {
        let a = Resources::new(4000, 8).with_extended("gpu", 2);
        let b = Resources::new(2000, 16);
        let m = a.component_min(&b);
        assert_eq!(m, Resources::new(2000, 8));
    }

    #[test]
    fn component_max_keeps_every_extended() {
        let a = Resources::new(4000, 8).with_extended("gpu", 2);
        let b = Resources::new(2000, 16).with_extended("fpga", 1);
        let m = a.component_max(&b);
        assert_eq!(
            m,
            Resources::new(4000, 16)
                .with_extended("gpu", 2)
                .with_extended("fpga", 1)
        );
    }

    #[test]
    fn amounts_format_for_humans() {
        assert_eq!(ResourceName::Cpu.format_amount(70_000), "70");
        assert_eq!(ResourceName::Cpu.format_amount(1500), "1.5");
        assert_eq!(ResourceName::Memory.format_amount(512 << 20), "512Mi");
        assert_eq!(ResourceName::Memory.format_amount(16 << 30), "16.0Gi");
    }
}
