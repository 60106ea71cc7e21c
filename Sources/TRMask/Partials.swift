import TRMaskKernels

/// Rows split across context-parallel shards (semantics §3, partial rows; docs/sharded-rows.md): each
/// shard's partials, their merge, and the keep decision from the merged partials, which is the
/// whole row's (max, min, counts and decisions exactly; sums and means within semantics §3's tolerance).

/// Per-row partials of some estimators over one shard, or over merged shards.
public struct RowPartials: Equatable, Sendable {
    /// Distinct estimators; `sum`, `max` and `min` hold one array per estimator, in this order.
    public var estimators: [Estimator]
    /// Counted tokens per row (NaN tokens are not counted under `.skip`).
    public var count: [Int]
    /// Valid tokens per row whose log-ratio is NaN or infinite.
    public var nonfinite: [Int]
    /// Per estimator, per row: the float64 sum over counted tokens.
    public var sum: [[Double]]
    /// Per estimator, per row: the float32 maximum and minimum over counted tokens.
    public var max: [[Float]]
    public var min: [[Float]]

    public init(estimators: [Estimator], count: [Int], nonfinite: [Int], sum: [[Double]], max: [[Float]], min: [[Float]]) {
        self.estimators = estimators
        self.count = count
        self.nonfinite = nonfinite
        self.sum = sum
        self.max = max
        self.min = min
    }

    public var rows: Int { count.count }

    /// Empty partials of `rows` rows (count 0 everywhere: the merge's identity).
    public init(rows: Int, estimators: [Estimator]) {
        self.init(estimators: estimators, count: Array(repeating: 0, count: rows), nonfinite: Array(repeating: 0, count: rows),
                  sum: estimators.map { _ in Array(repeating: 0, count: rows) },
                  max: estimators.map { _ in Array(repeating: 0, count: rows) },
                  min: estimators.map { _ in Array(repeating: 0, count: rows) })
    }
}

/// Each row's partials over the tokens of `batch` (one shard of the rows): count, nonfinite, and
/// per estimator the float64 sum and float32 max and min over counted tokens, in one pass. A row
/// with no counted token has count 0 and statistics 0; under `.reject` a row with a NaN log-ratio
/// has NaN statistics. `options.rejectEmpty` plays no part (it applies to the decision).
public func rowPartials(_ batch: TokenBatch, estimators: [Estimator] = [.k2, .k3],
                        options: ReductionOptions = ReductionOptions()) throws(TRMaskError) -> RowPartials {
    var result = RowPartials(rows: batch.rows, estimators: estimators)
    let status = try result.withKernelView { view in TRMaskKernels.rowPartials(batch.batch, options: options, out: view) }
    try TRMaskError.check(status, argument: status == .badEstimator ? "estimators" : nil)
    return result
}

/// The partials of two shards of the same rows merged: counts add, sums add, max and min combine,
/// a row with count 0 on one side takes the other side's values, and a NaN extreme stays NaN.
public func mergePartials(_ a: RowPartials, _ b: RowPartials) throws(TRMaskError) -> RowPartials {
    try a.checkShape("a")
    try b.checkShape("b")
    guard b.rows == a.rows, b.estimators == a.estimators else { throw TRMaskError(.badPartials, argument: "b") }
    var result = a
    var b = b
    let status = try result.withKernelView { (out) throws(TRMaskError) -> Status in
        try b.withKernelView { other in TRMaskKernels.mergePartials(out, other, out: out) }
    }
    try TRMaskError.check(status)
    return result
}

/// The keep decision from (merged) partials, by `trustRegionMask`'s rule: `keepRow`, `rejected`,
/// `rowStats`, `count` and `nonfinite` as `trustRegionMask` gives them for these criteria
/// (`keepToken` is empty). Criteria must aggregate by max, min, sum or mean over estimators the
/// partials hold; token criteria need every token and throw `.needsTokens`.
public func keepFromPartials(_ partials: RowPartials, criteria: [Criterion] = Criterion.trmDefault,
                             rejectEmpty: Bool = false) throws(TRMaskError) -> MaskResult {
    try partials.checkShape("partials")
    let rows = partials.rows
    var input = partials
    var keepRow = [UInt8](repeating: 0, count: rows)
    var stats = [Float](repeating: 0, count: rows * criteria.count)
    var rejected = [Int64](repeating: 0, count: criteria.count)
    let status = try input.withKernelView { view in
        keepRow.withUnsafeMutableBufferPointer { keepRow in
            stats.withUnsafeMutableBufferPointer { stats in
                rejected.withUnsafeMutableBufferPointer { rejected in
                    let outputs = MaskOutputs(keepRow: OutView(base: keepRow.baseAddress),
                                              rowStats: OutView(base: stats.baseAddress, rowStride: 1, colStride: rows),
                                              rejected: rejected.baseAddress)
                    return TRMaskKernels.decidePartials(view, criteria: criteria, options: ReductionOptions(rejectEmpty: rejectEmpty),
                                                        outputs: outputs)
                }
            }
        }
    }
    try TRMaskError.check(status, argument: status == .badPartials ? "partials" : "criteria")
    return MaskResult(keepRow: keepRow.map { $0 != 0 }, keepToken: [], rejected: rejected.map { Int($0) },
                      rowStats: (0..<criteria.count).map { Array(stats[($0 * rows)..<(($0 + 1) * rows)]) },
                      count: partials.count, nonfinite: partials.nonfinite)
}

extension RowPartials {
    /// One array per estimator, each of `rows` rows, and one count per row.
    func checkShape(_ argument: String) throws(TRMaskError) {
        let rows = count.count
        guard nonfinite.count == rows, [sum.count, max.count, min.count].allSatisfy({ $0 == estimators.count }),
              sum.allSatisfy({ $0.count == rows }), max.allSatisfy({ $0.count == rows }), min.allSatisfy({ $0.count == rows }) else {
            throw TRMaskError(.badSize, argument: argument)
        }
    }

    /// Runs `body` with the kernel's view of these partials, over contiguous copies that are
    /// written back afterwards (`[rows, estimators]` with column stride `rows`).
    mutating func withKernelView<R>(_ body: (TRMaskKernels.RowPartials) throws(TRMaskError) -> R) throws(TRMaskError) -> R {
        let rows = rows
        var counts = count.map { Int64($0) }
        var nonfinites = nonfinite.map { Int64($0) }
        var sums = sum.flatMap { $0 }
        var maxima = max.flatMap { $0 }
        var minima = min.flatMap { $0 }
        let estimators = estimators
        let result = try counts.withUnsafeMutableBufferPointer { (counts) throws(TRMaskError) -> R in
            try nonfinites.withUnsafeMutableBufferPointer { (nonfinites) throws(TRMaskError) -> R in
                try sums.withUnsafeMutableBufferPointer { (sums) throws(TRMaskError) -> R in
                    try maxima.withUnsafeMutableBufferPointer { (maxima) throws(TRMaskError) -> R in
                        try minima.withUnsafeMutableBufferPointer { (minima) throws(TRMaskError) -> R in
                            try body(TRMaskKernels.RowPartials(
                                rows: rows, estimators: estimators, count: OutView(base: counts.baseAddress),
                                nonfinite: OutView(base: nonfinites.baseAddress),
                                sum: OutView(base: sums.baseAddress, rowStride: 1, colStride: rows),
                                max: OutView(base: maxima.baseAddress, rowStride: 1, colStride: rows),
                                min: OutView(base: minima.baseAddress, rowStride: 1, colStride: rows)))
                        }
                    }
                }
            }
        }
        count = counts.map { Int($0) }
        nonfinite = nonfinites.map { Int($0) }
        let columns = estimators.indices
        sum = columns.map { Array(sums[($0 * rows)..<(($0 + 1) * rows)]) }
        max = columns.map { Array(maxima[($0 * rows)..<(($0 + 1) * rows)]) }
        min = columns.map { Array(minima[($0 * rows)..<(($0 + 1) * rows)]) }
        return result
    }
}
