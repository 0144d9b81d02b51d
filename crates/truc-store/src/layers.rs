//! What the journal holds and the tree does not yet: the changes of every
//! group since the last checkpoint, in memory, read before the tree.
//!
//! `live` takes each group as it is made durable; a checkpoint freezes it
//! (new groups go to a fresh `live`), writes the frozen changes into sled and
//! then drops them. Readers look in `live`, then `frozen`, then sled, so they
//! always see the newest durable value: a frozen change is dropped only once
//! sled holds it.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use sled::IVec;

/// A key's newest value; `None` where it was removed.
pub(crate) type Layer = BTreeMap<Vec<u8>, Option<IVec>>;

/// Rough bytes an entry costs beyond its key and value.
const ENTRY_OVERHEAD_BYTES: usize = 64;

#[derive(Default)]
struct State {
    live: Layer,
    live_bytes: usize,
    /// The last group merged into `live`.
    live_through: u64,
    frozen: Option<Arc<Layer>>,
}

#[derive(Default)]
pub(crate) struct Layers {
    state: RwLock<State>,
}

/// The first key after every key that starts with `prefix`, if any.
pub(crate) fn prefix_end(prefix: &[u8]) -> Bound<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Bound::Excluded(end);
        }
    }
    Bound::Unbounded
}

impl Layers {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest value of `key`: `Some(None)` if it was removed, `None` if
    /// the layers do not know it (ask the tree).
    fn lookup(&self, key: &[u8]) -> Option<Option<IVec>> {
        let state = self.read();
        if let Some(value) = state.live.get(key) {
            return Some(value.clone());
        }
        state
            .frozen
            .as_ref()
            .and_then(|frozen| frozen.get(key).cloned())
    }

    pub(crate) fn get(&self, tree: &sled::Tree, key: &[u8]) -> Result<Option<IVec>, sled::Error> {
        match self.lookup(key) {
            Some(value) => Ok(value),
            None => tree.get(key),
        }
    }

    /// Every key in the range with its newest value, in key order.
    pub(crate) fn range(
        &self,
        tree: &sled::Tree,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
    ) -> Merged {
        self.range_limited(tree, start, end, usize::MAX)
    }

    /// [`Layers::range`], where only the first `limit` keys will be read: the
    /// layers' part is copied only as far as it can matter.
    pub(crate) fn range_limited(
        &self,
        tree: &sled::Tree,
        start: Bound<Vec<u8>>,
        mut end: Bound<Vec<u8>>,
        limit: usize,
    ) -> Merged {
        let bounds = (start.clone(), end.clone());
        // Copied out, so the lock is not held while the caller iterates.
        let mut newest: Vec<(Vec<u8>, Option<IVec>)> = Vec::new();
        {
            let state = self.read();
            let mut live = state.live.range::<Vec<u8>, _>(bounds.clone()).peekable();
            let mut frozen = state
                .frozen
                .as_ref()
                .map(|frozen| frozen.range::<Vec<u8>, _>(bounds).peekable());
            let mut present = 0usize;
            loop {
                let next_frozen = frozen.as_mut().and_then(|f| f.peek().copied());
                let (key, value) = match (live.peek().copied(), next_frozen) {
                    (None, None) => break,
                    (Some(_), None) => live.next().expect("peeked"),
                    (None, Some(_)) => frozen.as_mut().and_then(Iterator::next).expect("peeked"),
                    (Some((live_key, _)), Some((frozen_key, _))) => {
                        match live_key.cmp(frozen_key) {
                            std::cmp::Ordering::Greater => {
                                frozen.as_mut().and_then(Iterator::next).expect("peeked")
                            }
                            std::cmp::Ordering::Equal => {
                                frozen.as_mut().and_then(Iterator::next);
                                live.next().expect("peeked")
                            }
                            std::cmp::Ordering::Less => live.next().expect("peeked"),
                        }
                    }
                };
                newest.push((key.clone(), value.clone()));
                present += usize::from(value.is_some());
                if present >= limit {
                    // The first `limit` keys are all at or before this one.
                    end = Bound::Included(key.clone());
                    break;
                }
            }
        }
        Merged {
            layers: newest.into_iter().peekable(),
            tree: tree.range::<Vec<u8>, _>((start, end)).peekable(),
        }
    }

    pub(crate) fn scan_prefix(&self, tree: &sled::Tree, prefix: &[u8]) -> Merged {
        self.range(tree, Bound::Included(prefix.to_vec()), prefix_end(prefix))
    }

    /// Takes a durable group's changes (`through` is its sequence number).
    pub(crate) fn merge(
        &self,
        changes: impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
        through: u64,
    ) {
        let mut state = self.write();
        // Readers take the newest layer's value as the newest durable one:
        // a group merged out of order would hide a later one's changes.
        assert!(
            through > state.live_through,
            "group {through} merged into the layers after group {}",
            state.live_through
        );
        for (key, value) in changes {
            let added = key.len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD_BYTES;
            if let Some(old) = state.live.insert(key, value.map(IVec::from)) {
                let old_bytes = old.as_ref().map_or(0, |v| v.len());
                state.live_bytes = state.live_bytes.saturating_sub(old_bytes);
                state.live_bytes += added - ENTRY_OVERHEAD_BYTES;
            } else {
                state.live_bytes += added;
            }
        }
        state.live_through = through;
    }

    /// Bytes held by changes not yet being written to the tree.
    pub(crate) fn live_bytes(&self) -> usize {
        self.read().live_bytes
    }

    /// Freezes what `live` holds for a checkpoint: the changes and the last
    /// group they include. `None` if there is nothing new, or a checkpoint
    /// is already under way.
    pub(crate) fn freeze(&self) -> Option<(Arc<Layer>, u64)> {
        let mut state = self.write();
        if state.live.is_empty() || state.frozen.is_some() {
            return None;
        }
        let frozen = Arc::new(std::mem::take(&mut state.live));
        state.live_bytes = 0;
        state.frozen = Some(frozen.clone());
        Some((frozen, state.live_through))
    }

    /// Forgets the frozen changes once the tree holds them.
    pub(crate) fn thaw(&self) {
        self.write().frozen = None;
    }
}

type LayerIter = std::iter::Peekable<std::vec::IntoIter<(Vec<u8>, Option<IVec>)>>;

/// The layers' changes laid over the tree's range: the layers win on equal
/// keys, and a removal hides the tree's value.
pub(crate) struct Merged {
    layers: LayerIter,
    tree: std::iter::Peekable<sled::Iter>,
}

impl Iterator for Merged {
    type Item = Result<(IVec, IVec), sled::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let from_layers = match (self.layers.peek(), self.tree.peek()) {
                (None, None) => return None,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(_), Some(Err(_))) => false,
                (Some((layer_key, _)), Some(Ok((tree_key, _)))) => {
                    match layer_key.as_slice().cmp(tree_key.as_ref()) {
                        std::cmp::Ordering::Less => true,
                        std::cmp::Ordering::Greater => false,
                        std::cmp::Ordering::Equal => {
                            // The tree's older value gives way.
                            self.tree.next();
                            true
                        }
                    }
                }
            };
            if from_layers {
                let (key, value) = self.layers.next().expect("peeked");
                match value {
                    Some(value) => return Some(Ok((IVec::from(key), value))),
                    None => continue,
                }
            }
            return self.tree.next();
        }
    }
}

impl Merged {
    pub(crate) fn keys(self) -> impl Iterator<Item = Result<IVec, sled::Error>> {
        self.map(|item| item.map(|(key, _)| key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(merged: Merged) -> Vec<(Vec<u8>, Vec<u8>)> {
        merged
            .map(|item| {
                let (key, value) = item.unwrap();
                (key.to_vec(), value.to_vec())
            })
            .collect()
    }

    #[test]
    fn the_newest_layer_wins_and_removals_hide_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        for key in [b"a1", b"a2", b"a3", b"b1"] {
            tree.insert(key, &b"tree"[..]).unwrap();
        }
        let layers = Layers::default();
        layers.merge(
            vec![
                (b"a2".to_vec(), None),
                (b"a4".to_vec(), Some(b"live".to_vec())),
                (b"a0".to_vec(), Some(b"live".to_vec())),
            ]
            .into_iter(),
            1,
        );
        let (frozen, through) = layers.freeze().unwrap();
        assert_eq!((frozen.len(), through), (3, 1));
        assert!(layers.freeze().is_none(), "one checkpoint at a time");
        layers.merge(
            vec![
                (b"a3".to_vec(), Some(b"newer".to_vec())),
                (b"a0".to_vec(), None),
            ]
            .into_iter(),
            2,
        );
        assert_eq!(
            collect(layers.scan_prefix(&tree, b"a")),
            vec![
                (b"a1".to_vec(), b"tree".to_vec()),
                (b"a3".to_vec(), b"newer".to_vec()),
                (b"a4".to_vec(), b"live".to_vec()),
            ]
        );
        assert_eq!(layers.get(&tree, b"a2").unwrap(), None);
        assert_eq!(layers.get(&tree, b"b1").unwrap().unwrap().as_ref(), b"tree");
        assert_eq!(layers.get(&tree, b"a4").unwrap().unwrap().as_ref(), b"live");
        layers.thaw();
        assert_eq!(
            layers.get(&tree, b"a4").unwrap(),
            None,
            "frozen was never written"
        );
        assert_eq!(
            collect(layers.range(&tree, Bound::Excluded(b"a1".to_vec()), Bound::Unbounded)),
            vec![
                (b"a2".to_vec(), b"tree".to_vec()),
                (b"a3".to_vec(), b"newer".to_vec()),
                (b"b1".to_vec(), b"tree".to_vec()),
            ]
        );
    }

    #[test]
    fn a_limited_range_reads_the_first_keys_of_both_layers_and_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        for key in [b"q2", b"q4", b"q6"] {
            tree.insert(key, &b"tree"[..]).unwrap();
        }
        let layers = Layers::default();
        layers.merge(
            vec![
                (b"q1".to_vec(), Some(b"frozen".to_vec())),
                (b"q3".to_vec(), Some(b"frozen".to_vec())),
            ]
            .into_iter(),
            1,
        );
        layers.freeze().unwrap();
        layers.merge(
            vec![
                (b"q2".to_vec(), None),
                (b"q5".to_vec(), Some(b"live".to_vec())),
                (b"q7".to_vec(), Some(b"live".to_vec())),
            ]
            .into_iter(),
            2,
        );
        let keys = |limit| -> Vec<Vec<u8>> {
            layers
                .range_limited(
                    &tree,
                    Bound::Included(b"q".to_vec()),
                    prefix_end(b"q"),
                    limit,
                )
                .take(limit)
                .map(|item| item.unwrap().0.to_vec())
                .collect()
        };
        let all: Vec<Vec<u8>> = [b"q1", b"q3", b"q4", b"q5", b"q6", b"q7"]
            .iter()
            .map(|k| k.to_vec())
            .collect();
        for limit in 1..=8 {
            assert_eq!(keys(limit), all[..limit.min(all.len())], "limit {limit}");
        }
    }

    #[test]
    fn prefix_end_skips_trailing_max_bytes() {
        assert_eq!(prefix_end(b"ab"), Bound::Excluded(b"ac".to_vec()));
        assert_eq!(prefix_end(&[b'a', 0xff]), Bound::Excluded(b"b".to_vec()));
        assert_eq!(prefix_end(&[0xff, 0xff]), Bound::Unbounded);
    }

    #[test]
    #[should_panic(expected = "merged into the layers after group")]
    fn groups_reach_the_layers_only_in_order() {
        let layers = Layers::default();
        layers.merge(std::iter::once((b"k".to_vec(), None)), 2);
        layers.merge(std::iter::once((b"k".to_vec(), None)), 2);
    }
}
