/// Argument validation for every kernel (SPEC §11), in one place: the C ABI and the Swift API
/// both reach the kernels only through the public entry points, which call these first. After
/// `.ok`, every address a kernel computes is inside the caller's arrays.

/// Most criteria one call takes (so per-call bookkeeping stays small and bounded).
public let maximumCriteria = 64

/// Threads beyond this are not started (results do not depend on the thread count).
let maximumWorkers = 256

/// The most working memory one call allocates (the metrics' per-row records, the top-k scratch
/// of one position): a valid request that needs more is refused with `.tooLarge` (as is one
/// whose allocation fails), never aborted. 4 GiB: the metrics of 2^25 rows (11 million with 64
/// row criteria); include/trmask.h states these limits.
public let maximumScratchBytes = 1 << 32

// MARK: - Sizes: the one place where products and sums of caller sizes are formed.

/// `a * b` for counts: nil when either is negative or the product overflows. Public for the C
/// shim (the byte count of `dbar`).
@inline(__always)
public func sizeProduct(_ a: Int, _ b: Int) -> Int? {
    guard a >= 0, b >= 0 else { return nil }
    let (product, overflow) = a.multipliedReportingOverflow(by: b)
    return overflow ? nil : product
}

/// `a * b * c` for counts: nil when any is negative or a product overflows.
@inline(__always)
func sizeProduct(_ a: Int, _ b: Int, _ c: Int) -> Int? {
    sizeProduct(a, b).flatMap { sizeProduct($0, c) }
}

/// Bytes of `count` elements of `Element` plus `extra` bytes, or nil past `maximumScratchBytes`.
func scratchBytes<Element>(_ count: Int, of _: Element.Type, plus extra: Int = 0) -> Int? {
    guard let bytes = sizeProduct(count, MemoryLayout<Element>.stride), extra >= 0 else { return nil }
    let (total, overflow) = bytes.addingReportingOverflow(extra)
    return overflow || total > maximumScratchBytes ? nil : total
}

/// The sizes of a batch, before anything that depends on them: rows and cols >= 0, the padded
/// grid `rows * cols` and the packed offsets' `rows + 1` representable.
/// (`rows * cols` is checked for packed batches too: the kernels share the padded arithmetic.)
func checkBatchSizes(_ batch: Batch) -> Status {
    sizeProduct(batch.rows, batch.cols) != nil && batch.rows < Int.max ? .ok : .badSize
}

/// One dimension of an array: its length and its stride in elements.
typealias Dimension = (count: Int, stride: Int)

/// The shape of an array of up to three dimensions (missing ones are `(1, 0)`). A plain value
/// rather than an array of dimensions: validation allocates nothing, which keeps small calls
/// cheap.
struct Dims {
    var outer: Dimension
    var inner: Dimension
    var deep: Dimension = (1, 0)

    static func oneD(_ count: Int, _ stride: Int) -> Dims { Dims(outer: (1, 0), inner: (count, stride)) }

    var elements: Int? { sizeProduct(outer.count, inner.count, deep.count) }
}

/// An array's address range for the aliasing checks.
typealias Extent = ClosedRange<UInt>

/// The address ranges of the arrays checked so far, in stack memory (`withExtentList`). Its
/// capacity exceeds the most arrays any entry point checks (fourteen).
struct ExtentList {
    private let items: UnsafeMutableBufferPointer<Extent>
    private var count = 0

    fileprivate init(_ items: UnsafeMutableBufferPointer<Extent>) { self.items = items }

    mutating func add(_ extent: Extent) {
        guard count < items.count else { return }
        items[count] = extent
        count += 1
    }

    func overlaps(_ extent: Extent) -> Bool {
        for index in 0..<count where items[index].overlaps(extent) { return true }
        return false
    }
}

/// Runs `body` with an empty list backed by stack memory.
func withExtentList<R>(_ body: (inout ExtentList) -> R) -> R {
    withUnsafeTemporaryAllocation(of: Extent.self, capacity: 32) { storage in
        var list = ExtentList(storage)
        return body(&list)
    }
}

/// Checks the size, pointer and extent of an array, and returns its address range (nil when it
/// has no elements) through `extent`.
func checkArray(base: UnsafeRawPointer?, dims: Dims, elementSize: Int, extent: inout Extent?) -> Status {
    guard let elements = dims.elements else { return .badSize }
    extent = nil
    if elements == 0 { return .ok }
    guard let base else { return .nullPointer }
    guard let bytes = byteExtent(dims, elementSize: elementSize), let range = addressRange(base: base, extent: bytes) else {
        return .outOfRange
    }
    extent = range
    return .ok
}

/// `checkArray`, adding the range to `extents`.
func checkInput(base: UnsafeRawPointer?, dims: Dims, elementSize: Int, into extents: inout ExtentList) -> Status {
    var extent: Extent?
    let status = checkArray(base: base, dims: dims, elementSize: elementSize, extent: &extent)
    if let extent { extents.add(extent) }
    return status
}

/// The dimensions of a view over the token grid of `batch`.
func gridDims(_ batch: Batch, rowStride: Int, colStride: Int) -> Dims {
    batch.layout == .padded ? Dims(outer: (batch.rows, rowStride), inner: (batch.cols, colStride)) : .oneD(batch.cols, colStride)
}

/// Input arrays: data, mask, lengths, offsets: sizes, dtypes, pointers, extents (O(1); their
/// contents are `checkBatchContents`'s, last). Adds the extents of all inputs to `extents` for
/// the aliasing checks.
func checkBatch(_ batch: Batch, into extents: inout ExtentList) -> Status {
    if checkBatchSizes(batch) != .ok { return .badSize }
    func add(_ view: StridedView, _ dims: Dims) -> Status {
        if batch.layout == .packed && view.rowStride != 0 { return .badStride }
        return checkInput(base: view.base, dims: dims, elementSize: view.dtype.size, into: &extents)
    }
    func addData(_ view: StridedView) -> Status {
        guard view.dtype.isFloat else { return .badDType }
        return add(view, gridDims(batch, rowStride: view.rowStride, colStride: view.colStride))
    }
    var status = addData(batch.source.primary)
    if status == .ok, let secondary = batch.source.secondary { status = addData(secondary) }
    if status != .ok { return status }
    if let mask = batch.mask {
        // Any dtype: nonzero = valid (bool, uint8, float masks, and int masks as torch gives them).
        status = add(mask, gridDims(batch, rowStride: mask.rowStride, colStride: mask.colStride))
        if status != .ok { return status }
    }
    switch batch.layout {
    case .padded:
        if batch.offsets != nil { return .badOffsets }
    case .packed:
        status = checkOffsets(batch, add)
        if status != .ok { return status }
    }
    if batch.advantages != nil && batch.rowAdvantages != nil { return .needsAdvantages }
    if let advantages = batch.advantages {
        status = addData(advantages)
        if status != .ok { return status }
    }
    if let rowAdvantages = batch.rowAdvantages {
        guard rowAdvantages.dtype.isFloat else { return .badDType }
        guard rowAdvantages.rowStride == 0 else { return .badStride }
        status = add(rowAdvantages, .oneD(batch.rows, rowAdvantages.colStride))
        if status != .ok { return status }
    }
    if let lengths = batch.lengths {
        guard lengths.dtype.isIndex else { return .badDType }
        guard lengths.rowStride == 0 else { return .badStride }
        status = add(lengths, .oneD(batch.rows, lengths.colStride))
        if status != .ok { return status }
    }
    return .ok
}

/// Packed offsets: present (unless there are no rows), an index dtype, `rows + 1` entries
/// (`checkBatchSizes` made that count representable).
private func checkOffsets(_ batch: Batch, _ add: (StridedView, Dims) -> Status) -> Status {
    guard let offsets = batch.offsets else { return batch.rows == 0 ? .ok : .badOffsets }
    guard offsets.dtype.isIndex else { return .badDType }
    guard offsets.rowStride == 0 else { return .badStride }
    return add(offsets, .oneD(batch.rows &+ 1, offsets.colStride))
}

/// The O(rows) checks of a batch whose arrays `checkBatch` accepted, run after every O(1) check
/// of the call: packed offsets start at or after 0, never decrease and end at or before `cols`;
/// each length is in `0 ... its row's length`.
func checkBatchContents(_ batch: Batch) -> Status {
    if batch.layout == .packed, let offsets = batch.offsets {
        var previous = 0
        for i in 0...batch.rows {
            let offset = offsets.index(i)
            if offset < previous || offset > batch.cols { return .badOffsets }
            previous = offset
        }
    }
    if let lengths = batch.lengths {
        for row in 0..<batch.rows {
            let length = lengths.index(row)
            if length < 0 || length > batch.rowSpan(row).count { return .badLengths }
        }
    }
    return .ok
}

/// An output: strides that keep its elements apart (the nesting rule: the dimension with the
/// larger |stride| must step past the whole extent of the other), an addressable extent, no
/// overlap with any array in `taken` (which it joins).
func checkOutput<Element>(_ out: OutView<Element>, _ dims: Dims, taken: inout ExtentList) -> Status {
    checkOutput(UnsafeRawPointer(out.base), dims, elementSize: MemoryLayout<Element>.stride, taken: &taken)
}

/// `checkOutput` for an output whose element size is known at run time.
func checkOutput(_ base: UnsafeRawPointer?, _ dims: Dims, elementSize: Int, taken: inout ExtentList) -> Status {
    // Outputs have at most two dimensions (`dims.deep` stays (1, 0)).
    guard base != nil, dims.outer.count != 0, dims.inner.count != 0 else { return .ok }  // nothing to write
    if (dims.outer.count > 1 && dims.outer.stride == 0) || (dims.inner.count > 1 && dims.inner.stride == 0) { return .badStride }
    if dims.outer.count > 1 && dims.inner.count > 1 {
        let (small, large) = dims.outer.stride.magnitude < dims.inner.stride.magnitude ? (dims.outer, dims.inner) : (dims.inner, dims.outer)
        let (reach, overflow) = small.stride.magnitude.multipliedReportingOverflow(by: UInt(small.count - 1))
        if overflow || reach >= large.stride.magnitude { return .badStride }
    }
    var extent: Extent?
    let status = checkArray(base: base, dims: dims, elementSize: elementSize, extent: &extent)
    if status != .ok { return status }
    guard let extent else { return .ok }
    if taken.overlaps(extent) { return .aliasing }
    taken.add(extent)
    return .ok
}

/// Options shared by the reductions.
func checkOptions(_ options: ReductionOptions) -> Status {
    guard options.clamp > 0 else { return .badOption }  // also refuses NaN
    guard options.threads >= 0 else { return .badOption }
    guard options.binaryEps >= 0 && options.binaryEps < 0.5 else { return .badOption }  // also refuses NaN
    return .ok
}

/// An advantage rule and the advantages it reads (SPEC §4.8): a valid rule; per-token or per-row
/// advantages for the token rule, per-row ones for the row rule; advantages only with a rule;
/// log-probabilities for the `bdiff` and `bkl` statistics.
func checkAdvantageRule(_ batch: Batch, _ rule: AdvantageRule?) -> Status {
    guard let rule else { return batch.advantages == nil && batch.rowAdvantages == nil ? .ok : .needsAdvantages }
    guard rule.isValid else { return .badAdvantageRule }
    if rule.statistic != .none && batch.advantages == nil && batch.rowAdvantages == nil { return .needsAdvantages }
    if rule.sequenceLimit != nil && batch.rowAdvantages == nil { return .needsAdvantages }
    if rule.statistic == .none && batch.advantages != nil { return .needsAdvantages }  // nothing would read them
    if rule.needsLogProbs && batch.source.secondary == nil { return .needsLogProbs }
    if batch.source.givesValues { return .needsLogProbs }  // the rules read delta or the log-probs
    return .ok
}

private func checkCriteria(_ criteria: [Criterion], _ batch: Batch) -> Status {
    guard criteria.count <= maximumCriteria else { return .badSize }
    for criterion in criteria {
        guard (criterion.estimator == .value) == batch.source.givesValues else { return .badEstimator }
        if criterion.estimator.isBinary && batch.source.secondary == nil { return .needsLogProbs }
        let status = checkCriterion(criterion)
        if status != .ok { return status }
    }
    return .ok
}

/// What a criterion must satisfy whatever the input: the estimator its aggregation is defined on,
/// its thresholds (SPEC §4.6), the LN-TRM parameters.
func checkCriterion(_ criterion: Criterion) -> Status {
    if let required = criterion.aggregation.requiredEstimator, criterion.estimator != required { return .badEstimator }
    guard criterion.thresholdIsValid else { return .badThreshold }
    guard criterion.lengthNeutralIsValid else { return .badLengthNeutral }
    return .ok
}

/// A 1-D output over rows must use `rowStride` only.
private func rowDims<Element>(_ out: OutView<Element>, _ batch: Batch) -> Dims? {
    out.base != nil && out.colStride != 0 ? nil : .oneD(batch.rows, out.rowStride)
}

/// `extraInputs`: extents of further inputs the outputs must not overlap.
func validateMask(_ batch: Batch, criteria: [Criterion], options: ReductionOptions, outputs: MaskOutputs,
                  extraInput: Extent? = nil) -> Status {
    withExtentList { taken in
        if let extraInput { taken.add(extraInput) }
        return validateMask(batch, criteria: criteria, options: options, outputs: outputs, taken: &taken)
    }
}

private func validateMask(_ batch: Batch, criteria: [Criterion], options: ReductionOptions, outputs: MaskOutputs,
                          taken: inout ExtentList) -> Status {
    var status = checkBatch(batch, into: &taken)
    if status != .ok { return status }
    status = checkOptions(options)
    if status != .ok { return status }
    status = checkCriteria(criteria, batch)
    if status != .ok { return status }
    status = checkAdvantageRule(batch, options.advantageRule)
    if status != .ok { return status }
    let rowCriteria = criteria.reduce(0) { $0 + ($1.isRowCriterion ? 1 : 0) }
    guard let keepDims = rowDims(outputs.keepRow, batch), let countDims = rowDims(outputs.count, batch),
          let nonfiniteDims = rowDims(outputs.nonfinite, batch) else { return .badStride }
    if batch.layout == .packed && outputs.keepToken.base != nil && outputs.keepToken.rowStride != 0 { return .badStride }
    let rejected = OutView<Int64>(base: outputs.rejected, rowStride: 1)
    status = checkOutput(outputs.keepRow, keepDims, taken: &taken)
    if status == .ok { status = checkOutput(outputs.count, countDims, taken: &taken) }
    if status == .ok { status = checkOutput(outputs.nonfinite, nonfiniteDims, taken: &taken) }
    if status == .ok {
        let dims = Dims(outer: (batch.rows, outputs.rowStats.rowStride), inner: (rowCriteria, outputs.rowStats.colStride))
        status = checkOutput(outputs.rowStats, dims, taken: &taken)
    }
    if status == .ok {
        let dims = gridDims(batch, rowStride: outputs.keepToken.rowStride, colStride: outputs.keepToken.colStride)
        status = checkOutput(outputs.keepToken, dims, taken: &taken)
    }
    if status == .ok { status = checkOutput(rejected, .oneD(criteria.count, 1), taken: &taken) }
    if status == .ok {
        let counts = OutView<Int64>(base: outputs.advantageCounts, rowStride: 1)
        status = checkOutput(counts, .oneD(AdvantageCount.slots, 1), taken: &taken)
    }
    if status == .ok && outputs.weights.base != nil {
        guard outputs.weightRule.isValid else { return .badWeightRule }
        guard !batch.source.givesValues else { return .badInputs }  // weights need a log-ratio
        if batch.layout == .packed && outputs.weights.rowStride != 0 { return .badStride }
        let dims = gridDims(batch, rowStride: outputs.weights.rowStride, colStride: outputs.weights.colStride)
        status = checkOutput(outputs.weights, dims, taken: &taken)
    }
    if status == .ok && outputs.metrics != nil && metricRecordBytes(rows: batch.rows, rowCriteria: rowCriteria) == nil {
        return .tooLarge
    }
    return status == .ok ? checkBatchContents(batch) : status
}

/// A `[rows]` byte view of row decisions, given as an input; its extent through `extent`.
private func checkKeepRow(_ keepRow: StridedView, rows: Int, extent: inout Extent?) -> Status {
    guard keepRow.dtype.isByteMask else { return .badDType }
    guard keepRow.rowStride == 0 else { return .badStride }
    return checkArray(base: keepRow.base, dims: .oneD(rows, keepRow.colStride), elementSize: 1, extent: &extent)
}

/// A required token-grid output: present unless the grid is empty (after the sizes are checked,
/// so that bad sizes are reported as such).
private func checkGridOutputPresent(_ batch: Batch, _ base: UnsafeMutableRawPointer?) -> Status {
    if checkBatchSizes(batch) != .ok { return .badSize }
    return base != nil || batch.gridCount == 0 ? .ok : .nullPointer
}

func validateWeights(_ batch: Batch, options: ReductionOptions, keepRow: StridedView?, outputs: MaskOutputs) -> Status {
    let present = checkGridOutputPresent(batch, UnsafeMutableRawPointer(outputs.weights.base))
    if present != .ok { return present }
    var keepRowExtent: Extent?
    if let keepRow {
        let status = checkKeepRow(keepRow, rows: batch.rows, extent: &keepRowExtent)
        if status != .ok { return status }
    }
    // An empty grid writes nothing, but the rule is still checked.
    guard outputs.weightRule.isValid else { return .badWeightRule }
    return validateMask(batch, criteria: [], options: options, outputs: outputs, extraInput: keepRowExtent)
}

func validateTokenKeep(_ batch: Batch, criteria: [Criterion], options: ReductionOptions, keepRow: StridedView, outputs: MaskOutputs) -> Status {
    var status = checkGridOutputPresent(batch, UnsafeMutableRawPointer(outputs.keepToken.base))
    if status != .ok { return status }
    var keepRowExtent: Extent?
    status = checkKeepRow(keepRow, rows: batch.rows, extent: &keepRowExtent)
    if status != .ok { return status }
    return validateMask(batch, criteria: criteria, options: options, outputs: outputs, extraInput: keepRowExtent)
}

func validateTokenValues(_ batch: Batch, estimator: Estimator, options: ReductionOptions, out: OutView<Float>) -> Status {
    let present = checkGridOutputPresent(batch, UnsafeMutableRawPointer(out.base))
    if present != .ok { return present }
    guard batch.mask == nil, batch.lengths == nil else { return .badInputs }
    return withExtentList { taken in
        var status = checkBatch(batch, into: &taken)
        if status != .ok { return status }
        status = checkOptions(options)
        if status != .ok { return status }
        guard (estimator == .value) == batch.source.givesValues else { return .badEstimator }
        if estimator.isBinary && batch.source.secondary == nil { return .needsLogProbs }
        if batch.layout == .packed && out.base != nil && out.rowStride != 0 { return .badStride }
        status = checkOutput(out, gridDims(batch, rowStride: out.rowStride, colStride: out.colStride), taken: &taken)
        return status == .ok ? checkBatchContents(batch) : status
    }
}
