//! Property tests for bucket proofs: a proof ties exactly one bucket content, at exactly
//! one position, to exactly one root. Any change to what a (possibly Byzantine) replica
//! sends must be caught, and a rejected install must leave the store as it was.

use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::BTreeMap;
use zz_protocol::{Digest, Seq};
use zz_state_fetch::{BucketIndex, BucketProof, NotFetched, ObjectStore, StateParams};

type Objects = BTreeMap<Vec<u8>, Vec<u8>>;

fn objects() -> impl Strategy<Value = Objects> {
    prop::collection::btree_map(
        prop::collection::vec(any::<u8>(), 0..6),
        prop::collection::vec(any::<u8>(), 0..8),
        0..40,
    )
}

fn params() -> impl Strategy<Value = StateParams> {
    (1u8..=5).prop_map(|bits| StateParams::new(bits).unwrap())
}

/// The store holding `objects`, checkpointed at `seq`, and its root.
fn checkpointed(params: StateParams, objects: &Objects) -> (ObjectStore, Digest) {
    let mut store = ObjectStore::new(params);
    for (key, value) in objects {
        store.put(key.clone(), value.clone()).unwrap();
    }
    let root = store.checkpoint(Seq(1));
    (store, root)
}

fn proof(store: &ObjectStore, index: BucketIndex) -> BucketProof {
    store
        .snapshot(Seq(1))
        .unwrap()
        .bucket_with_proof(index)
        .unwrap()
}

fn bucket(params: StateParams, index: Index) -> BucketIndex {
    BucketIndex(index.index(params.bucket_count()) as u32)
}

/// Flips bits of the `position`-th byte among all entry keys, entry values and siblings.
fn flip_byte(proof: &mut BucketProof, position: Index, mask: u8) {
    let mut bytes: Vec<&mut u8> = Vec::new();
    for (key, value) in &mut proof.entries {
        bytes.extend(key.iter_mut());
        bytes.extend(value.iter_mut());
    }
    for sibling in &mut proof.siblings {
        bytes.extend(sibling.0.iter_mut());
    }
    let count = bytes.len();
    *bytes.swap_remove(position.index(count)) ^= mask;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_proof_verifies_only_against_its_own_root(
        params in params(), objects in objects(), index in any::<Index>(), flip in any::<Index>(),
    ) {
        let (store, root) = checkpointed(params, &objects);
        let proof = proof(&store, bucket(params, index));
        prop_assert_eq!(proof.verify(&root, params), Ok(()));
        let mut other = root;
        other.0[flip.index(32)] ^= 1;
        prop_assert!(proof.verify(&other, params).is_err());
        let deeper = StateParams::new(params.bucket_bits() + 1).unwrap();
        prop_assert!(proof.verify(&root, deeper).is_err());
    }

    #[test]
    fn changing_any_byte_of_entries_or_siblings_fails(
        params in params(), objects in objects(), index in any::<Index>(),
        position in any::<Index>(), mask in 1u8..,
    ) {
        let (store, root) = checkpointed(params, &objects);
        let mut proof = proof(&store, bucket(params, index));
        flip_byte(&mut proof, position, mask);
        prop_assert!(proof.verify(&root, params).is_err());
    }

    #[test]
    fn changing_the_index_fails(
        params in params(), objects in objects(), index in any::<Index>(),
        in_range in any::<Index>(), out_of_range in any::<u32>(),
    ) {
        let (store, root) = checkpointed(params, &objects);
        let good = proof(&store, bucket(params, index));
        let mut others = vec![bucket(params, in_range)];
        if out_of_range as usize >= params.bucket_count() {
            others.push(BucketIndex(out_of_range));
        }
        for other in others.into_iter().filter(|&other| other != good.index) {
            let mut proof = good.clone();
            proof.index = other;
            prop_assert!(proof.verify(&root, params).is_err(), "{:?}", other);
        }
    }

    #[test]
    fn adding_dropping_or_reordering_parts_fails(
        params in params(), objects in objects(), index in any::<Index>(), at in any::<Index>(),
    ) {
        let (store, root) = checkpointed(params, &objects);
        let good = proof(&store, bucket(params, index));
        let mut variants = Vec::new();
        let mut p = good.clone();
        p.siblings.pop();
        variants.push(p);
        let mut p = good.clone();
        p.siblings.push(Digest::default());
        variants.push(p);
        let mut p = good.clone();
        p.siblings.reverse();
        if p.siblings != good.siblings {
            variants.push(p);
        }
        if !good.entries.is_empty() {
            let i = at.index(good.entries.len());
            let mut p = good.clone();
            p.entries.remove(i);
            variants.push(p);
            let mut p = good.clone();
            p.entries.insert(i, good.entries[i].clone());
            variants.push(p);
            let mut p = good.clone();
            p.entries.reverse();
            if p.entries.len() > 1 {
                variants.push(p);
            }
        }
        // A key that belongs in this bucket but is not in the state.
        let mut p = good.clone();
        let extra = (0u32..)
            .map(|i| format!("extra{i}").into_bytes())
            .find(|k| params.bucket_of(k) == good.index && !objects.contains_key(k))
            .unwrap();
        p.entries.push((extra, Vec::new()));
        p.entries.sort();
        variants.push(p);
        for variant in variants {
            prop_assert!(variant.verify(&root, params).is_err(), "{:?}", variant);
        }
    }

    #[test]
    fn a_proof_from_another_states_root_fails(
        params in params(), a in objects(), b in objects(), index in any::<Index>(),
    ) {
        let (store_a, root_a) = checkpointed(params, &a);
        let (_, root_b) = checkpointed(params, &b);
        prop_assume!(root_a != root_b);
        let proof = proof(&store_a, bucket(params, index));
        prop_assert!(proof.verify(&root_b, params).is_err());
    }

    #[test]
    fn installing_a_bad_proof_leaves_the_store_unchanged(
        params in params(), objects in objects(), other in objects(), index in any::<Index>(),
        position in any::<Index>(), mask in 1u8..,
    ) {
        let (source, root) = checkpointed(params, &objects);
        let index = bucket(params, index);
        let good = proof(&source, index);
        let mut store = ObjectStore::pinned(params, Seq(1), root);

        let mut flipped = good.clone();
        flip_byte(&mut flipped, position, mask);
        let (other_store, other_root) = checkpointed(params, &other);
        let mut bad = vec![flipped];
        if other_root != root {
            bad.push(proof(&other_store, index));
        }
        for proof in bad {
            prop_assert!(store.install_bucket(proof).is_err());
            prop_assert_eq!(store.missing_count(), params.bucket_count());
            prop_assert!(store.missing_buckets().any(|b| b == index));
            for key in objects.keys().filter(|k| params.bucket_of(k) == index) {
                prop_assert_eq!(store.get(key), Err(NotFetched { bucket: index }));
            }
        }
        store.install_bucket(good).unwrap();
        for (key, value) in objects.iter().filter(|(k, _)| params.bucket_of(k) == index) {
            prop_assert_eq!(store.get(key), Ok(Some(value.as_slice())));
        }
    }

    #[test]
    fn a_proof_survives_the_wire(
        params in params(), objects in objects(), index in any::<Index>(),
    ) {
        let (store, root) = checkpointed(params, &objects);
        let proof = proof(&store, bucket(params, index));
        let decoded: BucketProof = postcard::from_bytes(&postcard::to_allocvec(&proof).unwrap()).unwrap();
        prop_assert_eq!(decoded.verify(&root, params), Ok(()));
        prop_assert_eq!(decoded, proof);
    }
}
