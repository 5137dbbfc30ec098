//! [`Labels`]: a label or annotation map that is cheap to clone and to share.
//!
//! A cluster of 100,000 pods carries a few hundred distinct label sets: every pod of a
//! workload has the same ten labels. An owned `BTreeMap<String, String>` per pod made
//! each pod own about twenty small heap strings and a B-tree node (~690 bytes for ten
//! labels, autoscaler-bin/README.md "Benchmarks at scale"). `Labels` keeps the map behind
//! an `Arc`, so pods built from the same set (the controller interns them per content)
//! share one copy, and cloning a pod or a snapshot does not copy its labels.
//!
//! Reading goes through `Deref` to the `BTreeMap` (`get`, `iter`, `contains_key`, ...);
//! writing (`insert`, `remove`, ... through `DerefMut`) copies the map first if it is
//! shared (copy-on-write), so a change never shows through another pod. The serde form is
//! the plain map, byte for byte what the `BTreeMap` gave.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// What every empty `Labels` reads through: an empty map costs no allocation.
static EMPTY: BTreeMap<String, String> = BTreeMap::new();

/// Labels or annotations: a `BTreeMap<String, String>` shared copy-on-write behind an
/// `Arc` (see the module docs). Empty labels allocate nothing.
#[derive(Clone, Default)]
pub struct Labels(Option<Arc<BTreeMap<String, String>>>);

impl Labels {
    /// Empty labels (no allocation).
    pub const fn new() -> Self {
        Labels(None)
    }

    /// The map, read-only (what `Deref` gives; handy where a `&BTreeMap` is expected).
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        self.0.as_deref().unwrap_or(&EMPTY)
    }

    /// Whether there is no label (for `skip_serializing_if`).
    pub fn is_empty(&self) -> bool {
        self.as_map().is_empty()
    }

    /// Whether `self` and `other` share the same map (clones of one another, or interned
    /// to the same entry). Two empty labels count as shared.
    pub fn ptr_eq(&self, other: &Labels) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    /// How many `Labels` share this map (0 when empty); an interner drops an entry whose
    /// count has fallen to its own 1.
    pub fn share_count(&self) -> usize {
        self.0.as_ref().map_or(0, Arc::strong_count)
    }
}

impl Deref for Labels {
    type Target = BTreeMap<String, String>;

    fn deref(&self) -> &Self::Target {
        self.as_map()
    }
}

impl DerefMut for Labels {
    /// Copies the map if another `Labels` shares it, so writes stay private.
    fn deref_mut(&mut self) -> &mut Self::Target {
        Arc::make_mut(self.0.get_or_insert_with(Default::default))
    }
}

/// Lets a set of `Labels` be searched with a plain map (an interner looks up the API
/// object's map without building a `Labels` first). Equality, hashing and ordering are
/// the map's, as `Borrow` requires.
impl Borrow<BTreeMap<String, String>> for Labels {
    fn borrow(&self) -> &BTreeMap<String, String> {
        self.as_map()
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Self {
        if map.is_empty() {
            Labels(None)
        } else {
            Labels(Some(Arc::new(map)))
        }
    }
}

impl<K: Into<String>, V: Into<String>, const N: usize> From<[(K, V); N]> for Labels {
    fn from(pairs: [(K, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        iter.into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect::<BTreeMap<String, String>>()
            .into()
    }
}

impl<K: Into<String>, V: Into<String>> Extend<(K, V)> for Labels {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        let mut iter = iter.into_iter().peekable();
        // No copy (and no allocation) when there is nothing to add.
        if iter.peek().is_some() {
            self.deref_mut()
                .extend(iter.map(|(k, v)| (k.into(), v.into())));
        }
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_map().iter()
    }
}

impl IntoIterator for Labels {
    type Item = (String, String);
    type IntoIter = std::collections::btree_map::IntoIter<String, String>;

    /// Takes the map out when this is its only owner, copies it otherwise.
    fn into_iter(self) -> Self::IntoIter {
        match self.0 {
            Some(map) => Arc::unwrap_or_clone(map).into_iter(),
            None => BTreeMap::new().into_iter(),
        }
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        self.ptr_eq(other) || self.as_map() == other.as_map()
    }
}

impl Eq for Labels {}

impl PartialEq<BTreeMap<String, String>> for Labels {
    fn eq(&self, other: &BTreeMap<String, String>) -> bool {
        self.as_map() == other
    }
}

impl Hash for Labels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_map().hash(state);
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Labels {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_map().cmp(other.as_map())
    }
}

impl fmt::Debug for Labels {
    /// Exactly the map's `Debug`, so logs and test messages read as before.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_map().fmt(f)
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.as_map().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::<String, String>::deserialize(deserializer).map(Labels::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn serde_form_is_the_plain_map_byte_for_byte() {
        let pairs = [
            ("app", "web"),
            ("pod-template-hash", "5d8f7c9b6"),
            ("tier", ""),
        ];
        let plain = map(&pairs);
        let labels = Labels::from(pairs);
        assert_eq!(
            serde_json::to_string(&labels).unwrap(),
            serde_json::to_string(&plain).unwrap()
        );
        assert_eq!(
            serde_yaml_ng::to_string(&labels).unwrap(),
            serde_yaml_ng::to_string(&plain).unwrap()
        );
        assert_eq!(serde_json::to_string(&Labels::new()).unwrap(), "{}");
        let back: Labels = serde_json::from_str(&serde_json::to_string(&plain).unwrap()).unwrap();
        assert_eq!(back, plain);
        let empty: Labels = serde_json::from_str("{}").unwrap();
        assert_eq!(
            empty.share_count(),
            0,
            "an empty map read back allocates nothing"
        );
    }

    #[test]
    fn writes_copy_a_shared_map_and_leave_the_other_owner_alone() {
        let first = Labels::from([("app", "web")]);
        let mut second = first.clone();
        assert!(first.ptr_eq(&second));
        assert_eq!(first.share_count(), 2);
        second.insert("tier".into(), "front".into());
        assert!(!first.ptr_eq(&second));
        assert_eq!(first.len(), 1, "the first owner still sees one label");
        assert_eq!(second.get("tier").map(String::as_str), Some("front"));
    }

    #[test]
    fn empty_and_emptied_maps_compare_and_hash_alike() {
        use std::collections::hash_map::DefaultHasher;
        let hash = |l: &Labels| {
            let mut h = DefaultHasher::new();
            l.hash(&mut h);
            h.finish()
        };
        let mut emptied = Labels::from([("app", "web")]);
        emptied.remove("app");
        assert_eq!(emptied, Labels::new());
        assert_eq!(hash(&emptied), hash(&Labels::new()));
        assert_eq!(format!("{:?}", Labels::from([("a", "b")])), r#"{"a": "b"}"#);
        let mut extended = Labels::new();
        extended.extend(Vec::<(String, String)>::new());
        assert_eq!(
            extended.share_count(),
            0,
            "extending with nothing allocates nothing"
        );
        extended.extend([("b", "2"), ("a", "1")]);
        let keys: Vec<&str> = (&extended).into_iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b"], "iteration is in key order");
    }
}
