//! How a strided matrix view maps onto a column-major BLAS GEMM (the part of the cuBLAS path
//! that needs no GPU, so the CPU tests check it).

/// Whether BLAS reads a matrix as stored (`N`) or transposed (`T`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trans {
    N,
    T,
}

/// How a row-major view `[rows, cols]` with element strides `(s_row, s_col)` maps onto BLAS in the
/// swapped formulation (row-major C = A·B ⇔ column-major Cᵀ = Bᵀ·Aᵀ): `(N, ld)` when rows are
/// contiguous (leading dim `s_row`, pitched rows allowed), `(T, ld)` when columns are (a
/// transposed view); `None` for anything else (broadcast or doubly strided), which the caller
/// makes contiguous first.
pub fn layout(rows: usize, cols: usize, s_row: usize, s_col: usize) -> Option<(Trans, usize)> {
    if cols == 1 || s_col == 1 {
        let ld = if rows == 1 { cols.max(1) } else { s_row };
        if ld >= cols.max(1) && ld <= i32::MAX as usize {
            return Some((Trans::N, ld));
        }
    }
    if rows == 1 || s_row == 1 {
        let ld = if cols == 1 { rows.max(1) } else { s_col };
        if ld >= rows.max(1) && ld <= i32::MAX as usize {
            return Some((Trans::T, ld));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_map_views_onto_blas_ops() {
        assert_eq!(layout(4, 3, 3, 1), Some((Trans::N, 3))); // packed row-major
        assert_eq!(layout(4, 3, 8, 1), Some((Trans::N, 8))); // pitched rows
        assert_eq!(layout(4, 3, 1, 4), Some((Trans::T, 4))); // transposed view of [3, 4]
        assert_eq!(layout(4, 3, 0, 1), None); // broadcast rows
        assert_eq!(layout(4, 3, 6, 2), None); // strided both ways
        assert_eq!(layout(4, 3, 2, 1), None); // rows overlap (ld < cols)
        assert_eq!(layout(1, 3, 999, 1), Some((Trans::N, 3))); // one row: its stride is irrelevant
        assert_eq!(layout(4, 1, 1, 999), Some((Trans::N, 1))); // one column
    }
}
