//! The values of an ONNX tensor (an initializer or a Constant node's), as f32 or i64.

use crate::proto::TensorProto;
use crate::proto::tensor_proto::{DataLocation, DataType};

/// Dimensions and values of a tensor, or why they cannot be read.
pub fn floats(t: &TensorProto) -> Result<Vec<f32>, String> {
    inline(t)?;
    let values = match DataType::try_from(t.data_type.unwrap_or(0)) {
        Ok(DataType::Float) if t.raw_data.is_some() => {
            raw(t, 4, |b| f32::from_le_bytes(b.try_into().expect("4 bytes")))?
        }
        Ok(DataType::Float) => t.float_data.clone(),
        Ok(DataType::Double) if t.raw_data.is_some() => raw(t, 8, |b| {
            f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32
        })?,
        Ok(DataType::Double) => t.double_data.iter().map(|&v| v as f32).collect(),
        _ => return Err(format!("tensor {:?} is not of floats", name(t))),
    };
    check_len(t, values.len())?;
    Ok(values)
}

/// The integers of an int64 or int32 tensor (shapes, axes).
pub fn ints(t: &TensorProto) -> Result<Vec<i64>, String> {
    inline(t)?;
    let values = match DataType::try_from(t.data_type.unwrap_or(0)) {
        Ok(DataType::Int64) if t.raw_data.is_some() => {
            raw(t, 8, |b| i64::from_le_bytes(b.try_into().expect("8 bytes")))?
        }
        Ok(DataType::Int64) => t.int64_data.clone(),
        Ok(DataType::Int32) if t.raw_data.is_some() => raw(t, 4, |b| {
            i64::from(i32::from_le_bytes(b.try_into().expect("4 bytes")))
        })?,
        Ok(DataType::Int32) => t.int32_data.iter().map(|&v| i64::from(v)).collect(),
        _ => return Err(format!("tensor {:?} is not of integers", name(t))),
    };
    check_len(t, values.len())?;
    Ok(values)
}

fn name(t: &TensorProto) -> &str {
    t.name.as_deref().unwrap_or("")
}

fn inline(t: &TensorProto) -> Result<(), String> {
    if t.data_location == Some(DataLocation::External as i32) {
        return Err(format!(
            "tensor {:?} keeps its values in an external file; export with the weights inside \
             the model file (torch.onnx.export(..., external_data=False))",
            name(t)
        ));
    }
    Ok(())
}

fn raw<T>(t: &TensorProto, width: usize, read: impl Fn(&[u8]) -> T) -> Result<Vec<T>, String> {
    let bytes = t.raw_data.as_deref().unwrap_or_default();
    if !bytes.len().is_multiple_of(width) {
        return Err(format!(
            "tensor {:?} has {} bytes of data, not a multiple of {width}",
            name(t),
            bytes.len()
        ));
    }
    Ok(bytes.chunks_exact(width).map(read).collect())
}

fn check_len(t: &TensorProto, len: usize) -> Result<(), String> {
    let expected: i64 = t.dims.iter().product();
    if usize::try_from(expected) != Ok(len) {
        return Err(format!(
            "tensor {:?} of shape {:?} holds {len} values, not {expected} (truncated file?)",
            name(t),
            t.dims
        ));
    }
    Ok(())
}
