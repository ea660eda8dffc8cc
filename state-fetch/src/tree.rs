//! The binary Merkle tree over the bucket leaves, stored level by level so that a
//! checkpoint rehashes only the paths above dirty buckets.
//!
//! A node may be unknown (`None`): a store pinned to a checkpoint root knows only the root
//! and the nodes its installed proofs revealed. That suffices: a node is unknown only if
//! no bucket below it was installed, hence none below it was written since the pinned
//! checkpoint, hence every sibling on the path of a written bucket is known.

use crate::cow::CowVec;
use crate::hash::inner_hash;
use std::collections::{BTreeMap, BTreeSet};
use zz_protocol::Digest;

#[derive(Clone, Debug)]
pub(crate) struct MerkleTree {
    /// `levels[0]` holds the `2^depth` leaves, `levels[depth]` the root alone.
    levels: Vec<CowVec<Option<Digest>>>,
}

impl MerkleTree {
    /// A fully known tree over `leaves` (their count must be a power of two, at least 2).
    pub(crate) fn full(leaves: Vec<Digest>) -> MerkleTree {
        assert!(leaves.len() >= 2 && leaves.len().is_power_of_two());
        let mut levels = vec![CowVec::from_fn(leaves.len(), |i| Some(leaves[i]))];
        let mut below = leaves;
        while below.len() > 1 {
            let above: Vec<Digest> = below
                .chunks_exact(2)
                .map(|pair| inner_hash(&pair[0], &pair[1]))
                .collect();
            levels.push(CowVec::from_fn(above.len(), |i| Some(above[i])));
            below = above;
        }
        MerkleTree { levels }
    }

    /// A tree of `depth` levels of which only the root is known.
    pub(crate) fn pinned(depth: u8, root: Digest) -> MerkleTree {
        assert!(depth >= 1);
        let levels = (0..=depth)
            .map(|level| {
                let len = 1usize << (depth - level);
                CowVec::from_fn(len, |_| (level == depth).then_some(root))
            })
            .collect();
        MerkleTree { levels }
    }

    fn depth(&self) -> usize {
        self.levels.len() - 1
    }

    pub(crate) fn root(&self) -> Digest {
        self.levels[self.depth()]
            .get(0)
            .expect("invariant: the root is always known")
    }

    /// Whether every node is known (a tree built from all leaves, or rebuilt from one).
    pub(crate) fn is_full(&self) -> bool {
        (self.levels.iter()).all(|level| level.iter().all(Option::is_some))
    }

    /// Leaf `index`, if known.
    pub(crate) fn leaf(&self, index: u32) -> Option<Digest> {
        *self.levels[0].get(index as usize)
    }

    /// Sets the given leaves and rehashes every node above them, each once, bottom-up.
    pub(crate) fn update(&mut self, leaves: &BTreeMap<u32, Digest>) {
        let mut dirty: BTreeSet<usize> = BTreeSet::new();
        for (&index, &leaf) in leaves {
            *self.levels[0].get_mut(index as usize) = Some(leaf);
            dirty.insert(index as usize);
        }
        for level in 1..=self.depth() {
            let parents: BTreeSet<usize> = dirty.iter().map(|&child| child / 2).collect();
            for &parent in &parents {
                let child = |i: usize| {
                    self.levels[level - 1].get(i).expect(
                        "invariant: a sibling on the path of a written bucket is known \
                         (see the module comment)",
                    )
                };
                let node = inner_hash(&child(2 * parent), &child(2 * parent + 1));
                *self.levels[level].get_mut(parent) = Some(node);
            }
            dirty = parents;
        }
    }

    /// The siblings of the path from leaf `index` to the root, bottom-up; `None` if one is
    /// unknown.
    pub(crate) fn siblings(&self, index: u32) -> Option<Vec<Digest>> {
        (0..self.depth())
            .map(|level| *self.levels[level].get(((index as usize) >> level) ^ 1))
            .collect()
    }

    /// Records a verified path: `path[level]` is the node above leaf `index` at `level`
    /// (leaf first, root last) and `siblings[level]` its sibling. Nodes already known are
    /// kept: they are either equal or newer (rewritten since the proof's checkpoint).
    pub(crate) fn fill_path(&mut self, index: u32, path: &[Digest], siblings: &[Digest]) {
        let depth = self.depth();
        assert_eq!(path.len(), depth + 1);
        assert_eq!(siblings.len(), depth);
        for level in 0..depth {
            let node = (index as usize) >> level;
            for (position, digest) in [(node, path[level]), (node ^ 1, siblings[level])] {
                if self.levels[level].get(position).is_none() {
                    *self.levels[level].get_mut(position) = Some(digest);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(i: u8) -> Digest {
        Digest([i; 32])
    }

    #[test]
    fn update_matches_a_rebuild() {
        let mut tree = MerkleTree::full((0..8).map(leaf).collect());
        tree.update(&BTreeMap::from([(2, leaf(20)), (7, leaf(70))]));
        let mut leaves: Vec<Digest> = (0..8).map(leaf).collect();
        leaves[2] = leaf(20);
        leaves[7] = leaf(70);
        assert_eq!(tree.root(), MerkleTree::full(leaves).root());
    }

    #[test]
    fn a_filled_path_yields_the_same_siblings() {
        let full = MerkleTree::full((0..8).map(leaf).collect());
        let siblings = full.siblings(5).unwrap();
        let path: Vec<Digest> = (0..=3)
            .map(|level| full.levels[level].get(5 >> level).unwrap())
            .collect();
        let mut pinned = MerkleTree::pinned(3, full.root());
        assert_eq!(pinned.siblings(5), None);
        pinned.fill_path(5, &path, &siblings);
        assert_eq!(pinned.siblings(5), Some(siblings));
        assert_eq!(
            pinned.siblings(4),
            full.siblings(4),
            "the sibling leaf's path too"
        );
        assert_eq!(pinned.siblings(0), None);
    }
}
