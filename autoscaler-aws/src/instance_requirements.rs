//! Attribute-based instance selection: a mixed-instances policy whose overrides give
//! `InstanceRequirements` (vCPUs, memory, generations, ...) instead of instance types.
//!
//! The types such a group may launch are what EC2's
//! `GetInstanceTypesFromInstanceRequirements` answers for the requirements and the
//! architecture of the launch template's AMI (`DescribeImages`). Answers are cached by
//! (launch template, resolved version number, requirements): a scan in steady state makes
//! no call, and a new template version (`$Latest`/`$Default` re-read after the template
//! TTL) resolves again. The cache is bounded; the least recently used entry goes first.

use crate::api::{Api, Op};
use crate::error::GroupProblem;
use aws_sdk_autoscaling::types::{AutoScalingGroup, InstanceRequirements};
use aws_sdk_ec2::types::{
    self as ec2, ArchitectureType, InstanceRequirementsRequest, VirtualizationType,
};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Resolved requirement sets kept by default (each is a few dozen type names).
pub const DEFAULT_CACHE_ENTRIES: usize = 256;
/// Page size of `GetInstanceTypesFromInstanceRequirements` (the API's maximum).
const RESOLVE_PAGE_SIZE: i32 = 1000;

/// One launch template version as far as resolution needs it.
#[derive(Clone, Debug)]
struct TemplateVersion {
    number: i64,
    image_id: Option<String>,
}

/// What one resolution depends on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ResolveKey {
    template: String,
    version: i64,
    /// The requirements' debug rendering: every field, in a fixed order.
    requirements: String,
}

#[derive(Default)]
struct State {
    templates: HashMap<(String, String), (TemplateVersion, Instant)>,
    images: HashMap<String, (ArchitectureType, VirtualizationType)>,
    resolved: HashMap<ResolveKey, (Vec<String>, u64)>,
    /// Use counter for least-recently-used eviction.
    uses: u64,
}

/// Resolves attribute-based groups to instance type names, with a bounded cache.
pub struct RequirementsResolver {
    template_ttl: Duration,
    capacity: usize,
    state: Mutex<State>,
}

impl std::fmt::Debug for RequirementsResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequirementsResolver")
            .field("template_ttl", &self.template_ttl)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// Whether a group selects its instance types by attributes (and lists no type).
pub fn is_attribute_based(g: &AutoScalingGroup) -> bool {
    let overrides = g
        .mixed_instances_policy()
        .and_then(|m| m.launch_template())
        .map(|lt| lt.overrides())
        .unwrap_or_default();
    overrides
        .iter()
        .any(|o| o.instance_requirements().is_some())
        && overrides.iter().all(|o| o.instance_type().is_none())
}

impl RequirementsResolver {
    /// A resolver that re-reads `$Latest`/`$Default` template versions after
    /// `template_ttl` and keeps [`DEFAULT_CACHE_ENTRIES`] resolutions.
    pub fn new(template_ttl: Duration) -> Self {
        RequirementsResolver {
            template_ttl,
            capacity: DEFAULT_CACHE_ENTRIES,
            state: Mutex::default(),
        }
    }

    /// The same with room for `entries` resolutions (at least one).
    pub fn with_capacity(mut self, entries: usize) -> Self {
        self.capacity = entries.max(1);
        self
    }

    /// Resolutions currently cached.
    pub async fn cached_entries(&self) -> usize {
        self.state.lock().await.resolved.len()
    }

    /// Forgets `$Latest`/`$Default` template versions, so the next scan reads them.
    pub async fn forget_moving_versions(&self) {
        self.state.lock().await.templates.clear();
    }

    /// The instance types an attribute-based mixed-instances group may launch, sorted.
    pub async fn resolve(
        &self,
        api: &Api,
        g: &AutoScalingGroup,
    ) -> Result<Vec<String>, GroupProblem> {
        let lt = g
            .mixed_instances_policy()
            .and_then(|m| m.launch_template())
            .ok_or("attribute-based selection without a mixed-instances launch template")?;
        let spec = lt
            .launch_template_specification()
            .ok_or("the mixed-instances policy has no launch template specification; add one")?;
        let template = spec
            .launch_template_id()
            .or(spec.launch_template_name())
            .ok_or("the launch template specification names no template")?
            .to_string();
        let version = self
            .template_version(api, spec.launch_template_id(), &template, spec.version())
            .await?;
        let image_id = version.image_id.as_deref().ok_or_else(|| {
            format!(
                "launch template {template} version {} has no AMI id (ImageId), so the \
                 architecture for InstanceRequirements is unknown; set ImageId in the template",
                version.number
            )
        })?;
        let (arch, virt) = self.image(api, image_id).await?;
        let mut types = BTreeSet::new();
        for requirements in lt
            .overrides()
            .iter()
            .filter_map(|o| o.instance_requirements())
        {
            let key = ResolveKey {
                template: template.clone(),
                version: version.number,
                requirements: format!("{requirements:?}"),
            };
            types.extend(
                self.resolve_one(api, key, requirements, &arch, &virt)
                    .await?,
            );
        }
        if types.is_empty() {
            return Err(format!(
                "no instance type in this region matches the InstanceRequirements of launch \
                 template {template} version {} ({arch} AMI); widen the requirements",
                version.number
            )
            .into());
        }
        Ok(types.into_iter().collect())
    }

    async fn resolve_one(
        &self,
        api: &Api,
        key: ResolveKey,
        requirements: &InstanceRequirements,
        arch: &ArchitectureType,
        virt: &VirtualizationType,
    ) -> Result<Vec<String>, GroupProblem> {
        {
            let mut s = self.state.lock().await;
            s.uses += 1;
            let uses = s.uses;
            if let Some((types, used)) = s.resolved.get_mut(&key) {
                *used = uses;
                return Ok(types.clone());
            }
        }
        let request = to_ec2_request(requirements);
        let mut types = Vec::new();
        let mut token = None;
        loop {
            let out = api
                .call(
                    Op::GetInstanceTypesFromInstanceRequirements,
                    api.ec2
                        .get_instance_types_from_instance_requirements()
                        .architecture_types(arch.clone())
                        .virtualization_types(virt.clone())
                        .instance_requirements(request.clone())
                        .max_results(RESOLVE_PAGE_SIZE)
                        .set_next_token(token.take())
                        .send(),
                )
                .await?;
            types.extend(
                out.instance_types()
                    .iter()
                    .filter_map(|t| t.instance_type().map(str::to_string)),
            );
            token = out
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        types.sort();
        types.dedup();
        let mut s = self.state.lock().await;
        s.uses += 1;
        let uses = s.uses;
        s.resolved.insert(key, (types.clone(), uses));
        while s.resolved.len() > self.capacity {
            let Some(oldest) = s
                .resolved
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            s.resolved.remove(&oldest);
        }
        Ok(types)
    }

    /// The template version's number and AMI; numbered versions are read once,
    /// `$Latest`/`$Default` again after the TTL.
    async fn template_version(
        &self,
        api: &Api,
        id: Option<&str>,
        template: &str,
        version: Option<&str>,
    ) -> Result<TemplateVersion, GroupProblem> {
        let version = version.unwrap_or("$Default").to_string();
        let key = (template.to_string(), version.clone());
        if let Some((v, at)) = self.state.lock().await.templates.get(&key) {
            if !version.starts_with('$') || at.elapsed() < self.template_ttl {
                return Ok(v.clone());
            }
        }
        let request = api
            .ec2
            .describe_launch_template_versions()
            .versions(&version);
        let request = match id {
            Some(id) => request.launch_template_id(id),
            None => request.launch_template_name(template),
        };
        let out = api
            .call(Op::DescribeLaunchTemplateVersions, request.send())
            .await?;
        let found = out
            .launch_template_versions()
            .first()
            .ok_or_else(|| format!("launch template {template} version {version} not found"))?;
        let v = TemplateVersion {
            number: found.version_number().unwrap_or_default(),
            image_id: found
                .launch_template_data()
                .and_then(|d| d.image_id())
                .map(str::to_string),
        };
        self.state
            .lock()
            .await
            .templates
            .insert(key, (v.clone(), Instant::now()));
        Ok(v)
    }

    /// The AMI's architecture and virtualization type (images never change).
    async fn image(
        &self,
        api: &Api,
        image_id: &str,
    ) -> Result<(ArchitectureType, VirtualizationType), GroupProblem> {
        if let Some(found) = self.state.lock().await.images.get(image_id) {
            return Ok(found.clone());
        }
        let out = api
            .call(
                Op::DescribeImages,
                api.ec2.describe_images().image_ids(image_id).send(),
            )
            .await?;
        let image = out.images().first().ok_or_else(|| {
            format!(
                "AMI {image_id} of the launch template is not visible to this account \
                 (DescribeImages found nothing); the architecture for InstanceRequirements \
                 is unknown"
            )
        })?;
        let arch = image.architecture().map_or(ArchitectureType::X8664, |a| {
            ArchitectureType::from(a.as_str())
        });
        let virt = image
            .virtualization_type()
            .map_or(VirtualizationType::Hvm, |v| {
                VirtualizationType::from(v.as_str())
            });
        self.state
            .lock()
            .await
            .images
            .insert(image_id.to_string(), (arch.clone(), virt.clone()));
        Ok((arch, virt))
    }
}

macro_rules! range {
    ($value:expr, $ty:ty) => {
        $value.map(|r| <$ty>::builder().set_min(r.min()).set_max(r.max()).build())
    };
}

macro_rules! enums {
    ($values:expr, $ty:ty) => {{
        let values: Vec<$ty> = $values.iter().map(|v| <$ty>::from(v.as_str())).collect();
        (!values.is_empty()).then_some(values)
    }};
}

/// The Auto Scaling shape of the requirements in EC2's request shape (same fields).
fn to_ec2_request(r: &InstanceRequirements) -> InstanceRequirementsRequest {
    let strings = |v: &[String]| (!v.is_empty()).then(|| v.to_vec());
    let baseline = r
        .baseline_performance_factors()
        .and_then(|b| b.cpu())
        .map(|cpu| {
            let references = cpu
                .references()
                .iter()
                .map(|f| {
                    ec2::PerformanceFactorReferenceRequest::builder()
                        .set_instance_family(f.instance_family().map(str::to_string))
                        .build()
                })
                .collect();
            ec2::BaselinePerformanceFactorsRequest::builder()
                .cpu(
                    ec2::CpuPerformanceFactorRequest::builder()
                        .set_references(Some(references))
                        .build(),
                )
                .build()
        });
    InstanceRequirementsRequest::builder()
        .set_v_cpu_count(range!(r.v_cpu_count(), ec2::VCpuCountRangeRequest))
        .set_memory_mib(range!(r.memory_mib(), ec2::MemoryMiBRequest))
        .set_cpu_manufacturers(enums!(r.cpu_manufacturers(), ec2::CpuManufacturer))
        .set_memory_gib_per_v_cpu(range!(
            r.memory_gib_per_v_cpu(),
            ec2::MemoryGiBPerVCpuRequest
        ))
        .set_excluded_instance_types(strings(r.excluded_instance_types()))
        .set_instance_generations(enums!(r.instance_generations(), ec2::InstanceGeneration))
        .set_spot_max_price_percentage_over_lowest_price(
            r.spot_max_price_percentage_over_lowest_price(),
        )
        .set_max_spot_price_as_percentage_of_optimal_on_demand_price(
            r.max_spot_price_as_percentage_of_optimal_on_demand_price(),
        )
        .set_on_demand_max_price_percentage_over_lowest_price(
            r.on_demand_max_price_percentage_over_lowest_price(),
        )
        .set_bare_metal(r.bare_metal().map(|v| ec2::BareMetal::from(v.as_str())))
        .set_burstable_performance(
            r.burstable_performance()
                .map(|v| ec2::BurstablePerformance::from(v.as_str())),
        )
        .set_require_hibernate_support(r.require_hibernate_support())
        .set_network_interface_count(range!(
            r.network_interface_count(),
            ec2::NetworkInterfaceCountRequest
        ))
        .set_local_storage(
            r.local_storage()
                .map(|v| ec2::LocalStorage::from(v.as_str())),
        )
        .set_local_storage_types(enums!(r.local_storage_types(), ec2::LocalStorageType))
        .set_total_local_storage_gb(range!(
            r.total_local_storage_gb(),
            ec2::TotalLocalStorageGbRequest
        ))
        .set_baseline_ebs_bandwidth_mbps(range!(
            r.baseline_ebs_bandwidth_mbps(),
            ec2::BaselineEbsBandwidthMbpsRequest
        ))
        .set_accelerator_types(enums!(r.accelerator_types(), ec2::AcceleratorType))
        .set_accelerator_count(range!(r.accelerator_count(), ec2::AcceleratorCountRequest))
        .set_accelerator_manufacturers(enums!(
            r.accelerator_manufacturers(),
            ec2::AcceleratorManufacturer
        ))
        .set_accelerator_names(enums!(r.accelerator_names(), ec2::AcceleratorName))
        .set_accelerator_total_memory_mib(range!(
            r.accelerator_total_memory_mib(),
            ec2::AcceleratorTotalMemoryMiBRequest
        ))
        .set_network_bandwidth_gbps(range!(
            r.network_bandwidth_gbps(),
            ec2::NetworkBandwidthGbpsRequest
        ))
        .set_allowed_instance_types(strings(r.allowed_instance_types()))
        .set_baseline_performance_factors(baseline)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_autoscaling::types as asg;

    #[test]
    fn requirements_carry_over_field_by_field() {
        let r = asg::InstanceRequirements::builder()
            .v_cpu_count(asg::VCpuCountRequest::builder().min(2).max(8).build())
            .memory_mib(asg::MemoryMiBRequest::builder().min(4096).build())
            .cpu_manufacturers(asg::CpuManufacturer::Intel)
            .instance_generations(asg::InstanceGeneration::Current)
            .excluded_instance_types("t*")
            .burstable_performance(asg::BurstablePerformance::Excluded)
            .memory_gib_per_v_cpu(asg::MemoryGiBPerVCpuRequest::builder().max(4.0).build())
            .build();
        let e = to_ec2_request(&r);
        let vcpu = e.v_cpu_count().unwrap();
        assert_eq!((vcpu.min(), vcpu.max()), (Some(2), Some(8)));
        let mem = e.memory_mib().unwrap();
        assert_eq!((mem.min(), mem.max()), (Some(4096), None));
        assert_eq!(e.cpu_manufacturers(), &[ec2::CpuManufacturer::Intel]);
        assert_eq!(
            e.instance_generations(),
            &[ec2::InstanceGeneration::Current]
        );
        assert_eq!(e.excluded_instance_types(), &["t*".to_string()]);
        assert_eq!(
            e.burstable_performance(),
            Some(&ec2::BurstablePerformance::Excluded)
        );
        assert_eq!(e.memory_gib_per_v_cpu().unwrap().max(), Some(4.0));
        // Lists left empty are not sent at all.
        assert!(e.accelerator_types().is_empty() && e.allowed_instance_types().is_empty());
        assert!(e.bare_metal().is_none());
    }
}
