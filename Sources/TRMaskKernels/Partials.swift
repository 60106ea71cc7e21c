/// Rows split across context-parallel shards (SPEC §3, partial rows). Each shard reduces its part
/// of every row into partials: `count`, `nonfinite`, and per estimator the float64 `sum` and the
/// float32 `max` and `min` over the shard's counted tokens. Partials merge exactly (counts add,
/// sums add in float64, extremes combine, a shard with `count = 0` is the identity, NaN
/// propagates), and the keep decision is taken from the merged partials by the rule the mask
/// kernel uses (`judgeRow`), so it is the whole row's decision: max, min and counts are the
/// whole row's bit for bit, sums and means within SPEC §3's tolerance.

/// Per-row partials of some estimators, in caller memory: read by `mergePartials` and
/// `decidePartials`, written by `rowPartials` and `mergePartials`. Every array is required (its
/// base may be nil only when it has no elements). 1-D arrays use `rowStride` (`colStride` 0).
public struct RowPartials: @unchecked Sendable {
    public var rows: Int
    /// Distinct estimators, in the order of the columns of `sum`, `max`, `min`.
    public var estimators: [Estimator]
    /// `[rows]`: counted tokens (NaN tokens are not counted under `.skip`).
    public var count: OutView<Int64>
    /// `[rows]`: valid tokens whose stream value is NaN or ±inf.
    public var nonfinite: OutView<Int64>
    /// `[rows, estimators]`: float64 sums; 0 for a row without counted tokens, NaN for a row with
    /// a NaN under `.reject`.
    public var sum: OutView<Double>
    /// `[rows, estimators]`: float32 extremes, bitwise those of the per-token values
    /// (`tokenValues`); 0 without counted tokens, NaN for a row with a NaN under `.reject`.
    public var max: OutView<Float>
    public var min: OutView<Float>

    public init(rows: Int, estimators: [Estimator], count: OutView<Int64>, nonfinite: OutView<Int64>, sum: OutView<Double>,
                max: OutView<Float>, min: OutView<Float>) {
        self.rows = rows
        self.estimators = estimators
        self.count = count
        self.nonfinite = nonfinite
        self.sum = sum
        self.max = max
        self.min = min
    }

    /// Writes row `row`'s partials from the scan's summary (SPEC §3: the statistics `statistic`
    /// gives, with the sum kept in float64).
    func store(_ row: Int, _ summary: RowSummary, nanPolicy: NaNPolicy) {
        count.store(Int64(summary.counted), row: row)
        nonfinite.store(Int64(summary.nonfinite), row: row)
        for (column, estimator) in estimators.enumerated() {
            sum.store(summary.total(estimator, nanPolicy: nanPolicy), row: row, col: column)
            max.store(summary.statistic(Criterion(.max, estimator), nanPolicy: nanPolicy), row: row, col: column)
            min.store(summary.statistic(Criterion(.min, estimator), nanPolicy: nanPolicy), row: row, col: column)
        }
    }
}

extension OutView {
    /// Element `[row, col]` of a validated view that is read as an input.
    @inline(__always)
    func load(row: Int, col: Int = 0) -> Element {
        base.unsafelyUnwrapped[row &* rowStride &+ col &* colStride]
    }
}

/// Validates, then writes each row's partials over this batch's tokens (one pass, as `trustRegionMask`).
public func rowPartials(_ batch: Batch, options: ReductionOptions, out: RowPartials) -> Status {
    let status = validateRowPartials(batch, options: options, out: out)
    guard status == .ok else { return status }
    let criteria = out.estimators.flatMap { [Criterion(.max, $0), Criterion(.min, $0), Criterion(.sum, $0)] }
    var scan = MaskScan(batch: batch, criteria: criteria, options: options, outputs: MaskOutputs(), givenKeepRow: nil, partials: out)
    dispatchReader(batch, to: &scan)
    return .ok
}

/// Validates, then merges the partials of two shards of the same rows into `out`. `out` may be `a`
/// or `b` itself (the same arrays, field for field): each row is read before it is written.
public func mergePartials(_ a: RowPartials, _ b: RowPartials, out: RowPartials) -> Status {
    let status = validateMerge(a, b, out: out)
    guard status == .ok else { return status }
    for row in 0..<out.rows {
        let (countA, countB) = (a.count.load(row: row), b.count.load(row: row))
        let nonfinite = a.nonfinite.load(row: row) + b.nonfinite.load(row: row)
        for column in out.estimators.indices {
            let sum: Double, max: Float, min: Float
            if countA == 0 {
                (sum, max, min) = (b.sum.load(row: row, col: column), b.max.load(row: row, col: column), b.min.load(row: row, col: column))
            } else if countB == 0 {
                (sum, max, min) = (a.sum.load(row: row, col: column), a.max.load(row: row, col: column), a.min.load(row: row, col: column))
            } else {
                sum = a.sum.load(row: row, col: column) + b.sum.load(row: row, col: column)
                max = combined(a.max.load(row: row, col: column), b.max.load(row: row, col: column), larger: true)
                min = combined(a.min.load(row: row, col: column), b.min.load(row: row, col: column), larger: false)
            }
            out.sum.store(sum, row: row, col: column)
            out.max.store(max, row: row, col: column)
            out.min.store(min, row: row, col: column)
        }
        out.count.store(countA + countB, row: row)
        out.nonfinite.store(nonfinite, row: row)
    }
    return .ok
}

/// The larger (or smaller) of two extremes; NaN if either is NaN (fail closed: a shard's NaN under
/// `.reject` stays in the merged row).
@inline(__always)
func combined(_ x: Float, _ y: Float, larger: Bool) -> Float {
    if x.isNaN || y.isNaN { return .nan }
    return (larger ? y > x : y < x) ? y : x
}

/// Validates, then decides every row from its (merged) partials by the mask kernel's rule: the
/// outputs of `trustRegionMask` (keep_row, count, nonfinite, row_stats, rejected) for criteria
/// with aggregations max, min, sum and mean. Token criteria and `keepToken` need every token and
/// are refused (`.needsTokens`); only `options.rejectEmpty` is used (the rest is validated).
public func decidePartials(_ partials: RowPartials, criteria: [Criterion], options: ReductionOptions, outputs: MaskOutputs) -> Status {
    let status = validateDecide(partials, criteria: criteria, options: options, outputs: outputs)
    guard status == .ok else { return status }
    let columns = criteria.map { partials.estimators.firstIndex(of: $0.estimator) ?? 0 }  // present: validated
    withUnsafeTemporaryAllocation(of: Int.self, capacity: Swift.max(1, criteria.count)) { rejected in
        rejected.initialize(repeating: 0)
        for row in 0..<partials.rows {
            let counted = Int(partials.count.load(row: row))
            _ = judgeRow(row, counted: counted, nonfinite: Int(partials.nonfinite.load(row: row)), rowCriteria: criteria,
                         rejectEmpty: options.rejectEmpty, outputs: outputs, rejected: rejected) { column, criterion in
                let k = columns[column]
                let statistic: Float
                switch criterion.aggregation {
                case .max: statistic = partials.max.load(row: row, col: k)
                case .min: statistic = partials.min.load(row: row, col: k)
                case .sum, .mean, .ser:
                    statistic = sumStatistic(criterion.aggregation, sum: partials.sum.load(row: row, col: k), count: counted)
                case .token, .lnTRM, .geo: statistic = .nan  // refused by validation; NaN would fail closed
                }
                return (statistic, criterion.passes(statistic))
            }
        }
        if let out = outputs.rejected {
            for index in criteria.indices { out[index] = Int64(rejected[index]) }
        }
    }
    return .ok
}

// MARK: - Validation (SPEC §11): every argument before any read of data or any write.

/// Whether partials of these estimators can be decided for `criterion` (SPEC §3: only row
/// reductions decompose over shards).
private func decomposes(_ aggregation: Aggregation) -> Bool {
    switch aggregation {
    case .max, .min, .sum, .mean, .ser: true
    case .token, .lnTRM: false  // LN-TRM weighs each token by its position in the whole row
    case .geo: false  // a mean of delta, which partials of `ratio` do not hold
    }
}

/// Distinct estimators (the columns must be unambiguous).
private func checkEstimatorList(_ estimators: [Estimator]) -> Status {
    for (index, estimator) in estimators.enumerated() where estimators[..<index].contains(estimator) || estimator.isBinary {
        return .badEstimator  // binary estimators come from the rules pass, which partials do not run
    }
    return .ok
}

/// The shape of one array of `partials`, or nil when a 1-D array has a column stride.
private func partialDims<Element>(_ view: OutView<Element>, _ partials: RowPartials, perEstimator: Bool) -> Dims? {
    if perEstimator { return Dims(outer: (partials.rows, view.rowStride), inner: (partials.estimators.count, view.colStride)) }
    return view.colStride == 0 ? .oneD(partials.rows, view.rowStride) : nil
}

/// Checks one array of partials read as an input: present when it has elements, addressable.
/// Adds its extent to `extents` unless `skip` (an output that is this very array, merged in place).
private func checkPartialInput<Element>(_ view: OutView<Element>, _ partials: RowPartials, perEstimator: Bool,
                                        skip: Bool = false, into extents: inout ExtentList) -> Status {
    guard let dims = partialDims(view, partials, perEstimator: perEstimator) else { return .badStride }
    var extent: Extent?
    let status = checkArray(base: UnsafeRawPointer(view.base), dims: dims, elementSize: MemoryLayout<Element>.stride, extent: &extent)
    if let extent, !skip { extents.add(extent) }
    return status
}

/// Checks one array of partials written as an output: present when it has elements, strides that
/// keep elements apart, no overlap with `taken` (which it joins).
private func checkPartialOutput<Element>(_ view: OutView<Element>, _ partials: RowPartials, perEstimator: Bool,
                                         taken: inout ExtentList) -> Status {
    guard let dims = partialDims(view, partials, perEstimator: perEstimator) else { return .badStride }
    if view.base == nil && (dims.elements ?? 1) != 0 { return .nullPointer }
    return checkOutput(view, dims, taken: &taken)
}

/// Every array of `partials` as inputs, `skip` naming those that are `out`'s own arrays.
private func checkPartialInputs(_ p: RowPartials, skip: (count: Bool, nonfinite: Bool, sum: Bool, max: Bool, min: Bool) = (false, false, false, false, false),
                                into extents: inout ExtentList) -> Status {
    var status = checkPartialInput(p.count, p, perEstimator: false, skip: skip.count, into: &extents)
    if status == .ok { status = checkPartialInput(p.nonfinite, p, perEstimator: false, skip: skip.nonfinite, into: &extents) }
    if status == .ok { status = checkPartialInput(p.sum, p, perEstimator: true, skip: skip.sum, into: &extents) }
    if status == .ok { status = checkPartialInput(p.max, p, perEstimator: true, skip: skip.max, into: &extents) }
    if status == .ok { status = checkPartialInput(p.min, p, perEstimator: true, skip: skip.min, into: &extents) }
    return status
}

private func checkPartialOutputs(_ p: RowPartials, taken: inout ExtentList) -> Status {
    var status = checkPartialOutput(p.count, p, perEstimator: false, taken: &taken)
    if status == .ok { status = checkPartialOutput(p.nonfinite, p, perEstimator: false, taken: &taken) }
    if status == .ok { status = checkPartialOutput(p.sum, p, perEstimator: true, taken: &taken) }
    if status == .ok { status = checkPartialOutput(p.max, p, perEstimator: true, taken: &taken) }
    if status == .ok { status = checkPartialOutput(p.min, p, perEstimator: true, taken: &taken) }
    return status
}

/// Counts read from input partials: never negative (a count is a number of tokens).
private func checkCounts(_ p: RowPartials) -> Status {
    for row in 0..<p.rows where p.count.load(row: row) < 0 || p.nonfinite.load(row: row) < 0 { return .badPartials }
    return .ok
}

func validateRowPartials(_ batch: Batch, options: ReductionOptions, out: RowPartials) -> Status {
    withExtentList { taken in
        var status = checkBatch(batch, into: &taken)
        if status != .ok { return status }
        status = checkOptions(options)
        if status != .ok { return status }
        guard out.rows == batch.rows else { return .badPartials }
        status = checkEstimatorList(out.estimators)
        if status != .ok { return status }
        for estimator in out.estimators where (estimator == .value) != batch.source.givesValues { return .badEstimator }
        status = checkPartialOutputs(out, taken: &taken)
        return status == .ok ? checkBatchContents(batch) : status
    }
}

/// Whether two views are the same array (same base and strides): an output that is its input.
private func same<Element>(_ x: OutView<Element>, _ y: OutView<Element>) -> Bool {
    x.base == y.base && x.rowStride == y.rowStride && x.colStride == y.colStride
}

func validateMerge(_ a: RowPartials, _ b: RowPartials, out: RowPartials) -> Status {
    guard a.rows >= 0, b.rows >= 0, out.rows >= 0 else { return .badSize }
    for partials in [a, b, out] {
        let status = checkEstimatorList(partials.estimators)
        if status != .ok { return status }
    }
    guard a.rows == b.rows, a.rows == out.rows, a.estimators == b.estimators, a.estimators == out.estimators else { return .badPartials }
    return withExtentList { taken in
        for input in [a, b] {
            let skip = (same(input.count, out.count), same(input.nonfinite, out.nonfinite), same(input.sum, out.sum),
                        same(input.max, out.max), same(input.min, out.min))
            let status = checkPartialInputs(input, skip: skip, into: &taken)
            if status != .ok { return status }
        }
        var status = checkPartialOutputs(out, taken: &taken)
        if status != .ok { return status }
        // The O(rows) checks of the counts, after every other check.
        status = checkCounts(a)
        if status == .ok { status = checkCounts(b) }
        if status != .ok { return status }
        for row in 0..<a.rows {
            if a.count.load(row: row).addingReportingOverflow(b.count.load(row: row)).overflow
                || a.nonfinite.load(row: row).addingReportingOverflow(b.nonfinite.load(row: row)).overflow {
                return .badPartials
            }
        }
        return .ok
    }
}

func validateDecide(_ partials: RowPartials, criteria: [Criterion], options: ReductionOptions, outputs: MaskOutputs) -> Status {
    guard partials.rows >= 0 else { return .badSize }
    guard criteria.count <= maximumCriteria else { return .badSize }
    var status = checkEstimatorList(partials.estimators)
    if status != .ok { return status }
    return withExtentList { taken in
        status = checkPartialInputs(partials, into: &taken)
        if status != .ok { return status }
        status = checkOptions(options)
        if status != .ok { return status }
        for criterion in criteria {
            guard decomposes(criterion.aggregation) else { return .needsTokens }
            guard partials.estimators.contains(criterion.estimator) else { return .badEstimator }
            status = checkCriterion(criterion)
            if status != .ok { return status }
        }
        guard outputs.keepToken.base == nil, outputs.weights.base == nil, outputs.metrics == nil else { return .needsTokens }
        func rowDims<Element>(_ out: OutView<Element>) -> Dims? { out.colStride == 0 || out.base == nil ? .oneD(partials.rows, out.rowStride) : nil }
        guard let keepDims = rowDims(outputs.keepRow), let countDims = rowDims(outputs.count),
              let nonfiniteDims = rowDims(outputs.nonfinite) else { return .badStride }
        status = checkOutput(outputs.keepRow, keepDims, taken: &taken)
        if status == .ok { status = checkOutput(outputs.count, countDims, taken: &taken) }
        if status == .ok { status = checkOutput(outputs.nonfinite, nonfiniteDims, taken: &taken) }
        if status == .ok {
            let dims = Dims(outer: (partials.rows, outputs.rowStats.rowStride), inner: (criteria.count, outputs.rowStats.colStride))
            status = checkOutput(outputs.rowStats, dims, taken: &taken)
        }
        if status == .ok { status = checkOutput(OutView<Int64>(base: outputs.rejected, rowStride: 1), .oneD(criteria.count, 1), taken: &taken) }
        return status == .ok ? checkCounts(partials) : status  // the O(rows) check, last
    }
}
