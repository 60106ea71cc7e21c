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
}

/// verl's rollout correction on `batch`: the mask of `config.rejections`, the importance weights
/// of `config.weightRule` in `weightsDType` (f32, f64, f16 or bf16) and every statistic. The
/// batch's log-probs or log-ratio give `delta`; its mask gives `m` (its values when
/// `config.maskWeights`). Results do not depend on `config.threads`.
public func rolloutCorrection(_ batch: TokenBatch, config: CorrectionConfig,
                              weightsDType: DType = .f32) throws(TRMaskError) -> CorrectionResult {
    let maskDType = batch.batch.mask?.dtype ?? .u8
    let gridStride = batch.batch.layout == .padded ? batch.cols : 0
    var keepRow = [UInt8](repeating: 0, count: batch.rows)
    var mask = [UInt8](repeating: 0, count: batch.gridCount * maskDType.size)
    var weights = [UInt8](repeating: 0, count: config.weightRule == nil ? 0 : batch.gridCount * weightsDType.size)
    var statistics = CorrectionStatistics()
    let status = keepRow.withUnsafeMutableBufferPointer { keepRow in
        mask.withUnsafeMutableBytes { mask in
            weights.withUnsafeMutableBytes { weights in
                withUnsafeMutablePointer(to: &statistics) { statistics in
                    let outputs = CorrectionOutputs(
                        mask: TypedOut(base: mask.baseAddress, dtype: maskDType, rowStride: gridStride),
                        keepRow: OutView(base: keepRow.baseAddress),
                        weights: TypedOut(base: weights.baseAddress, dtype: weightsDType, rowStride: gridStride),
                        statistics: statistics)
                    return TRMaskKernels.rolloutCorrection(batch.batch, config: config, outputs: outputs)
                }
            }
        }
    }
    try TRMaskError.check(status)
    return CorrectionResult(keepRow: keepRow.map { $0 != 0 },
                            mask: mask.withUnsafeBytes { widened($0, dtype: maskDType) },
                            weights: weights.withUnsafeBytes { widened($0, dtype: weightsDType) },
                            statistics: statistics)
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
