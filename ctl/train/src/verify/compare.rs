//! Bit-for-bit comparison of iteration records: the first iteration and field that differ.

use std::fmt;

use gnc_proto::IterRecord;

/// Where a re-run first departs from the record.
#[derive(Debug, PartialEq)]
pub enum Difference {
    /// A field of iteration `iter` has other bits.
    Field {
        iter: u64,
        field: &'static str,
        recorded: f64,
        rerun: f64,
    },
    /// Only one side has a record of iteration `iter` (or the iterations are out of step).
    Missing { iter: u64, side: &'static str },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Field {
                iter,
                field,
                recorded,
                rerun,
            } => write!(
                f,
                "iteration {iter}: {field} differs: recorded {recorded:?} ({:#018x}), re-run {rerun:?} ({:#018x})",
                recorded.to_bits(),
                rerun.to_bits()
            ),
            Difference::Missing { iter, side } => {
                write!(f, "iteration {iter}: the {side} has no record of it")
            }
        }
    }
}

/// The fields compared, in the order they are checked.
fn fields(r: &IterRecord) -> [(&'static str, f64); 5] {
    [
        ("loss", r.loss),
        ("grad_norm", r.grad_norm),
        ("noise_norm", r.noise_norm),
        ("lr", r.lr),
        ("epoch", r.epoch),
    ]
}

/// The first difference between the recorded and the re-run records of iterations `0..n`.
pub fn first_difference(
    recorded: &[IterRecord],
    rerun: &[IterRecord],
    n: u64,
) -> Option<Difference> {
    let limit = usize::try_from(n).unwrap_or(usize::MAX);
    for i in 0..limit {
        let iter = i as u64;
        let (a, b) = match (recorded.get(i), rerun.get(i)) {
            (Some(a), Some(b)) => (a, b),
            (None, _) => {
                return Some(Difference::Missing {
                    iter,
                    side: "recorded metrics.jsonl",
                });
            }
            (_, None) => {
                return Some(Difference::Missing {
                    iter,
                    side: "re-run",
                });
            }
        };
        if a.iter != iter {
            return Some(Difference::Missing {
                iter,
                side: "recorded metrics.jsonl",
            });
        }
        if b.iter != iter {
            return Some(Difference::Missing {
                iter,
                side: "re-run",
            });
        }
        for ((field, x), (_, y)) in fields(a).into_iter().zip(fields(b)) {
            if x.to_bits() != y.to_bits() {
                return Some(Difference::Field {
                    iter,
                    field,
                    recorded: x,
                    rerun: y,
                });
            }
        }
    }
    None
}
