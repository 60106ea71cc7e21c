import TRMaskKernels

/// What `trustRegionMask` returns (semantics §3-§4).
public struct MaskResult: Equatable, Sendable {
    /// Rows that pass every row criterion.
    public var keepRow: [Bool]
    /// Token grid (padded `rows * cols` row-major, packed `cols`): valid, in a kept row, and passing
    /// every token criterion. Empty unless asked for.
    public var keepToken: [Bool]
    /// Per criterion, in order: rows (row criteria) or tokens (token criteria) it rejects, counted
    /// before the AND.
    public var rejected: [Int]
    /// Per row criterion, in order: the statistic it tested, one per row.
    public var rowStats: [[Float]]
    /// Valid tokens per row (NaN tokens excluded under `.skip`).
    public var count: [Int]
    /// Valid tokens per row whose log-ratio is NaN or infinite.
    public var nonfinite: [Int]
    /// Importance weights on the token grid (layout as `keepToken`); empty unless asked for.
    public var weights: [Float] = []
    /// The batch metrics (semantics §9, docs/metrics.md); nil unless asked for.
    public var metrics: MaskMetrics? = nil
}

/// Trust Region Masking: which rows (and tokens) of `batch` stay in the gradient. `criteria`
/// defaults to the paper's TRM-Max&Avg (`max k2 <= 0.1`, `mean k3 <= 0.002`); a row is kept iff
/// every row criterion holds (inclusive bounds). Empty rows are kept unless
/// `options.rejectEmpty`. Results do not depend on `options.threads`.
///
/// `weights`: importance weights under this rule in the same call (semantics §5, see
/// `importanceWeights`). `metrics`: the batch metrics of semantics §9 from the same pass.
public func trustRegionMask(_ batch: TokenBatch, criteria: [Criterion] = Criterion.trmDefault,
                            options: ReductionOptions = ReductionOptions(), keepToken: Bool = false,
                            weights rule: WeightRule? = nil, metrics: Bool = false) throws(TRMaskError) -> MaskResult {
    let rows = batch.rows
    let rowCriteria = criteria.filter(\.isRowCriterion).count
    let gridStride = batch.batch.layout == .padded ? batch.cols : 0
    var keepRow = [UInt8](repeating: 0, count: rows)
    var tokens = [UInt8](repeating: 0, count: keepToken ? batch.gridCount : 0)
    var weights = [Float](repeating: 0, count: rule == nil ? 0 : batch.gridCount)
    var batchMetrics = MaskMetrics()
    var stats = [Float](repeating: 0, count: rows * rowCriteria)
    var count = [Int64](repeating: 0, count: rows)
    var nonfinite = [Int64](repeating: 0, count: rows)
    var rejected = [Int64](repeating: 0, count: criteria.count)
    let status = keepRow.withUnsafeMutableBufferPointer { keepRow in
        tokens.withUnsafeMutableBufferPointer { tokens in
            stats.withUnsafeMutableBufferPointer { stats in
                count.withUnsafeMutableBufferPointer { count in
                    nonfinite.withUnsafeMutableBufferPointer { nonfinite in
                        rejected.withUnsafeMutableBufferPointer { rejected in
                            weights.withUnsafeMutableBufferPointer { weights in
                                withUnsafeMutablePointer(to: &batchMetrics) { batchMetrics in
                                    let outputs = MaskOutputs(
                                        keepRow: OutView(base: keepRow.baseAddress), count: OutView(base: count.baseAddress),
                                        nonfinite: OutView(base: nonfinite.baseAddress),
                                        rowStats: OutView(base: stats.baseAddress, rowStride: 1, colStride: rows),
                                        keepToken: OutView(base: keepToken ? tokens.baseAddress : nil, rowStride: gridStride, colStride: 1),
                                        rejected: rejected.baseAddress,
                                        weights: OutView(base: rule == nil ? nil : weights.baseAddress, rowStride: gridStride, colStride: 1),
                                        weightRule: rule ?? WeightRule(level: .token, mode: .truncate),
                                        metrics: metrics ? batchMetrics : nil)
                                    return TRMaskKernels.trustRegionMask(batch.batch, criteria: criteria, options: options, outputs: outputs)
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    try TRMaskError.check(status)
    return MaskResult(keepRow: keepRow.map { $0 != 0 }, keepToken: tokens.map { $0 != 0 }, rejected: rejected.map { Int($0) },
                      rowStats: (0..<rowCriteria).map { Array(stats[($0 * rows)..<(($0 + 1) * rows)]) },
                      count: count.map { Int($0) }, nonfinite: nonfinite.map { Int($0) }, weights: weights,
                      metrics: metrics ? batchMetrics : nil)
}

/// Importance weights (semantics §5) on the token grid (padded row-major `rows * cols`, packed
/// `cols`): 0 on tokens that are not counted, on rows whose `keepRow` entry is false (nil: every
/// row kept), and under `.reject` on rows with a NaN log-ratio.
public func importanceWeights(_ batch: TokenBatch, rule: WeightRule, keepRow: [Bool]? = nil,
                              options: ReductionOptions = ReductionOptions()) throws(TRMaskError) -> [Float] {
    if let keepRow, keepRow.count != batch.rows { throw TRMaskError(.badSize, argument: "keepRow") }
    var weights = [Float](repeating: 0, count: batch.gridCount)
    let decisions = (keepRow ?? []).map { UInt8($0 ? 1 : 0) }
    let status = weights.withUnsafeMutableBufferPointer { out in
        decisions.withUnsafeBufferPointer { decisions in
            let view = keepRow == nil ? nil : StridedView(base: decisions.baseAddress, dtype: .u8, rowStride: 0, colStride: 1)
            return TRMaskKernels.importanceWeights(batch.batch, options: options, rule: rule, keepRow: view,
                                                   out: OutView(base: out.baseAddress, rowStride: batch.batch.layout == .padded ? batch.cols : 0,
                                                                colStride: 1))
        }
    }
    try TRMaskError.check(status, argument: status == .badWeightRule ? "rule" : nil)
    return weights
}

/// Per-row `sum, mean, max, min` of one estimator over valid tokens (semantics §3).
public struct RowStatistics: Equatable, Sendable {
    public var sum: [Float]
    public var mean: [Float]
    public var max: [Float]
    public var min: [Float]
}

/// What `sequenceStats` returns.
public struct SequenceStats: Equatable, Sendable {
    public var count: [Int]
    public var nonfinite: [Int]
    public var stats: [Estimator: RowStatistics]
}

/// Per-row count, sum, mean, max and min of each estimator, in one pass. Empty rows give 0;
/// under `.reject` a row with a NaN log-ratio gives NaN statistics.
public func sequenceStats(_ batch: TokenBatch, estimators: [Estimator] = [.k2, .k3],
                          options: ReductionOptions = ReductionOptions()) throws(TRMaskError) -> SequenceStats {
    let aggregations: [Aggregation] = [.sum, .mean, .max, .min]
    let criteria = estimators.flatMap { estimator in aggregations.map { Criterion($0, estimator) } }
    let result = try trustRegionMask(batch, criteria: criteria, options: options)
    var stats: [Estimator: RowStatistics] = [:]
    for (index, estimator) in estimators.enumerated() {
        let base = index * aggregations.count
        stats[estimator] = RowStatistics(sum: result.rowStats[base], mean: result.rowStats[base + 1],
                                         max: result.rowStats[base + 2], min: result.rowStats[base + 3])
    }
    return SequenceStats(count: result.count, nonfinite: result.nonfinite, stats: stats)
}

/// `estimator(clamp(delta))` at every position of the token grid (padded row-major `rows * cols`,
/// packed `cols`), valid or not (semantics §2). The batch must have no mask and no lengths.
public func tokenValues(_ batch: TokenBatch, estimator: Estimator, options: ReductionOptions = ReductionOptions()) throws(TRMaskError) -> [Float] {
    var values = [Float](repeating: 0, count: batch.gridCount)
    let status = values.withUnsafeMutableBufferPointer { out in
        TRMaskKernels.tokenValues(batch.batch, estimator: estimator, options: options,
                                  out: OutView(base: out.baseAddress, rowStride: batch.batch.layout == .padded ? batch.cols : 0, colStride: 1))
    }
    try TRMaskError.check(status)
    return values
}

/// Array conveniences: row-major `[rows * cols]` Swift arrays.
public extension TokenBatch {
    /// Runs `body` with a padded batch over row-major arrays of any log-prob element types
    /// (`mask`: an array of any `TokenScalar`, `[Bool]`, `[UInt8]`, `[Int32]`, ...; nonzero = valid).
    static func withPadded<Train: LogProbScalar, Roll: LogProbScalar, R>(
        logpTrain: [Train], logpRoll: [Roll], rows: Int, cols: Int, mask: (any MaskArray)? = nil,
        lengths: [Int64]? = nil, _ body: (TokenBatch) throws(TRMaskError) -> R) throws(TRMaskError) -> R {
        let count = try checkedPositions(rows: rows, cols: cols, argument: "rows, cols")
        guard logpTrain.count == count else { throw TRMaskError(.badSize, argument: "logpTrain") }
        guard logpRoll.count == count else { throw TRMaskError(.badSize, argument: "logpRoll") }
        if let mask, mask.count != count { throw TRMaskError(.badSize, argument: "mask") }
        return try logpTrain.withUnsafeBufferPointer { (train) throws(TRMaskError) -> R in
            try logpRoll.withUnsafeBufferPointer { (roll) throws(TRMaskError) -> R in
                try withOptionalMask(mask, rows: rows, cols: cols) { (mask) throws(TRMaskError) -> R in
                    try withOptionalBuffer(lengths) { (lengths) throws(TRMaskError) -> R in
                        try body(padded(logpTrain: StridedMatrix(train, rows: rows, cols: cols),
                                        logpRoll: StridedMatrix(roll, rows: rows, cols: cols), mask: mask,
                                        lengths: lengths))
                    }
                }
            }
        }
    }
}

/// A row-major Swift array that `TokenBatch.withPadded` takes as a mask: `[Bool]`, `[UInt8]`, any
/// other fixed-width integer array, or a float array (the element types of the C ABI's masks).
public protocol MaskArray {
    var count: Int { get }
    /// Runs `body` with this array viewed as a `[rows, cols]` row-major mask.
    func withMaskMatrix<R>(rows: Int, cols: Int, _ body: (any MaskMatrix) throws(TRMaskError) -> R) throws(TRMaskError) -> R
}

extension Array: MaskArray where Element: TokenScalar {
    public func withMaskMatrix<R>(rows: Int, cols: Int, _ body: (any MaskMatrix) throws(TRMaskError) -> R) throws(TRMaskError) -> R {
        try withUnsafeBufferPointer { (buffer) throws(TRMaskError) -> R in try body(StridedMatrix(buffer, rows: rows, cols: cols)) }
    }
}

private func withOptionalMask<R>(_ mask: (any MaskArray)?, rows: Int, cols: Int,
                                 _ body: ((any MaskMatrix)?) throws(TRMaskError) -> R) throws(TRMaskError) -> R {
    guard let mask else { return try body(nil) }
    return try mask.withMaskMatrix(rows: rows, cols: cols) { (matrix) throws(TRMaskError) -> R in try body(matrix) }
}

/// `rows * cols`, or a `.badSize` error naming `argument` when a size is negative or the product
/// overflows (checked before any allocation or indexing: the Swift API never traps).
func checkedPositions(rows: Int, cols: Int, argument: String) throws(TRMaskError) -> Int {
    let (count, overflow) = rows.multipliedReportingOverflow(by: cols)
    guard rows >= 0, cols >= 0, !overflow else { throw TRMaskError(.badSize, argument: argument) }
    return count
}

/// Runs `body` with the array's buffer, or with nil when there is no array.
func withOptionalBuffer<T, R>(_ array: [T]?, _ body: (UnsafeBufferPointer<T>?) throws(TRMaskError) -> R) throws(TRMaskError) -> R {
    guard let array else { return try body(nil) }
    return try array.withUnsafeBufferPointer { (buffer) throws(TRMaskError) -> R in try body(buffer) }
}
