//! A data set of the user's arrays (`dataset = "tensors"`): read in place by
//! `gnc_contract::tensor_files` (memory-mapped where the format allows), labels checked against
//! the classes, examples normalised as they are copied out (`Features::Stored`).

use std::sync::Arc;

use gnc_contract::data_files::{held_out, tensors};
use gnc_contract::tensor_files::Split;
use gnc_proto::DataSpec;

use super::{DataSet, Examples, Features};
use crate::DataError;
use crate::rng::{Purpose, Stream};

pub fn load(spec: &DataSpec) -> Result<DataSet, DataError> {
    let (t, root) = tensors(spec)?;
    let train = Split::read(root, &t.train)?;
    let (train, test) = match (&t.test, t.test_fraction) {
        (Some(files), _) => {
            let test = Split::read(root, files)?;
            let all = |s: &Split| (0..s.examples() as u32).collect();
            (
                examples(&train, all(&train), t.classes)?,
                examples(&test, all(&test), t.classes)?,
            )
        }
        (None, fraction) => {
            // The held-out examples depend on the file's size and the fraction only, not on the
            // job's seed, so jobs that differ in seed are tested on the same examples.
            let n = train.examples();
            let mut order = Stream::new(0, Purpose::HeldOut, &[n as u64]).permutation(n);
            let mut test_rows = order.split_off(n - held_out(n, fraction.unwrap_or(0.0)));
            order.sort_unstable();
            test_rows.sort_unstable();
            (
                examples(&train, order, t.classes)?,
                examples(&train, test_rows, t.classes)?,
            )
        }
    };
    Ok(DataSet {
        train,
        test,
        classes: t.classes,
    })
}

/// The examples `rows` of `split`, their labels checked; normalisation statistics come later.
fn examples(split: &Split, rows: Vec<u32>, classes: usize) -> Result<Examples, DataError> {
    let labels = split.labels(classes)?;
    Ok(Examples {
        labels: Arc::new(rows.iter().map(|&r| labels[r as usize]).collect()),
        shape: split.example_shape(),
        features: Features::Stored {
            array: split.inputs.clone(),
            rows: Arc::new(rows),
            stats: Arc::new(Vec::new()),
        },
    })
}
