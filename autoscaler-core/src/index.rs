//! Typed indexes into a [`crate::ClusterSnapshot`]: a pod, a node and a node group are
//! each their own type, so one cannot be passed where another is meant. Slices and
//! vectors index with them directly (`snap.nodes()[node]`, `targets[group]`).

use std::ops::{Index, IndexMut};

macro_rules! snapshot_index {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(transparent)]
        pub struct $name(pub u32);

        impl $name {
            /// The index of position `i` in the snapshot's list.
            pub fn new(i: usize) -> Self {
                $name(i as u32)
            }

            /// As a position in the snapshot's list.
            pub fn get(self) -> usize {
                self.0 as usize
            }
        }

        impl<T> Index<$name> for [T] {
            type Output = T;
            fn index(&self, i: $name) -> &T {
                &self[i.get()]
            }
        }

        impl<T> IndexMut<$name> for [T] {
            fn index_mut(&mut self, i: $name) -> &mut T {
                &mut self[i.get()]
            }
        }

        impl<T> Index<$name> for Vec<T> {
            type Output = T;
            fn index(&self, i: $name) -> &T {
                &self[i.get()]
            }
        }

        impl<T> IndexMut<$name> for Vec<T> {
            fn index_mut(&mut self, i: $name) -> &mut T {
                &mut self[i.get()]
            }
        }
    };
}

snapshot_index!(
    /// Index of a pod in [`crate::ClusterSnapshot::pods`].
    PodIdx
);
snapshot_index!(
    /// Index of a node in [`crate::ClusterSnapshot::nodes`].
    NodeIdx
);
snapshot_index!(
    /// Index of a node group in [`crate::ClusterSnapshot::groups`].
    GroupIdx
);
