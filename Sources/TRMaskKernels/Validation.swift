/// Argument validation for every kernel (SPEC §11), in one place: the C ABI and the Swift API
/// both reach the kernels only through the public entry points, which call these first. After
/// `.ok`, every address a kernel computes is inside the caller's arrays.

/// Most criteria one call takes (so per-call bookkeeping stays small and bounded).
public let maximumCriteria = 64

/// Threads beyond this are not started (results do not depend on the thread count).
let maximumWorkers = 256

/// One dimension of an array: its length and its stride in elements.
typealias Dimension = (count: Int, stride: Int)

/// An array's address range for the aliasing checks; nil for arrays without elements.
typealias Extent = ClosedRange<UInt>

/// Checks the size, pointer and extent of an array with the given dimensions, and adds its
/// address range (if it has elements) to `extents`.
func checkArray(base: UnsafeRawPointer?, dims: [Dimension], elementSize: Int, into extents: inout [Extent]) -> Status {
    var elements = 1
    for dim in dims {
        let (product, overflow) = elements.multipliedReportingOverflow(by: dim.count)
        if overflow || dim.count < 0 { return .badSize }
        elements = product
    }
    if elements == 0 { return .ok }
    guard let base else { return .nullPointer }
    guard let extent = byteExtent(dims, elementSize: elementSize),
          let range = addressRange(base: base, extent: extent) else { return .outOfRange }
    extents.append(range)
    return .ok
}

/// The dimensions of a view over the token grid of `batch`.
private func gridDims(_ batch: Batch, rowStride: Int, colStride: Int) -> [Dimension] {
    batch.layout == .padded ? [(batch.rows, rowStride), (batch.cols, colStride)] : [(batch.cols, colStride)]
}

/// Input arrays: data, mask, lengths, offsets, and their contents where the kernels rely on
/// them. Adds the extents of all inputs to `extents` for the aliasing checks.
private func checkBatch(_ batch: Batch, into extents: inout [Extent]) -> Status {
    guard batch.rows >= 0, batch.cols >= 0, !batch.rows.multipliedReportingOverflow(by: batch.cols).overflow else {
        return .badSize
    }
    func add(_ view: StridedView, _ dims: [Dimension]) -> Status {
        if batch.layout == .packed && view.rowStride != 0 { return .badStride }
        return checkArray(base: view.base, dims: dims, elementSize: view.dtype.size, into: &extents)
    }
    for view in [batch.source.primary, batch.source.secondary].compactMap({ $0 }) {
        guard view.dtype == .f32 else { return .badDType }
        let status = add(view, gridDims(batch, rowStride: view.rowStride, colStride: view.colStride))
        if status != .ok { return status }
    }
    if let mask = batch.mask {
        guard mask.dtype.isByteMask else { return .badDType }
        let status = add(mask, gridDims(batch, rowStride: mask.rowStride, colStride: mask.colStride))
        if status != .ok { return status }
    }
    switch batch.layout {
    case .padded:
        if batch.offsets != nil { return .badOffsets }
    case .packed:
        let status = checkOffsets(batch, add)
        if status != .ok { return status }
    }
    if let lengths = batch.lengths {
        guard lengths.dtype.isIndex else { return .badDType }
        guard lengths.rowStride == 0 else { return .badStride }
        let status = add(lengths, [(batch.rows, lengths.colStride)])
        if status != .ok { return status }
        for row in 0..<batch.rows {
            let length = lengths.index(row)
            if length < 0 || length > batch.rowSpan(row).count { return .badLengths }
        }
    }
    return .ok
}

/// Packed offsets: present (unless there are no rows), an index dtype, `rows + 1` entries,
/// starting at or after 0, non-decreasing, ending at or before `cols`.
private func checkOffsets(_ batch: Batch, _ add: (StridedView, [Dimension]) -> Status) -> Status {
    guard let offsets = batch.offsets else { return batch.rows == 0 ? .ok : .badOffsets }
    guard offsets.dtype.isIndex else { return .badDType }
    guard offsets.rowStride == 0 else { return .badStride }
    let status = add(offsets, [(batch.rows + 1, offsets.colStride)])
    if status != .ok { return status }
    var previous = 0
    for i in 0...batch.rows {
        let offset = offsets.index(i)
        if offset < previous || offset > batch.cols { return .badOffsets }
        previous = offset
    }
    return .ok
}

/// An output: strides that keep its elements apart (the nesting rule), an addressable extent,
/// no overlap with any array in `taken` (which it joins).
func checkOutput<Element>(_ out: OutView<Element>, _ dims: [Dimension], taken: inout [Extent]) -> Status {
    guard out.base != nil else { return .ok }
    let spread = dims.filter { $0.count > 1 }.sorted { $0.stride.magnitude < $1.stride.magnitude }
    for (index, dim) in spread.enumerated() {
        if dim.stride == 0 { return .badStride }
        if index > 0 {
            let inner = spread[index - 1]
            let (reach, overflow) = inner.stride.magnitude.multipliedReportingOverflow(by: UInt(inner.count - 1))
            if overflow || reach >= dim.stride.magnitude { return .badStride }
        }
    }
    var mine: [Extent] = []
    let status = checkArray(base: UnsafeRawPointer(out.base), dims: dims, elementSize: MemoryLayout<Element>.stride, into: &mine)
    if status != .ok { return status }
    if let extent = mine.first, taken.contains(where: { $0.overlaps(extent) }) { return .aliasing }
    taken += mine
    return .ok
}

/// Options shared by the reductions.
private func checkOptions(_ options: ReductionOptions) -> Status {
    guard options.clamp > 0 else { return .badOption }  // also refuses NaN
    guard options.threads >= 0 else { return .badOption }
    return .ok
}

private func checkCriteria(_ criteria: [Criterion], _ batch: Batch) -> Status {
    guard criteria.count <= maximumCriteria else { return .badSize }
    for criterion in criteria {
        guard (criterion.estimator == .value) == batch.source.givesValues else { return .badEstimator }
        guard criterion.thresholdIsValid else { return .badThreshold }
    }
    return .ok
}

/// A 1-D output over rows must use `rowStride` only.
private func rowDims<Element>(_ out: OutView<Element>, _ batch: Batch) -> [Dimension]? {
    out.base != nil && out.colStride != 0 ? nil : [(batch.rows, out.rowStride)]
}

/// `extraInputs`: extents of further inputs the outputs must not overlap.
func validateMask(_ batch: Batch, criteria: [Criterion], options: ReductionOptions, outputs: MaskOutputs, extraInputs: [Extent] = []) -> Status {
    var taken = extraInputs
    var status = checkBatch(batch, into: &taken)
    if status != .ok { return status }
    status = checkOptions(options)
    if status != .ok { return status }
    status = checkCriteria(criteria, batch)
    if status != .ok { return status }
    let rowCriteria = criteria.filter(\.isRowCriterion).count
    guard let keepDims = rowDims(outputs.keepRow, batch), let countDims = rowDims(outputs.count, batch),
          let nonfiniteDims = rowDims(outputs.nonfinite, batch) else { return .badStride }
    if batch.layout == .packed && outputs.keepToken.base != nil && outputs.keepToken.rowStride != 0 { return .badStride }
    let rejected = OutView<Int64>(base: outputs.rejected, rowStride: 1)
    for check in [
        checkOutput(outputs.keepRow, keepDims, taken: &taken),
        checkOutput(outputs.count, countDims, taken: &taken),
        checkOutput(outputs.nonfinite, nonfiniteDims, taken: &taken),
        checkOutput(outputs.rowStats, [(batch.rows, outputs.rowStats.rowStride), (rowCriteria, outputs.rowStats.colStride)], taken: &taken),
        checkOutput(outputs.keepToken, gridDims(batch, rowStride: outputs.keepToken.rowStride, colStride: outputs.keepToken.colStride), taken: &taken),
        checkOutput(rejected, [(criteria.count, 1)], taken: &taken),
    ] where check != .ok {
        return check
    }
    return .ok
}

func validateTokenKeep(_ batch: Batch, criteria: [Criterion], options: ReductionOptions, keepRow: StridedView, outputs: MaskOutputs) -> Status {
    guard outputs.keepToken.base != nil || batch.gridCount == 0 else { return .nullPointer }
    guard keepRow.dtype.isByteMask else { return .badDType }
    guard keepRow.rowStride == 0 else { return .badStride }
    var keepRowExtent: [Extent] = []
    let status = checkArray(base: keepRow.base, dims: [(batch.rows, keepRow.colStride)], elementSize: 1, into: &keepRowExtent)
    if status != .ok { return status }
    return validateMask(batch, criteria: criteria, options: options, outputs: outputs, extraInputs: keepRowExtent)
}

func validateTokenValues(_ batch: Batch, estimator: Estimator, options: ReductionOptions, out: OutView<Float>) -> Status {
    guard out.base != nil || batch.gridCount == 0 else { return .nullPointer }
    guard batch.mask == nil, batch.lengths == nil else { return .badInputs }
    var taken: [Extent] = []
    var status = checkBatch(batch, into: &taken)
    if status != .ok { return status }
    status = checkOptions(options)
    if status != .ok { return status }
    guard (estimator == .value) == batch.source.givesValues else { return .badEstimator }
    if batch.layout == .packed && out.base != nil && out.rowStride != 0 { return .badStride }
    return checkOutput(out, gridDims(batch, rowStride: out.rowStride, colStride: out.colStride), taken: &taken)
}
