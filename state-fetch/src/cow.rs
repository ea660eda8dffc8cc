//! A vector whose clones share storage in fixed-size chunks: cloning it for a snapshot
//! costs one pointer per chunk, and a later write copies only the chunk it touches.

use std::sync::Arc;

/// Elements per chunk: large enough that a snapshot of a million-bucket state clones only
/// a few thousand pointers, small enough that the first write after a snapshot copies
/// little.
const CHUNK_LEN: usize = 256;

#[derive(Clone, Debug)]
pub(crate) struct CowVec<T: Clone> {
    chunks: Vec<Arc<Vec<T>>>,
    len: usize,
}

impl<T: Clone> CowVec<T> {
    pub(crate) fn from_fn(len: usize, mut f: impl FnMut(usize) -> T) -> CowVec<T> {
        let chunks = (0..len.div_ceil(CHUNK_LEN))
            .map(|chunk| {
                let start = chunk * CHUNK_LEN;
                let end = len.min(start + CHUNK_LEN);
                Arc::new((start..end).map(&mut f).collect())
            })
            .collect();
        CowVec { chunks, len }
    }

    pub(crate) fn get(&self, index: usize) -> &T {
        assert!(index < self.len, "index {index} out of {}", self.len);
        &self.chunks[index / CHUNK_LEN][index % CHUNK_LEN]
    }

    /// Copies the chunk first if a clone still shares it.
    pub(crate) fn get_mut(&mut self, index: usize) -> &mut T {
        assert!(index < self.len, "index {index} out of {}", self.len);
        &mut Arc::make_mut(&mut self.chunks[index / CHUNK_LEN])[index % CHUNK_LEN]
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.chunks.iter().flat_map(|chunk| chunk.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_is_unchanged_by_writes_and_shares_untouched_chunks() {
        let mut live = CowVec::from_fn(3 * CHUNK_LEN + 5, |i| i);
        assert_eq!(live.len, 3 * CHUNK_LEN + 5);
        let snapshot = live.clone();
        *live.get_mut(1) = 1000;
        *live.get_mut(3 * CHUNK_LEN + 4) = 2000;
        assert_eq!(*snapshot.get(1), 1);
        assert_eq!(*snapshot.get(3 * CHUNK_LEN + 4), 3 * CHUNK_LEN + 4);
        assert_eq!(*live.get(1), 1000);
        assert!(!Arc::ptr_eq(&live.chunks[0], &snapshot.chunks[0]));
        assert!(Arc::ptr_eq(&live.chunks[1], &snapshot.chunks[1]));
        assert_eq!(live.iter().count(), live.len);
    }
}
