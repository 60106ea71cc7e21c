import TRMaskKernels

/// Rollout correction in verl's arithmetic (docs/rollout-correction.md): rejection options,
/// importance weights and verl's statistics in one pass per row.
public typealias Rejection = TRMaskKernels.Rejection
public typealias RejectionLevel = TRMaskKernels.RejectionLevel
public typealias CorrectionConfig = TRMaskKernels.CorrectionConfig
public typealias CorrectionStatistics = TRMaskKernels.CorrectionStatistics
public typealias WeightStatistics = TRMaskKernels.WeightStatistics
public typealias RejectionStatistics = TRMaskKernels.RejectionStatistics
public typealias OffPolicyStatistics = TRMaskKernels.OffPolicyStatistics

/// What `rolloutCorrection` returns. Grids are row-major `rows * cols` (padded) or `cols`
/// (packed).
public struct CorrectionResult: Equatable, Sendable {
    /// Rows with no token of `m != 0` rejected.
    public var keepRow: [Bool]
    /// `m * keep` in the mask's dtype (1/0 without a mask), widened exactly to Double.
    public var mask: [Double]
    /// The weights in `weightsDType`, widened exactly to Double; empty without a weight rule.
    public var weights: [Double]
    public var statistics: CorrectionStatistics
    /// The row records the statistics are reduced from, when asked for (`rowRecords: true`).
    public var rowRecords: CorrectionRowRecords?
}

/// The row records of one `rolloutCorrection` call (docs/sharded-rows.md): per row, the sums,
/// extrema and decisions its statistics are reduced from, and the facts of the call the
/// reduction depends on. `reduceCorrectionRows` of several calls' records gives the statistics of
/// one call on their rows concatenated, bit for bit.
public struct CorrectionRowRecords: Equatable, Sendable {
    /// `rows * (18 + 10 * rejections)` doubles, row-major (fields: include/trmask.h,
    /// `trm_correction_rows_t`).
    public var values: [Double]
    public var rows: Int
    public var maskDType: DType?
    public var weightsDType: DType?
    public var logProbs: Bool

    public init(values: [Double], rows: Int, maskDType: DType?, weightsDType: DType?, logProbs: Bool) {
        self.values = values
        self.rows = rows
        self.maskDType = maskDType
        self.weightsDType = weightsDType
        self.logProbs = logProbs
    }
}

/// The statistics of the rows of every shard, in order, from their records: equal, bit for bit,
/// to those of one `rolloutCorrection` on the shards' rows concatenated with `config` (each
/// shard's config). Throws `.badCorrectionRows` for records that are not a call's (a count or
/// flag out of its domain, shards of different inputs), `.badSize` when `values` does not hold
/// `rows` records.
public func reduceCorrectionRows(_ shards: [CorrectionRowRecords], config: CorrectionConfig) throws(TRMaskError) -> CorrectionStatistics {
    let width = correctionRowWidth(rejections: config.rejections.count)
    for shard in shards where shard.rows < 0 || shard.values.count != sizeProduct(shard.rows, width) {
        throw TRMaskError(.badSize, argument: "shards")
    }
    var statistics = CorrectionStatistics()
    // One buffer for every shard (a copy, in this convenience layer): the kernel takes pointers.
    var joined = shards.flatMap(\.values)
    let status = joined.withUnsafeMutableBufferPointer { joined in
        var offset = 0
        let buffers = shards.map { shard in
            defer { offset += shard.values.count }
            return CorrectionRowsBuffer(base: joined.baseAddress.map { $0 + offset }, rows: shard.rows,
                                        maskDType: shard.maskDType, weightsDType: shard.weightsDType, logProbs: shard.logProbs)
        }
        return TRMaskKernels.reduceCorrectionRows(config: config, shards: buffers, statistics: &statistics)
    }
    try TRMaskError.check(status)
    return statistics
}

/// `rowRecords`: also return the row records (`CorrectionResult.rowRecords`).
public func rolloutCorrection(_ batch: TokenBatch, config: CorrectionConfig, weightsDType: DType = .f32,
                              rowRecords: Bool = false) throws(TRMaskError) -> CorrectionResult {
    let maskDType = batch.batch.mask?.dtype ?? .u8
    let gridStride = batch.batch.layout == .padded ? batch.cols : 0
    var keepRow = [UInt8](repeating: 0, count: batch.rows)
    var mask = [UInt8](repeating: 0, count: batch.gridCount * maskDType.size)
    var weights = [UInt8](repeating: 0, count: config.weightRule == nil ? 0 : batch.gridCount * weightsDType.size)
    var statistics = CorrectionStatistics()
    let width = correctionRowWidth(rejections: config.rejections.count)
    var records = [Double](repeating: 0, count: rowRecords ? batch.rows * width : 0)
    var logProbs = false
    if case .logProbs = batch.batch.source { logProbs = true }
    var facts = CorrectionRowsBuffer(base: nil, rows: batch.rows, maskDType: batch.batch.mask?.dtype, weightsDType: nil,
                                     logProbs: logProbs)
    let status = keepRow.withUnsafeMutableBufferPointer { keepRow in
        mask.withUnsafeMutableBytes { mask in
            weights.withUnsafeMutableBytes { weights in
                records.withUnsafeMutableBufferPointer { records in
                    withUnsafeMutablePointer(to: &statistics) { statistics in
                        facts.weightsDType = weights.baseAddress == nil ? nil : weightsDType
                        var rows = facts
                        rows.base = records.baseAddress
                        let outputs = CorrectionOutputs(
                            mask: TypedOut(base: mask.baseAddress, dtype: maskDType, rowStride: gridStride),
                            keepRow: OutView(base: keepRow.baseAddress),
                            weights: TypedOut(base: weights.baseAddress, dtype: weightsDType, rowStride: gridStride),
                            statistics: statistics)
                        return TRMaskKernels.rolloutCorrection(batch.batch, config: config, outputs: outputs,
                                                               rowRecords: rowRecords ? rows : nil)
                    }
                }
            }
        }
    }
    try TRMaskError.check(status)
    return CorrectionResult(keepRow: keepRow.map { $0 != 0 },
                            mask: mask.withUnsafeBytes { widened($0, dtype: maskDType) },
                            weights: weights.withUnsafeBytes { widened($0, dtype: weightsDType) },
                            statistics: statistics,
                            rowRecords: rowRecords ? CorrectionRowRecords(values: records, rows: batch.rows,
                                                                          maskDType: facts.maskDType,
                                                                          weightsDType: facts.weightsDType,
                                                                          logProbs: facts.logProbs) : nil)
}

/// Divides, in place, every weight inside the rows of `batch`'s token grid (`weights` laid out
/// row-major like `CorrectionResult.weights`) by `divisor` (finite, > 0), in `Element`'s dtype:
/// verl's batch normalisation once a distributed caller has reduced `norm_sum` and `norm_count`.
public func divideWeights<Element: LogProbScalar>(_ weights: UnsafeMutableBufferPointer<Element>, like batch: TokenBatch,
                                                  divisor: Double) throws(TRMaskError) {
    guard weights.count == batch.gridCount else { throw TRMaskError(.badSize, argument: "weights") }
    let grid = TypedOut(base: UnsafeMutableRawPointer(weights.baseAddress), dtype: Element.dtype,
                        rowStride: batch.batch.layout == .padded ? batch.cols : 0)
    try TRMaskError.check(TRMaskKernels.divideWeights(layout: batch.batch.layout, rows: batch.rows, cols: batch.cols,
                                                      offsets: batch.batch.offsets, divisor: divisor, weights: grid))
}
