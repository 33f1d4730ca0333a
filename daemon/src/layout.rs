//! The layout of a run: process p hosts the p-th of N near-equal blocks of the M logical
//! workers. Each block must be a subtree of the canonical reduction tree (DESIGN.md §4.2),
//! or the bits would depend on N; otherwise the error names the process counts that work
//! and a subtree layout with N blocks.

use gnc_tree::{self as tree, Block, LayoutError};

/// The blocks of `m` logical workers over `processes` worker processes.
pub fn plan(m: usize, processes: usize) -> Result<Vec<Block>, LayoutError> {
    tree::even_layout(m, processes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_of_two_split_evenly() {
        assert_eq!(
            plan(16, 4).unwrap(),
            vec![(0, 4), (4, 8), (8, 12), (12, 16)]
        );
        assert_eq!(plan(8, 8).unwrap().len(), 8);
        assert_eq!(plan(16, 1).unwrap(), vec![(0, 16)]);
    }

    #[test]
    fn a_block_that_is_not_a_subtree_is_refused_with_alternatives() {
        let message = plan(16, 3).unwrap_err().to_string();
        assert!(message.contains("not a subtree"), "{message}");
        assert!(message.contains("1, 2, 4, 8 or 16 processes"), "{message}");
        assert!(message.contains("[0, 4) [4, 8) [8, 16)"), "{message}");
    }

    #[test]
    fn more_processes_than_workers_is_refused() {
        assert!(matches!(
            plan(4, 5),
            Err(LayoutError::BadProcessCount { m: 4, processes: 5 })
        ));
    }
}
