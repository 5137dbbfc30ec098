//! Mixed-instances groups (issue 14): AWS's on-demand/spot split, and how scale-up,
//! ICE and scale-down treat the two parts of one group.

use autoscaler_core::{CapacityMix, CapacityType};
use proptest::prelude::*;

fn mix(base: u32, pct: u8) -> CapacityMix {
    CapacityMix {
        on_demand_base: base,
        on_demand_percentage_above_base: pct,
    }
}

#[test]
fn aws_split_base_first_then_the_percentage_rounded_up_to_on_demand() {
    // Base 2, 50 % above it: sizes 0..=6 hold 0,1,2,3,3,4,4 on-demand instances.
    let m = mix(2, 50);
    let on_demand: Vec<u32> = (0..=6).map(|n| m.on_demand_at(n)).collect();
    assert_eq!(on_demand, vec![0, 1, 2, 3, 3, 4, 4]);
    // Growing 2 -> 6: two on-demand, two spot.
    let split = m.launches(2, 4);
    assert_eq!((split.on_demand, split.spot), (2, 2));
    // 20 % above a base of 0: the first instance above the base rounds up to on-demand,
    // the next four are spot.
    let m = mix(0, 20);
    let markets: Vec<CapacityType> = (0..6).map(|n| m.market_of_launch(n)).collect();
    use CapacityType::{OnDemand as O, Spot as S};
    assert_eq!(markets, vec![O, S, S, S, S, O]);
    assert!(m.is_mixed());
    assert!(
        !mix(3, 100).is_mixed(),
        "100 % above the base is all on-demand"
    );
    assert!(!mix(0, 0).is_mixed(), "no base and 0 % is all spot");
}

proptest! {
    #[test]
    fn split_is_total_monotone_and_keeps_the_base(
        base in 0u32..50,
        pct in 0u8..=100,
        size in 0u32..500,
        grow in 0u32..500,
    ) {
        let m = mix(base, pct);
        let split = m.launches(size, grow);
        prop_assert_eq!(split.on_demand + split.spot, grow);
        // Both markets only grow with the group.
        prop_assert!(m.on_demand_at(size + grow) >= m.on_demand_at(size));
        prop_assert!(size + grow - m.on_demand_at(size + grow) >= size - m.on_demand_at(size));
        // The base is on-demand: no spot until it is full.
        let below_base = base.saturating_sub(size).min(grow);
        prop_assert!(split.on_demand >= below_base);
        prop_assert_eq!(m.launches(0, size.min(base)).spot, 0);
        // Above the base, the on-demand share is the percentage, rounded up.
        let above = (size + grow).saturating_sub(base);
        let od_above = m.on_demand_at(size + grow) - (size + grow).min(base);
        prop_assert!(u64::from(od_above) * 100 >= u64::from(above) * u64::from(pct));
        prop_assert!(u64::from(od_above) * 100 < u64::from(above) * u64::from(pct) + 100);
    }
}
