//! The engine's next deadline, for a caller that sleeps between rounds (like quinn-proto's
//! `poll_timeout`): the earliest moment at which [`Autoscaler::decide`] would decide
//! something new without any change in the cluster.

use crate::engine::Autoscaler;
use crate::model::NodeGroup;
use crate::time::Timestamp;

impl Autoscaler {
    /// The earliest deadline strictly after `now` that the engine keeps: a cool-off
    /// ending, a node's unneeded time expiring, a scale-up or replacement reaching its
    /// provision timeout, a scale-down delay after a scale-up, a removal failure or a
    /// deletion running out, a drain-back pause ending. `groups` are the node groups of
    /// the latest snapshot (their own options can shorten the timers); `None` when no
    /// timer runs.
    ///
    /// A caller runs a round at the earliest of this, a change it watches and its scan
    /// interval. The value errs early, never late: the unneeded time of a node is taken
    /// as the shortest of any group's, so waking at it may find nothing to do yet.
    /// Conditions that start without the engine's knowledge (a node turning unready, a
    /// node ageing into drain-back) are noticed at the next round the caller runs.
    pub fn poll_timeout(&self, now: Timestamp, groups: &[NodeGroup]) -> Option<Timestamp> {
        let sd = &self.config.scale_down;
        let shortest_unneeded = groups
            .iter()
            .map(|g| sd.for_group(g).unneeded_time)
            .min()
            .map_or(sd.unneeded_time, |t| t.min(sd.unneeded_time));
        let provision_time = |name: &str| {
            groups
                .iter()
                .find(|g| g.name == name)
                .map_or(self.config.max_node_provision_time, |g| {
                    self.config.max_node_provision_time_for(g)
                })
        };
        let d = &self.disruption;
        let cool_offs = self.cool_offs.active(now).map(|(_, c)| c.until);
        let unneeded = d.unneeded_since.values().map(|&s| s + shortest_unneeded);
        let provisioning = self.groups.iter().filter_map(|(name, st)| {
            st.waiting_since
                .map(|s| s + provision_time(name) + std::time::Duration::from_millis(1))
        });
        let replacements = d.replacements.values().map(|r| {
            r.started + provision_time(&r.group) * 2 + std::time::Duration::from_millis(1)
        });
        let after_add = self.last_scale_up.values().map(|&t| t + sd.delay_after_add);
        let after_delete = d
            .last_scale_down
            .values()
            .map(|&t| t + sd.delay_after_delete);
        let after_failure = d
            .last_removal_failure
            .values()
            .map(|&t| t + sd.delay_after_failure);
        cool_offs
            .chain(unneeded)
            .chain(provisioning)
            .chain(replacements)
            .chain(after_add)
            .chain(after_delete)
            .chain(after_failure)
            .chain(d.drain_back_paused_until)
            .filter(|&t| t > now)
            .min()
    }
}
